#pragma once
/// @file decode_head.hpp
/// SegFormer All-MLP decode head (ref: transformers modeling_segformer.py, SegformerDecodeHead):
/// per-stage linear C_s -> D, bilinear upsampling to the stage-0 size, concatenation in reverse
/// stage order (stage 3 first), 1x1 fuse conv 4D -> D + BatchNorm + ReLU, 1x1 classifier D -> classes.
///
/// Two forms of the same function (docs/decoder_fold.md):
/// - **folded** (the default): everything before the ReLU is linear and the bilinear upsample is a
///   per-channel convex combination (weights summing to 1), so it commutes with channel mixing and
///   passes biases through. Exactly,
///       BN(fuse(concat_s(up(P_s f_s + b_s)))) = sum_s up(M_s f_s) + c,
///       M_s = G W_fuse[:, slot(s)] P_s (D x C_s),  c = beta - G mu + G sum_s W_fuse[:, slot(s)] b_s,
///   G = diag(gamma / sqrt(var + eps)). M_s and c are composed in double precision at load; each M_s
///   runs as a GEMM at stage s's own resolution, and per block of stage-0 rows stage 0's GEMM + c,
///   the upsampled other stages (`bilinear_sum`, with the ReLU) and the classifier run while the
///   block is in cache.
/// - **unfolded**: the checkpoint's graph as published (BatchNorm folded into the fuse conv), for
///   reproducing the paper's accounting (Table III) and its Conv2DFuse knob.
///
/// Channel prefixes are run-time arguments so one copy of the weights serves every dynamic path:
/// `fuse_in` keeps the first fuse_in concatenated channels (a stage whose slice is dropped entirely
/// is not computed at all; unfolded, a partly dropped slice computes only the prefix of its linear's
/// outputs; folded, the stage's M_s over the kept slot columns is composed once per path), `pred_in`
/// computes only the first pred_in fuse outputs (folded: the first rows of every M_s) and the
/// classifier reads only those, and `linear0_in` shortens stage 0's reduction.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/profiler.hpp"
#include "../core/tensor.hpp"
#include "batch_norm.hpp"
#include "gemm.hpp"
#include "linear.hpp"
#include "resize.hpp"

namespace drt {

struct decode_head_weights {
  std::vector<const float*> linear_w, linear_b;  ///< per stage: [D, C_s], [D]
  const float* fuse_w;                           ///< [D, S*D, 1, 1] (no bias)
  const float *bn_g, *bn_b, *bn_mean, *bn_var;   ///< [D]
  const float *cls_w, *cls_b;                    ///< [K, D, 1, 1], [K]
};

/// A path's folded weights where they differ from the full model's, composed once when the path is
/// compiled (`mlp_decode_head::resolve`): c over the kept slot columns and, when `fuse_in` cuts a
/// stage's slot partway, that stage's M_s over its kept columns.
struct folded_head_cut {
  static constexpr std::size_t none = static_cast<std::size_t>(-1);
  std::size_t fuse_in = 0;   ///< the fuse_in it was composed for (a changed fuse_in recomposes)
  std::size_t stage = none;  ///< the stage whose slot is cut partway (none: every slot is whole or dropped)
  linear m;                  ///< its M_s [D x C_s] over the kept slot columns (no bias)
  std::vector<float> bias;   ///< c [D] over the kept slot columns
  std::size_t bytes() const noexcept { return m.weights().bytes() + bias.size() * sizeof(float); }
};

/// How much of the head runs (defaults: everything).
struct decode_head_channels {
  std::size_t fuse_in = 0;     ///< Conv2DFuse input channels kept (0 = all)
  std::size_t pred_in = 0;     ///< Conv2DPred input channels kept = fuse outputs computed (0 = all)
  std::size_t linear0_in = 0;  ///< DecodeLinear0 input channels kept (0 = all)
  /// Unfolded head only. true: a dropped Conv2DFuse input is never produced by its decoder linear
  /// (backward propagation); false: the linears run in full and Conv2DFuse only shortens its
  /// reduction (the paper's Table III count). The folded head computes neither.
  bool propagate = true;
  /// Folded head with fuse_in below the full width: the path's composed weights (set by `resolve`).
  std::shared_ptr<const folded_head_cut> cut;
  /// The folded head's GEMMs (M_s and the classifier) run in this arithmetic; the unfolded head is
  /// fp32 only (`resolve` refuses other).
  precision arithmetic = precision::fp32;
  /// The path's classifier over its pred_in inputs, refit by least squares (dynamic/refit.hpp); null:
  /// the model's own, on the prefix.
  std::shared_ptr<const linear> classifier;
};

class mlp_decode_head {
public:
  /// The profile scope of the folded head's row-block pass (DecodeLinearFuse0, DecodeUpsampleSumReLU
  /// and Conv2DPred run interleaved per block, so they are timed together).
  static constexpr const char* fused_pass_name = "DecodeFusedPass";

  mlp_decode_head() = default;
  /// `fold`: build the folded form (default) or the checkpoint's graph (see the file comment).
  mlp_decode_head(const decode_head_weights& w, const std::vector<std::size_t>& stage_channels, std::size_t hidden,
                  std::size_t classes, float bn_eps, bool fold = true)
      : d_(hidden), classes_(classes), channels_(stage_channels), folded_(fold) {
    const std::size_t s = stage_channels.size();
    cls_ = linear(w.cls_w, w.cls_b, classes, hidden);
    if (!fold) {
      for (std::size_t i = 0; i < s; ++i) linears_.emplace_back(w.linear_w[i], w.linear_b[i], hidden, stage_channels[i]);
      std::vector<float> fuse(w.fuse_w, w.fuse_w + hidden * s * hidden);
      const auto bn = batch_norm_to_affine(w.bn_g, w.bn_b, w.bn_mean, w.bn_var, hidden, bn_eps);
      fuse_bias_ = fold_batch_norm(fuse, s * hidden, {}, bn);
      fuse_ = packed_matrix::from_nk(fuse.data(), hidden, s * hidden, s * hidden);
      return;
    }
    auto src = std::make_shared<sources>();
    src->fuse.assign(w.fuse_w, w.fuse_w + hidden * s * hidden);
    for (std::size_t i = 0; i < s; ++i) {
      src->linear_w.emplace_back(w.linear_w[i], w.linear_w[i] + hidden * stage_channels[i]);
      src->linear_b.emplace_back(w.linear_b[i], w.linear_b[i] + hidden);
    }
    src->scale.resize(hidden);
    src->shift.resize(hidden);
    for (std::size_t o = 0; o < hidden; ++o) {  // the BatchNorm as G and beta - G mu, in double
      src->scale[o] = double(w.bn_g[o]) / std::sqrt(double(w.bn_var[o]) + double(bn_eps));
      src->shift[o] = double(w.bn_b[o]) - double(w.bn_mean[o]) * src->scale[o];
    }
    src_ = std::move(src);
    for (std::size_t i = 0; i < s; ++i) {
      const auto m = compose_stage(i, hidden);
      folded_w_.emplace_back(m.data(), nullptr, hidden, stage_channels[i]);
    }
    folded_bias_ = compose_bias(std::vector<std::size_t>(s, hidden));
  }

  std::size_t hidden() const noexcept { return d_; }
  std::size_t classes() const noexcept { return classes_; }
  std::size_t stages() const noexcept { return channels_.size(); }
  /// Input channels of stage s (C_s).
  std::size_t stage_channels(std::size_t s) const noexcept { return channels_[s]; }
  /// true for the folded form.
  bool folded() const noexcept { return folded_; }
  /// The folded head's GEMM layers with names (M_s as "decode_head.folded_linear.s", the classifier
  /// as "decode_head.classifier"): what a low precision runs and int8 calibration measures.
  template <class F>
  void for_each_linear(F&& f) {
    for (std::size_t s = 0; s < folded_w_.size(); ++s) f("decode_head.folded_linear." + std::to_string(s), folded_w_[s]);
    f(std::string("decode_head.classifier"), cls_);
  }
  /// Unfolded head: stage s's decoder linear (linear_c[s]).
  const linear& stage_linear(std::size_t s) const {
    if (folded_) throw invalid_input("decode head: the folded head has no separate decoder linears");
    return linears_[s];
  }
  /// The classifier (Conv2DPred) as a linear D -> classes.
  const linear& classifier() const noexcept { return cls_; }
  /// Unfolded head: Conv2DFuse with the BatchNorm folded in, packed [n=D][k=S*D], and its bias [D].
  const packed_matrix& fuse_weights() const {
    if (folded_) throw invalid_input("decode head: the folded head has no Conv2DFuse");
    return fuse_;
  }
  const float* fuse_bias() const noexcept { return fuse_bias_.data(); }
  /// Bytes of packed weights the head holds, and (folded) of the checkpoint tensors kept to compose
  /// the weights of paths that cut fuse_in.
  std::size_t weight_bytes() const noexcept {
    std::size_t b = cls_.weights().bytes() + fuse_.bytes();
    for (const auto& l : linears_) b += l.weights().bytes();
    for (const auto& m : folded_w_) b += m.weights().bytes();
    return b;
  }
  std::size_t composition_bytes() const noexcept {
    if (!src_) return 0;
    std::size_t b = src_->fuse.size() * sizeof(float) + src_->scale.size() * 2 * sizeof(double);
    for (std::size_t i = 0; i < src_->linear_w.size(); ++i)
      b += (src_->linear_w[i].size() + src_->linear_b[i].size()) * sizeof(float);
    return b;
  }

  /// Channels of stage s that survive `fuse_in` (its slice of the concat is [(S-1-s)D, (S-s)D)).
  std::size_t stage_outputs_kept(std::size_t s, std::size_t fuse_in) const noexcept {
    const std::size_t off = (stages() - 1 - s) * d_;
    return fuse_in <= off ? 0 : std::min(d_, fuse_in - off);
  }

  /// Fills in the defaults (0 = all) and checks the ranges; throws naming every value and its maximum.
  decode_head_channels with_defaults(decode_head_channels ch) const {
    const std::size_t full = stages() * d_;
    if (ch.fuse_in == 0) ch.fuse_in = full;
    if (ch.pred_in == 0) ch.pred_in = d_;
    if (ch.linear0_in == 0) ch.linear0_in = channels_[0];
    if (ch.fuse_in > full || ch.pred_in > d_ || ch.linear0_in > channels_[0])
      throw invalid_input("decode head: channels fuse_in=" + std::to_string(ch.fuse_in) + " (max " +
                          std::to_string(full) + "), pred_in=" + std::to_string(ch.pred_in) + " (max " +
                          std::to_string(d_) + "), linear0_in=" + std::to_string(ch.linear0_in) + " (max " +
                          std::to_string(channels_[0]) + ") exceed the model");
    return ch;
  }

  /// `with_defaults`, and for the folded head with fuse_in below the full width the path's composed
  /// weights (`cut`) unless already there for this fuse_in.
  decode_head_channels resolve(decode_head_channels ch) const {
    ch = with_defaults(std::move(ch));
    if (ch.arithmetic != precision::fp32) {
      if (!folded_)
        throw invalid_input(std::string("decode head: precision ") + to_string(ch.arithmetic) +
                            " needs the folded decoder (the unfolded one runs in fp32 only)");
      cls_.prepare(ch.arithmetic);
      for (const auto& m : folded_w_) m.prepare(ch.arithmetic);
    }
    if (!folded_ || ch.fuse_in == stages() * d_) {
      ch.cut.reset();
    } else if (!ch.cut || ch.cut->fuse_in != ch.fuse_in) {
      auto cut = std::make_shared<folded_head_cut>();
      cut->fuse_in = ch.fuse_in;
      std::vector<std::size_t> kept(stages());
      for (std::size_t s = 0; s < stages(); ++s) {
        kept[s] = stage_outputs_kept(s, ch.fuse_in);
        if (kept[s] != 0 && kept[s] != d_) {
          cut->stage = s;
          const auto m = compose_stage(s, kept[s]);
          cut->m = linear(m.data(), nullptr, d_, channels_[s]);
          if (const auto* q = folded_w_[s].input_quant()) {  // the same inputs as the model's M_s
            const float lo = -q->scale * float(q->zero_point);
            cut->m.set_input_range(lo, lo + 255.f * q->scale);
          }
        }
      }
      cut->bias = compose_bias(kept);
      ch.cut = std::move(cut);
    }
    if (ch.cut && ch.cut->stage != folded_head_cut::none) ch.cut->m.prepare(ch.arithmetic);
    return ch;
  }

  /// stages[s]: NHWC [N, H_s, W_s, C_s]; heights/widths per stage. logits: NHWC [N, H_0, W_0, classes],
  /// or NCHW [N, classes, H_0, W_0] with `nchw` (the folded head writes it per row block directly).
  void run(const std::vector<const float*>& feats, std::size_t n, const std::vector<std::size_t>& hs,
           const std::vector<std::size_t>& ws, float* logits, decode_head_channels ch = {}, bool nchw = false) const {
    ch = resolve(ch);
    if (folded_) {
      run_folded(feats, n, hs, ws, nullptr, logits, ch, nchw);
      return;
    }
    const std::size_t m0 = n * hs[0] * ws[0], hw = hs[0] * ws[0];
    detail::aligned_vector<float> fused(m0 * ch.pred_in), nhwc(nchw ? m0 * classes_ : 0);
    run_unfolded(feats, n, hs, ws, fused.data(), ch);
    {
      profile_scope ps("Conv2DPred");  // unfolded
      classifier(ch).run_prefix(m0, classes_, ch.pred_in, fused.data(), ch.pred_in, nchw ? nhwc.data() : logits,
                                classes_);
    }
    if (nchw)
      for (std::size_t b = 0; b < n; ++b)
        transpose_matrix(nhwc.data() + b * hw * classes_, hw, classes_, logits + b * classes_ * hw);
  }

  /// Everything before the classifier: fused [N, H_0, W_0, pred_in] = ReLU(BN(Conv2DFuse(...))) of
  /// the channels `ch` keeps (resolved or not).
  void run_fused(const std::vector<const float*>& feats, std::size_t n, const std::vector<std::size_t>& hs,
                 const std::vector<std::size_t>& ws, float* fused, decode_head_channels ch) const {
    ch = resolve(ch);
    if (folded_)
      run_folded(feats, n, hs, ws, fused, nullptr, ch);
    else
      run_unfolded(feats, n, hs, ws, fused, ch);
  }

  /// The path's memory beyond the model's weights (folded head, fuse_in cut partway: its M_s and c).
  static std::size_t path_bytes(const decode_head_channels& ch) noexcept { return ch.cut ? ch.cut->bytes() : 0; }

private:
  /// The checkpoint's decoder tensors, kept by the folded head to compose the weights of paths that
  /// cut fuse_in (shared between copies of the model).
  struct sources {
    std::vector<float> fuse;                             ///< W_fuse [D, S*D]
    std::vector<std::vector<float>> linear_w, linear_b;  ///< P_s [D, C_s], b_s [D]
    std::vector<double> scale, shift;                    ///< G and beta - G mu, [D]
  };

  /// M_s over the first `kept` columns of stage s's slot: G W_fuse[:, slot(s)][:, :kept] P_s[:kept, :],
  /// [D x C_s] row-major, accumulated in double.
  std::vector<float> compose_stage(std::size_t s, std::size_t kept) const {
    const std::size_t d = d_, cs = channels_[s], off = (stages() - 1 - s) * d, ld = stages() * d;
    std::vector<float> m(d * cs);
    const sources& src = *src_;
    parallel_for(
        d,
        [&](std::size_t o) {
          std::vector<double> acc(cs, 0.0);
          const float* wrow = src.fuse.data() + o * ld + off;
          for (std::size_t j = 0; j < kept; ++j) {
            const double wj = wrow[j];
            const float* p = src.linear_w[s].data() + j * cs;
            for (std::size_t c = 0; c < cs; ++c) acc[c] += wj * double(p[c]);
          }
          for (std::size_t c = 0; c < cs; ++c) m[o * cs + c] = static_cast<float>(src.scale[o] * acc[c]);
        },
        2.0 * double(d) * double(kept) * double(cs));
    return m;
  }

  /// c = beta - G mu + G sum_s W_fuse[:, slot(s)][:, :kept_s] b_s[:kept_s], in double.
  std::vector<float> compose_bias(const std::vector<std::size_t>& kept) const {
    const std::size_t d = d_, ld = stages() * d;
    const sources& src = *src_;
    std::vector<float> c(d);
    for (std::size_t o = 0; o < d; ++o) {
      double acc = 0;
      for (std::size_t s = 0; s < stages(); ++s) {
        const float* wrow = src.fuse.data() + o * ld + (stages() - 1 - s) * d;
        for (std::size_t j = 0; j < kept[s]; ++j) acc += double(wrow[j]) * double(src.linear_b[s][j]);
      }
      c[o] = static_cast<float>(src.shift[o] + src.scale[o] * acc);
    }
    return c;
  }

  /// The folded decoder. Stages 1..S-1: one GEMM each at its own resolution. Then, per block of
  /// stage-0 rows (in parallel): stage 0's GEMM + c, the upsampled stages added and the ReLU applied
  /// (`bilinear_sum`), and either stored in `fused` or, when `logits` is given, run through the
  /// classifier while the block is still in cache: no full-size intermediate is written.
  void run_folded(const std::vector<const float*>& feats, std::size_t n, const std::vector<std::size_t>& hs,
                  const std::vector<std::size_t>& ws, float* fused, float* logits, const decode_head_channels& ch,
                  bool nchw = false) const {
    const std::size_t p = ch.pred_in, h0 = hs[0], w0 = ws[0];
    const float* bias = ch.cut ? ch.cut->bias.data() : folded_bias_.data();
    const bool prof = profiling_active();
    std::vector<detail::aligned_vector<float>> outs(stages());
    std::vector<bilinear_source> up;
    for (std::size_t s = 1; s < stages(); ++s) {
      if (stage_outputs_kept(s, ch.fuse_in) == 0) continue;  // the whole slot is dropped: stage s is not read
      const std::size_t ms = n * hs[s] * ws[s];
      const std::string name = prof ? "DecodeLinearFuse" + std::to_string(s) : std::string();
      profile_scope ps(name.c_str());
      outs[s].resize(ms * p);
      stage_weights(s, ch).run_prefix(ms, p, channels_[s], feats[s], channels_[s], outs[s].data(), p,
                                      activation::none, nullptr, 0, nullptr, ch.arithmetic);
      up.push_back({outs[s].data(), hs[s], ws[s]});
    }
    const bool stage0 = stage_outputs_kept(0, ch.fuse_in) != 0;
    const linear& m0 = stage_weights(0, ch);
    const linear& cls = classifier(ch);
    const precision arith = ch.arithmetic;
    const bilinear_sum sum(up, n, p, h0, w0, stage0 ? nullptr : bias, activation::relu);
    // Blocks of about one GEMM row block of pixels: the block's [pixels x P] stays in L2 from stage
    // 0's GEMM through the classifier.
    const std::size_t rows = std::max<std::size_t>(1, detail::gemm_mc / std::max<std::size_t>(1, w0));
    const std::size_t blocks = (n * h0 + rows - 1) / rows, k0 = ch.linear0_in;
    const double work = 2.0 * double(n * h0 * w0) * double(p) * double((stage0 ? k0 : 0) + (logits ? classes_ : 0)) +
                        sum.work();
    profile_scope ps(fused_pass_name);
    parallel_for(
        blocks,
        [&](std::size_t blk) {
          const std::size_t r0 = blk * rows, r1 = std::min(n * h0, r0 + rows), px = (r1 - r0) * w0;
          thread_local detail::aligned_vector<float> local;
          float* y = logits ? (local.resize(px * p), local.data()) : fused + r0 * w0 * p;
          if (stage0) {
            m0.run_prefix(px, p, k0, feats[0] + r0 * w0 * channels_[0], channels_[0], y, p, activation::none, nullptr,
                          0, bias, arith, false);
          }
          // int8: the classifier's input range comes from the upsample-sum as it stores the block
          // (the values of the classifier's own range pass: the same quantization).
          const bool ranged = logits && arith == precision::int8;
          detail::range_accumulator acc;
          sum.rows(r0, r1, y, ranged ? &acc : nullptr);
          if (!logits) return;
          quant_params qc;
          if (ranged) qc = cls.int8_input_quant(acc.result(), p, classes_);
          const quant_params* qcp = ranged ? &qc : nullptr;
          if (!nchw) {
            cls.run_prefix(px, classes_, p, y, p, logits + r0 * w0 * classes_, classes_, activation::none, nullptr, 0,
                            nullptr, arith, false, qcp);
            return;
          }
          // NCHW: the block's [pixels x K] goes out class by class, each a run of contiguous pixels
          // per image (a block may end one image and start the next).
          thread_local detail::aligned_vector<float> block;
          block.resize(px * classes_);
          cls.run_prefix(px, classes_, p, y, p, block.data(), classes_, activation::none, nullptr, 0, nullptr, arith,
                          false, qcp);
          const std::size_t hw = h0 * w0;
          for (std::size_t i0 = 0; i0 < px;) {
            const std::size_t g = r0 * w0 + i0, b = g / hw, q = g % hw, len = std::min(px - i0, hw - q);
            for (std::size_t k = 0; k < classes_; ++k) {
              float* o = logits + (b * classes_ + k) * hw + q;
              const float* src = block.data() + i0 * classes_ + k;
              for (std::size_t i = 0; i < len; ++i) o[i] = src[i * classes_];
            }
            i0 += len;
          }
        },
        work);
  }

  /// The classifier of the path: its refit one, else the model's.
  const linear& classifier(const decode_head_channels& ch) const noexcept {
    return ch.classifier ? *ch.classifier : cls_;
  }

  /// M_s of the path: the composed one for the stage whose slot `fuse_in` cuts, else the model's.
  const linear& stage_weights(std::size_t s, const decode_head_channels& ch) const {
    return ch.cut && ch.cut->stage == s ? ch.cut->m : folded_w_[s];
  }

  void run_unfolded(const std::vector<const float*>& feats, std::size_t n, const std::vector<std::size_t>& hs,
                    const std::vector<std::size_t>& ws, float* fused, const decode_head_channels& ch) const {
    const std::size_t h0 = hs[0], w0 = ws[0], m0 = n * h0 * w0;
    // Without propagation the concat holds every channel; the fuse GEMM reads a prefix of each row.
    const std::size_t width = ch.propagate ? ch.fuse_in : stages() * d_;
    detail::aligned_vector<float> concat(m0 * width), tmp;
    for (std::size_t s = 0; s < stages(); ++s) {
      const std::size_t kept = ch.propagate ? stage_outputs_kept(s, ch.fuse_in) : d_;
      if (kept == 0) continue;  // every output of this linear is dropped: do not run it
      const std::size_t off = (stages() - 1 - s) * d_;
      const std::size_t k = s == 0 ? ch.linear0_in : channels_[s];
      const std::size_t ms = n * hs[s] * ws[s], cs = channels_[s];
      gemm_epilogue ep;
      ep.bias = linears_[s].bias();
      const std::string lin = profiling_active() ? "DecodeLinear" + std::to_string(s) : std::string();
      if (hs[s] == h0 && ws[s] == w0) {  // same size: interpolate is the identity, write in place
        profile_scope ps(lin.c_str());
        gemm(ms, kept, k, feats[s], cs, linears_[s].weights(), concat.data() + off, width, ep);
      } else {
        tmp.resize(ms * kept);
        {
          profile_scope ps(lin.c_str());
          gemm(ms, kept, k, feats[s], cs, linears_[s].weights(), tmp.data(), kept, ep);
        }
        const std::string up = profiling_active() ? "DecodeUpsample" + std::to_string(s) : std::string();
        profile_scope ps(up.c_str());
        resize_bilinear(tmp.data(), n, hs[s], ws[s], kept, kept, concat.data() + off, h0, w0, width);
      }
    }
    gemm_epilogue ep;
    ep.bias = fuse_bias_.data();
    ep.act = activation::relu;
    profile_scope ps("Conv2DFuse");
    gemm(m0, ch.pred_in, ch.fuse_in, concat.data(), width, fuse_, fused, ch.pred_in, ep);
  }

  std::size_t d_ = 0, classes_ = 0;
  std::vector<std::size_t> channels_;
  bool folded_ = true;
  linear cls_;
  // unfolded
  std::vector<linear> linears_;
  packed_matrix fuse_;
  std::vector<float> fuse_bias_;
  // folded
  std::vector<linear> folded_w_;  ///< M_s [D x C_s] per stage (no bias: c is added once, in stage 0's GEMM)
  std::vector<float> folded_bias_;       ///< c [D]
  std::shared_ptr<const sources> src_;
};

}  // namespace drt
