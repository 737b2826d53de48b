#pragma once
/// @file latency.hpp
/// Latency measurement for the sweep: end-to-end timing (median and p95 over repeated runs after a
/// warm-up) and per-layer timing through `layer_profiler`, from which a path's latency is predicted
/// as the sum of the layers it runs (joined with `layer_info::timing_name()`) plus the time outside
/// every layer scope (layout conversion, buffers).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/profiler.hpp"
#include "../models/layer_info.hpp"

namespace drt {

/// Median and 95th percentile (nearest rank) of repeated timings, in milliseconds.
struct timing_stats {
  double median_ms = 0, p95_ms = 0;
  std::vector<double> samples_ms;

  static timing_stats of(std::vector<double> ms) {
    timing_stats t;
    t.samples_ms = ms;
    if (ms.empty()) return t;
    std::sort(ms.begin(), ms.end());
    const std::size_t n = ms.size();
    t.median_ms = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
    // nearest rank: the smallest sample with at least 95% of the samples at or below it
    const std::size_t rank = static_cast<std::size_t>(std::ceil(0.95 * static_cast<double>(n)));
    t.p95_ms = ms[std::max<std::size_t>(rank, 1) - 1];
    return t;
  }
};

/// Times `run()` `repeats` times after `warmup` untimed runs.
template <class Run>
timing_stats time_runs(Run&& run, std::size_t warmup, std::size_t repeats) {
  for (std::size_t i = 0; i < warmup; ++i) run();
  std::vector<double> ms;
  for (std::size_t i = 0; i < repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return timing_stats::of(std::move(ms));
}

/// Per-layer medians (ms, by profiler scope name) and end-to-end statistics of repeated runs.
struct layer_timings {
  std::map<std::string, double> layer_ms;  ///< median over runs of each scope's time in a run
  timing_stats total;                      ///< end-to-end time of the runs
  double scoped_ms() const {
    double s = 0;
    for (const auto& [name, ms] : layer_ms) s += ms;
    return s;
  }
};

/// Runs `run()` `repeats` times (no warm-up: do it before), each under its own profiling session.
template <class Run>
layer_timings profile_runs(Run&& run, std::size_t repeats) {
  std::map<std::string, std::vector<double>> samples;
  std::vector<double> totals;
  for (std::size_t i = 0; i < repeats; ++i) {
    layer_profiler prof;
    const auto t0 = std::chrono::steady_clock::now();
    {
      profiling_session session(prof);
      run();
    }
    totals.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    prof.end_run();
    for (const auto& name : prof.names()) samples[name].push_back(prof.median(name) * 1e3);
  }
  layer_timings t;
  for (auto& [name, v] : samples) t.layer_ms[name] = timing_stats::of(v).median_ms;
  t.total = timing_stats::of(std::move(totals));
  return t;
}

/// Sum of the measured times of the layers in `layers` (each timing scope counted once). Throws
/// drt::invalid_input naming the first layer whose scope was never measured.
inline double sum_layer_ms(const std::vector<layer_info>& layers, const std::map<std::string, double>& times,
                           const std::string& where) {
  std::set<std::string> seen;
  double s = 0;
  for (const auto& l : layers) {
    const std::string& key = l.timing_name();
    if (!seen.insert(key).second) continue;
    const auto it = times.find(key);
    if (it == times.end())
      throw invalid_input(where + ": layer '" + l.name + "' (timed as '" + key + "') was not measured");
    s += it->second;
  }
  return s;
}

}  // namespace drt
