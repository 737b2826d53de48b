#pragma once
/// @file estimate.hpp
/// A whole model on an accelerator: every layer of the graph the CPU runs (`layer_info`, from
/// `segformer_model::layers`, `resnet_model`, UPerNet...) mapped with `map_layer`, with totals in the
/// paper's units (ms at the clock, mJ, mm2). Layers run one after another (no inter-layer overlap);
/// kinds without MACs cost nothing (fused in the post-processing unit). Identical layer shapes are
/// mapped once, so a model evaluates in milliseconds.

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../models/layer_info.hpp"
#include "accelerator.hpp"
#include "area.hpp"
#include "cost.hpp"
#include "layer.hpp"
#include "tiling.hpp"

namespace drt {

/// One layer's mapping and cost.
struct layer_estimate {
  std::string name;
  std::string module;  ///< checkpoint module (layer_info::module)
  layer_kind kind = layer_kind::conv;
  model_region region = model_region::encoder;
  accel_layer shape;
  accel_mapping mapping;
  accel_cost cost;
};

/// A model's layers on one accelerator, with totals.
struct model_estimate {
  accelerator accel;
  accel_options options;
  std::vector<layer_estimate> layers;
  double cycles = 0, energy_pj = 0, macs = 0, dram_bytes = 0;

  double ms() const noexcept { return accel.ms(cycles); }
  double energy_mj() const noexcept { return energy_pj * 1e-9; }
  double pj_per_mac() const noexcept { return macs > 0 ? energy_pj / macs : 0.0; }
  double utilization() const noexcept { return cycles > 0 ? macs / (cycles * accel.peak_macs_per_cycle()) : 0.0; }
  double area_mm2() const noexcept { return pe_array_area_mm2(accel); }

  /// The layer named `name`; throws drt::invalid_input when there is none.
  const layer_estimate& layer(const std::string& name) const {
    for (const auto& l : layers)
      if (l.name == name) return l;
    throw invalid_input("accelerator estimate: no layer named '" + name + "' among " + std::to_string(layers.size()) +
                        " layers");
  }
  /// Cycles of the layers whose kind is `k`.
  double cycles_of(layer_kind k) const noexcept {
    double t = 0;
    for (const auto& l : layers)
      if (l.kind == k) t += l.cost.cycles;
    return t;
  }
};

namespace detail {
inline std::string describe(const accel_layer& l) {
  auto z = [](std::size_t v) { return std::to_string(v); };
  return "N " + z(l.n) + ", K " + z(l.k) + ", C " + z(l.c) + ", P " + z(l.p) + ", Q " + z(l.q) + ", R " + z(l.r) +
         ", S " + z(l.s) + ", stride " + z(l.stride);
}
}  // namespace detail

/// Maps one layer; throws drt::invalid_input when no mapping fits `a`'s buffers.
inline accel_choice map_layer_checked(const accelerator& a, const accel_layer& l, const std::string& name,
                                      const accel_options& o = {}) {
  if (!a.valid())
    throw invalid_input(std::string("accelerator '") + a.name() + "' has a zero size, clock or bandwidth");
  const accel_choice c = map_layer(a, l, o);
  if (!c.cost.valid)
    throw invalid_input(std::string("accelerator '") + a.name() + "': layer '" + name + "' (" + detail::describe(l) +
                        ") does not fit: no split over " + std::to_string(a.num_pe) +
                        " PEs puts one K0 group of its weights in the " + std::to_string(a.wm_kb) +
                        " KB weight buffer and one input row in half the " + std::to_string(a.am_kb) +
                        " KB activation buffer");
  return c;
}

/// Every layer of `layers` on `a`. Throws drt::invalid_input for a layer that does not fit.
inline model_estimate estimate(const accelerator& a, const std::vector<layer_info>& layers,
                               const accel_options& o = {}) {
  model_estimate m;
  m.accel = a;
  m.options = o;
  m.layers.reserve(layers.size());
  std::vector<std::pair<accel_layer, accel_choice>> memo;
  for (const auto& li : layers) {
    layer_estimate e;
    e.name = li.name;
    e.module = li.module;
    e.kind = li.kind;
    e.region = li.region;
    e.shape = to_accel_layer(li);
    const accel_choice* found = nullptr;
    for (const auto& [shape, choice] : memo)
      if (shape == e.shape) {
        found = &choice;
        break;
      }
    if (!found) {
      memo.emplace_back(e.shape, map_layer_checked(a, e.shape, li.name, o));
      found = &memo.back().second;
    }
    e.mapping = found->mapping;
    e.cost = found->cost;
    m.cycles += e.cost.cycles;
    m.energy_pj += e.cost.energy_pj();
    m.macs += e.cost.macs;
    m.dram_bytes += e.cost.dram_bytes;
    m.layers.push_back(std::move(e));
  }
  return m;
}

}  // namespace drt
