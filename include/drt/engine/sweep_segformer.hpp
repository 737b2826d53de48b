#pragma once
/// @file sweep_segformer.hpp
/// The SegFormer sweep (paper Sections III-IV), specialised where SegFormer allows more than the
/// generic sweep (sweep_family.hpp): enumerate SegFormer execution paths, measure each path's latency on this machine and its mIoU on a labelled set,
/// and keep them in a lookup table with the Pareto-optimal entries flagged.
///
/// What keeps a sweep of hundreds of paths practical:
/// - **Accuracy: one encoding, many decoders.** Every decoder path of an encoder path (depths)
///   reads the same encoder outputs, and the decoder's channel prefixes nest: Conv2DFuse over the
///   first F concatenated channels is a prefix of the reduction over all of them, and Conv2DPred over
///   the first P fuse outputs a prefix of its reduction. `shared_decoder` therefore runs the fuse
///   and classifier reductions once, up to the largest F and P, and stores the accumulators at every
///   F and P of the grid: the logits of all F x P decoder paths for the cost of one full decoder.
///   drt's GEMM accumulates each output in reduction order from zero with the same fused
///   multiply-adds, so those logits equal `segformer_model::decode`'s bit for bit (tests check it).
///   Images are spread over the threads (each image runs serially: no per-layer barriers).
/// - **Latency: measure layers once, predict paths.** The full path is profiled per layer; each
///   decoder configuration's layers are profiled on one encoding; a path's latency is predicted as
///   the sum of the layers it runs plus the time outside the layer scopes, then confirmed by timing
///   a sample of paths end to end (the Pareto-optimal ones first); the agreement is reported.
/// - **A time budget.** Encoder paths run in order of promise (fewest blocks removed, then most
///   time saved) while the estimated time of the next one fits in what is left of the budget.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/profiler.hpp"
#include "../core/tensor.hpp"
#include "../dynamic/path.hpp"
#include "../eval/bootstrap.hpp"
#include "../eval/evaluate.hpp"
#include "../eval/segmentation_metrics.hpp"
#include "../io/safetensors.hpp"
#include "../io/weight_source.hpp"
#include "../layers/batch_norm.hpp"
#include "../layers/gemm.hpp"
#include "../layers/resize.hpp"
#include "../models/segformer.hpp"
#include "latency.hpp"
#include "lut.hpp"
#include "sweep_confirm.hpp"
#include "sweep_data.hpp"
#include "sweep_options.hpp"
#include "sweep_shard.hpp"

namespace drt {

// ------------------------------------------------------------------------------ shared decoder

/// Logits of every decoder path of a grid (Conv2DFuse inputs F x Conv2DPred inputs P) on one
/// encoding. Unfolded head: for the cost of one full decoder (the fuse reduction is read out at
/// every F). Folded head: one folded decoder per F (each a small fraction of the unfolded one; the
/// weights of every F are composed once, by `prepare`), the classifier read out at every P. A model
/// whose order refits the classifier on pred_in prefixes (dynamic/refit.hpp) runs each P's refit
/// classifier instead of reading the P-th checkpoint out.
class shared_decoder {
public:
  explicit shared_decoder(const segformer_model& model) : model_(&model) {}

  /// Composes the folded head's weights of every F of the grid (nothing to do when unfolded) and the
  /// refit classifiers of every P. Call once before `run` with the grid `run` will get.
  void prepare(const std::vector<std::size_t>& fuse_in, const std::vector<std::size_t>& pred_in = {}) {
    refits_.clear();
    for (const std::size_t p : pred_in)
      if (auto l = model_->refit_classifier(p)) refits_[p] = std::move(l);
    cuts_.clear();
    if (!model_->decoder_folded()) return;
    for (const std::size_t f : fuse_in) {
      decode_head_channels ch;
      ch.fuse_in = f;
      cuts_[f] = model_->decode_head().resolve(ch).cut;
    }
  }

  /// Checks a grid against the model: ascending, within range, multiples of the SIMD width (the
  /// bit-for-bit agreement with `decode` needs whole vectors in the decoder's resize).
  void check_grid(const std::vector<std::size_t>& fuse_in, const std::vector<std::size_t>& pred_in) const {
    const auto& head = model_->decode_head();
    auto check = [&](const char* what, const std::vector<std::size_t>& v, std::size_t max) {
      if (v.empty()) throw invalid_input(std::string("shared_decoder: the ") + what + " grid is empty");
      for (std::size_t i = 0; i < v.size(); ++i) {
        if (v[i] == 0 || v[i] > max || v[i] % detail::simd_width != 0)
          throw invalid_input(std::string("shared_decoder: ") + what + "=" + std::to_string(v[i]) +
                              " must be a multiple of " + std::to_string(detail::simd_width) + " between " +
                              std::to_string(detail::simd_width) + " and " + std::to_string(max));
        if (i && v[i] <= v[i - 1])
          throw invalid_input(std::string("shared_decoder: the ") + what + " grid must be strictly ascending");
      }
    };
    check("fuse_in", fuse_in, head.stages() * head.hidden());
    check("pred_in", pred_in, head.hidden());
  }

  /// logits[fi * pred_in.size() + pi]: NHWC [N, H_0, W_0, K] of the path (fuse_in[fi], pred_in[pi])
  /// with the full DecodeLinear0 and propagation on. Grids ascending (see `check_grid`).
  void run(const segformer_features& f, const std::vector<std::size_t>& fuse_in,
           const std::vector<std::size_t>& pred_in, std::vector<detail::aligned_vector<float>>& logits) const {
    check_grid(fuse_in, pred_in);
    const auto& head = model_->decode_head();
    const std::size_t K = head.classes();
    const std::size_t n = f.n, h0 = f.hs[0], w0 = f.ws[0], m0 = n * h0 * w0;
    const std::size_t pmax = pred_in.back(), nf = fuse_in.size(), np = pred_in.size();
    logits.resize(nf * np);
    for (auto& l : logits) l.resize(m0 * K);
    constexpr std::size_t MC = detail::gemm_mc;
    thread_local detail::aligned_vector<float> tiles;  // [MC][NR]
    tiles.resize(MC * detail::gemm_nr);
    gemm_epilogue cls_ep;
    cls_ep.bias = head.classifier().bias();
    const packed_matrix& cls = head.classifier().weights();
    // The classifier at every P: the P's without a refit read out of one reduction's checkpoints,
    // the refit ones each run their own weights.
    std::vector<std::size_t> plain, plain_index;
    std::vector<std::pair<std::size_t, const linear*>> refit;
    for (std::size_t pi = 0; pi < np; ++pi) {
      const auto r = refits_.find(pred_in[pi]);
      if (r != refits_.end())
        refit.push_back({pi, r->second.get()});
      else
        plain.push_back(pred_in[pi]), plain_index.push_back(pi);
    }
    auto classify = [&](std::size_t rows, const float* x, std::size_t ldx, auto&& out) {
      if (!plain.empty())
        gemm_checkpoints<activation::none>(rows, x, ldx, cls, K, plain, cls_ep, tiles.data(),
                                           [&](std::size_t i) { return out(plain_index[i]); }, K);
      for (const auto& [pi, l] : refit) {
        gemm_epilogue ep;
        ep.bias = l->bias();
        gemm(rows, K, pred_in[pi], x, ldx, l->weights(), out(pi), K, ep, false);
      }
    };
    if (head.folded()) {
      // Per F: the folded decoder up to the ReLU at pmax outputs (each output channel is computed
      // independently, so its first P columns are the path (F, P)'s), then the classifier read out at every P.
      std::vector<const float*> fp;
      for (const auto& m : f.maps) fp.push_back(m.data());
      thread_local detail::aligned_vector<float> fused;
      fused.resize(m0 * pmax);
      for (std::size_t fi = 0; fi < nf; ++fi) {
        decode_head_channels ch;
        ch.fuse_in = fuse_in[fi];
        ch.pred_in = pmax;
        const auto it = cuts_.find(fuse_in[fi]);
        if (it == cuts_.end())
          throw invalid_input("shared_decoder: fuse_in=" + std::to_string(fuse_in[fi]) + " was not prepared");
        ch.cut = it->second;
        head.run_fused(fp, n, f.hs, f.ws, fused.data(), ch);
        for (std::size_t r0 = 0; r0 < m0; r0 += MC)
          classify(std::min(MC, m0 - r0), fused.data() + r0 * pmax, pmax,
                   [&](std::size_t pi) { return logits[fi * np + pi].data() + r0 * K; });
      }
      return;
    }
    const std::size_t d = head.hidden(), S = head.stages(), full = S * d, fmax = fuse_in.back();
    // 1. The concatenation, every channel any path of the grid reads (ref: mlp_decode_head::run_unfolded).
    thread_local detail::aligned_vector<float> concat, tmp;
    concat.resize(m0 * full);
    for (std::size_t s = 0; s < S; ++s) {
      const std::size_t kept = head.stage_outputs_kept(s, fmax);
      if (kept == 0) continue;
      const std::size_t off = (S - 1 - s) * d, cs = head.stage_channels(s), ms = n * f.hs[s] * f.ws[s];
      gemm_epilogue ep;
      ep.bias = head.stage_linear(s).bias();
      if (f.hs[s] == h0 && f.ws[s] == w0) {
        gemm(ms, kept, cs, f.maps[s].data(), cs, head.stage_linear(s).weights(), concat.data() + off, full, ep);
      } else {
        tmp.resize(ms * kept);
        gemm(ms, kept, cs, f.maps[s].data(), cs, head.stage_linear(s).weights(), tmp.data(), kept, ep);
        resize_bilinear(tmp.data(), n, f.hs[s], f.ws[s], kept, kept, concat.data() + off, h0, w0, full);
      }
    }
    // 2. Row blocks: Conv2DFuse with its accumulators read out at every F, then Conv2DPred on each of
    //    those with its accumulators read out at every P.
    thread_local detail::aligned_vector<float> fused;  // [nf][MC][pmax]
    fused.resize(nf * MC * pmax);
    gemm_epilogue fuse_ep;
    fuse_ep.bias = head.fuse_bias();
    fuse_ep.act = activation::relu;
    for (std::size_t r0 = 0; r0 < m0; r0 += MC) {
      const std::size_t rows = std::min(MC, m0 - r0);
      gemm_checkpoints<activation::relu>(
          rows, concat.data() + r0 * full, full, head.fuse_weights(), pmax, fuse_in, fuse_ep, tiles.data(),
          [&](std::size_t fi) { return fused.data() + fi * MC * pmax; }, pmax);
      for (std::size_t fi = 0; fi < nf; ++fi)
        classify(rows, fused.data() + fi * MC * pmax, pmax,
                 [&](std::size_t pi) { return logits[fi * np + pi].data() + r0 * K; });
    }
  }

  const segformer_model& model() const noexcept { return *model_; }

private:
  const segformer_model* model_;
  std::map<std::size_t, std::shared_ptr<const folded_head_cut>> cuts_;  ///< folded head: per F of the grid
  std::map<std::size_t, std::shared_ptr<const linear>> refits_;          ///< refit classifiers: per P of the grid
};

namespace detail {

/// Everything the sweep keeps per model.
struct sweep_model_state {
  std::string name, dir;
  std::unique_ptr<segformer_model> model;
  std::unique_ptr<shared_decoder> decoder;
  std::vector<std::size_t> fuse_grid, pred_grid;
  std::vector<std::vector<int>> depth_queue;                              ///< in order of promise
  layer_timings full;                                                     ///< full path, per layer
  std::map<std::pair<std::size_t, std::size_t>, layer_timings> decoders;  ///< profiled (fuse_in, pred_in)
  std::map<std::string, double> encoder_ms;                               ///< encoder layer medians from `full`
  double overhead_ms = 0, p95_ratio = 1;
  double layer_scale = 1;                      ///< < 1 when the per-layer medians add up to more than the total
  double fuse_a = 0, fuse_b = 0, fuse_r2 = 1;  ///< Conv2DFuse ms = a + b * fuse_in * pred_in (rounded to panels)
  double calibration = 1;                      ///< measured / predicted full path at confirmation time
  std::vector<double> encoder_path_seconds;    ///< accuracy time per encoder path so far
  std::size_t next = 0;                        ///< next depth_queue item
  std::size_t queued() const noexcept { return depth_queue.size(); }

  segformer_path make_path(const std::vector<int>& depths, std::size_t f, std::size_t p) const {
    const auto& c = model->config();
    const auto& head = model->decode_head();
    segformer_path path;
    if (depths != c.depths) path.depths = depths;
    if (f != head.stages() * head.hidden()) path.fuse_in = static_cast<int>(f);
    if (p != head.hidden()) path.pred_in = static_cast<int>(p);
    return path;
  }

  static std::size_t panel_cols(std::size_t p) { return (p + detail::gemm_nr - 1) / detail::gemm_nr * detail::gemm_nr; }

  /// Median ms of decoder layer `name` in configuration (f, p). Profiled configurations are used as
  /// measured; otherwise DecodeLinear*/DecodeUpsample* (which depend on f only) come from the
  /// profile at (f, smallest pred_in), Conv2DPred (p only) from (largest fuse_in, p), and
  /// Conv2DFuse from the least-squares line over every profiled configuration.
  double decoder_layer_ms(std::size_t f, std::size_t p, const std::string& name) const {
    const auto exact = decoders.find({f, p});
    if (exact != decoders.end()) {
      const auto it = exact->second.layer_ms.find(name);
      if (it != exact->second.layer_ms.end()) return it->second;
    }
    auto from = [&](std::size_t ff, std::size_t pp) -> double {
      const auto d = decoders.find({ff, pp});
      if (d == decoders.end()) return NAN;
      const auto it = d->second.layer_ms.find(name);
      return it == d->second.layer_ms.end() ? NAN : it->second;
    };
    if (name == "Conv2DFuse") return fuse_a + fuse_b * double(f) * double(panel_cols(p));
    if (name == "Conv2DPred") return from(fuse_grid.back(), p);
    return from(f, pred_grid.front());
  }

  /// Predicted median latency: the encoder layers as profiled on the full path, the decoder layers
  /// of this decoder configuration (see `decoder_layer_ms`), plus the unscoped time of the full path.
  double predict_ms(const segformer_execution& exec, std::size_t h, std::size_t w) const {
    const auto layers = model->layers(h, w, exec);
    std::vector<layer_info> enc, dec;
    std::map<std::string, double> dec_ms;
    for (const auto& l : layers) {
      if (l.region == model_region::encoder) {
        enc.push_back(l);
        continue;
      }
      dec.push_back(l);
      const double t = decoder_layer_ms(exec.head.fuse_in, exec.head.pred_in, l.timing_name());
      if (std::isfinite(t)) dec_ms[l.timing_name()] = std::max(0.0, t);
    }
    return layer_scale * (sum_layer_ms(enc, encoder_ms, name) + sum_layer_ms(dec, dec_ms, name)) + overhead_ms;
  }
};

}  // namespace detail

/// Sweeps the SegFormer models in `model_dirs` (hub layout) on `opt.data_dir`. The first model's full
/// path is the reference for `miou_normalized`. Progress goes to `progress`, notes to `log`.
/// `opt.phases` picks accuracy only (a table or shard of accuracy, sweep_shard.hpp) or latency only
/// (for the paths of `opt.accuracy_table`).
inline sweep_result sweep_segformer(const std::vector<std::string>& model_dirs, const sweep_options& options,
                                    const sweep_progress_fn& progress = {}, const sweep_log_fn& log = {}) {
  using clock = std::chrono::steady_clock;
  const sweep_options opt = detail::effective_options(options);
  detail::sweep_run run(model_dirs, opt, progress, log);
  const bool accuracy_only = opt.phases == sweep_options::phase_set::accuracy;
  const bool latency_only = opt.phases == sweep_options::phase_set::latency;
  if (opt.channel_step == 0 || opt.channel_step % detail::simd_width != 0)
    throw invalid_input("sweep: channel step " + std::to_string(opt.channel_step) + " must be a positive multiple of " +
                        std::to_string(detail::simd_width) + " (the SIMD width)");
  const double budget_s = run.budget_s;
  const int threads = run.threads;
  auto note = [&](const std::string& s) { run.note(s); };

  // ---- data: every image decoded, normalized (and resized) once
  const sweep_data data = latency_only ? detail::latency_only_data(opt) : load_sweep_data(opt);
  if (!latency_only && !data.labelled())
    throw invalid_input("sweep: data '" + opt.data_dir +
                        "' has no labels/: the SegFormer sweep measures labelled mIoU (for fidelity to the full "
                        "model use sweep_family)");
  const auto& inputs = data.inputs;
  const auto& labels = data.labels;
  const std::size_t n_images = data.size();
  const std::size_t H = data.height, W = data.width;
  note((latency_only ? "latency only, accuracy from " + opt.accuracy_table->source
                    : "data " + opt.data_dir + ": " + std::to_string(n_images) + " images") +
       ", inference at " + std::to_string(H) + "x" + std::to_string(W) + ", " + std::to_string(threads) + " threads");

  // ---- models
  std::vector<detail::sweep_model_state> models(model_dirs.size());
  for (std::size_t mi = 0; mi < model_dirs.size(); ++mi) {
    auto& m = models[mi];
    m.dir = model_dirs[mi];
    m.name = detail::sweep_run::model_name(model_dirs, mi);
    m.model = std::make_unique<segformer_model>(segformer_model::from_dir(m.dir, {}, detail::sweep_build(opt)));
    m.model->check_input(H, W);
    m.decoder = std::make_unique<shared_decoder>(*m.model);
    const auto& head = m.model->decode_head();
    const std::size_t full = head.stages() * head.hidden(), d = head.hidden();
    if (!opt.fuse_in.empty()) {
      m.fuse_grid = opt.fuse_in;
    } else if (opt.fold_decoder) {
      for (std::size_t s = 1; s <= head.stages(); ++s) m.fuse_grid.push_back(s * d);
    } else {
      m.fuse_grid =
          channel_levels(full, static_cast<std::size_t>(double(full) * opt.fuse_min), opt.fuse_levels, opt.channel_step);
    }
    m.pred_grid = opt.pred_in.empty() ? channel_levels(d, static_cast<std::size_t>(double(d) * opt.pred_min),
                                                       opt.pred_levels, opt.channel_step)
                                      : opt.pred_in;
    std::sort(m.fuse_grid.begin(), m.fuse_grid.end());
    std::sort(m.pred_grid.begin(), m.pred_grid.end());
    m.fuse_grid.erase(std::unique(m.fuse_grid.begin(), m.fuse_grid.end()), m.fuse_grid.end());
    m.pred_grid.erase(std::unique(m.pred_grid.begin(), m.pred_grid.end()), m.pred_grid.end());
    try {
      m.decoder->check_grid(m.fuse_grid, m.pred_grid);
      m.decoder->prepare(m.fuse_grid, m.pred_grid);
    } catch (const invalid_input& e) {
      throw invalid_input("sweep: model '" + m.name + "': " + e.what());
    }
    if (m.fuse_grid.back() != full || m.pred_grid.back() != d)
      note(m.name + ": the channel grid does not include the full decoder (fuse_in " + std::to_string(full) +
           ", pred_in " + std::to_string(d) + ")");
    const auto& depths = m.model->config().depths;
    m.depth_queue = opt.depths.empty() ? depth_combinations(depths, opt.depth_reduce) : opt.depths;
    for (const auto& dv : m.depth_queue) m.make_path(dv, full, d).validate(m.model->config());
  }

  // ---- the path set before any budget (sweep_shard.hpp): encoder groups = depth vectors in
  //      enumeration order, each with its fuse_in x pred_in grid
  sweep_path_set set;
  set.sweep = set.family = "segformer";
  std::vector<std::vector<int>> group_depths;
  for (std::size_t mi = 0; mi < models.size(); ++mi) {
    const auto& m = models[mi];
    set.models.push_back(m.name);
    for (const auto& dv : m.depth_queue) {
      sweep_group g;
      g.model = mi;
      g.encoder = m.make_path(dv, m.fuse_grid.back(), m.pred_grid.back()).to_string();
      for (const std::size_t f : m.fuse_grid)
        for (const std::size_t p : m.pred_grid) g.paths.push_back(m.make_path(dv, f, p).to_string());
      set.groups.push_back(std::move(g));
      group_depths.push_back(dv);
    }
  }
  if (accuracy_only) {  // this shard's groups only, in order
    if (opt.shard.count > set.groups.size())
      throw invalid_input("sweep: shard " + opt.shard.to_string() + ": the path set has " +
                          std::to_string(set.groups.size()) + " encoder groups, so at most " +
                          std::to_string(set.groups.size()) + " shards");
    for (std::size_t mi = 0; mi < models.size(); ++mi) {
      auto& q = models[mi].depth_queue;
      const std::size_t g0 = set.first_group(mi);
      std::vector<std::vector<int>> kept;
      for (std::size_t k = 0; k < q.size(); ++k)
        if (opt.shard.holds(g0 + k)) kept.push_back(q[k]);
      q = std::move(kept);
    }
  }

  sweep_progress& prog = run.prog;
  std::size_t& path_count = run.paths;
  auto report_progress = [&](double eta) { run.report(eta); };

  // ---- phase 1: per-layer latency (full path; every decoder configuration on one encoding)
  prog.phase = "latency";
  prog.steps = models.size();
  for (std::size_t mi = 0; mi < models.size() && !accuracy_only; ++mi) {
    auto& m = models[mi];
    const auto& x = inputs[0];
    const auto full_exec = m.model->compile(segformer_path{});
    prog.step = mi + 1;
    prog.what = m.name;
    // Folded, a decoder costs a small fraction of the unfolded one and its layers depend on both F
    // and P: every configuration is profiled.
    const bool every_decoder = opt.profile_every_decoder || m.model->decoder_folded();
    prog.total = opt.warmup + opt.repeats +
                 (every_decoder ? m.fuse_grid.size() * m.pred_grid.size() : m.fuse_grid.size() + m.pred_grid.size() - 1);
    prog.done = 0;
    report_progress(0);
    for (std::size_t i = 0; i < opt.warmup; ++i) m.model->forward(x, false, full_exec);
    m.full = profile_runs([&] { m.model->forward(x, false, full_exec); }, opt.repeats);
    prog.done = opt.warmup + opt.repeats;
    report_progress(0);
    for (const auto& l : m.model->layers(H, W, full_exec))
      if (l.region == model_region::encoder) {
        const auto it = m.full.layer_ms.find(l.timing_name());
        if (it != m.full.layer_ms.end()) m.encoder_ms[it->first] = it->second;
      }
    // Unscoped time; when noise makes the per-layer medians add up to more than the median total,
    // scale them instead so that the full path's prediction is its profiled median.
    m.overhead_ms = std::max(0.0, m.full.total.median_ms - m.full.scoped_ms());
    m.layer_scale = m.full.scoped_ms() > m.full.total.median_ms ? m.full.total.median_ms / m.full.scoped_ms() : 1.0;
    m.p95_ratio = m.full.total.median_ms > 0 ? m.full.total.p95_ms / m.full.total.median_ms : 1.0;
    // Decoder configurations: every fuse_in at the smallest pred_in and every pred_in at the largest
    // fuse_in (or the whole grid when asked); Conv2DFuse of the others from a line through them all.
    const segformer_features feats = m.model->encode(x, full_exec);
    for (const std::size_t f : m.fuse_grid)
      for (const std::size_t p : m.pred_grid) {
        if (!every_decoder && p != m.pred_grid.front() && f != m.fuse_grid.back()) continue;
        const auto exec = m.model->compile(m.make_path(m.model->config().depths, f, p));
        m.decoders[{exec.head.fuse_in, exec.head.pred_in}] =
            profile_runs([&] { m.model->decode(feats, exec.head); }, opt.decoder_repeats);
        ++prog.done;
        report_progress(0);
      }
    {
      double sx = 0, sy = 0, sxx = 0, sxy = 0, n = 0;
      std::vector<std::pair<double, double>> pts;
      for (const auto& [fp, t] : m.decoders) {
        const auto it = t.layer_ms.find("Conv2DFuse");
        if (it == t.layer_ms.end()) continue;
        const double xx = double(fp.first) * double(detail::sweep_model_state::panel_cols(fp.second));
        pts.emplace_back(xx, it->second);
        sx += xx;
        sy += it->second;
        sxx += xx * xx;
        sxy += xx * it->second;
        n += 1;
      }
      const double den = n * sxx - sx * sx;
      m.fuse_b = den > 0 ? (n * sxy - sx * sy) / den : 0.0;
      m.fuse_a = n > 0 ? (sy - m.fuse_b * sx) / n : 0.0;
      double ss_res = 0, ss_tot = 0;
      for (const auto& [xx, yy] : pts) {
        ss_res += (yy - m.fuse_a - m.fuse_b * xx) * (yy - m.fuse_a - m.fuse_b * xx);
        ss_tot += (yy - sy / n) * (yy - sy / n);
      }
      m.fuse_r2 = ss_tot > 0 ? 1 - ss_res / ss_tot : 1.0;
    }
    // Encoder paths in order of promise: fewest blocks removed, then most predicted time saved.
    // A block's time: the profiled layers that its skip removes from the layer list.
    const auto& full_depths = m.model->config().depths;
    std::vector<std::vector<double>> block_time(full_depths.size());
    for (std::size_t s = 0; s < full_depths.size(); ++s)
      for (int j = 0; j < full_depths[s]; ++j) {
        segformer_path skip_one;
        skip_one.skip = {{static_cast<int>(s), j}};
        std::set<std::string> kept;
        for (const auto& l : m.model->layers(H, W, m.model->compile(skip_one))) kept.insert(l.timing_name());
        double t = 0;
        for (const auto& [name, ms] : m.encoder_ms)
          if (!kept.count(name)) t += ms;
        block_time[s].push_back(t);
      }
    auto block_ms = [&](std::size_t s, int j) { return block_time[s][static_cast<std::size_t>(j)]; };
    auto removed = [&](const std::vector<int>& dv) {
      int r = 0;
      double saved = 0;
      for (std::size_t s = 0; s < dv.size(); ++s)
        for (int j = dv[s]; j < full_depths[s]; ++j) {
          ++r;
          saved += block_ms(s, j);
        }
      return std::make_pair(r, -saved);
    };
    if (opt.depths.empty() && opt.phases == sweep_options::phase_set::all)
      std::stable_sort(m.depth_queue.begin(), m.depth_queue.end(),
                       [&](const std::vector<int>& a, const std::vector<int>& b) { return removed(a) < removed(b); });
    note(m.name + ": full path " + detail::lut_num(std::round(m.full.total.median_ms * 10) / 10) + " ms median (p95 " +
         detail::lut_num(std::round(m.full.total.p95_ms * 10) / 10) + " ms), " + std::to_string(m.decoders.size()) +
         " decoder configurations profiled (" +
         (m.model->decoder_folded() ? std::string("folded decoder")
                                    : "Conv2DFuse line R^2 " + detail::lut_num(std::round(m.fuse_r2 * 1000) / 1000)) +
         "), " + std::to_string(m.depth_queue.size()) +
         " encoder paths queued");
  }
  const double latency_phase_s = run.elapsed();

  // ---- phase 2: accuracy, encoder path by encoder path, interleaving the models by rank
  struct result_row {
    std::size_t model;
    std::vector<int> depths;
    std::size_t f, p;
    double miou, pixel_acc;
    miou_interval miou_ci;
  };
  std::vector<result_row> results;
  nlohmann::json encoder_report = nlohmann::json::array();
  double max_decode_diff = 0;
  std::size_t verified = 0;
  // Time to keep for the confirmation phase: the sample of each model at its full-path latency,
  // with half again for a machine that gets busier.
  double confirm_reserve_s = 0;
  for (const auto& m : models)
    confirm_reserve_s +=
        1.5 * double(opt.confirm) / double(models.size()) * double(opt.repeats + 1) * m.full.total.median_ms / 1e3;
  std::string stopped_by = "all encoder paths done";
  // Seconds per encoder path: the mean so far, or (none yet) about one full-path latency per image,
  // since the images are spread over the threads and each runs on one.
  auto estimate_s = [&](const detail::sweep_model_state& m) {
    if (m.encoder_path_seconds.empty()) return 1.2 * double(n_images) * m.full.total.median_ms / 1e3;
    return std::accumulate(m.encoder_path_seconds.begin(), m.encoder_path_seconds.end(), 0.0) /
           double(m.encoder_path_seconds.size());
  };
  auto remaining_estimate_s = [&]() {  // what the queue would still take, capped by the budget
    double s = 0;
    for (const auto& m : models) {
      s += estimate_s(m) * double(m.depth_queue.size() - m.next);
    }
    const double left = budget_s - run.elapsed() - confirm_reserve_s;
    return std::max(0.0, std::min(s, left)) + confirm_reserve_s;
  };
  std::size_t planned_steps = 0;
  for (const auto& m : models) planned_steps += m.depth_queue.size();
  std::size_t step = 0;
  prog.phase = "accuracy";
  while (!latency_only) {
    const std::size_t pick_index = run.admit_next(models, estimate_s, confirm_reserve_s, opt, stopped_by);
    if (pick_index == models.size()) break;
    auto& m = models[pick_index];
    const auto depths = m.depth_queue[m.next++];
    const auto t_enc = clock::now();
    const auto exec = m.model->compile(m.make_path(depths, m.fuse_grid.back(), m.pred_grid.back()));
    const std::size_t nf = m.fuse_grid.size(), np = m.pred_grid.size(), K = m.model->decode_head().classes();
    std::vector<confusion_by_image> cms(nf * np, confusion_by_image(K, opt.ignore_index));
    ++step;
    prog.step = step;
    {  // no estimate yet (an accuracy-only sweep has no latency profile): every queued path
      const double est = estimate_s(m), more = std::max(0.0, remaining_estimate_s() - confirm_reserve_s);
      prog.steps = est > 0 ? static_cast<std::size_t>(std::min<double>(double(planned_steps), double(step) + more / est))
                           : planned_steps;
    }
    prog.what = m.name + " depths=" + detail::join_ints(depths);
    prog.total = n_images;
    prog.done = 0;
    report_progress(remaining_estimate_s());
    // Bit-for-bit check of the shared decoder against the model's own decoder (first image).
    if (m.encoder_path_seconds.empty()) {
      const auto feats = m.model->encode(inputs[0], exec);
      std::vector<detail::aligned_vector<float>> logits;
      m.decoder->run(feats, m.fuse_grid, m.pred_grid, logits);
      const std::size_t picks[3][2] = {{nf - 1, np - 1}, {nf / 2, np / 2}, {0, 0}};
      for (const auto& pk : picks) {
        const auto e2 = m.model->compile(m.make_path(depths, m.fuse_grid[pk[0]], m.pred_grid[pk[1]]));
        const tensor4 ref = m.model->decode(feats, e2.head);  // NCHW
        const auto& got = logits[pk[0] * np + pk[1]];         // NHWC
        const std::size_t hw = ref.shape(2) * ref.shape(3);
        for (std::size_t q = 0; q < hw; ++q)
          for (std::size_t k = 0; k < K; ++k)
            max_decode_diff = std::max(max_decode_diff, double(std::abs(ref.data()[k * hw + q] - got[q * K + k])));
        ++verified;
      }
    }
    std::exception_ptr error;
    std::size_t done = 0;
    // An encoder path admitted on its estimate is given up (its partial counts dropped) once it runs
    // into the time kept for the confirmation, e.g. because the machine got busier; a model's first
    // encoder path always completes.
    const bool may_cancel = !m.encoder_path_seconds.empty() && opt.phases == sweep_options::phase_set::all;
    bool cancelled = false;
#pragma omp parallel num_threads(threads)
    {
      std::vector<confusion_by_image> local(nf * np, confusion_by_image(K, opt.ignore_index));
      std::vector<detail::aligned_vector<float>> logits;
#pragma omp for schedule(dynamic, 1)
      for (long long ii = 0; ii < static_cast<long long>(n_images); ++ii) {
        const auto i = static_cast<std::size_t>(ii);
        bool skip = false;
#pragma omp critical(drt_sweep_progress)
        {
          if (may_cancel && !cancelled && run.elapsed() + confirm_reserve_s > budget_s)
            cancelled = true;
          skip = cancelled;
        }
        if (skip) continue;
        try {
          const auto feats = m.model->encode(inputs[i], exec);  // serial: we are inside a parallel region
          m.decoder->run(feats, m.fuse_grid, m.pred_grid, logits);
          const std::size_t h0 = feats.hs[0], w0 = feats.ws[0];
          tensor4 lg = tensor4::from_shape({std::size_t{1}, K, h0, w0});
          for (std::size_t c = 0; c < nf * np; ++c) {
            const float* src = logits[c].data();
            float* dst = lg.data();
            for (std::size_t q = 0; q < h0 * w0; ++q)
              for (std::size_t k = 0; k < K; ++k) dst[k * h0 * w0 + q] = src[q * K + k];
            const itensor3 pred = upsample_argmax(lg, labels[i].height, labels[i].width);
            local[c].add(i, labels[i].labels.data(), pred.data(), labels[i].labels.size(), data.label_paths[i]);
          }
        } catch (...) {
#pragma omp critical(drt_sweep_error)
          if (!error) error = std::current_exception();
        }
#pragma omp critical(drt_sweep_progress)
        {
          prog.done = ++done;
          report_progress(remaining_estimate_s() + estimate_s(m) * (1.0 - double(done) / double(n_images)));
        }
      }
#pragma omp critical(drt_sweep_merge)
      for (std::size_t c = 0; c < nf * np; ++c) cms[c].merge(local[c]);
    }
    if (error) std::rethrow_exception(error);
    if (cancelled) {
      stopped_by = "time budget";
      encoder_report.push_back({{"model", m.name},
                                {"depths", depths},
                                {"seconds", detail::seconds_since(t_enc)},
                                {"paths", 0},
                                {"cancelled_after_images", done}});
      note(m.name + " depths=" + detail::join_ints(depths) + ": cancelled after " + std::to_string(done) + " of " +
           std::to_string(n_images) + " images (time budget); its counts are dropped");
      for (auto& mm : models) mm.next = mm.depth_queue.size();
      continue;
    }
    for (std::size_t fi = 0; fi < nf; ++fi)
      for (std::size_t pi = 0; pi < np; ++pi) {
        const auto& cm = cms[fi * np + pi];
        results.push_back(
            {pick_index, depths, m.fuse_grid[fi], m.pred_grid[pi], cm.miou(), cm.pixel_accuracy(), cm.interval()});
        ++path_count;
      }
    const double sec = detail::seconds_since(t_enc);
    m.encoder_path_seconds.push_back(sec);
    encoder_report.push_back({{"model", m.name},
                              {"depths", depths},
                              {"seconds", sec},
                              {"paths", nf * np},
                              {"full_decoder_miou", cms.back().miou()}});
  }
  if (latency_only) {  // every path of the accuracy table, its accuracy as measured there
    stopped_by = "the paths of the accuracy table";
    const auto acc = detail::accuracy_by_path(*opt.accuracy_table, set, model_dirs);
    for (std::size_t g = 0; g < set.groups.size(); ++g) {
      const auto& m = models[set.groups[g].model];
      for (const std::size_t f : m.fuse_grid)
        for (const std::size_t p : m.pred_grid) {
          const auto& e = acc.at({m.name, m.make_path(group_depths[g], f, p).to_string()});
          results.push_back({set.groups[g].model, group_depths[g], f, p, e.miou, e.pixel_acc, e.miou_ci});
        }
    }
  }
  const double accuracy_phase_s = run.elapsed() - latency_phase_s;

  // ---- entries with predicted latency (accuracy only: none)
  lookup_table table;
  table.machine = machine_info::current(threads);
  std::vector<segformer_execution> execs;
  for (const auto& r : results) {
    const auto& m = models[r.model];
    const auto path = m.make_path(r.depths, r.f, r.p);
    const auto exec = m.model->compile(path);
    lut_entry e;
    e.model = m.name;
    e.model_dir = m.dir;
    e.path = path.to_string();
    e.decoder_folded = m.model->decoder_folded();
    e.macs = total_macs(m.model->layers(H, W, exec));
    if (!accuracy_only) {
      e.predicted_latency_ms = m.predict_ms(exec, H, W);
      e.latency_ms = e.predicted_latency_ms;
      e.latency_p95_ms = e.predicted_latency_ms * m.p95_ratio;
      e.latency_source = "predicted";
    }
    e.miou = r.miou;
    e.pixel_acc = r.pixel_acc;
    e.miou_ci = r.miou_ci;
    table.entries.push_back(e);
    execs.push_back(exec);
  }
  const nlohmann::json dataset =
      latency_only ? opt.accuracy_table->info.value("dataset", nlohmann::json::object())
                   : nlohmann::json{{"path", opt.data_dir},
                                    {"images", n_images},
                                    {"ignore_index", opt.ignore_index},
                                    {"accuracy", "miou"},
                                    {"protocol",
                                     "logits upsampled bilinearly (align_corners=False) to the label size, argmax, "
                                     "one confusion matrix over the set"}};
  nlohmann::json grids = nlohmann::json::object();
  for (const auto& m : models) grids[m.name] = {{"fuse_in", m.fuse_grid}, {"pred_in", m.pred_grid}};
  if (accuracy_only) {
    nlohmann::json report = run.report_json(opt, table, 0, accuracy_phase_s, stopped_by);
    report["family"] = "segformer";
    report["encoder_paths"] = encoder_report;
    report["shared_decoder_check"] = {{"paths_compared", verified}, {"max_abs_logit_difference", max_decode_diff}};
    report["grids"] = grids;
    detail::finish_accuracy_table(table, set, opt, detail::sweep_set_json(set, model_dirs, data, opt), dataset, report);
    return {std::move(table), std::move(report)};
  }

  // ---- phase 3: confirm on a sample (sweep_confirm.hpp)
  prog.phase = "confirm";
  auto model_of = [&](const lut_entry& e) -> detail::sweep_model_state& {
    return *std::find_if(models.begin(), models.end(), [&](const auto& s) { return s.name == e.model; });
  };
  nlohmann::json lat = detail::confirm_latencies(
      table, opt, [&](std::size_t i) { model_of(table.entries[i]).model->forward(inputs[0], false, execs[i]); },
      run.start, budget_s, run.confirm_progress());
  for (auto& m : models) m.calibration = lat["calibration"].value(m.name, 1.0);

  // ---- the table
  nlohmann::json report = run.report_json(opt, table, latency_phase_s, accuracy_phase_s, stopped_by);
  report["family"] = "segformer";
  report["encoder_paths"] = encoder_report;
  report["shared_decoder_check"] = {{"paths_compared", verified}, {"max_abs_logit_difference", max_decode_diff}};
  lat["method"] =
      "predicted median = sum of per-layer medians (encoder layers from " + std::to_string(opt.repeats) +
      " profiled runs of the full path; decoder layers from " + std::to_string(opt.decoder_repeats) +
      " profiled runs of the decoder configurations, Conv2DFuse of unprofiled ones from a line in fuse_in x pred_in) "
      "+ the full path's time outside layer scopes. The sample is then timed round robin; 'calibrated' scales every "
      "prediction of a model by its full path's measured/predicted ratio at that time (the load may have changed "
      "since the profile), and predicted entries in the table carry calibrated values; p95 = median x the sample's "
      "median p95/median ratio";
  nlohmann::json fits = nlohmann::json::object();
  for (const auto& m : models)
    fits[m.name] = {{"decoder", m.model->decoder_folded() ? "folded" : "unfolded"},
                    {"conv2dfuse_ms_intercept", m.fuse_a},
                    {"conv2dfuse_ms_per_mac_column", m.fuse_b},
                    {"conv2dfuse_r2", m.fuse_r2},
                    {"calibration", m.calibration},
                    {"full_path_profiled_ms", m.full.total.median_ms},
                    {"unscoped_ms", m.overhead_ms}};
  lat["models"] = fits;
  report["latency"] = lat;
  report["grids"] = grids;
  detail::finish_sweep(table, models, opt, H, W, dataset, report, latency_only);
  return {std::move(table), std::move(report)};
}

}  // namespace drt
