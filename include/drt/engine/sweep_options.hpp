#pragma once
/// @file sweep_options.hpp
/// What every sweep shares: its options, the enumeration helpers (depth vectors, channel levels),
/// progress reports (a callback: a library header prints nothing) and the result.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../dynamic/channel_order.hpp"
#include "../dynamic/int8_calibration.hpp"
#include "lut.hpp"

namespace drt {

// ------------------------------------------------------------------------------ enumeration

/// Per-stage depth vectors with max(1, D_s - reduce) <= d_s <= D_s, the full model first.
inline std::vector<std::vector<int>> depth_combinations(const std::vector<int>& full, int reduce) {
  if (reduce < 0) throw invalid_input("depth_combinations: reduce " + std::to_string(reduce) + " must be >= 0");
  std::vector<std::vector<int>> out{full};
  std::vector<int> d = full;
  while (true) {
    std::size_t s = 0;  // odometer over the stages, counting down
    for (; s < d.size(); ++s) {
      if (d[s] > std::max(1, full[s] - reduce)) {
        --d[s];
        break;
      }
      d[s] = full[s];
    }
    if (s == d.size()) break;
    out.push_back(d);
  }
  return out;
}

/// `levels` channel counts from `full` down to about `min`, multiples of `step`, ascending, no repeats.
inline std::vector<std::size_t> channel_levels(std::size_t full, std::size_t min, std::size_t levels,
                                               std::size_t step) {
  if (step == 0 || levels == 0 || full == 0)
    throw invalid_input("channel_levels: full, levels and step must be positive (got " + std::to_string(full) + ", " +
                        std::to_string(levels) + ", " + std::to_string(step) + ")");
  min = std::max(step, std::min(min, full));
  std::set<std::size_t> v;
  for (std::size_t i = 0; i < levels; ++i) {
    const double x = levels == 1 ? double(full) : double(full) - double(i) * double(full - min) / double(levels - 1);
    std::size_t c = static_cast<std::size_t>(std::llround(x / double(step))) * step;
    c = std::max(step, std::min(c, full));
    v.insert(c);
  }
  v.insert(full);
  return {v.begin(), v.end()};
}

// ------------------------------------------------------------------------------ the sweep

/// Part `index` of `count` of a sweep's path set: encoder group g (in the path set's order) belongs
/// to shard g mod count, so every path lands in exactly one shard whatever the count, the shards of
/// one count are about equally long, and an encoding is computed in one shard only.
struct sweep_shard {
  std::size_t index = 0, count = 1;

  bool whole() const noexcept { return count == 1; }
  bool holds(std::size_t group) const noexcept { return group % count == index; }
  std::string to_string() const { return std::to_string(index) + "/" + std::to_string(count); }
  /// "I/N" with 0 <= I < N (SLURM_ARRAY_TASK_ID and JOB_COMPLETION_INDEX count from 0).
  static sweep_shard parse(const std::string& text) {
    const auto slash = text.find('/');
    auto number = [&](const std::string& s, std::size_t& v) {
      if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos) return false;
      v = static_cast<std::size_t>(std::stoul(s));
      return true;
    };
    sweep_shard sh;
    if (slash == std::string::npos || !number(text.substr(0, slash), sh.index) ||
        !number(text.substr(slash + 1), sh.count) || sh.count == 0 || sh.index >= sh.count)
      throw invalid_input("shard '" + text + "': expected I/N with 0 <= I < N, e.g. 0/4 (shards count from 0)");
    return sh;
  }
};

struct sweep_options {
  std::string data_dir;                  ///< labelled folder (images/ + labels/)
  int ignore_index = 255;                ///< label value not counted (CamVid: 11)
  std::size_t image_limit = 0;           ///< first N images only (0 = all)
  std::size_t height = 0, width = 0;     ///< resize inputs to H x W (0 = as stored); mIoU at label size
  double budget_minutes = 20;            ///< the whole sweep stays within this
  std::size_t max_paths = 0;             ///< stop scheduling encoder paths past this many paths (0 = no limit)
  int depth_reduce = 1;                  ///< depths from D_s - reduce to D_s per stage
  std::vector<std::vector<int>> depths;  ///< explicit depth vectors (override depth_reduce; all models)
  std::size_t channel_step = 32;         ///< channel counts are multiples of this
  /// Build the models with the decoder folded (default; see segformer_options). Folded, fuse_in saves
  /// work only where it drops a stage's whole slot, so the default fuse_in grid is then the multiples
  /// of the decoder width (D, 2D, ..., S*D); unfolded, the levels below.
  bool fold_decoder = true;
  /// The channel order the models are packed in (dynamic/channel_order.hpp; default: the weight
  /// order): what `mlp=` prefixes keep. Recorded in the table (sweep_set.channel_order).
  channel_order order = weight_order_request();
  /// Calibrated int8 input ranges of the GEMM layers (SegFormer, Swin + UPerNet; one model per sweep),
  /// for paths in int8; null: each layer call's own range. Recorded in the table (engine/lut_build.hpp).
  std::shared_ptr<const int8_calibration> int8;
  /// Generic sweep (Swin + UPerNet, ResNet, or SegFormer through `sweep_family`): values of the
  /// family's knobs (model_family::default_grid names them), crossed with every depth vector.
  /// A knob not given takes the family's default levels.
  std::map<std::string, std::vector<double>> knob_grid;
  /// Accuracy axis: labelled mIoU when `data_dir` has labels/, else fidelity to the full model
  /// (argmax pixel agreement; classification: top-1 agreement). true forces fidelity.
  bool fidelity = false;
  std::size_t fuse_levels = 17;          ///< Conv2DFuse input levels from full down to full * fuse_min (unfolded)
  double fuse_min = 1.0 / 6;
  std::size_t pred_levels = 6;  ///< Conv2DPred input levels from full down to full * pred_min
  double pred_min = 0.25;
  std::vector<std::size_t> fuse_in, pred_in;  ///< explicit grids (override the levels)
  std::size_t warmup = 2;                     ///< untimed runs before timing
  std::size_t repeats = 7;             ///< timed runs of the full path; confirmation rounds (more while time allows)
  std::size_t decoder_repeats = 3;     ///< timed runs of each profiled decoder configuration
  bool profile_every_decoder = false;  ///< profile every grid configuration (default: one F line, one P line)
  /// false (default): every entry's latency is its calibrated per-layer prediction, one consistent
  /// model for ranking the paths, and timed paths also carry measured_latency_ms / _p95_ms;
  /// true: timed paths carry their measured values in latency_ms (latency_source "measured").
  bool measured_in_table = false;
  std::size_t confirm = 8;  ///< paths timed end to end to confirm the prediction
  int threads = 0;          ///< 0 = OpenMP's maximum
  unsigned seed = 42;       ///< for the random part of the confirmation sample

  /// Which phases run (docs/sharding.md). `all`: latency model, accuracy within the time budget,
  /// confirmation: a lookup table. `accuracy`: the accuracy of every path of the path set (or of
  /// `shard` of it), no time budget, no latency: an accuracy table, which `drt lut merge` joins
  /// with the other shards. `latency`: the latency model and the confirmation on this machine for
  /// the paths of `accuracy_table`, whose accuracy is taken as it is: a lookup table.
  enum class phase_set { all, accuracy, latency };
  phase_set phases = phase_set::all;
  sweep_shard shard;  ///< phases == accuracy: the part of the path set this process measures
  /// phases == latency: a whole accuracy table (sweep_shard.hpp says what it records); the options
  /// that decide the path set and the accuracy are taken from it, not from these.
  std::shared_ptr<const lookup_table> accuracy_table;
};

/// What the sweep is doing, for progress lines.
struct sweep_progress {
  std::string phase;                ///< "latency", "accuracy", "confirm"
  std::string what;                 ///< model and path
  std::size_t done = 0, total = 0;  ///< within the current step (images, runs, paths)
  std::size_t step = 0, steps = 0;  ///< encoder path k of about n (accuracy), or sample k of n
  std::size_t paths = 0;            ///< paths with a result so far
  double elapsed_s = 0, eta_s = 0;
};
using sweep_progress_fn = std::function<void(const sweep_progress&)>;
using sweep_log_fn = std::function<void(const std::string&)>;

struct sweep_result {
  lookup_table table;
  nlohmann::json report;  ///< also stored in table.info["sweep"]
};

namespace detail {

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

inline std::string model_name_of(const std::string& dir) {
  auto p = std::filesystem::path(dir);
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

/// What every sweep keeps while it runs: its start and time budget, its threads, the progress it
/// reports and the notes it logs. Constructing it checks the options every sweep shares.
struct sweep_run {
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  double budget_s = 0;
  int threads = 1;
  std::vector<double> load_start = machine_info::current_load_average();
  sweep_progress prog;
  std::size_t paths = 0;  ///< paths with a result so far

  sweep_run(const std::vector<std::string>& model_dirs, const sweep_options& opt, sweep_progress_fn progress,
            sweep_log_fn log)
      : budget_s(opt.budget_minutes * 60.0), progress_(std::move(progress)), log_(std::move(log)) {
    if (model_dirs.empty()) throw invalid_input("sweep: no model directories given");
    if (!(opt.budget_minutes > 0) || !std::isfinite(opt.budget_minutes))
      throw invalid_input("sweep: budget of " + lut_num(opt.budget_minutes) + " minutes must be positive");
    if (opt.repeats == 0 || opt.decoder_repeats == 0)
      throw invalid_input("sweep: repeats and decoder_repeats must be at least 1");
    if (opt.shard.count == 0 || opt.shard.index >= opt.shard.count)
      throw invalid_input("sweep: shard " + opt.shard.to_string() + ": expected I/N with 0 <= I < N");
    if (!opt.shard.whole() && opt.phases != sweep_options::phase_set::accuracy)
      throw invalid_input("sweep: a shard (" + opt.shard.to_string() +
                          ") measures accuracy only: its latency is calibrated on the target machine after the merge");
    if ((opt.phases == sweep_options::phase_set::latency) != bool(opt.accuracy_table))
      throw invalid_input(opt.accuracy_table ? "sweep: an accuracy table is read by latency-only sweeps only"
                                             : "sweep: a latency-only sweep needs the accuracy table of its paths");
    threads = opt.threads > 0 ? opt.threads : max_threads();
    set_threads(threads);
  }

  /// The next encoder group to measure: the one admission rule of every sweep. Over `models` (each
  /// with `next` and `queued()`: its groups in order), the lowest position first, models in the
  /// given order within a position. Each model's first group always runs; a later one only while its
  /// estimated seconds `estimate_s(model)` fit what is left of the budget after `reserve_s` (kept for
  /// the confirmation) and fewer than opt.max_paths paths have a result. A model refused is closed
  /// and `stopped_by` says why. An accuracy-only sweep admits every group: its path set is fixed
  /// before it starts (sweep_shard.hpp). Returns the model's index, or models.size() when none is left.
  template <class Models, class Estimate>
  std::size_t admit_next(Models& models, const Estimate& estimate_s, double reserve_s, const sweep_options& opt,
                         std::string& stopped_by) const {
    const bool bounded = opt.phases == sweep_options::phase_set::all;
    std::size_t pick = models.size();
    for (std::size_t mi = 0; mi < models.size(); ++mi) {
      auto& m = models[mi];
      if (m.next >= m.queued()) continue;
      if (bounded && m.next > 0) {
        if (elapsed() + estimate_s(m) + reserve_s > budget_s) {
          m.next = m.queued();  // no time left for this model
          stopped_by = "time budget";
          continue;
        }
        if (opt.max_paths && paths >= opt.max_paths) {
          m.next = m.queued();
          stopped_by = "path limit";
          continue;
        }
      }
      if (pick == models.size() || m.next < models[pick].next) pick = mi;
    }
    return pick;
  }

  double elapsed() const { return seconds_since(start); }
  void report(double eta) {
    if (!progress_) return;
    prog.paths = paths;
    prog.elapsed_s = elapsed();
    prog.eta_s = eta;
    progress_(prog);
  }
  void note(const std::string& s) const {
    if (log_) log_(s);
  }
  /// The confirmation phase's progress callback (sweep_confirm.hpp).
  std::function<void(const std::string&, std::size_t, std::size_t, std::size_t, std::size_t, double)> confirm_progress() {
    return [this](const std::string& what, std::size_t step, std::size_t steps, std::size_t done, std::size_t total,
                  double eta) {
      prog.what = what;
      prog.step = step;
      prog.steps = steps;
      prog.done = done;
      prog.total = total;
      report(eta);
    };
  }
  /// Model i's name in the table (its directory's base name); two models may not share one.
  static std::string model_name(const std::vector<std::string>& model_dirs, std::size_t i) {
    const std::string name = model_name_of(model_dirs[i]);
    for (std::size_t o = 0; o < i; ++o)
      if (model_name_of(model_dirs[o]) == name) throw invalid_input("sweep: two models are named '" + name + "'");
    return name;
  }
  /// The fields every sweep report has.
  nlohmann::json report_json(const sweep_options& opt, const lookup_table& table, double latency_phase_s,
                             double accuracy_phase_s, const std::string& stopped_by) const {
    const double wall_s = elapsed();
    nlohmann::json r;
    r["wall_s"] = wall_s;
    r["phases_s"] = {{"latency", latency_phase_s},
                     {"accuracy", accuracy_phase_s},
                     {"confirm", wall_s - latency_phase_s - accuracy_phase_s}};
    r["budget_minutes"] = opt.budget_minutes;
    r["stopped_by"] = stopped_by;
    r["paths"] = table.entries.size();
    r["pareto_paths"] = table.front().size();
    r["threads"] = threads;
    r["load_average_start"] = load_start;
    r["load_average_end"] = machine_info::current_load_average();
    return r;
  }

private:
  sweep_progress_fn progress_;
  sweep_log_fn log_;
};

}  // namespace detail

}  // namespace drt
