#pragma once
/// @file sweep_confirm.hpp
/// The last phases of every sweep: confirm the per-layer latency predictions by timing a sample of
/// paths end to end, calibrate the predictions, and finish the table (Pareto flags, normalized
/// accuracy, the reference entry and what the table holds).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "latency.hpp"
#include "lut.hpp"
#include "sweep_options.hpp"

namespace drt::detail {

/// Reports progress of the confirmation: (what, round, rounds, done, total, eta seconds).
using confirm_progress_fn =
    std::function<void(const std::string&, std::size_t, std::size_t, std::size_t, std::size_t, double)>;

/// Times a sample of `table`'s entries end to end (`run(i)` runs entry i once): each model's full
/// path, the front spread along it, a few random others, round robin (one run of each per round,
/// after a warm-up run) so that a load that drifts affects every path alike; at least
/// `opt.repeats` rounds, up to 4x as many while `budget_s` (from `t_start`) has room. Then every
/// predicted entry's latency is calibrated by its model's full-path measured/predicted ratio.
/// Returns the report (sample, errors, p95 ratio, rounds, calibration per model).
template <class Run>
nlohmann::json confirm_latencies(lookup_table& table, const sweep_options& opt, Run&& run,
                                 std::chrono::steady_clock::time_point t_start, double budget_s,
                                 const confirm_progress_fn& progress = {}) {
  std::vector<std::size_t> sample;
  auto add_sample = [&](std::size_t i) {
    if (sample.size() < opt.confirm && std::find(sample.begin(), sample.end(), i) == sample.end()) sample.push_back(i);
  };
  for (std::size_t i = 0; i < table.entries.size(); ++i)
    if (table.entries[i].path == "full") add_sample(i);
  const auto front = table.front();
  const std::size_t others = std::min<std::size_t>(2, opt.confirm / 6);
  const std::size_t front_slots = opt.confirm > sample.size() + others ? opt.confirm - sample.size() - others : 0;
  if (front_slots > 0 && !front.empty()) {
    if (front.size() <= front_slots) {
      for (const std::size_t i : front) add_sample(i);
    } else {
      for (std::size_t k = 0; k < front_slots; ++k)
        add_sample(front[front_slots == 1 ? front.size() - 1 : k * (front.size() - 1) / (front_slots - 1)]);
    }
  }
  std::mt19937 rng(opt.seed);
  for (std::size_t tries = 0; sample.size() < opt.confirm && tries < 100 && !table.entries.empty(); ++tries)
    add_sample(std::uniform_int_distribution<std::size_t>(0, table.entries.size() - 1)(rng));

  std::vector<std::vector<double>> runs(sample.size());
  for (const std::size_t i : sample) run(i);  // warm-up
  const std::size_t max_rounds = 4 * opt.repeats;
  std::size_t rounds_shown = opt.repeats;
  double round_s = 0;
  for (std::size_t r = 0; r < max_rounds && !sample.empty(); ++r) {
    if (r >= opt.repeats && seconds_since(t_start) + 1.5 * round_s > budget_s) break;
    const auto t_round = std::chrono::steady_clock::now();
    rounds_shown = std::max(rounds_shown, r + 1);
    for (std::size_t k = 0; k < sample.size(); ++k) {
      if (progress)
        progress("round robin over " + std::to_string(sample.size()) + " paths", r + 1, rounds_shown, k,
                 sample.size(), round_s * double(opt.repeats > r ? opt.repeats - r : 1));
      runs[k].push_back(time_runs([&] { run(sample[k]); }, 0, 1).median_ms);
    }
    round_s = seconds_since(t_round);
  }

  std::map<std::string, double> calibration;
  std::vector<timing_stats> measured;
  std::vector<double> p95_ratios;
  for (std::size_t k = 0; k < sample.size(); ++k) {
    measured.push_back(timing_stats::of(runs[k]));
    p95_ratios.push_back(measured.back().p95_ms / measured.back().median_ms);
    const auto& e = table.entries[sample[k]];
    if (e.path == "full")  // calibration: the load now vs when the layers were profiled
      calibration[e.model] = measured.back().median_ms / e.predicted_latency_ms;
  }
  auto calibration_of = [&](const std::string& model) {
    const auto it = calibration.find(model);
    return it == calibration.end() ? 1.0 : it->second;
  };
  const double p95_ratio = p95_ratios.empty() ? 1.0 : timing_stats::of(p95_ratios).median_ms;
  nlohmann::json sample_report = nlohmann::json::array();
  std::vector<double> err, err_cal, err95;
  for (std::size_t k = 0; k < sample.size(); ++k) {
    auto& e = table.entries[sample[k]];
    const auto& t = measured[k];
    const double rel = (e.predicted_latency_ms - t.median_ms) / t.median_ms;
    const double cal = e.predicted_latency_ms * calibration_of(e.model);
    const double rel_cal = (cal - t.median_ms) / t.median_ms;
    const double pred95 = cal * p95_ratio;
    const double rel95 = (pred95 - t.p95_ms) / t.p95_ms;
    err.push_back(rel);
    if (e.path != "full") err_cal.push_back(rel_cal);
    err95.push_back(rel95);
    sample_report.push_back({{"model", e.model},
                             {"path", e.path},
                             {"predicted_ms", e.predicted_latency_ms},
                             {"calibrated_ms", cal},
                             {"measured_ms", t.median_ms},
                             {"relative_error", rel},
                             {"relative_error_calibrated", rel_cal},
                             {"predicted_p95_ms", pred95},
                             {"measured_p95_ms", t.p95_ms},
                             {"relative_error_p95", rel95},
                             {"samples_ms", t.samples_ms}});
    e.measured_latency_ms = t.median_ms;
    e.measured_latency_p95_ms = t.p95_ms;
    if (opt.measured_in_table) {
      e.latency_ms = t.median_ms;
      e.latency_p95_ms = t.p95_ms;
      e.latency_source = "measured";
    }
  }
  for (auto& e : table.entries)
    if (e.latency_source == "predicted") {
      e.latency_ms = e.predicted_latency_ms * calibration_of(e.model);
      e.latency_p95_ms = e.latency_ms * p95_ratio;
    }
  auto abs_stats = [](std::vector<double> v) {
    nlohmann::json j;
    if (v.empty()) return j;
    double mean = 0;
    for (auto& x : v) {
      mean += x;
      x = std::abs(x);
    }
    std::sort(v.begin(), v.end());
    j["paths"] = v.size();
    j["median_abs_relative_error"] = v[v.size() / 2];
    j["max_abs_relative_error"] = v.back();
    j["mean_relative_error"] = mean / double(v.size());
    return j;
  };
  nlohmann::json lat;
  lat["sample"] = sample_report;
  lat["median"] = abs_stats(err);
  lat["median_calibrated"] = abs_stats(err_cal);
  lat["p95"] = abs_stats(err95);
  lat["p95_over_median"] = p95_ratio;
  lat["rounds"] = runs.empty() ? 0 : runs[0].size();
  lat["calibration"] = calibration;
  return lat;
}

/// Pareto flags, accuracy normalized by `reference_model`'s full path (the first entry when it has
/// none), and what the table holds: input size, reference, dataset, the sweep report.
inline void finish_table(lookup_table& table, const std::string& reference_model, std::size_t height,
                         std::size_t width, const nlohmann::json& dataset, const nlohmann::json& report) {
  table.mark_pareto();
  const std::size_t ref_index = table.reference_index(reference_model);
  const lut_entry& ref = table.entries[ref_index < table.entries.size() ? ref_index : 0];
  table.normalize(ref.miou);
  table.info["input"] = {{"height", height}, {"width", width}};
  table.info["dataset"] = dataset;
  table.info["reference"] = {
      {"model", ref.model}, {"path", ref.path}, {"latency_ms", ref.latency_ms}, {"miou", ref.miou}};
  table.info["sweep"] = report;
}

}  // namespace drt::detail
