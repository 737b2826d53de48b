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
/// `conv_bn_relu` takes its input and output channel counts at run time: a k x k conv is k*k GEMMs,
/// one per kernel tap, each with its own [IC][OC] packed matrix, so any prefix of the input channels
/// (reduction) and of the output channels (panels) runs from the one packed copy of the weights.

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "activation.hpp"
#include "batch_norm.hpp"
#include "conv2d.hpp"
#include "gemm.hpp"
#include "pooling.hpp"
#include "resize.hpp"

namespace drt {

/// Weights of one UperNetConvModule (conv without bias, BatchNorm2d), PyTorch layouts.
struct conv_module_weights {
  const float* conv_w = nullptr;                                                        ///< [OC, IC, K, K]
  const float *bn_g = nullptr, *bn_b = nullptr, *bn_mean = nullptr, *bn_var = nullptr;  ///< [OC]
};

/// UperNetConvModule: K x K conv (stride 1, padding K/2, no bias) + BatchNorm (folded at load) + ReLU.
class conv_bn_relu {
public:
  conv_bn_relu() = default;
  conv_bn_relu(const conv_module_weights& w, std::size_t in_channels, std::size_t out_channels, std::size_t kernel,
               float bn_eps)
      : ic_(in_channels), oc_(out_channels), k_(kernel) {
    if (kernel % 2 == 0)
      throw invalid_input("conv_bn_relu: kernel " + std::to_string(kernel) + " must be odd (padding kernel / 2)");
    const std::size_t taps = kernel * kernel, per_out = in_channels * taps;
    std::vector<float> folded(w.conv_w, w.conv_w + out_channels * per_out);
    bias_ = fold_batch_norm(folded, per_out, {},
                            batch_norm_to_affine(w.bn_g, w.bn_b, w.bn_mean, w.bn_var, out_channels, bn_eps));
    if (winograd_conv3x3::chosen(kernel, 1, kernel / 2, 1, in_channels, out_channels)) {
      wino_ = winograd_conv3x3(folded.data(), out_channels, in_channels);  // the only form kept
      return;
    }
    // [OC][(ky, kx, ic)]: one packed matrix whose tap t is reduction rows [t*IC, (t+1)*IC).
    std::vector<float> reordered(out_channels * per_out);
    for (std::size_t o = 0; o < out_channels; ++o)
      for (std::size_t t = 0; t < taps; ++t)
        for (std::size_t i = 0; i < in_channels; ++i)
          reordered[(o * taps + t) * in_channels + i] = folded[(o * in_channels + i) * taps + t];
    w_ = packed_matrix::from_nk(reordered.data(), out_channels, per_out, per_out);
  }

  std::size_t in_channels() const noexcept { return ic_; }
  std::size_t out_channels() const noexcept { return oc_; }
  std::size_t kernel() const noexcept { return k_; }
  const float* bias() const noexcept { return bias_.data(); }  ///< folded BN shift [OC]
  /// MACs for an N x H x W input with the given channel counts.
  double macs(std::size_t n, std::size_t h, std::size_t w, std::size_t in_kept, std::size_t out_kept) const noexcept {
    return double(n) * h * w * in_kept * out_kept * k_ * k_;
  }

  /// x: [N, H, W, *] with pixel stride ldx, of which the first `in_kept` channels are read;
  /// y: [N, H, W, *] with pixel stride ldy, of which the first `out_kept` channels are written.
  /// in_kept / out_kept = 0 mean all channels.
  void run(const float* x, std::size_t ldx, std::size_t n, std::size_t h, std::size_t w, float* y, std::size_t ldy,
           std::size_t in_kept = 0, std::size_t out_kept = 0) const {
    if (in_kept == 0) in_kept = ic_;
    if (out_kept == 0) out_kept = oc_;
    if (in_kept > ic_ || out_kept > oc_ || in_kept > ldx || out_kept > ldy)
      throw shape_error("conv_bn_relu: channels in=" + std::to_string(in_kept) + " (stride " + std::to_string(ldx) +
                        "), out=" + std::to_string(out_kept) + " (stride " + std::to_string(ldy) +
                        ") exceed the conv [" + std::to_string(ic_) + " -> " + std::to_string(oc_) + "]");
    if (n == 0 || h == 0 || w == 0) return;
    gemm_epilogue ep;
    ep.bias = bias_.data();
    ep.act = activation::relu;
    if (k_ == 1) {
      gemm(n * h * w, out_kept, in_kept, x, ldx, w_, y, ldy, ep);
      return;
    }
    if (!wino_.empty()) {
      wino_.run(x, ldx, n, h, w, {gemm_segment{0, 0, in_kept}}, bias_.data(), y, ldy, out_kept, activation::relu);
      return;
    }
    // Implicit GEMM: tap t reads the first in_kept channels of the pixel under it (zero padding).
    conv2d_shape s;
    s.in_channels = ic_;
    s.out_channels = oc_;
    s.kernel_h = s.kernel_w = k_;
    s.pad_h = s.pad_w = k_ / 2;
    std::vector<conv_segment> segs(k_ * k_);
    for (std::size_t t = 0; t < segs.size(); ++t) segs[t] = {t, 0, t * ic_, in_kept};
    conv2d_gemm(x, ldx, n, h, w, s, segs, w_, bias_.data(), y, ldy, out_kept, activation::relu);
  }

private:
  std::size_t ic_ = 0, oc_ = 0, k_ = 1;
  packed_matrix w_;        // reduction (ky, kx, ic), K*K*IC rows; OC columns (empty in the Winograd form)
  winograd_conv3x3 wino_;  // the 3x3 form (fpn_convs, psp bottleneck) when built while winograd_enabled()
  std::vector<float> bias_;
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

class upernet_head {
public:
  upernet_head() = default;
  /// in_channels: channels of every feature level (finest first); pool_scales: PPM output sizes.
  upernet_head(const upernet_head_weights& w, const std::vector<std::size_t>& in_channels, std::size_t hidden,
               std::size_t classes, const std::vector<std::size_t>& pool_scales, float bn_eps)
      : in_(in_channels), scales_(pool_scales), d_(hidden), classes_(classes) {
    const std::size_t levels = in_channels.size(), c_last = in_channels.back();
    for (const auto& m : w.psp) psp_.emplace_back(m, c_last, hidden, 1, bn_eps);
    bottleneck_ = conv_bn_relu(w.bottleneck, c_last + pool_scales.size() * hidden, hidden, 3, bn_eps);
    for (std::size_t i = 0; i + 1 < levels; ++i) {
      lateral_.emplace_back(w.lateral[i], in_channels[i], hidden, 1, bn_eps);
      fpn_.emplace_back(w.fpn[i], hidden, hidden, 3, bn_eps);
    }
    fpn_bottleneck_ = conv_bn_relu(w.fpn_bottleneck, levels * hidden, hidden, 3, bn_eps);
    cls_ = packed_matrix::from_nk(w.cls_w, classes, hidden, hidden);
    cls_b_.assign(w.cls_b, w.cls_b + classes);
  }

  std::size_t levels() const noexcept { return in_.size(); }
  std::size_t hidden() const noexcept { return d_; }
  std::size_t classes() const noexcept { return classes_; }
  const std::vector<std::size_t>& pool_scales() const noexcept { return scales_; }
  const conv_bn_relu& bottleneck() const noexcept { return bottleneck_; }
  const conv_bn_relu& fpn_bottleneck() const noexcept { return fpn_bottleneck_; }

  /// MACs for feature maps of the given sizes (batch 1).
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

  /// feats[i]: NHWC [N, hs[i], ws[i], C_i]; logits: NHWC [N, hs[0], ws[0], classes] (not upsampled).
  void run(const std::vector<const float*>& feats, std::size_t n, const std::vector<std::size_t>& hs,
           const std::vector<std::size_t>& ws, float* logits) const {
    const std::size_t L = levels(), D = d_;
    if (feats.size() != L || hs.size() != L || ws.size() != L)
      throw invalid_input("upernet head: got " + std::to_string(feats.size()) + " feature maps, expected " +
                          std::to_string(L));
    std::vector<detail::aligned_vector<float>> lat(L);
    // Pyramid pooling on the last level: [x, ppm_0, ppm_1, ...] -> bottleneck (ref: psp_forward)
    {
      const std::size_t h = hs[L - 1], w = ws[L - 1], c = in_[L - 1], ctot = c + scales_.size() * D, m = n * h * w;
      detail::aligned_vector<float> cat(m * ctot), pooled, conv;
      const float* x = feats[L - 1];
      parallel_for(
          m, [&](std::size_t i) { std::memcpy(cat.data() + i * ctot, x + i * c, c * sizeof(float)); }, double(m) * c);
      for (std::size_t i = 0; i < scales_.size(); ++i) {
        const std::size_t s = scales_[i];
        pooled.resize(n * s * s * c);
        conv.resize(n * s * s * D);
        adaptive_avg_pool2d(x, n, h, w, c, pooled.data(), s, s);
        psp_[i].run(pooled.data(), c, n, s, s, conv.data(), D);
        resize_bilinear(conv.data(), n, s, s, D, D, cat.data() + c + i * D, h, w, ctot);
      }
      lat[L - 1].resize(m * D);
      bottleneck_.run(cat.data(), ctot, n, h, w, lat[L - 1].data(), D);
    }
    for (std::size_t i = 0; i + 1 < L; ++i) {
      lat[i].resize(n * hs[i] * ws[i] * D);
      lateral_[i].run(feats[i], in_[i], n, hs[i], ws[i], lat[i].data(), D);
    }
    // Top-down: lateral[i-1] += upsample(lateral[i]), from the top
    detail::aligned_vector<float> tmp;
    for (std::size_t i = L - 1; i > 0; --i) {
      const std::size_t m = n * hs[i - 1] * ws[i - 1] * D;
      const float* up = lat[i].data();
      if (hs[i] != hs[i - 1] || ws[i] != ws[i - 1]) {
        tmp.resize(m);
        resize_bilinear(lat[i].data(), n, hs[i], ws[i], D, D, tmp.data(), hs[i - 1], ws[i - 1], D);
        up = tmp.data();
      }
      float* dst = lat[i - 1].data();
      parallel_for((m + 4095) / 4096,
                   [&](std::size_t blk) {
                     const std::size_t e = std::min(m, (blk + 1) * 4096);
                     for (std::size_t j = blk * 4096; j < e; ++j) dst[j] += up[j];
                   },
                   double(m));
    }
    // fpn convs, every level brought to level 0's size, concatenated level 0 first
    const std::size_t h0 = hs[0], w0 = ws[0], m0 = n * h0 * w0, ctot = L * D;
    detail::aligned_vector<float> cat(m0 * ctot), level;
    for (std::size_t i = 0; i < L; ++i) {
      const bool same = hs[i] == h0 && ws[i] == w0;
      const float* src = lat[i].data();
      if (i + 1 < L) {
        if (same) {
          fpn_[i].run(lat[i].data(), D, n, hs[i], ws[i], cat.data() + i * D, ctot);
          continue;
        }
        level.resize(n * hs[i] * ws[i] * D);
        fpn_[i].run(lat[i].data(), D, n, hs[i], ws[i], level.data(), D);
        src = level.data();
      }
      resize_bilinear(src, n, hs[i], ws[i], D, D, cat.data() + i * D, h0, w0, ctot);  // identity taps when same
    }
    detail::aligned_vector<float> fused(m0 * D);
    fpn_bottleneck_.run(cat.data(), ctot, n, h0, w0, fused.data(), D);
    gemm_epilogue ec;
    ec.bias = cls_b_.data();
    gemm(m0, classes_, D, fused.data(), D, cls_, logits, classes_, ec);
  }

private:
  std::vector<std::size_t> in_, scales_;
  std::size_t d_ = 0, classes_ = 0;
  std::vector<conv_bn_relu> psp_, lateral_, fpn_;
  conv_bn_relu bottleneck_, fpn_bottleneck_;
  packed_matrix cls_;
  std::vector<float> cls_b_;
};

}  // namespace drt
