#pragma once
/// @file conv2d.hpp
/// 2-D convolutions on NHWC activations with PyTorch [OC, IC/groups, KH, KW] weights.
/// - `conv2d`: dense or grouped, any kernel/stride/padding (read from configs at run time); a 1x1
///   stride-1 conv is a GEMM on the pixels; a 3x3 stride-1 conv is Winograd F(m x m, 3x3) when its
///   `conv2d_options` say so (the default); others are an implicit GEMM (`conv2d_gemm`: the GEMM
///   kernel reads each tap's input pixels in place, no im2col copy); over a few input channels (an
///   RGB stem) one segment per kernel row of a zero-padded copy; grouped convs over a few channels
///   per group go through a blocked im2col. `forward_prefix` / `forward_runs` run the same layer on
///   strided NHWC views with channel prefixes or runs (dynamic paths): the one place where the form
///   of a convolution over kept channels is chosen.
/// - `conv2d_gemm`: the implicit GEMM itself, over any channel runs of the input (dynamic paths).
/// - `conv2d_dw<K>`: depthwise KxK, stride 1, padding K/2, kernel size fixed at compile time.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "../core/simd.hpp"

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "activation.hpp"
#include "gemm.hpp"
#include "packed_weights.hpp"
#include "winograd.hpp"

namespace drt {

/// Geometry of a convolution.
struct conv2d_shape {
  std::size_t in_channels = 0, out_channels = 0;
  std::size_t kernel_h = 1, kernel_w = 1;
  std::size_t stride_h = 1, stride_w = 1;
  std::size_t pad_h = 0, pad_w = 0;
  std::size_t groups = 1;

  std::size_t out_h(std::size_t h) const noexcept {
    return h + 2 * pad_h < kernel_h ? 0 : (h + 2 * pad_h - kernel_h) / stride_h + 1;
  }
  std::size_t out_w(std::size_t w) const noexcept {
    return w + 2 * pad_w < kernel_w ? 0 : (w + 2 * pad_w - kernel_w) / stride_w + 1;
  }
  bool is_pointwise() const noexcept {
    return kernel_h == 1 && kernel_w == 1 && stride_h == 1 && stride_w == 1 && pad_h == 0 && pad_w == 0 && groups == 1;
  }
  /// MACs for an N x H x W input.
  double macs(std::size_t n, std::size_t h, std::size_t w) const noexcept {
    return static_cast<double>(n) * out_h(h) * out_w(w) * out_channels * (in_channels / groups) * kernel_h * kernel_w;
  }
};

/// One run of an implicit-GEMM convolution's reduction: kernel tap `tap` (= ky * KW + kx), input
/// channels [channel, channel + k) of each pixel, against reduction rows [b_row, b_row + k) of the
/// packed weights.
struct conv_segment {
  std::size_t tap = 0, channel = 0, b_row = 0, k = 0;
};

namespace detail {
/// Row source of `gemm_run` for a convolution: row i is output pixel i (NHWC order), and its floats
/// for a segment are the input pixel under the segment's tap, read in place; taps that fall on the
/// padding read `zero_row`.
struct conv_rows {
  const float* x;
  std::size_t ldx, h, w, oh, ow;
  const conv2d_shape* s;
  const conv_segment* segs;
  std::size_t nseg;

  struct block_rows {
    // Per row of the block: its image and the input position of tap (0, 0), computed once per block.
    const float* img[gemm_mc];
    long iy0[gemm_mc], ix0[gemm_mc];
    std::size_t rows, ldx, kw;
    long h, w;
    const conv_segment* segs;
    void rows_at(std::size_t sg, std::size_t k0, const float** out) const noexcept {
      const conv_segment& seg = segs[sg];
      const long ky = static_cast<long>(seg.tap / kw), kx = static_cast<long>(seg.tap % kw);
      const std::size_t ch = seg.channel + k0;
      for (std::size_t r = 0; r < rows; ++r) {
        const long iy = iy0[r] + ky, ix = ix0[r] + kx;
        out[r] = iy >= 0 && ix >= 0 && iy < h && ix < w ? img[r] + static_cast<std::size_t>(iy * w + ix) * ldx + ch
                                                        : zero_row;
      }
    }
  };
  std::size_t segments() const noexcept { return nseg; }
  gemm_segment segment(std::size_t sg) const noexcept { return {segs[sg].channel, segs[sg].b_row, segs[sg].k}; }
  block_rows block(std::size_t i0, std::size_t rows) const noexcept {
    block_rows b;
    b.rows = rows;
    b.ldx = ldx;
    b.kw = s->kernel_w;
    b.h = static_cast<long>(h);
    b.w = static_cast<long>(w);
    b.segs = segs;
    for (std::size_t r = 0; r < rows; ++r) {
      const std::size_t p = i0 + r, img = p / (oh * ow), oy = (p / ow) % oh, ox = p % ow;
      b.img[r] = x + img * h * w * ldx;
      b.iy0[r] = static_cast<long>(oy * s->stride_h) - static_cast<long>(s->pad_h);
      b.ix0[r] = static_cast<long>(ox * s->stride_w) - static_cast<long>(s->pad_w);
    }
    return b;
  }
};
}  // namespace detail

/// y[:, :n_out] (pixel stride ldy) = act(bias + sum over segments of conv taps), as one GEMM whose
/// rows are the output pixels and whose reduction runs over `segs` (see conv_segment): the kernel
/// reads the input pixels in place (no im2col), keeps the accumulators of a block of pixels in L2
/// across all taps, and writes each output once. x: [N, H, W, *] with pixel stride ldx. Only the
/// geometry of `s` is used (kernel, stride, padding); `b` holds the weights with reduction rows as
/// the segments name them. The segment lengths may be anything; their sum is the reduction.
inline void conv2d_gemm(const float* x, std::size_t ldx, std::size_t n, std::size_t h, std::size_t w,
                        const conv2d_shape& s, const std::vector<conv_segment>& segs, const packed_matrix& b,
                        const float* bias, float* y, std::size_t ldy, std::size_t n_out, activation act,
                        bool allow_parallel = true) {
  const std::size_t oh = s.out_h(h), ow = s.out_w(w);
  if (oh == 0 || ow == 0)
    throw shape_error("conv2d: input " + std::to_string(h) + "x" + std::to_string(w) + " is smaller than the " +
                      std::to_string(s.kernel_h) + "x" + std::to_string(s.kernel_w) + " kernel");
  for (const auto& sg : segs) {
    // A run may continue past its pixel into the next ones of the same image row (the taps of one
    // kernel row over a few channels) when no output pixel's run crosses the row's end or padding.
    const std::size_t spanned = (sg.channel + sg.k + ldx - 1) / ldx, kx = sg.tap % s.kernel_w;
    const bool in_row = spanned <= 1 || (s.pad_w == 0 && (ow - 1) * s.stride_w + kx + spanned <= w);
    if (sg.b_row + sg.k > b.k() || !in_row || sg.tap >= s.kernel_h * s.kernel_w)
      throw shape_error("conv2d_gemm: segment (tap " + std::to_string(sg.tap) + ", channels [" +
                        std::to_string(sg.channel) + ", " + std::to_string(sg.channel + sg.k) + "), weight rows [" +
                        std::to_string(sg.b_row) + ", " + std::to_string(sg.b_row + sg.k) +
                        ")) leaves the input (pixel stride " + std::to_string(ldx) +
                        "), the kernel or the weights (k=" + std::to_string(b.k()) + ")");
  }
  if (n_out > b.n() || n_out > ldy)
    throw shape_error("conv2d_gemm: " + std::to_string(n_out) + " outputs exceed the weights (n=" +
                      std::to_string(b.n()) + ") or the output pixel stride " + std::to_string(ldy));
  if (n == 0 || n_out == 0) return;
  gemm_epilogue ep;
  ep.bias = bias;
  ep.act = act;
  detail::gemm_dispatch(n * oh * ow, n_out, detail::conv_rows{x, ldx, h, w, oh, ow, &s, segs.data(), segs.size()}, b, y,
                        ldy, ep, allow_parallel);
}

/// How a conv2d is built: the form of its 3x3 stride-1 convolutions (>= winograd_conv3x3::min_channels
/// in and out, one group), chosen once when the layer is built and kept (only that form's weights
/// are packed). Models take one in their build options and give it to every conv they build.
/// Defaults: default_conv3x3_form() (Winograd F(4x4, 3x3) unless DRT_CONV3X3 says otherwise).
struct conv2d_options {
  bool winograd = default_conv3x3_form().winograd;          ///< false: implicit GEMM
  std::size_t winograd_tile = default_conv3x3_form().tile;  ///< m of F(m x m, 3x3): 2 or 4

  /// The implicit-GEMM form for every conv (tests and benchmarks comparing the two forms).
  static conv2d_options implicit_gemm() {
    conv2d_options o;
    o.winograd = false;
    return o;
  }
  /// Winograd F(tile x tile, 3x3) where it applies.
  static conv2d_options winograd_form(std::size_t tile = 4) {
    conv2d_options o;
    o.winograd = true;
    o.winograd_tile = tile;
    return o;
  }
};

class conv2d {
public:
  /// Input channels per group from which a conv runs as an implicit GEMM with one segment per tap
  /// (fewer: one segment per kernel row on a padded copy, or im2col when grouped; a run of a few
  /// floats per tap would reload the micro-tile's accumulators every few FMAs).
  static constexpr std::size_t implicit_min_channels = 16;

  conv2d() = default;
  /// weight: [OC, IC/groups, KH, KW]; bias: [OC] or null; options: the form (see conv2d_options).
  conv2d(const float* weight, const float* bias, const conv2d_shape& s, const conv2d_options& options = {}) : s_(s) {
    if (s.groups == 0 || s.in_channels % s.groups || s.out_channels % s.groups)
      throw invalid_input("conv2d: channels " + std::to_string(s.in_channels) + " -> " +
                          std::to_string(s.out_channels) +
                          " are not divisible by groups = " + std::to_string(s.groups));
    if (bias) bias_.assign(bias, bias + s.out_channels);
    if (options.winograd &&
        winograd_conv3x3::applies(s.kernel_h == s.kernel_w ? s.kernel_h : 0, s.stride_h == s.stride_w ? s.stride_h : 0,
                                  s.pad_h == s.pad_w ? s.pad_h : 0, s.groups, s.in_channels, s.out_channels)) {
      wino_ = winograd_conv3x3(weight, s.out_channels, s.in_channels, options.winograd_tile);  // the only form kept
      return;
    }
    const std::size_t icg = s.in_channels / s.groups, ocg = s.out_channels / s.groups;
    const std::size_t kk = s.kernel_h * s.kernel_w * icg;
    // Reorder each output channel's weights to (ky, kx, ic): the order of an NHWC im2col row.
    std::vector<float> reordered(ocg * kk);
    for (std::size_t g = 0; g < s.groups; ++g) {
      for (std::size_t o = 0; o < ocg; ++o)
        for (std::size_t ky = 0; ky < s.kernel_h; ++ky)
          for (std::size_t kx = 0; kx < s.kernel_w; ++kx)
            for (std::size_t i = 0; i < icg; ++i)
              reordered[o * kk + (ky * s.kernel_w + kx) * icg + i] =
                  weight[(((g * ocg + o) * icg + i) * s.kernel_h + ky) * s.kernel_w + kx];
      w_.emplace_back(reordered.data(), ocg, kk, kk);
    }
  }

  const conv2d_shape& shape() const noexcept { return s_; }
  const float* bias() const noexcept { return bias_.empty() ? nullptr : bias_.data(); }
  /// The packed (ky, kx, ic) x OC weights of one group; a conv built in the Winograd form has none.
  const packed_matrix& weights(std::size_t group = 0) const {
    if (group >= w_.size())
      throw invalid_input("conv2d: no packed weights for group " + std::to_string(group) + " of " +
                          std::to_string(w_.size()) +
                          (uses_winograd() ? " (this conv was built in the Winograd form; build it with "
                                             "conv2d_options::implicit_gemm() for the implicit-GEMM form)"
                                           : ""));
    return w_[group].fp32();
  }
  /// The Winograd form of a 3x3 stride-1 conv built with conv2d_options::winograd (else empty);
  /// when present it is the conv's only form and run() / forward_prefix() use it.
  const winograd_conv3x3& winograd() const noexcept { return wino_; }
  bool uses_winograd() const noexcept { return !wino_.empty(); }

  /// Packs the weights for `p` once, ahead of the first frame that runs in it (run() packs them on
  /// first use otherwise); nothing for fp32 or a conv that cannot run in `p`.
  void prepare(precision p) const {
    if (!uses_winograd() && s_.groups == 1)
      for (const auto& w : w_) w.prepare(p);
  }

  /// x: [N, H, W, IC]; y: [N, OH, OW, OC] (row stride ldy >= OC, default OC). `p`: the arithmetic;
  /// bf16 and int8 run a one-group conv in the pointwise or implicit-GEMM form on blocks of gathered
  /// taps (int8: the input quantized with its own [min, max], one range for the whole input).
  void run(const float* x, std::size_t n, std::size_t h, std::size_t w, float* y, activation act = activation::none,
           std::size_t ldy = 0, precision p = precision::fp32) const {
    const auto& s = s_;
    if (ldy == 0) ldy = s.out_channels;
    const std::size_t oh = s.out_h(h), ow = s.out_w(w);
    if (oh == 0 || ow == 0)
      throw shape_error("conv2d: input " + std::to_string(h) + "x" + std::to_string(w) + " is smaller than the " +
                        std::to_string(s.kernel_h) + "x" + std::to_string(s.kernel_w) + " kernel");
    const std::size_t icg = s.in_channels / s.groups, ocg = s.out_channels / s.groups;
    gemm_epilogue ep;
    ep.act = act;
    if (p != precision::fp32) {
      run_lowp(x, n, h, w, y, act, ldy, p);
      return;
    }
    if (s.is_pointwise()) {
      ep.bias = bias();
      gemm(n * h * w, s.out_channels, s.in_channels, x, s.in_channels, w_[0].fp32(), y, ldy, ep);
      return;
    }
    if (uses_winograd()) {
      wino_.run(x, s.in_channels, n, h, w, {gemm_segment{0, 0, s.in_channels}}, bias(), y, ldy, s.out_channels, act);
      return;
    }
    if (icg >= implicit_min_channels) {
      // One implicit GEMM per group: tap t reads channels [g*icg, (g+1)*icg) of the pixel under it.
      std::vector<conv_segment> segs(s.kernel_h * s.kernel_w);
      for (std::size_t g = 0; g < s.groups; ++g) {
        for (std::size_t t = 0; t < segs.size(); ++t) segs[t] = {t, g * icg, t * icg, icg};
        conv2d_gemm(x, s.in_channels, n, h, w, s, segs, w_[g].fp32(), bias() ? bias() + g * ocg : nullptr, y + g * ocg,
                    ldy, ocg, act);
      }
      return;
    }
    if (s.groups == 1 && s.kernel_w * icg >= implicit_min_channels) {
      // Few input channels (an RGB stem): on a zero-padded copy of the input the taps of one kernel
      // row are kw * C consecutive floats, so the implicit GEMM runs one segment per kernel row.
      const std::size_t hp = h + 2 * s.pad_h, wp = w + 2 * s.pad_w;
      detail::aligned_vector<float> padded(n * hp * wp * icg);
      parallel_for(
          n * hp,
          [&](std::size_t r) {
            const std::size_t b = r / hp, yy = r % hp;
            float* dst = padded.data() + r * wp * icg;
            if (yy < s.pad_h || yy >= s.pad_h + h) {
              std::fill(dst, dst + wp * icg, 0.f);
              return;
            }
            std::fill(dst, dst + s.pad_w * icg, 0.f);
            std::copy_n(x + (b * h + yy - s.pad_h) * w * icg, w * icg, dst + s.pad_w * icg);
            std::fill(dst + (s.pad_w + w) * icg, dst + wp * icg, 0.f);
          },
          double(n) * hp * wp * icg);
      conv2d_shape unpadded = s;
      unpadded.pad_h = unpadded.pad_w = 0;
      std::vector<conv_segment> segs(s.kernel_h);
      for (std::size_t ky = 0; ky < s.kernel_h; ++ky)
        segs[ky] = {ky * s.kernel_w, 0, ky * s.kernel_w * icg, s.kernel_w * icg};
      conv2d_gemm(padded.data(), icg, n, hp, wp, unpadded, segs, w_[0].fp32(), bias(), y, ldy, s.out_channels, act);
      return;
    }
    run_im2col(x, n, h, w, y, act, ldy, precision::fp32, nullptr);
  }

  /// y[:, :out_kept] = act(conv(x[:, :in_kept])) on strided NHWC views: a channel prefix of the
  /// conv's input and output computed from its one packed copy of the weights. x: [N, H, W, *] with
  /// pixel (channel) stride ldx >= in_kept; y: [N, OH, OW, *] with pixel stride ldy >= out_kept, whose
  /// other channels are left untouched. Dropped input channels shorten the reduction, dropped
  /// outputs are never computed. With every channel kept on a dense input this is run() itself (any
  /// groups); a prefix needs one group.
  void forward_prefix(const float* x, std::size_t ldx, std::size_t n, std::size_t h, std::size_t w, std::size_t in_kept,
                      float* y, std::size_t ldy, std::size_t out_kept, activation act = activation::none) const {
    const conv2d_shape& s = s_;
    if (in_kept == s.in_channels && out_kept == s.out_channels && ldx == s.in_channels && ldy >= out_kept) {
      if (n == 0 || h == 0 || w == 0) return;
      return run(x, n, h, w, y, act, ldy);
    }
    if (s.groups != 1 || in_kept == 0 || in_kept > s.in_channels || ldx < in_kept)
      throw shape_error("conv2d: channels in=" + std::to_string(in_kept) + " (stride " + std::to_string(ldx) +
                        "), out=" + std::to_string(out_kept) + " (stride " + std::to_string(ldy) +
                        ") do not fit the conv [" + std::to_string(s.in_channels) + " -> " +
                        std::to_string(s.out_channels) + "], groups " + std::to_string(s.groups));
    forward_runs(x, ldx, n, h, w, {gemm_segment{0, 0, in_kept}}, y, ldy, out_kept, act);
  }

  /// As forward_prefix, with the kept input channels as runs: run r reads channels
  /// [a_offset, a_offset + k) of each input pixel (pixel stride ldx) against the conv's input channels
  /// [b_row, b_row + k) (e.g. a prefix of every level's slice of a concatenation, UPerNet's
  /// fpn_bottleneck); the channels of no run count as zeros. One group.
  void forward_runs(const float* x, std::size_t ldx, std::size_t n, std::size_t h, std::size_t w,
                    const std::vector<gemm_segment>& runs, float* y, std::size_t ldy, std::size_t out_kept,
                    activation act = activation::none) const {
    const conv2d_shape& s = s_;
    bool fits = s.groups == 1 && out_kept > 0 && out_kept <= s.out_channels && ldy >= out_kept;
    for (const auto& r : runs) fits = fits && r.b_row + r.k <= s.in_channels && r.a_offset + r.k <= ldx;
    if (!fits) {
      std::string what;
      for (const auto& r : runs)
        what += (what.empty() ? "" : ", ") + std::string("[") + std::to_string(r.a_offset) + ", +" +
                std::to_string(r.k) + ") -> [" + std::to_string(r.b_row) + ", +" + std::to_string(r.k) + ")";
      throw shape_error("conv2d: input channel runs " + what + " (stride " + std::to_string(ldx) +
                        "), out=" + std::to_string(out_kept) + " (stride " + std::to_string(ldy) +
                        ") do not fit the conv [" + std::to_string(s.in_channels) + " -> " +
                        std::to_string(s.out_channels) + "], groups " + std::to_string(s.groups));
    }
    if (n == 0 || h == 0 || w == 0) return;
    if (uses_winograd()) {  // 3x3 stride 1: each run of kept input channels is one run of U's rows
      wino_.run(x, ldx, n, h, w, runs, bias(), y, ldy, out_kept, act);
      return;
    }
    if (s.is_pointwise() && runs.size() == 1 && runs[0].b_row == 0)  // a prefix: one GEMM on the pixels
      return run_1x1(x + runs[0].a_offset, ldx, n, h, w, runs[0].k, y, ldy, out_kept, act);
    // Implicit GEMM: one segment per (tap, run) of the (ky, kx, ic) reduction, read in place.
    const std::size_t taps = s.kernel_h * s.kernel_w;
    std::vector<conv_segment> segs;
    segs.reserve(taps * runs.size());
    for (std::size_t t = 0; t < taps; ++t)
      for (const auto& r : runs)
        if (r.k > 0) segs.push_back({t, r.a_offset, t * s.in_channels + r.b_row, r.k});
    conv2d_gemm(x, ldx, n, h, w, s, segs, w_[0].fp32(), bias(), y, ldy, out_kept, act);
  }

  /// A 1x1 conv (any stride, no padding, one group) on channel prefixes in `p`: y[:, :out_kept] =
  /// act(x[:, :in_kept] W[:out_kept, :in_kept]^T + bias (+ residual)), one GEMM on the pixels read.
  /// x: [N, H, W, *] with pixel stride ldx; y: [N, OH, OW, *] with pixel stride ldy; `residual`
  /// (optional): [N, OH, OW, *] with pixel stride ldr, added before the activation (the end of a
  /// bottleneck block; ref: transformers' ResNetBottleNeckLayer, `hidden_state += residual` then the
  /// activation). int8: the input quantized with the range of the values read. A strided conv
  /// gathers the pixels it reads first in bf16 and int8 (in fp32 it reads them in place, an implicit GEMM).
  void run_1x1(const float* x, std::size_t ldx, std::size_t n, std::size_t h, std::size_t w, std::size_t in_kept,
               float* y, std::size_t ldy, std::size_t out_kept, activation act = activation::none,
               precision p = precision::fp32, const float* residual = nullptr, std::size_t ldr = 0) const {
    const conv2d_shape& s = s_;
    if (s.kernel_h != 1 || s.kernel_w != 1 || s.pad_h != 0 || s.pad_w != 0 || s.groups != 1 || in_kept == 0 ||
        in_kept > s.in_channels || ldx < in_kept || out_kept == 0 || out_kept > s.out_channels || ldy < out_kept ||
        (residual && ldr < out_kept))
      throw shape_error(describe(p) + ": run_1x1 with channels in=" + std::to_string(in_kept) + " (stride " +
                        std::to_string(ldx) + "), out=" + std::to_string(out_kept) + " (stride " +
                        std::to_string(ldy) + (residual ? ", residual stride " + std::to_string(ldr) : std::string()) +
                        ") needs a one-group 1x1 conv without padding and channels within it");
    const std::size_t oh = s.out_h(h), ow = s.out_w(w), m = n * oh * ow;
    if (m == 0) return;
    gemm_epilogue ep;
    ep.act = act;
    ep.bias = bias();
    ep.residual = residual;
    ep.ldr = ldr;
    ep.residual_before_act = true;
    const bool strided = s.stride_h != 1 || s.stride_w != 1;
    if (p == precision::fp32 && strided) {
      if (residual)
        throw invalid_input(describe(p) + ": run_1x1 adds a residual only to a stride-1 conv");
      conv2d_gemm(x, ldx, n, h, w, s, {conv_segment{0, 0, 0, in_kept}}, w_[0].fp32(), bias(), y, ldy, out_kept, act);
      return;
    }
    const float* a = x;
    std::size_t lda = ldx;
    detail::aligned_vector<float> gathered;
    if (strided) {  // the pixels the conv reads, dense
      gathered.resize(m * in_kept);
      parallel_for(n * oh, [&](std::size_t r) {
        const std::size_t b = r / oh, oy = r % oh;
        for (std::size_t ox = 0; ox < ow; ++ox)
          std::copy_n(x + ((b * h + oy * s.stride_h) * w + ox * s.stride_w) * ldx, in_kept,
                      gathered.data() + (r * ow + ox) * in_kept);
      }, double(m) * in_kept);
      a = gathered.data();
      lda = in_kept;
    }
    quant_params q;
    if (p == precision::int8) {
      const auto [lo, hi] = detail::value_range(a, m, in_kept, lda);
      if (!std::isfinite(lo) || !std::isfinite(hi)) throw invalid_input(describe(p) + ": its input holds non-finite values");
      q = quant_params_u8(lo, hi);
    }
    w_[0].gemm(p, m, out_kept, in_kept, a, lda, y, ldy, ep, true, &q);
  }

private:
  /// "conv2d [IC -> OC, KHxKW stride S] in P": the conv as its errors name it.
  std::string describe(precision p) const {
    const auto& s = s_;
    return "conv2d [" + std::to_string(s.in_channels) + " -> " + std::to_string(s.out_channels) + ", " +
           std::to_string(s.kernel_h) + "x" + std::to_string(s.kernel_w) + " stride " + std::to_string(s.stride_h) +
           "] in " + to_string(p);
  }

  /// The low-precision forms of run(): a pointwise conv is one GEMM on the pixels, any other
  /// one-group conv an im2col GEMM over blocks of output pixels (the taps gathered in float, then
  /// converted by the GEMM's row source: a copy the fp32 implicit GEMM does not need, small beside
  /// the GEMM's gain in int8).
  void run_lowp(const float* x, std::size_t n, std::size_t h, std::size_t w, float* y, activation act, std::size_t ldy,
                precision p) const {
    const auto& s = s_;
    const std::string what = describe(p);
    if (uses_winograd() || s.groups != 1)
      throw invalid_input(what + ": only one-group convolutions in the pointwise or implicit-GEMM form run in low "
                                 "precision (this one is " +
                          (uses_winograd() ? std::string("in the Winograd form") : std::to_string(s.groups) + " groups") +
                          ")");
    quant_params q;
    if (p == precision::int8) {
      const auto [lo, hi] = detail::value_range(x, n * h * w, s.in_channels, s.in_channels);
      if (!std::isfinite(lo) || !std::isfinite(hi)) throw invalid_input(what + ": its input holds non-finite values");
      q = quant_params_u8(lo, hi);
    }
    w_[0].prepare(p);
    if (s.is_pointwise()) {
      gemm_epilogue ep;
      ep.act = act;
      ep.bias = bias();
      w_[0].gemm(p, n * h * w, s.out_channels, s.in_channels, x, s.in_channels, y, ldy, ep, true, &q);
      return;
    }
    run_im2col(x, n, h, w, y, act, ldy, p, &q);
  }

  /// run() through a blocked im2col, any groups, in `p` (q: int8's input quantization).
  void run_im2col(const float* x, std::size_t n, std::size_t h, std::size_t w, float* y, activation act,
                  std::size_t ldy, precision p, const quant_params* q) const {
    const auto& s = s_;
    const std::size_t oh = s.out_h(h), ow = s.out_w(w);
    const std::size_t icg = s.in_channels / s.groups, ocg = s.out_channels / s.groups;
    gemm_epilogue ep;
    ep.act = act;
    const std::size_t kk = s.kernel_h * s.kernel_w * icg;
    const std::size_t pixels = n * oh * ow;
    // Rows per im2col block: enough for the GEMM micro-tiles, small enough to stay in L2.
    // At least one GEMM row block per im2col block: fewer rows would re-stream the whole packed
    // weight matrix from memory every few rows (a 3x3 conv over 2048 channels has 18432 per row).
    const std::size_t block = std::max<std::size_t>(detail::gemm_mc, std::min<std::size_t>(512, (1u << 21) / (kk + 1)));
    const std::size_t blocks = (pixels + block - 1) / block;
    // Few blocks (a small late-stage map): one block at a time, each GEMM split over the threads.
    const bool inner = blocks < static_cast<std::size_t>(std::max(1, max_threads()));
    auto task = [&](std::size_t bi) {
      thread_local detail::aligned_vector<float> col;
      const std::size_t p0 = bi * block, rows = std::min(block, pixels - p0);
      if (col.size() < rows * kk) col.resize(rows * kk);
      for (std::size_t g = 0; g < s.groups; ++g) {
        for (std::size_t r = 0; r < rows; ++r) {
          const std::size_t p = p0 + r, b = p / (oh * ow), oy = (p / ow) % oh, ox = p % ow;
          float* dst = col.data() + r * kk;
          for (std::size_t ky = 0; ky < s.kernel_h; ++ky) {
            const long iy = static_cast<long>(oy * s.stride_h + ky) - static_cast<long>(s.pad_h);
            for (std::size_t kx = 0; kx < s.kernel_w; ++kx) {
              const long ix = static_cast<long>(ox * s.stride_w + kx) - static_cast<long>(s.pad_w);
              float* d = dst + (ky * s.kernel_w + kx) * icg;
              if (iy < 0 || ix < 0 || iy >= static_cast<long>(h) || ix >= static_cast<long>(w)) {
                std::fill(d, d + icg, 0.f);
              } else {
                const float* src =
                    x + ((b * h + static_cast<std::size_t>(iy)) * w + static_cast<std::size_t>(ix)) * s.in_channels +
                    g * icg;
                std::copy(src, src + icg, d);
              }
            }
          }
        }
        gemm_epilogue epg = ep;
        epg.bias = bias() ? bias() + g * ocg : nullptr;
        w_[g].gemm(p, rows, ocg, kk, col.data(), kk, y + p0 * ldy + g * ocg, ldy, epg, /*allow_parallel=*/inner, q);
      }
    };
    if (inner)
      for (std::size_t bi = 0; bi < blocks; ++bi) task(bi);
    else
      parallel_for(blocks, task, 2.0 * s.macs(n, h, w));
  }



  conv2d_shape s_;
  std::vector<packed_weights> w_;  // one per group; empty in the Winograd form
  std::vector<float> bias_;
  winograd_conv3x3 wino_;  // 3x3 stride-1 convs built with conv2d_options::winograd
};

/// Depthwise KxK convolution, stride 1, padding K/2 (ref: SegformerDWConv, groups = channels).
template <std::size_t K>
class conv2d_dw {
  static_assert(K % 2 == 1, "depthwise kernel must be odd");

public:
  conv2d_dw() = default;
  /// weight: [C, 1, K, K]; bias: [C] or null.
  conv2d_dw(const float* weight, const float* bias, std::size_t channels) : c_(channels), w_(K * K * channels) {
    for (std::size_t c = 0; c < channels; ++c)
      for (std::size_t t = 0; t < K * K; ++t) w_[t * channels + c] = weight[c * K * K + t];  // -> [K*K][C]
    bias_ = bias ? std::vector<float>(bias, bias + channels) : std::vector<float>(channels, 0.f);
  }
  std::size_t channels() const noexcept { return c_; }

  /// x, y: [N, H, W, c] (distinct buffers) for the first c = `kept` channels (0: all). The
  /// activation is fused into the store.
  template <activation A = activation::none>
  void run(const float* x, std::size_t n, std::size_t h, std::size_t w, float* y, std::size_t kept = 0) const noexcept {
    const std::size_t c = kept ? std::min(kept, c_) : c_;
    parallel_for(
        n * h,
        [&](std::size_t r) {
          const std::size_t b = r / h, oy = r % h;
          const float* rows[K];
          for (std::size_t ky = 0; ky < K; ++ky) {
            const long iy = static_cast<long>(oy + ky) - static_cast<long>(K / 2);
            rows[ky] = iy >= 0 && iy < static_cast<long>(h) ? x + (b * h + static_cast<std::size_t>(iy)) * w * c : nullptr;
          }
          run_row<A>(rows, w, c, y + r * w * c);
        },
        2.0 * n * h * w * c * K * K);
  }

  /// One output point from its K*K taps: `taps[ky * K + kx]` holds the c input channels under that
  /// tap (null on the padding); out[c] = act(bias + sum of weight x tap). The unit of callers whose
  /// input is not a grid in memory (the merged Mix-FFN gathers each tap from its merged tokens,
  /// layers/mix_ffn.hpp).
  template <activation A = activation::none>
  void run_point(const float* const* taps, std::size_t c, float* out) const noexcept {
    using simd = xsimd::batch<float>;
    constexpr std::size_t W = simd::size;
    std::size_t j = 0;
    for (; j + W <= c; j += W) {
      simd acc = simd::load_unaligned(bias_.data() + j);
      for (std::size_t t = 0; t < K * K; ++t)
        if (taps[t]) acc = xsimd::fma(simd::load_unaligned(taps[t] + j), simd::load_unaligned(w_.data() + t * c_ + j), acc);
      activate<A>(acc).store_unaligned(out + j);
    }
    for (; j < c; ++j) {
      float acc = bias_[j];
      for (std::size_t t = 0; t < K * K; ++t)
        if (taps[t]) acc = std::fma(taps[t][j], w_[t * c_ + j], acc);  // as run_row's tail, whatever the contraction
      out[j] = activate<A>(acc);
    }
  }

  /// One output row: `rows[ky]` is input row oy + ky - K/2 ([w, c] floats), null where it falls on
  /// the padding; `out` receives [w, c]. The unit of `run` and of callers that produce the input a
  /// few rows at a time (the fused Mix-FFN, layers/mix_ffn.hpp). With `range` (non-null), the
  /// outputs also join it as they are stored: the range of an int8 consumer's input without a pass
  /// of its own over them.
  template <activation A = activation::none>
  void run_row(const float* const* rows, std::size_t w, std::size_t c, float* out,
               detail::range_accumulator* range = nullptr) const noexcept {
    if (range)
      run_row_impl<A, true>(rows, w, c, out, range);
    else
      run_row_impl<A, false>(rows, w, c, out, nullptr);
  }

private:
  template <activation A, bool Ranged>
  void run_row_impl(const float* const* rows, std::size_t w, std::size_t c, float* out,
                    detail::range_accumulator* range) const noexcept {
    using simd = xsimd::batch<float>;
    constexpr std::size_t W = simd::size;
    constexpr long P = static_cast<long>(K / 2);
    const std::size_t cw = c_;  // weight stride
    // For each vector of channels the K*K weights and the bias stay in registers while the row is
    // swept; the taps outside the image are cut from the loop bounds instead of being tested one by
    // one (the per-tap branches cost more than the FMAs).
    long ky0 = 0, ky1 = static_cast<long>(K);
    while (ky0 < ky1 && !rows[ky0]) ++ky0;
    while (ky1 > ky0 && !rows[ky1 - 1]) --ky1;
    // Where all K input rows exist, the columns whose taps all fall inside the row run a loop with
    // the K*K taps unrolled, several outputs at a time: the activation's long dependency chain
    // (GELU's rational erf ends in a division) then overlaps between outputs. The taps are summed in
    // the same order as on the edges, so every output has the same bits either way.
    const bool all_rows = ky0 == 0 && ky1 == static_cast<long>(K);
    const std::size_t inner0 = all_rows && w > 2 * static_cast<std::size_t>(P) ? static_cast<std::size_t>(P) : w;
    const std::size_t inner1 = inner0 < w ? w - static_cast<std::size_t>(P) : w;
    std::size_t j = 0;
    for (; j + W <= c; j += W) {
      simd wk[K * K];
      for (std::size_t t = 0; t < K * K; ++t) wk[t] = simd::load_unaligned(w_.data() + t * cw + j);
      const simd bias = simd::load_unaligned(bias_.data() + j);
      auto edge_point = [&](std::size_t ox) {
        const long kx0 = std::max<long>(0, P - static_cast<long>(ox));
        const long kx1 = std::min<long>(static_cast<long>(K), static_cast<long>(w) + P - static_cast<long>(ox));
        const long base = (static_cast<long>(ox) - P) * static_cast<long>(c) + static_cast<long>(j);
        simd acc = bias;
        for (long ky = ky0; ky < ky1; ++ky)
          for (long kx = kx0; kx < kx1; ++kx)
            acc = xsimd::fma(simd::load_unaligned(rows[ky] + (base + kx * static_cast<long>(c))),
                             wk[static_cast<std::size_t>(ky * static_cast<long>(K) + kx)], acc);
        const simd o = activate<A>(acc);
        o.store_unaligned(out + ox * c + j);
        if constexpr (Ranged) range->add(o);
      };
      std::size_t ox = 0;
      for (; ox < inner0; ++ox) edge_point(ox);
      constexpr std::size_t U = 4;  // outputs in flight
      for (; ox + U <= inner1; ox += U) {
        simd acc[U];
        for (std::size_t u = 0; u < U; ++u) acc[u] = bias;
        const std::size_t base = (ox - static_cast<std::size_t>(P)) * c + j;
#pragma GCC unroll 16
        for (std::size_t t = 0; t < K * K; ++t) {
          const float* src = rows[t / K] + base + (t % K) * c;
          for (std::size_t u = 0; u < U; ++u) acc[u] = xsimd::fma(simd::load_unaligned(src + u * c), wk[t], acc[u]);
        }
        for (std::size_t u = 0; u < U; ++u) {
          const simd o = activate<A>(acc[u]);
          o.store_unaligned(out + (ox + u) * c + j);
          if constexpr (Ranged) range->add(o);
        }
      }
      for (; ox < w; ++ox) edge_point(ox);
    }
    for (; j < c; ++j)
      for (std::size_t ox = 0; ox < w; ++ox) {
        const long kx0 = std::max<long>(0, P - static_cast<long>(ox));
        const long kx1 = std::min<long>(static_cast<long>(K), static_cast<long>(w) + P - static_cast<long>(ox));
        const long base = (static_cast<long>(ox) - P) * static_cast<long>(c) + static_cast<long>(j);
        float acc = bias_[j];
        for (long ky = ky0; ky < ky1; ++ky)
          for (long kx = kx0; kx < kx1; ++kx)
            acc = std::fma(rows[ky][base + kx * static_cast<long>(c)],
                           w_[static_cast<std::size_t>(ky * static_cast<long>(K) + kx) * cw + j], acc);
        out[ox * c + j] = activate<A>(acc);
        if constexpr (Ranged) range->add(out[ox * c + j]);
      }
  }

  std::size_t c_ = 0;
  std::vector<float> w_, bias_;
};

/// Plain-loop reference for any conv (dense, grouped, depthwise). x: [N, H, W, IC] NHWC;
/// weight: [OC, IC/groups, KH, KW]; bias: [OC] or null; y: [N, OH, OW, OC].
inline void conv2d_ref(const float* x, std::size_t n, std::size_t h, std::size_t w, const float* weight,
                       const float* bias, const conv2d_shape& s, float* y) {
  const std::size_t oh = s.out_h(h), ow = s.out_w(w);
  const std::size_t icg = s.in_channels / s.groups, ocg = s.out_channels / s.groups;
  for (std::size_t b = 0; b < n; ++b)
    for (std::size_t oy = 0; oy < oh; ++oy)
      for (std::size_t ox = 0; ox < ow; ++ox)
        for (std::size_t o = 0; o < s.out_channels; ++o) {
          const std::size_t g = o / ocg;
          double acc = bias ? bias[o] : 0.0;
          for (std::size_t i = 0; i < icg; ++i)
            for (std::size_t ky = 0; ky < s.kernel_h; ++ky)
              for (std::size_t kx = 0; kx < s.kernel_w; ++kx) {
                const long iy = static_cast<long>(oy * s.stride_h + ky) - static_cast<long>(s.pad_h);
                const long ix = static_cast<long>(ox * s.stride_w + kx) - static_cast<long>(s.pad_w);
                if (iy < 0 || ix < 0 || iy >= static_cast<long>(h) || ix >= static_cast<long>(w)) continue;
                acc +=
                    static_cast<double>(
                        x[((b * h + static_cast<std::size_t>(iy)) * w + static_cast<std::size_t>(ix)) * s.in_channels +
                          g * icg + i]) *
                    weight[((o * icg + i) * s.kernel_h + ky) * s.kernel_w + kx];
              }
          y[((b * oh + oy) * ow + ox) * s.out_channels + o] = static_cast<float>(acc);
        }
}

}  // namespace drt
