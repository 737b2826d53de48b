#pragma once
/// @file core/pareto.hpp
/// Pareto-optimal points of a (cost, value) set (paper Section IV: keep the paths no other path
/// beats on both resource and accuracy). Generic over the item type so the same code serves
/// (latency, mIoU), (MACs, mIoU) and (accelerator cycles or energy, mIoU): the engine's lookup
/// tables and policies (engine/pareto.hpp) and the accelerator design-space exploration
/// (accel/dse.hpp) both use it, neither depending on the other.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numeric>
#include <vector>

namespace drt {

/// Indices of the items on the Pareto front of (cost: lower is better, value: higher is better),
/// sorted by cost. Item j dominates item i when cost_j <= cost_i and value_j >= value_i with at
/// least one strict; among exact duplicates the first one is kept. Items whose cost or value is not
/// finite are never on the front.
template <class T, class Cost, class Value>
std::vector<std::size_t> pareto_front(const std::vector<T>& items, Cost&& cost, Value&& value) {
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < items.size(); ++i)
    if (std::isfinite(static_cast<double>(cost(items[i]))) && std::isfinite(static_cast<double>(value(items[i]))))
      order.push_back(i);
  // Cheapest first; at equal cost the most valuable first, then the earliest.
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const double ca = cost(items[a]), cb = cost(items[b]);
    if (ca != cb) return ca < cb;
    return static_cast<double>(value(items[a])) > static_cast<double>(value(items[b]));
  });
  std::vector<std::size_t> front;
  double best = -INFINITY;
  for (const std::size_t i : order) {
    const double v = value(items[i]);
    if (v > best) {  // strictly better than everything cheaper or as cheap
      front.push_back(i);
      best = v;
    }
  }
  return front;
}

/// True when some item dominates `items[i]` (see `pareto_front`).
template <class T, class Cost, class Value>
bool is_dominated(const std::vector<T>& items, std::size_t i, Cost&& cost, Value&& value) {
  const double ci = cost(items[i]), vi = value(items[i]);
  for (std::size_t j = 0; j < items.size(); ++j) {
    if (j == i) continue;
    const double cj = cost(items[j]), vj = value(items[j]);
    if (cj <= ci && vj >= vi && (cj < ci || vj > vi)) return true;
  }
  return false;
}

}  // namespace drt
