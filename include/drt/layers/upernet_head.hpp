#pragma once
/// @file upernet_head.hpp
/// UPerNet decode head (ref: transformers modeling_upernet.py, UperNetHead, UperNetConvModule,
/// UperNetPyramidPoolingModule): a pyramid pooling module on the last feature map (adaptive average
/// pooling to every pool scale, 1x1 conv + BN + ReLU, bilinear upsampling, concatenation after the
/// input, `bottleneck` 3x3 conv + BN + ReLU), lateral 1x1 convs on the other levels, a top-down path
/// (bilinear upsampling + addition), `fpn_convs` 3x3 on every level but the last, upsampling of every
/// level to level 0, concatenation (level 0 first), `fpn_bottleneck` 3x3 conv + BN + ReLU and a 1x1
/// classifier. Every resize is bilinear with align_corners=False. The auxiliary FCN head is training only.
///
/// One implementation, run by models/upernet_swin.hpp: every conv is a `conv2d` (layers/conv2d.hpp,
/// which chooses its 1x1 / Winograd / implicit-GEMM form when built from `conv2d_options`) run on
/// strided NHWC views with channel prefixes, so a dynamic path's kept channels
/// (`upernet_head_channels`) run from the one packed copy of the weights and every dropped channel
/// is never computed. The profile scopes are named as the checkpoint's modules (see
/// upernet_swin_model::layers).

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/profiler.hpp"
#include "activation.hpp"
#include "batch_norm.hpp"
#include "conv2d.hpp"
#include "gemm.hpp"
#include "linear.hpp"
#include "pooling.hpp"
#include "resize.hpp"

namespace drt {

/// Weights of one UperNetConvModule (conv without bias, BatchNorm2d), PyTorch layouts.
struct conv_module_weights {
  const float* conv_w = nullptr;                                                        ///< [OC, IC, K, K]
  const float *bn_g = nullptr, *bn_b = nullptr, *bn_mean = nullptr, *bn_var = nullptr;  ///< [OC]
};

/// UperNetConvModule: K x K conv (stride 1, padding K/2, no bias) + BatchNorm (folded at load) + ReLU:
/// a conv2d whose bias is the folded BatchNorm shift, run with a ReLU epilogue.
class conv_bn_relu {
public:
  conv_bn_relu() = default;
  conv_bn_relu(const conv_module_weights& w, std::size_t in_channels, std::size_t out_channels, std::size_t kernel,
               float bn_eps, const conv2d_options& options = {}) {
    if (kernel % 2 == 0)
      throw invalid_input("conv_bn_relu: kernel " + std::to_string(kernel) + " must be odd (padding kernel / 2)");
    const std::size_t per_out = in_channels * kernel * kernel;
    std::vector<float> folded(w.conv_w, w.conv_w + out_channels * per_out);
    const auto bias = fold_batch_norm(folded, per_out, {},
                                      batch_norm_to_affine(w.bn_g, w.bn_b, w.bn_mean, w.bn_var, out_channels, bn_eps));
    conv2d_shape s;
    s.in_channels = in_channels;
    s.out_channels = out_channels;
    s.kernel_h = s.kernel_w = kernel;
    s.pad_h = s.pad_w = kernel / 2;
    conv_ = conv2d(folded.data(), bias.data(), s, options);
  }

  std::size_t in_channels() const noexcept { return conv_.shape().in_channels; }
  std::size_t out_channels() const noexcept { return conv_.shape().out_channels; }
  std::size_t kernel() const noexcept { return conv_.shape().kernel_h; }
  const float* bias() const noexcept { return conv_.bias(); }  ///< folded BN shift [OC]
  const conv2d& conv() const noexcept { return conv_; }
  /// MACs for an N x H x W input with the given channel counts.
  double macs(std::size_t n, std::size_t h, std::size_t w, std::size_t in_kept, std::size_t out_kept) const noexcept {
    return double(n) * h * w * in_kept * out_kept * kernel() * kernel();
  }

  /// x: [N, H, W, *] with pixel stride ldx, of which the first `in_kept` channels are read;
  /// y: [N, H, W, *] with pixel stride ldy, of which the first `out_kept` channels are written.
  /// in_kept / out_kept = 0 mean all channels. (conv2d::forward_prefix with a ReLU.)
  void run(const float* x, std::size_t ldx, std::size_t n, std::size_t h, std::size_t w, float* y, std::size_t ldy,
           std::size_t in_kept = 0, std::size_t out_kept = 0) const {
    conv_.forward_prefix(x, ldx, n, h, w, in_kept ? in_kept : in_channels(), y, ldy,
                         out_kept ? out_kept : out_channels(), activation::relu);
  }
  /// The kept input channels as runs (conv2d::forward_runs with a ReLU).
  void run_runs(const float* x, std::size_t ldx, std::size_t n, std::size_t h, std::size_t w,
                const std::vector<gemm_segment>& runs, float* y, std::size_t ldy, std::size_t out_kept) const {
    conv_.forward_runs(x, ldx, n, h, w, runs, y, ldy, out_kept, activation::relu);
  }

private:
  conv2d conv_;
};

/// Weights of the whole head, PyTorch layouts. D = hidden size, L = levels, S = pool scales.
struct upernet_head_weights {
  std::vector<conv_module_weights> psp;            ///< per pool scale: conv [D, C_{L-1}, 1, 1]
  conv_module_weights bottleneck;                  ///< conv [D, C_{L-1} + S*D, 3, 3]
  std::vector<conv_module_weights> lateral;        ///< per level 0..L-2: conv [D, C_i, 1, 1]
  std::vector<conv_module_weights> fpn;            ///< per level 0..L-2: conv [D, D, 3, 3]
  conv_module_weights fpn_bottleneck;              ///< conv [D, L*D, 3, 3]
  const float *cls_w = nullptr, *cls_b = nullptr;  ///< classifier [K, D, 1, 1], [K]
};

/// Which channels of the head are computed (a dynamic path's, see dynamic/upernet_path.hpp and
/// upernet_execution); the defaults compute everything.
struct upernet_head_channels {
  /// Per feature level: fpn_bottleneck input channels kept of its slice (= fpn_convs.i outputs
  /// computed for i < L-1); 0 = the level is not used. Empty = all.
  std::vector<std::size_t> level_kept;
  /// Per feature level: lateral_convs.i outputs computed (the pyramid-pooling bottleneck's for the
  /// last level). Empty = all.
  std::vector<std::size_t> lateral_kept;
  std::size_t fpn_in = 0;   ///< fpn_convs input channels kept (0 = all)
  std::size_t pred_in = 0;  ///< fpn_bottleneck outputs computed = classifier inputs (0 = all)
  /// The path's classifier over its pred_in inputs, refit by least squares (dynamic/refit.hpp); null:
  /// the model's own, on the prefix.
  std::shared_ptr<const linear> classifier;
};

namespace detail {
/// dst[p, :c] += src[p, :c] for m pixels (pixel strides ldd, lds).
inline void add_rows(float* dst, std::size_t ldd, const float* src, std::size_t lds, std::size_t m, std::size_t c) {
  parallel_for(
      m,
      [&](std::size_t p) {
        float* d = dst + p * ldd;
        const float* s = src + p * lds;
        for (std::size_t j = 0; j < c; ++j) d[j] += s[j];
      },
      double(m) * c);
}
}  // namespace detail

class upernet_head {
public:
  upernet_head() = default;
  /// in_channels: channels of every feature level (finest first); pool_scales: PPM output sizes;
  /// options: the form of the 3x3 convs (psp bottleneck, fpn_convs, fpn_bottleneck).
  upernet_head(const upernet_head_weights& w, const std::vector<std::size_t>& in_channels, std::size_t hidden,
               std::size_t classes, const std::vector<std::size_t>& pool_scales, float bn_eps,
               const conv2d_options& options = {})
      : in_(in_channels), scales_(pool_scales), d_(hidden), classes_(classes) {
    const std::size_t levels = in_channels.size(), c_last = in_channels.back();
    if (w.psp.size() != pool_scales.size() || w.lateral.size() + 1 != levels || w.fpn.size() + 1 != levels)
      throw invalid_input("upernet head: weights for " + std::to_string(w.psp.size()) + " pool scales, " +
                          std::to_string(w.lateral.size()) + " lateral and " + std::to_string(w.fpn.size()) +
                          " fpn convs; expected " + std::to_string(pool_scales.size()) + ", " +
                          std::to_string(levels - 1) + " and " + std::to_string(levels - 1));
    for (const auto& m : w.psp) psp_.emplace_back(m, c_last, hidden, 1, bn_eps, options);
    bottleneck_ = conv_bn_relu(w.bottleneck, c_last + pool_scales.size() * hidden, hidden, 3, bn_eps, options);
    for (std::size_t i = 0; i + 1 < levels; ++i) {
      lateral_.emplace_back(w.lateral[i], in_channels[i], hidden, 1, bn_eps, options);
      fpn_.emplace_back(w.fpn[i], hidden, hidden, 3, bn_eps, options);
    }
    fpn_bottleneck_ = conv_bn_relu(w.fpn_bottleneck, levels * hidden, hidden, 3, bn_eps, options);
    cls_ = linear(w.cls_w, w.cls_b, classes, hidden);
  }

  std::size_t levels() const noexcept { return in_.size(); }
  std::size_t hidden() const noexcept { return d_; }
  std::size_t classes() const noexcept { return classes_; }
  const std::vector<std::size_t>& in_channels() const noexcept { return in_; }
  const std::vector<std::size_t>& pool_scales() const noexcept { return scales_; }
  const conv_bn_relu& bottleneck() const noexcept { return bottleneck_; }
  const conv_bn_relu& fpn_bottleneck() const noexcept { return fpn_bottleneck_; }
  /// The classifier [K, D, 1, 1] as a linear over pixels.
  const linear& classifier() const noexcept { return cls_; }

  /// fpn_bottleneck input channels of level i's slice that `ch` keeps (0: the level is unused).
  std::size_t level_kept(const upernet_head_channels& ch, std::size_t i) const noexcept {
    return i < ch.level_kept.size() ? ch.level_kept[i] : d_;
  }
  /// Outputs of lateral_convs.i (the pyramid-pooling bottleneck for i = L-1) that `ch` computes.
  std::size_t lateral_kept(const upernet_head_channels& ch, std::size_t i) const noexcept {
    return i < ch.lateral_kept.size() ? ch.lateral_kept[i] : d_;
  }
  std::size_t fpn_in_kept(const upernet_head_channels& ch) const noexcept { return ch.fpn_in ? ch.fpn_in : d_; }
  std::size_t pred_in_kept(const upernet_head_channels& ch) const noexcept { return ch.pred_in ? ch.pred_in : d_; }

  /// MACs for feature maps of the given sizes (batch 1, every channel).
  double macs(const std::vector<std::size_t>& hs, const std::vector<std::size_t>& ws) const {
    const std::size_t L = levels(), hl = hs[L - 1], wl = ws[L - 1];
    double m = 0;
    for (std::size_t i = 0; i < scales_.size(); ++i) m += psp_[i].macs(1, scales_[i], scales_[i], in_[L - 1], d_);
    m += bottleneck_.macs(1, hl, wl, bottleneck_.in_channels(), d_);
    for (std::size_t i = 0; i + 1 < L; ++i)
      m += lateral_[i].macs(1, hs[i], ws[i], in_[i], d_) + fpn_[i].macs(1, hs[i], ws[i], d_, d_);
    m += fpn_bottleneck_.macs(1, hs[0], ws[0], L * d_, d_) + double(hs[0]) * ws[0] * d_ * classes_;
    return m;
  }

  /// feats[i]: NHWC [N, hs[i], ws[i], C_i]; logits: NHWC [N, hs[0], ws[0], classes] (not upsampled),
  /// computed from the channels `ch` keeps (every dropped channel is never computed).
  void run(const std::vector<const float*>& feats, std::size_t n, const std::vector<std::size_t>& hs,
           const std::vector<std::size_t>& ws, float* logits, const upernet_head_channels& ch = {}) const {
    const std::size_t L = levels(), D = d_;
    if (feats.size() != L || hs.size() != L || ws.size() != L)
      throw invalid_input("upernet head: got " + std::to_string(feats.size()) + " feature maps, expected " +
                          std::to_string(L));
    const bool prof = profiling_active();
    auto name = [&](const std::string& base, std::size_t i) { return prof ? base + std::to_string(i) : std::string(); };
    const std::size_t fin = fpn_in_kept(ch), pred = pred_in_kept(ch);
    std::vector<detail::aligned_vector<float>> lat(L);
    // Pyramid pooling on the last level: [x, ppm_0, ppm_1, ...] -> bottleneck (ref: psp_forward)
    {
      const std::size_t h = hs[L - 1], w = ws[L - 1], c = in_[L - 1], ctot = c + scales_.size() * D;
      const std::size_t m = n * h * w, lk = lateral_kept(ch, L - 1);
      detail::aligned_vector<float> cat(m * ctot), pooled, conv;
      const float* x = feats[L - 1];
      for (std::size_t i = 0; i < scales_.size(); ++i) {
        const std::size_t s = scales_[i];
        pooled.resize(n * s * s * c);
        conv.resize(n * s * s * D);
        const std::string pm = name("psp_modules.", i);
        {
          const std::string pn = prof ? pm + ".pool" : std::string();
          profile_scope ps(pn.c_str());
          adaptive_avg_pool2d(x, n, h, w, c, pooled.data(), s, s);
        }
        {
          profile_scope ps(pm.c_str());
          psp_[i].run(pooled.data(), c, n, s, s, conv.data(), D);
        }
        const std::string up = prof ? pm + ".upsample" : std::string();
        profile_scope ps(up.c_str());
        resize_bilinear(conv.data(), n, s, s, D, D, cat.data() + c + i * D, h, w, ctot);
      }
      lat[L - 1].resize(m * lk);
      profile_scope ps("bottleneck");
      parallel_for(
          m, [&](std::size_t i) { std::memcpy(cat.data() + i * ctot, x + i * c, c * sizeof(float)); }, double(m) * c);
      bottleneck_.run(cat.data(), ctot, n, h, w, lat[L - 1].data(), lk, 0, lk);
    }
    for (std::size_t i = 0; i + 1 < L; ++i) {
      const std::size_t lk = lateral_kept(ch, i);
      lat[i].resize(n * hs[i] * ws[i] * lk);
      const std::string ln = name("lateral_convs.", i);
      profile_scope ps(ln.c_str());
      lateral_[i].run(feats[i], in_[i], n, hs[i], ws[i], lat[i].data(), lk, 0, lk);
    }
    // Top-down: lateral[i-1] += upsample(lateral[i]) from the top, on the fpn_in channels the fpn convs read
    detail::aligned_vector<float> tmp;
    for (std::size_t i = L - 1; i > 0; --i) {
      const std::size_t m = n * hs[i - 1] * ws[i - 1], ldd = lateral_kept(ch, i - 1);
      const std::string tn = name("top_down.", i);
      profile_scope ps(tn.c_str());
      const float* up = lat[i].data();
      std::size_t lds = lateral_kept(ch, i);
      if (hs[i] != hs[i - 1] || ws[i] != ws[i - 1]) {
        tmp.resize(m * fin);
        resize_bilinear(lat[i].data(), n, hs[i], ws[i], fin, lds, tmp.data(), hs[i - 1], ws[i - 1], fin);
        up = tmp.data();
        lds = fin;
      }
      detail::add_rows(lat[i - 1].data(), ldd, up, lds, m, fin);
    }
    // fpn convs, every kept level brought to level 0's size, concatenated level 0 first: the dense
    // kept input of the fpn_bottleneck.
    const std::size_t h0 = hs[0], w0 = ws[0], m0 = n * h0 * w0;
    std::vector<std::size_t> kept(L), off(L);
    std::size_t K = 0;
    for (std::size_t i = 0; i < L; ++i) {
      kept[i] = level_kept(ch, i);
      off[i] = K;
      K += kept[i];
    }
    detail::aligned_vector<float> cat(m0 * K), level;
    for (std::size_t i = 0; i < L; ++i) {
      if (kept[i] == 0) continue;  // every channel of this level is dropped: its fpn conv does not run
      const bool same = hs[i] == h0 && ws[i] == w0;
      const float* src = lat[i].data();
      std::size_t lds = lateral_kept(ch, i);
      if (i + 1 < L) {
        const std::string fn = name("fpn_convs.", i);
        profile_scope ps(fn.c_str());
        if (same) {
          fpn_[i].run(lat[i].data(), lds, n, hs[i], ws[i], cat.data() + off[i], K, fin, kept[i]);
          continue;
        }
        level.resize(n * hs[i] * ws[i] * kept[i]);
        fpn_[i].run(lat[i].data(), lds, n, hs[i], ws[i], level.data(), kept[i], fin, kept[i]);
        src = level.data();
        lds = kept[i];
      }
      const std::string un = name("fpn_upsample.", i);
      profile_scope ps(un.c_str());
      resize_bilinear(src, n, hs[i], ws[i], kept[i], lds, cat.data() + off[i], h0, w0, K);  // a copy when same
    }
    detail::aligned_vector<float> fused(m0 * pred);
    {
      // One run of the conv's input channels per kept level: a prefix of the level's slice.
      profile_scope ps("fpn_bottleneck");
      std::vector<gemm_segment> runs;
      for (std::size_t i = 0; i < L; ++i)
        if (kept[i] > 0) runs.push_back({off[i], i * D, kept[i]});
      fpn_bottleneck_.run_runs(cat.data(), K, n, h0, w0, runs, fused.data(), pred, pred);
    }
    profile_scope ps("classifier");
    (ch.classifier ? *ch.classifier : cls_).run_prefix(m0, classes_, pred, fused.data(), pred, logits, classes_);
  }

private:
  std::vector<std::size_t> in_, scales_;
  std::size_t d_ = 0, classes_ = 0;
  std::vector<conv_bn_relu> psp_, lateral_, fpn_;
  conv_bn_relu bottleneck_, fpn_bottleneck_;
  linear cls_;  ///< classifier [K, D, 1, 1] as a linear over pixels
};

}  // namespace drt
