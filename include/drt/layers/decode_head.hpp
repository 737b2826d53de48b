#pragma once
/// @file decode_head.hpp
/// SegFormer All-MLP decode head (ref: transformers modeling_segformer.py, SegformerDecodeHead):
/// per-stage linear C_s -> D, bilinear upsampling to the stage-0 size, concatenation in reverse
/// stage order (stage 3 first), 1x1 fuse conv 4D -> D + BatchNorm (folded at load) + ReLU,
/// 1x1 classifier D -> classes.
///
/// Channel prefixes are run-time arguments so one copy of the weights serves every dynamic path:
/// `fuse_in` keeps the first fuse_in concatenated channels (a stage whose slice is dropped entirely
/// is not projected at all; a partly dropped slice computes only the prefix of its linear's outputs),
/// `pred_in` computes only the first pred_in fuse outputs and the classifier reads only those, and
/// `linear0_in` shortens stage 0's linear reduction.

#include <algorithm>
#include <cstddef>
#include <vector>

#include "../core/error.hpp"
#include "../core/profiler.hpp"
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

/// How much of the head runs (defaults: everything).
struct decode_head_channels {
  std::size_t fuse_in = 0;     ///< Conv2DFuse input channels kept (0 = all)
  std::size_t pred_in = 0;     ///< Conv2DPred input channels kept = fuse outputs computed (0 = all)
  std::size_t linear0_in = 0;  ///< DecodeLinear0 input channels kept (0 = all)
  /// true: a dropped Conv2DFuse input is never produced by its decoder linear (backward propagation);
  /// false: the linears run in full and Conv2DFuse only shortens its reduction (the paper's Table III count).
  bool propagate = true;
};

class mlp_decode_head {
public:
  mlp_decode_head() = default;
  mlp_decode_head(const decode_head_weights& w, const std::vector<std::size_t>& stage_channels, std::size_t hidden,
                  std::size_t classes, float bn_eps)
      : d_(hidden), classes_(classes) {
    const std::size_t s = stage_channels.size();
    for (std::size_t i = 0; i < s; ++i) linears_.emplace_back(w.linear_w[i], w.linear_b[i], hidden, stage_channels[i]);
    std::vector<float> fuse(w.fuse_w, w.fuse_w + hidden * s * hidden);
    const auto bn = batch_norm_to_affine(w.bn_g, w.bn_b, w.bn_mean, w.bn_var, hidden, bn_eps);
    fuse_bias_ = fold_batch_norm(fuse, s * hidden, {}, bn);
    fuse_ = packed_matrix::from_nk(fuse.data(), hidden, s * hidden, s * hidden);
    cls_ = linear(w.cls_w, w.cls_b, classes, hidden);
  }

  std::size_t hidden() const noexcept { return d_; }
  std::size_t classes() const noexcept { return classes_; }
  std::size_t stages() const noexcept { return linears_.size(); }
  const linear& stage_linear(std::size_t s) const noexcept { return linears_[s]; }

  /// Channels of stage s that survive `fuse_in` (its slice of the concat is [(S-1-s)D, (S-s)D)).
  std::size_t stage_outputs_kept(std::size_t s, std::size_t fuse_in) const noexcept {
    const std::size_t off = (stages() - 1 - s) * d_;
    return fuse_in <= off ? 0 : std::min(d_, fuse_in - off);
  }

  decode_head_channels resolve(decode_head_channels ch) const {
    const std::size_t full = stages() * d_;
    if (ch.fuse_in == 0) ch.fuse_in = full;
    if (ch.pred_in == 0) ch.pred_in = d_;
    if (ch.linear0_in == 0) ch.linear0_in = linears_[0].in_features();
    if (ch.fuse_in > full || ch.pred_in > d_ || ch.linear0_in > linears_[0].in_features())
      throw invalid_input("decode head: channels fuse_in=" + std::to_string(ch.fuse_in) + " (max " +
                          std::to_string(full) + "), pred_in=" + std::to_string(ch.pred_in) + " (max " +
                          std::to_string(d_) + "), linear0_in=" + std::to_string(ch.linear0_in) + " (max " +
                          std::to_string(linears_[0].in_features()) + ") exceed the model");
    return ch;
  }

  /// stages[s]: NHWC [N, H_s, W_s, C_s]; heights/widths per stage. logits: NHWC [N, H_0, W_0, classes].
  void run(const std::vector<const float*>& feats, std::size_t n, const std::vector<std::size_t>& hs,
           const std::vector<std::size_t>& ws, float* logits, decode_head_channels ch = {}) const {
    ch = resolve(ch);
    const std::size_t h0 = hs[0], w0 = ws[0], m0 = n * h0 * w0;
    // Without propagation the concat holds every channel; the fuse GEMM reads a prefix of each row.
    const std::size_t width = ch.propagate ? ch.fuse_in : stages() * d_;
    detail::aligned_vector<float> concat(m0 * width), tmp;
    for (std::size_t s = 0; s < stages(); ++s) {
      const std::size_t kept = ch.propagate ? stage_outputs_kept(s, ch.fuse_in) : d_;
      if (kept == 0) continue;  // every output of this linear is dropped: do not run it
      const std::size_t off = (stages() - 1 - s) * d_;
      const std::size_t k = s == 0 ? ch.linear0_in : linears_[s].in_features();
      const std::size_t ms = n * hs[s] * ws[s], cs = linears_[s].in_features();
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
    detail::aligned_vector<float> fused(m0 * ch.pred_in);
    gemm_epilogue ep;
    ep.bias = fuse_bias_.data();
    ep.act = activation::relu;
    {
    profile_scope ps("Conv2DFuse");
    gemm(m0, ch.pred_in, ch.fuse_in, concat.data(), width, fuse_, fused.data(), ch.pred_in, ep);
    }
    gemm_epilogue ec;
    ec.bias = cls_.bias();
    profile_scope ps("Conv2DPred");
    gemm(m0, classes_, ch.pred_in, fused.data(), ch.pred_in, cls_.weights(), logits, classes_, ec);
  }

private:
  std::size_t d_ = 0, classes_ = 0;
  std::vector<linear> linears_;
  packed_matrix fuse_;
  std::vector<float> fuse_bias_;
  linear cls_;
};

}  // namespace drt
