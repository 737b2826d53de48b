#pragma once
/// @file sweep_family.hpp
/// The generic sweep: any model family (models/family.hpp) through the same phases.
///
/// 1. Enumerate: every depth vector (`depth_combinations`) crossed with the grid of the family's
///    head / width knobs (`sweep_knob_grid`; `sweep_options::knob_grid` overrides it).
/// 2. Latency model: the full path is profiled per layer; a path's median is predicted as the sum,
///    over the layers it runs, of the full path's time of that layer scaled by the layer's work
///    (MACs, or output elements for layers without MACs) under the path, plus the time outside
///    layer scopes.
/// 3. Accuracy: paths are grouped by their encoder half (`model_family::encoder_key`); each image
///    is encoded once per group and decoded for every path of the group. Labelled data gives mIoU;
///    any image folder gives fidelity to the full model (argmax pixel agreement for segmentation,
///    top-1 agreement for classification, with the mean KL divergence reported).
/// 4. Confirm and finish (sweep_confirm.hpp), as every sweep does.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <exception>
#include <map>
#include <set>
#include <memory>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor.hpp"
#include "../eval/bootstrap.hpp"
#include "../eval/segmentation_metrics.hpp"
#include "../layers/resize.hpp"
#include "../models/family.hpp"
#include "latency.hpp"
#include "lut.hpp"
#include "sweep_confirm.hpp"
#include "sweep_data.hpp"
#include "sweep_options.hpp"
#include "sweep_shard.hpp"

namespace drt {

// ------------------------------------------------------------------------------ 1. enumerate

/// One knob of a sweep grid: its name in the path language and the values tried (the full value
/// included; a value equal to the full model's leaves the knob unset).
struct sweep_knob {
  std::string name;
  std::vector<double> values;
  double full = 0;
};

namespace detail {
inline std::vector<double> as_doubles(const std::vector<std::size_t>& v) { return {v.begin(), v.end()}; }
}  // namespace detail

/// The default grid of each family's knobs (channel counts are multiples of `step`).
inline std::vector<sweep_knob> sweep_knob_grid(const segformer_model& m, std::size_t step) {
  const auto& head = m.decode_head();
  const std::size_t d = head.hidden();
  std::vector<double> fuse;
  for (std::size_t s = 1; s <= head.stages(); ++s) fuse.push_back(double(s * d));  // whole slots (folded)
  return {{"fuse_in", fuse, double(head.stages() * d)},
          {"pred_in", detail::as_doubles(channel_levels(d, d / 4, 4, step)), double(d)}};
}
inline std::vector<sweep_knob> sweep_knob_grid(const upernet_swin_model& m, std::size_t step) {
  const std::size_t d = static_cast<std::size_t>(m.config().hidden_size);
  const std::size_t levels = m.config().backbone.out_indices.size();
  return {{"bottleneck_in", detail::as_doubles(channel_levels(levels * d, levels * d / 4, 4, step)), double(levels * d)},
          {"pred_in", detail::as_doubles(channel_levels(d, d / 4, 3, step)), double(d)}};
}
inline std::vector<sweep_knob> sweep_knob_grid(const resnet_model&, std::size_t) {
  return {{"expand", {0.5, 0.75, 1.0}, 1.0}};
}


/// Every path of `model` the sweep measures: depth vectors x the knob grid, the full path first.
/// `opt.knob_grid` replaces the default values of the knobs it names (and adds knobs).
template <class Model>
std::vector<typename model_family<Model>::path_type> sweep_paths(const Model& model, const sweep_options& opt) {
  using family = model_family<Model>;
  using path_type = typename family::path_type;
  auto grid = sweep_knob_grid(model, opt.channel_step);
  for (const auto& knob : opt.knob_grid) {
    const std::string& name = knob.first;  // captured below: not a structured binding (C++17)
    const std::vector<double>& values = knob.second;
    if (values.empty()) throw invalid_input("sweep: knob '" + name + "' has no values");
    auto it = std::find_if(grid.begin(), grid.end(), [&](const sweep_knob& k) { return k.name == name; });
    if (it == grid.end()) {
      // the full model's value where the knob's kind has one: a fraction 1, precision 0 (fp32)
      const auto& knobs = path_type::family().knobs;
      const auto pk = std::find_if(knobs.begin(), knobs.end(), [&](const auto& k) { return name == k.name; });
      const double full = pk == knobs.end()                     ? NAN
                          : pk->kind() == knob_kind::fractions ? 1.0
                          : pk->kind() == knob_kind::precision ? 0.0
                                                               : NAN;
      it = grid.insert(grid.end(), sweep_knob{name, {}, full});
    }
    it->values = values;
  }
  const auto full_depths = family::depths(model);
  const auto depth_list = opt.depths.empty() ? depth_combinations(full_depths, opt.depth_reduce) : opt.depths;
  std::vector<path_type> out;
  std::vector<std::string> seen;
  for (const auto& d : depth_list) {
    std::vector<std::size_t> idx(grid.size(), 0);
    // odometer over the knobs, the full value (else the largest) of every knob first
    std::vector<std::vector<double>> values;
    for (const auto& k : grid) {
      std::vector<double> v = k.values;
      std::sort(v.begin(), v.end(), [](double a, double b) { return a > b; });
      v.erase(std::unique(v.begin(), v.end()), v.end());
      const auto f = std::find(v.begin(), v.end(), k.full);
      if (f != v.end()) std::rotate(v.begin(), f, f + 1);  // e.g. precision: fp32 (0) before int8 (2)
      values.push_back(v);
    }
    while (true) {
      path_type p = family::with_depths(path_type{}, d, full_depths);
      for (std::size_t k = 0; k < grid.size(); ++k) {
        const double v = values[k][idx[k]];
        if (!(v == grid[k].full)) set_path_knob(p, grid[k].name, v);
      }
      family::validate(model, p);
      const std::string text = p.to_string();
      if (std::find(seen.begin(), seen.end(), text) == seen.end()) {
        seen.push_back(text);
        out.push_back(p);
      }
      std::size_t k = 0;
      for (; k < grid.size(); ++k) {
        if (++idx[k] < values[k].size()) break;
        idx[k] = 0;
      }
      if (k == grid.size()) break;
    }
  }
  return out;
}

// ------------------------------------------------------------------------------ 2. latency model

/// Per-layer latency model of one model: the full path's layer times, scaled per layer by the
/// path's share of the layer's work.
class layer_latency_model {
public:
  /// `full_layers` = the full path's layer list, `full` its profile.
  layer_latency_model(const std::vector<layer_info>& full_layers, layer_timings full) : full_(std::move(full)) {
    full_work_ = work_by_scope(full_layers);
    overhead_ms_ = std::max(0.0, full_.total.median_ms - full_.scoped_ms());
    // When noise makes the per-layer medians add up to more than the median total, scale them so
    // that the full path's prediction is its profiled median.
    scale_ = full_.scoped_ms() > full_.total.median_ms ? full_.total.median_ms / full_.scoped_ms() : 1.0;
    p95_ratio_ = full_.total.median_ms > 0 ? full_.total.p95_ms / full_.total.median_ms : 1.0;
  }

  /// Adds a timing reference: the profile `t` of a path whose layers (`layers`) compute in a low
  /// precision or in a variant (`layer_info::variant`, e.g. merged tokens) -- in practice the full
  /// path with the path's precision and tokens. A path's scopes computed that way are then
  /// predicted from it, scaled by their work; its plain fp32 scopes stay the full path's.
  void add_reference(const std::vector<layer_info>& layers, const layer_timings& t) {
    for (const auto& [key, work] : work_by_scope(layers)) {
      const auto at = key.find_first_of("@#");
      if (at == std::string::npos) continue;
      const auto ms = t.layer_ms.find(key.substr(0, at));
      if (ms == t.layer_ms.end()) continue;
      ref_ms_[key] = ms->second;
      full_work_[key] = work;
    }
  }

  /// Predicted median ms of a path whose layers are `layers`. A scope in a precision or variant no
  /// reference ran is predicted from the plain full path's time of the scope (scaled by work).
  double predict_ms(const std::vector<layer_info>& layers) const {
    double t = 0;
    for (const auto& [key, work] : work_by_scope(layers)) {
      const auto ref = ref_ms_.find(key);
      const std::string scope = ref != ref_ms_.end() ? key : key.substr(0, key.find_first_of("@#"));
      const auto plain = full_.layer_ms.find(scope);
      const double* ms = ref != ref_ms_.end() ? &ref->second : plain != full_.layer_ms.end() ? &plain->second : nullptr;
      const auto fw = full_work_.find(scope);
      if (!ms || fw == full_work_.end()) continue;  // not timed in the full path or a reference
      t += *ms * (fw->second > 0 ? work / fw->second : 1.0);
    }
    return scale_ * t + overhead_ms_;
  }
  double p95_ratio() const noexcept { return p95_ratio_; }
  double overhead_ms() const noexcept { return overhead_ms_; }
  const layer_timings& full() const noexcept { return full_; }

  /// Work per profiler scope: MACs, or output elements for layers without MACs (norms, resizes).
  /// A scope holding layers in a low precision P is keyed "scope@P", one holding a variant V
  /// "scope#V" (or "scope@P#V"): timed from a reference (`add_reference`).
  static std::map<std::string, double> work_by_scope(const std::vector<layer_info>& layers) {
    std::map<std::string, std::string> tag;
    for (const auto& l : layers) {
      std::string& t = tag[l.timing_name()];
      if (l.arithmetic != precision::fp32 && t.find('@') == std::string::npos) t = "@" + std::string(to_string(l.arithmetic)) + t;
      if (!l.variant.empty() && t.find('#') == std::string::npos) t += "#" + l.variant;
    }
    std::map<std::string, double> w;
    for (const auto& l : layers) {
      const std::string key = l.timing_name() + tag[l.timing_name()];
      w[key] += l.macs > 0 ? l.macs : double(l.batch) * double(l.k) * double(l.p) * double(l.q);
    }
    return w;
  }

private:
  layer_timings full_;
  std::map<std::string, double> ref_ms_;  ///< "scope@P", "scope#V" -> the scope's time in its reference
  std::map<std::string, double> full_work_;
  double overhead_ms_ = 0, scale_ = 1, p95_ratio_ = 1;
};

// ------------------------------------------------------------------------------ 3. accuracy

/// Accuracy of one path over the images: a confusion matrix against labels, or agreement with the
/// full model's output.
struct path_accuracy {
  confusion_by_image cm;                ///< labelled segmentation (with each image's counts, for the interval)
  double agree = 0, total = 0, kl = 0;  ///< fidelity: agreeing pixels / images, pixels / images, sum KL
  explicit path_accuracy(std::size_t classes = 0, int ignore = -1) : cm(classes, ignore) {}
  void merge(const path_accuracy& o) {
    cm.merge(o.cm);
    agree += o.agree;
    total += o.total;
    kl += o.kl;
  }
};

namespace detail {

/// KL(softmax(p) || softmax(q)) of two logit vectors.
inline double kl_logits(const float* p, const float* q, std::size_t k) {
  const float mp = *std::max_element(p, p + k), mq = *std::max_element(q, q + k);
  double zp = 0, zq = 0;
  for (std::size_t i = 0; i < k; ++i) {
    zp += std::exp(double(p[i] - mp));
    zq += std::exp(double(q[i] - mq));
  }
  double kl = 0;
  for (std::size_t i = 0; i < k; ++i) {
    const double lp = double(p[i] - mp) - std::log(zp), lq = double(q[i] - mq) - std::log(zq);
    kl += std::exp(lp) * (lp - lq);
  }
  return kl;
}

/// A model as the sweep builds it (SegFormer: decoder folded or not, as `opt` says; SegFormer and
/// Swin + UPerNet: packed in `opt.order`).
template <class Model>
Model load_for_sweep(const std::string& dir, const sweep_options& opt) {
  if (opt.int8)
    throw invalid_input("model '" + dir + "': calibrated int8 ranges apply to SegFormer and Swin + UPerNet (a ResNet's "
                        "int8 1x1 convs quantize each call's input with its own range)");
  return Model::from_dir(dir);
}
template <>
inline segformer_model load_for_sweep<segformer_model>(const std::string& dir, const sweep_options& opt) {
  return segformer_model::from_dir(dir, {}, detail::sweep_build(opt));
}
template <>
inline upernet_swin_model load_for_sweep<upernet_swin_model>(const std::string& dir, const sweep_options& opt) {
  auto m = upernet_swin_model::from_dir(dir, {}, {}, opt.order);
  if (opt.int8) apply_int8_calibration(m, *opt.int8, "int8 calibration (" + opt.int8->source + ")");
  return m;
}

inline std::size_t argmax_of(const float* v, std::size_t k) {
  return static_cast<std::size_t>(std::max_element(v, v + k) - v);
}

}  // namespace detail

// ------------------------------------------------------------------------------ the sweep

/// Sweeps the models in `model_dirs` (hub layout, all of family `Model`) on `opt.data_dir`. The
/// first model's full path is the reference for `miou_normalized`. `opt.phases` picks accuracy only
/// (a table or shard of accuracy, sweep_shard.hpp) or latency only (for the paths of `opt.accuracy_table`).
template <class Model>
sweep_result sweep_family(const std::vector<std::string>& model_dirs, const sweep_options& options,
                          const sweep_progress_fn& progress = {}, const sweep_log_fn& log = {}) {
  using family = model_family<Model>;
  using path_type = typename family::path_type;
  using exec_type = typename family::execution_type;
  using clock = std::chrono::steady_clock;
  const sweep_options opt = detail::effective_options(options);
  detail::sweep_run run(model_dirs, opt, progress, log);
  const bool accuracy_only = opt.phases == sweep_options::phase_set::accuracy;
  const bool latency_only = opt.phases == sweep_options::phase_set::latency;
  if (opt.channel_step == 0) throw invalid_input("sweep: channel step must be positive");
  const double budget_s = run.budget_s;
  const int threads = run.threads;
  auto note = [&](const std::string& s) { run.note(s); };

  const sweep_data data = latency_only ? detail::latency_only_data(opt) : load_sweep_data(opt);
  const std::size_t H = data.height, W = data.width, n_images = data.size();
  const bool dense = family::output == output_kind::segmentation;
  const bool labelled =
      latency_only ? opt.accuracy_table->info.value("dataset", nlohmann::json::object()).value("accuracy", "") == "miou"
                   : data.labelled() && dense;
  const std::string metric = labelled ? "miou" : dense ? "pixel_agreement" : "top1_agreement";
  note((latency_only ? "latency only, accuracy from " + opt.accuracy_table->source
                     : "data " + opt.data_dir + ": " + std::to_string(n_images) + " images") +
       ", inference at " + std::to_string(H) + "x" + std::to_string(W) + ", " + std::to_string(threads) +
       " threads, accuracy = " + metric + (labelled ? "" : " with the full model"));

  struct state {
    std::string name, dir;
    std::unique_ptr<Model> model;
    std::vector<path_type> paths;
    std::vector<exec_type> execs;
    std::vector<std::vector<std::size_t>> groups;  ///< paths sharing an encoding, in order of promise
    std::unique_ptr<layer_latency_model> latency;
    std::vector<double> predicted_ms;
    std::size_t next = 0;
    std::vector<double> group_seconds;
    bool holds_reference = true;  ///< its groups start with its first path's (the fidelity reference's)
    std::size_t queued() const noexcept { return groups.size(); }
  };
  sweep_path_set set;  // before any budget (sweep_shard.hpp)
  set.sweep = "family";
  set.family = family::name;
  std::vector<state> models(model_dirs.size());
  sweep_progress& prog = run.prog;
  std::size_t& path_count = run.paths;
  auto report_progress = [&](double eta) { run.report(eta); };

  // ---- 1. enumerate, 2. latency model
  prog.phase = "latency";
  prog.steps = models.size();
  for (std::size_t mi = 0; mi < models.size(); ++mi) {
    auto& m = models[mi];
    m.dir = model_dirs[mi];
    m.name = detail::sweep_run::model_name(model_dirs, mi);
    m.model = std::make_unique<Model>(detail::load_for_sweep<Model>(m.dir, opt));
    family::check_input(*m.model, H, W);
    if (family::input_channels(*m.model) != 3)
      throw invalid_input("sweep: model '" + m.name + "' takes " + std::to_string(family::input_channels(*m.model)) +
                          " input channels; the sweep reads RGB images");
    try {
      m.paths = sweep_paths(*m.model, opt);
    } catch (const invalid_input& e) {
      throw invalid_input("sweep: model '" + m.name + "': " + e.what());
    }
    for (const auto& p : m.paths) m.execs.push_back(family::compile(*m.model, p));
    prog.step = mi + 1;
    prog.what = m.name;
    prog.total = opt.warmup + opt.repeats;
    prog.done = 0;
    if (!accuracy_only) {
      report_progress(0);
      const auto& x = data.inputs[0];
      // The per-layer model is the full path's profile in fp32 (the first path, in fp32 if the grid
      // puts it in another precision) and, as timing references, the profile of that path with each
      // combination of the paths' precision and tokens: those knobs change how a layer computes,
      // not only its work.
      const auto& knobs = path_type::family().knobs;
      const bool has_precision =
          std::any_of(knobs.begin(), knobs.end(), [](const auto& k) { return k.kind() == knob_kind::precision; });
      auto base = m.paths[0];
      if (has_precision) set_path_knob(base, "precision", static_cast<double>(static_cast<int>(precision::fp32)));
      const auto e0 = family::compile(*m.model, base);
      for (std::size_t i = 0; i < opt.warmup; ++i) family::logits(*m.model, x, e0);
      auto full = profile_runs([&] { family::logits(*m.model, x, e0); }, opt.repeats);
      m.latency = std::make_unique<layer_latency_model>(family::layers(*m.model, H, W, e0), std::move(full));
      std::map<std::string, path_type> references;
      for (const auto& p : m.paths) {
        auto q = base;
        bool timing = false;
        for (const char* k : {"precision", "tokens"}) timing |= copy_path_knob(q, p, k);
        if (timing && q.to_string() != base.to_string()) references.emplace(q.to_string(), q);
      }
      for (const auto& [text, q] : references) {
        const auto e = family::compile(*m.model, q);
        for (std::size_t i = 0; i < opt.warmup; ++i) family::logits(*m.model, x, e);
        m.latency->add_reference(family::layers(*m.model, H, W, e),
                                 profile_runs([&] { family::logits(*m.model, x, e); }, opt.repeats));
      }
      for (const auto& e : m.execs) m.predicted_ms.push_back(m.latency->predict_ms(family::layers(*m.model, H, W, e)));
      prog.done = prog.total;
      report_progress(0);
    }
    // groups of paths with one encoding, in order of promise: the full path's group first, then
    // fewest blocks removed, then the fastest encoder
    std::map<std::string, std::size_t> group_of;
    for (std::size_t i = 0; i < m.paths.size(); ++i) {
      const std::string key = family::encoder_key(m.paths[i]);
      const auto it = group_of.find(key);
      if (it == group_of.end()) {
        group_of[key] = m.groups.size();
        m.groups.push_back({i});
      } else {
        m.groups[it->second].push_back(i);
      }
    }
    const std::size_t g0 = set.groups.size();  // the path set: groups in enumeration order
    set.models.push_back(m.name);
    for (const auto& g : m.groups) {
      sweep_group sg;
      sg.model = mi;
      sg.encoder = family::encoder_key(m.paths[g.front()]);
      for (const std::size_t i : g) sg.paths.push_back(m.paths[i].to_string());
      set.groups.push_back(std::move(sg));
    }
    if (accuracy_only) {  // this shard's groups only, in order
      std::vector<std::vector<std::size_t>> kept;
      for (std::size_t k = 0; k < m.groups.size(); ++k)
        if (opt.shard.holds(g0 + k)) kept.push_back(m.groups[k]);
      m.holds_reference = opt.shard.holds(g0);
      m.groups = std::move(kept);
    }
    const auto full_depths = family::depths(*m.model);
    auto promise = [&](const std::vector<std::size_t>& g) {
      const auto& d = m.paths[g.front()].depths;
      int removed = 0;
      for (std::size_t s = 0; s < d.size() && s < full_depths.size(); ++s) removed += full_depths[s] - d[s];
      return std::make_pair(removed, m.predicted_ms[g.front()]);
    };
    if (opt.phases == sweep_options::phase_set::all)
      std::stable_sort(m.groups.begin() + 1, m.groups.end(),
                       [&](const auto& a, const auto& b) { return promise(a) < promise(b); });
    note(m.name + ": " +
         (m.latency ? "full path " + detail::lut_num(std::round(m.latency->full().total.median_ms * 10) / 10) +
                          " ms median, "
                    : std::string()) +
         std::to_string(m.paths.size()) + " paths in " + std::to_string(set.groups.size() - g0) + " encoder groups");
  }
  if (accuracy_only && opt.shard.count > set.groups.size())
    throw invalid_input("sweep: shard " + opt.shard.to_string() + ": the path set has " +
                        std::to_string(set.groups.size()) + " encoder groups, so at most " +
                        std::to_string(set.groups.size()) + " shards");
  const double latency_phase_s = run.elapsed();

  // ---- 3. accuracy, group by group, interleaving the models
  const std::size_t K0 = family::classes(*models[0].model);
  std::map<std::pair<std::size_t, std::size_t>, path_accuracy> results;  // (model, path) -> accuracy
  // fidelity reference: the first model's full path output per image
  std::vector<itensor3> ref_maps(n_images);
  std::vector<std::vector<float>> ref_logits(n_images);
  auto full_ms = [](const state& m) { return m.latency ? m.latency->full().total.median_ms : 0.0; };
  double confirm_reserve_s = 0;
  for (const auto& m : models)
    confirm_reserve_s += 1.5 * double(opt.confirm) / double(models.size()) * double(opt.repeats + 1) * full_ms(m) / 1e3;
  auto estimate_s = [&](const state& m, std::size_t group) {
    const double per_path = m.group_seconds.empty()
                                ? 1.2 * double(n_images) * full_ms(m) / 1e3
                                : std::accumulate(m.group_seconds.begin(), m.group_seconds.end(), 0.0) /
                                      double(m.group_seconds.size());
    return per_path * std::max<double>(1.0, 0.5 * double(m.groups[group].size()));
  };
  auto remaining_estimate_s = [&]() {  // what the queues would still take, capped by the budget
    double t = 0;
    for (const auto& m : models)
      for (std::size_t g = m.next; g < m.groups.size(); ++g) t += estimate_s(m, g);
    const double left = budget_s - run.elapsed() - confirm_reserve_s;
    return std::max(0.0, std::min(t, left)) + confirm_reserve_s;
  };
  std::string stopped_by = "all paths done";
  nlohmann::json group_report = nlohmann::json::array();
  std::size_t planned = 0, step = 0;
  for (const auto& m : models) planned += m.groups.size();
  // The fidelity reference (the first model's first path) on every image: computed with its group,
  // or first of all by a shard that does not hold that group.
  auto keep_reference = [&](std::size_t i, const tensor4& lg) {
    if (dense)
      ref_maps[i] = upsample_argmax(lg, H, W);
    else
      ref_logits[i].assign(lg.begin(), lg.end());
  };
  if (!labelled && !latency_only && !models[0].holds_reference) {
    const auto& m0 = models[0];
    std::exception_ptr error;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (long long ii = 0; ii < static_cast<long long>(n_images); ++ii) {
      const auto i = static_cast<std::size_t>(ii);
      try {
        keep_reference(i, family::decode(*m0.model, family::encode(*m0.model, data.inputs[i], m0.execs[0]), m0.execs[0]));
      } catch (...) {
#pragma omp critical(drt_sweep_error)
        if (!error) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
  }
  auto group_estimate = [&](const state& m) { return estimate_s(m, m.next); };
  prog.phase = "accuracy";
  while (!latency_only) {
    const std::size_t pick_index = run.admit_next(models, group_estimate, confirm_reserve_s, opt, stopped_by);
    if (pick_index == models.size()) break;
    auto& m = models[pick_index];
    const auto& group = m.groups[m.next++];
    const auto t_group = clock::now();
    const std::size_t K = family::classes(*m.model);
    if (!labelled && K != K0)
      throw invalid_input("sweep: model '" + m.name + "' has " + std::to_string(K) + " classes but the reference '" +
                          models[0].name + "' has " + std::to_string(K0) + ": fidelity compares like outputs");
    const bool reference_group = pick_index == 0 && m.next == 1 && m.holds_reference;
    ++step;
    prog.step = step;
    prog.steps = planned;
    prog.what = m.name + " " + family::encoder_key(m.paths[group.front()]);
    prog.total = n_images;
    prog.done = 0;
    const double group_estimate_s = estimate_s(m, m.next - 1);
    report_progress(remaining_estimate_s() + group_estimate_s);
    std::vector<path_accuracy> acc(group.size(), path_accuracy(K, opt.ignore_index));
    std::exception_ptr error;
    std::size_t done = 0;
#pragma omp parallel num_threads(threads)
    {
      std::vector<path_accuracy> local(group.size(), path_accuracy(K, opt.ignore_index));
#pragma omp for schedule(dynamic, 1)
      for (long long ii = 0; ii < static_cast<long long>(n_images); ++ii) {
        const auto i = static_cast<std::size_t>(ii);
        try {
          const auto enc = family::encode(*m.model, data.inputs[i], m.execs[group.front()]);
          for (std::size_t g = 0; g < group.size(); ++g) {
            const tensor4 lg = family::decode(*m.model, enc, m.execs[group[g]]);
            auto& a = local[g];
            if (labelled) {
              const auto& lab = data.labels[i];
              const itensor3 pred = upsample_argmax(lg, lab.height, lab.width);
              a.cm.add(i, lab.labels.data(), pred.data(), lab.labels.size(), data.label_paths[i]);
            } else if (dense) {
              if (reference_group && g == 0) keep_reference(i, lg);
              const itensor3 pred = upsample_argmax(lg, H, W);
              const auto& ref = ref_maps[i];
              std::size_t same = 0;
              for (std::size_t q = 0; q < pred.size(); ++q) same += pred.data()[q] == ref.data()[q];
              a.agree += double(same) / double(pred.size());
              a.total += 1;
            } else {
              if (reference_group && g == 0) keep_reference(i, lg);
              const float* ref = ref_logits[i].data();
              a.agree += detail::argmax_of(lg.data(), K) == detail::argmax_of(ref, K) ? 1.0 : 0.0;
              a.total += 1;
              a.kl += detail::kl_logits(ref, lg.data(), K);
            }
          }
        } catch (...) {
#pragma omp critical(drt_sweep_error)
          if (!error) error = std::current_exception();
        }
#pragma omp critical(drt_sweep_progress)
        {
          prog.done = ++done;
          report_progress(remaining_estimate_s() + group_estimate_s * (1.0 - double(done) / double(n_images)));
        }
      }
#pragma omp critical(drt_sweep_merge)
      for (std::size_t g = 0; g < group.size(); ++g) acc[g].merge(local[g]);
    }
    if (error) std::rethrow_exception(error);
    for (std::size_t g = 0; g < group.size(); ++g) results.emplace(std::make_pair(pick_index, group[g]), acc[g]);
    path_count += group.size();
    const double sec = detail::seconds_since(t_group);
    m.group_seconds.push_back(sec / std::max<double>(1.0, 0.5 * double(group.size())));
    group_report.push_back(
        {{"model", m.name}, {"encoder", family::encoder_key(m.paths[group.front()])}, {"seconds", sec}, {"paths", group.size()}});
  }
  const double accuracy_phase_s = run.elapsed() - latency_phase_s;

  // ---- entries with predicted latency (accuracy only: none; latency only: every path of the
  //      accuracy table, its accuracy as measured there)
  std::map<std::pair<std::string, std::string>, lut_entry> table_accuracy;
  std::vector<std::pair<std::size_t, std::size_t>> entry_of;  // (model, path)
  if (latency_only) {
    stopped_by = "the paths of the accuracy table";
    table_accuracy = detail::accuracy_by_path(*opt.accuracy_table, set, model_dirs);
    for (std::size_t mi = 0; mi < models.size(); ++mi)
      for (std::size_t i = 0; i < models[mi].paths.size(); ++i) entry_of.emplace_back(mi, i);
  } else {
    for (const auto& kv : results) entry_of.push_back(kv.first);
  }
  lookup_table table;
  table.machine = machine_info::current(threads);
  for (const auto& key : entry_of) {
    const auto& m = models[key.first];
    const std::size_t i = key.second;
    lut_entry e;
    e.model = m.name;
    e.model_dir = m.dir;
    e.family = family::name;
    e.path = m.paths[i].to_string();
    e.decoder_folded = family::decoder_folded(*m.model);
    e.macs = total_macs(family::layers(*m.model, H, W, m.execs[i]));
    if (!accuracy_only) {
      e.predicted_latency_ms = m.predicted_ms[i];
      e.latency_ms = e.predicted_latency_ms;
      e.latency_p95_ms = e.predicted_latency_ms * m.latency->p95_ratio();
      e.latency_source = "predicted";
    }
    if (latency_only) {
      const auto& a = table_accuracy.at({e.model, e.path});
      e.miou = a.miou;
      e.pixel_acc = a.pixel_acc;
      e.kl_divergence = a.kl_divergence;
      e.miou_ci = a.miou_ci;
    } else if (labelled) {
      const auto& a = results.at(key);
      e.miou = a.cm.miou();
      e.pixel_acc = a.cm.pixel_accuracy();
      e.miou_ci = a.cm.interval();
    } else {
      const auto& a = results.at(key);
      e.miou = a.total > 0 ? a.agree / a.total : 0.0;
      if (!dense) e.kl_divergence = a.total > 0 ? a.kl / a.total : 0.0;
    }
    table.entries.push_back(e);
  }
  nlohmann::json grids = nlohmann::json::object();
  for (const auto& m : models) {
    nlohmann::json g = nlohmann::json::object();
    for (const auto& k : sweep_knob_grid(*m.model, opt.channel_step)) g[k.name] = k.values;
    for (const auto& [name, values] : opt.knob_grid) g[name] = values;
    grids[m.name] = g;
  }
  nlohmann::json dataset = {{"path", opt.data_dir}, {"images", n_images}, {"accuracy", metric}};
  if (latency_only) {
    dataset = opt.accuracy_table->info.value("dataset", nlohmann::json::object());
  } else if (labelled) {
    dataset["ignore_index"] = opt.ignore_index;
    dataset["protocol"] =
        "logits upsampled bilinearly (align_corners=False) to the label size, argmax, one confusion matrix over the set";
  } else {
    dataset["protocol"] =
        dense ? "fidelity: share of pixels whose argmax (logits upsampled to the input size) equals the reference "
                "model's full path, averaged over the images"
              : "fidelity: share of images whose top-1 class equals the reference model's full path; entries also "
                "carry the mean KL divergence of the softmax from the reference's";
    dataset["reference_model"] = models[0].name;
  }
  if (accuracy_only) {
    nlohmann::json report = run.report_json(opt, table, 0, accuracy_phase_s, stopped_by);
    report["family"] = family::name;
    report["encoder_groups"] = group_report;
    report["grids"] = grids;
    detail::finish_accuracy_table(table, set, opt, detail::sweep_set_json(set, model_dirs, data, opt), dataset, report);
    return {std::move(table), std::move(report)};
  }

  // ---- 4. confirm, finish
  prog.phase = "confirm";
  nlohmann::json lat = detail::confirm_latencies(
      table, opt,
      [&](std::size_t i) {
        const auto& m = models[entry_of[i].first];
        family::logits(*m.model, data.inputs[0], m.execs[entry_of[i].second]);
      },
      run.start, budget_s, run.confirm_progress());
  lat["method"] =
      "predicted median = sum over the path's layers of the full path's per-layer median (" +
      std::to_string(opt.repeats) +
      " profiled runs) x the layer's work under the path / its work in the full path (MACs; output elements for "
      "layers without MACs) + the full path's time outside layer scopes; calibrated by the full path's "
      "measured/predicted ratio at confirmation time; p95 = median x the sample's median p95/median ratio";
  nlohmann::json report = run.report_json(opt, table, latency_phase_s, accuracy_phase_s, stopped_by);
  report["family"] = family::name;
  report["encoder_groups"] = group_report;
  report["latency"] = lat;
  report["grids"] = grids;
  detail::finish_sweep(table, models, opt, H, W, dataset, report, latency_only);
  return {std::move(table), std::move(report)};
}

}  // namespace drt
