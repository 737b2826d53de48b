// conv2d and conv2d_dw<K> (layers/conv2d.hpp) against conv2d_ref: pointwise (GEMM path), 3x3 pad 1,
// the 7x7 stride-4 patch embedding, the sr-style k = s = 2, 4, 8 reductions, grouped and depthwise
// convs, on odd spatial sizes (13x7, ...) and channel counts (3, 5, 17, 33) that leave SIMD and tile
// remainders; both conv paths (implicit GEMM from conv2d::implicit_min_channels input channels per
// group, im2col below), taps longer than a reduction block; conv2d_gemm over channel runs of a wider
// input; fused activations; channel-slice writes (ldy > OC); the constructor and shape errors.
// Tolerance: rel L2 <= 1e-5, max abs <= 1e-4 * max|ref| (float FMA vs double reference); padding
// channels of a slice write must be left bit-for-bit untouched.
// bf16 / int8 (conv2d::run's precision): against conv2d_ref on the operands as the kernels see them
// (bf16: input and weights rounded; int8: the input quantized with its own range, the weights per
// output channel, then dequantized) within rel L2 1e-5, and against fp32 within 5e-3 (bf16) / 3e-2
// (int8) and above 1e-5 (it really ran in low precision); Winograd and grouped convs refuse.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include <drt/layers/conv2d.hpp>
#include <drt/layers/gemm_bf16.hpp>
#include <drt/layers/gemm_int8.hpp>

#include "test_support.hpp"

using namespace drt_test;

namespace {
constexpr double conv_rel = 1e-5, conv_abs = 1e-4;
constexpr float conv_sentinel = -4321.f;

drt::conv2d_shape make_shape(std::size_t ic, std::size_t oc, std::size_t k, std::size_t stride, std::size_t pad,
                             std::size_t groups = 1) {
  drt::conv2d_shape s;
  s.in_channels = ic;
  s.out_channels = oc;
  s.kernel_h = s.kernel_w = k;
  s.stride_h = s.stride_w = stride;
  s.pad_h = s.pad_w = pad;
  s.groups = groups;
  return s;
}

void apply_inplace(drt::activation a, std::vector<float>& v) {
  for (auto& x : v) {
    if (a == drt::activation::relu) x = drt::activate<drt::activation::relu>(x);
    if (a == drt::activation::gelu) x = drt::activate<drt::activation::gelu>(x);
  }
}

std::string describe(const drt::conv2d_shape& s, std::size_t n, std::size_t h, std::size_t w) {
  return "conv " + std::to_string(s.in_channels) + "->" + std::to_string(s.out_channels) +
         " k=" + std::to_string(s.kernel_h) + "x" + std::to_string(s.kernel_w) + " s=" + std::to_string(s.stride_h) +
         "," + std::to_string(s.stride_w) + " p=" + std::to_string(s.pad_h) + "," + std::to_string(s.pad_w) +
         " g=" + std::to_string(s.groups) + " on " + std::to_string(n) + "x" + std::to_string(h) + "x" +
         std::to_string(w);
}

/// conv2d::run vs conv2d_ref (+ the activation), optionally into a channel slice of stride ldy.
void check_conv(const drt::conv2d_shape& s, std::size_t n, std::size_t h, std::size_t w, unsigned seed,
                drt::activation act = drt::activation::none, std::size_t ldy_pad = 0, bool with_bias = true) {
  const std::size_t icg = s.in_channels / s.groups;
  const auto weight = random_vector(s.out_channels * icg * s.kernel_h * s.kernel_w, seed);
  const auto bias = random_vector(s.out_channels, seed + 1);
  const auto x = random_vector(n * h * w * s.in_channels, seed + 2);
  const drt::conv2d conv(weight.data(), with_bias ? bias.data() : nullptr, s);
  CHECK((conv.bias() != nullptr) == with_bias);
  CHECK(conv.shape().is_pointwise() == s.is_pointwise());

  const std::size_t oh = s.out_h(h), ow = s.out_w(w), oc = s.out_channels, ldy = oc + ldy_pad;
  REQUIRE(oh > 0);
  REQUIRE(ow > 0);
  std::vector<float> y(n * oh * ow * ldy, conv_sentinel), ref(n * oh * ow * oc);
  conv.run(x.data(), n, h, w, y.data(), act, ldy_pad ? ldy : 0);
  drt::conv2d_ref(x.data(), n, h, w, weight.data(), with_bias ? bias.data() : nullptr, s, ref.data());
  apply_inplace(act, ref);

  std::vector<float> got(ref.size());
  std::size_t pad_changed = 0;
  for (std::size_t p = 0; p < n * oh * ow; ++p) {
    for (std::size_t c = 0; c < oc; ++c) got[p * oc + c] = y[p * ldy + c];
    for (std::size_t c = oc; c < ldy; ++c) pad_changed += y[p * ldy + c] != conv_sentinel;
  }
  CHECK(pad_changed == 0);
  check_close(got.data(), ref.data(), ref.size(), describe(s, n, h, w), conv_rel, conv_abs);
}

template <drt::activation A, std::size_t K>
void check_dw(std::size_t c, std::size_t n, std::size_t h, std::size_t w, unsigned seed, bool with_bias = true) {
  const auto weight = random_vector(c * K * K, seed), bias = random_vector(c, seed + 1);
  const auto x = random_vector(n * h * w * c, seed + 2);
  const drt::conv2d_dw<K> dw(weight.data(), with_bias ? bias.data() : nullptr, c);
  CHECK(dw.channels() == c);
  std::vector<float> y(n * h * w * c, conv_sentinel), ref(n * h * w * c);
  dw.template run<A>(x.data(), n, h, w, y.data());
  // Depthwise = a grouped conv with groups = channels, stride 1, padding K/2.
  drt::conv2d_ref(x.data(), n, h, w, weight.data(), with_bias ? bias.data() : nullptr, make_shape(c, c, K, 1, K / 2, c),
                  ref.data());
  apply_inplace(A, ref);
  check_close(y.data(), ref.data(), ref.size(),
              "dw" + std::to_string(K) + " act=" + std::to_string(static_cast<int>(A)) + " c=" + std::to_string(c) +
                  " " + std::to_string(n) + "x" + std::to_string(h) + "x" + std::to_string(w),
              conv_rel, conv_abs);
}

template <std::size_t K>
using kernel_size = std::integral_constant<std::size_t, K>;

/// conv2d::run in bf16 / int8 vs conv2d_ref on the operands those kernels see (see the file comment).
void check_conv_lowp(const drt::conv2d_shape& s, std::size_t n, std::size_t h, std::size_t w, unsigned seed,
                     drt::precision p, drt::activation act = drt::activation::none) {
  const std::size_t k = s.in_channels * s.kernel_h * s.kernel_w;
  const auto weight = random_vector(s.out_channels * k, seed);
  const auto bias = random_vector(s.out_channels, seed + 1);
  auto x = random_vector(n * h * w * s.in_channels, seed + 2, -0.5f, 1.5f);  // a range not centred on 0
  const drt::conv2d conv(weight.data(), bias.data(), s, drt::conv2d_options::implicit_gemm());
  std::vector<float> xs = x, ws = weight;
  if (p == drt::precision::bf16) {
    for (auto& v : xs) v = drt::from_bf16(drt::to_bf16(v));
    for (auto& v : ws) v = drt::from_bf16(drt::to_bf16(v));
  } else {
    const auto [lo, hi] = drt::detail::value_range(x.data(), x.size(), 1, 1);
    const auto q = drt::quant_params_u8(lo, hi);
    for (auto& v : xs) v = drt::dequantize_u8(drt::quantize_u8(v, q), q);
    for (std::size_t o = 0; o < s.out_channels; ++o) {
      float amax = 0.f;
      for (std::size_t i = 0; i < k; ++i) amax = std::max(amax, std::abs(weight[o * k + i]));
      const float sc = amax > 0.f ? amax / 127.f : 1.f;
      for (std::size_t i = 0; i < k; ++i) ws[o * k + i] = float(drt::quantize_s8(weight[o * k + i], sc)) * sc;
    }
  }
  const std::size_t m = n * s.out_h(h) * s.out_w(w);
  std::vector<float> got(m * s.out_channels), own(got.size()), full(got.size());
  conv.run(x.data(), n, h, w, got.data(), act, 0, p);
  drt::conv2d_ref(xs.data(), n, h, w, ws.data(), bias.data(), s, own.data());
  drt::conv2d_ref(x.data(), n, h, w, weight.data(), bias.data(), s, full.data());
  apply_inplace(act, own);
  apply_inplace(act, full);
  const std::string what = describe(s, n, h, w) + " in " + drt::to_string(p);
  check_close(got.data(), own.data(), own.size(), what + " vs its own numerics", conv_rel, conv_abs);
  const double to_fp32 = compare(got.data(), full.data(), full.size()).rel_l2;
  INFO(what << ": rel L2 vs fp32 " << to_fp32);
  CHECK(to_fp32 > 1e-5);
  CHECK(to_fp32 <= (p == drt::precision::int8 ? 3e-2 : 5e-3));
}
}  // namespace

TEST_SUITE("layers") {
  TEST_CASE("conv2d matches conv2d_ref") {
    SUBCASE("1x1 pointwise (GEMM path), pixels past gemm_mc") {
      check_conv(make_shape(17, 33, 1, 1, 0), 2, 13, 7, 10);
      check_conv(make_shape(3, 5, 1, 1, 0), 1, 1, 1, 11);
      check_conv(make_shape(33, 17, 1, 1, 0), 1, 13, 7, 12, drt::activation::relu, 0, false);
    }
    SUBCASE("3x3 pad 1") {
      check_conv(make_shape(5, 17, 3, 1, 1), 2, 13, 7, 20);
      check_conv(make_shape(17, 33, 3, 1, 1), 1, 7, 13, 21);
      check_conv(make_shape(3, 5, 3, 1, 1), 1, 1, 1, 22);
    }
    SUBCASE("3x3 stride 2 pad 1 (later patch embeddings)") {
      check_conv(make_shape(32, 17, 3, 2, 1), 2, 13, 7, 30);
      check_conv(make_shape(5, 33, 3, 2, 1), 1, 2, 3, 31);
    }
    SUBCASE("7x7 stride 4 pad 3 (stage-1 patch embedding)") {
      check_conv(make_shape(3, 32, 7, 4, 3), 2, 29, 23, 40);
      check_conv(make_shape(3, 17, 7, 4, 3), 1, 13, 7, 41);
      check_conv(make_shape(3, 5, 7, 4, 3), 1, 1, 1, 42);
    }
    SUBCASE("spatial reduction k = s = 2, 4, 8, no padding (sizes not divisible by s)") {
      check_conv(make_shape(33, 33, 2, 2, 0), 2, 13, 7, 50);
      check_conv(make_shape(17, 17, 4, 4, 0), 1, 16, 13, 51);
      check_conv(make_shape(5, 5, 8, 8, 0), 2, 17, 9, 52);
      check_conv(make_shape(32, 32, 8, 8, 0), 1, 8, 8, 53);
    }
    SUBCASE("implicit GEMM: several row blocks, taps longer than a reduction block, several panels") {
      // 20x13 = 260 output pixels span two row blocks of gemm_mc; 7x7 taps of 33 channels.
      check_conv(make_shape(33, 17, 7, 1, 3), 1, 20, 13, 60);
      // 3 x 3 taps of gemm_kc + 88 channels (two reduction blocks per tap), 2.5 panels of outputs.
      const std::size_t wide = drt::detail::gemm_kc + 88, cols = 5 * drt::packed_matrix::nr / 2;
      check_conv(make_shape(wide, cols, 3, 1, 1), 1, 9, 11, 61, drt::activation::relu);
      check_conv(make_shape(wide, cols, 3, 2, 1), 2, 9, 11, 62, drt::activation::none, 3);
    }
    SUBCASE("few input channels: one segment per kernel row of a padded copy (kw * C >= 16), else im2col") {
      static_assert(drt::conv2d::implicit_min_channels > 5, "these shapes must not take the per-tap path");
      check_conv(make_shape(5, 40, 7, 2, 3), 2, 23, 17, 63);
      check_conv(make_shape(3, 64, 7, 2, 3), 1, 45, 33, 64, drt::activation::relu);   // a ResNet stem
      check_conv(make_shape(3, 70, 7, 2, 3), 1, 8, 9, 65, drt::activation::none, 3);  // partial panel, slice
      check_conv(make_shape(3, 5, 3, 1, 1), 2, 13, 7, 66);                            // 3 * 3 < 16: im2col
    }
    SUBCASE("grouped, groups = 2 and 4") {
      check_conv(make_shape(34, 18, 3, 1, 1, 2), 2, 13, 7, 70);
      check_conv(make_shape(20, 36, 3, 2, 1, 4), 1, 13, 7, 71);
      check_conv(make_shape(12, 8, 1, 1, 0, 4), 1, 5, 3, 72);     // grouped 1x1 goes through im2col
      check_conv(make_shape(17, 17, 3, 1, 1, 17), 1, 13, 7, 73);  // depthwise through the generic path
    }
    SUBCASE("fused activations") {
      check_conv(make_shape(5, 17, 3, 1, 1), 1, 13, 7, 80, drt::activation::relu);
      check_conv(make_shape(5, 17, 3, 1, 1), 1, 13, 7, 81, drt::activation::gelu);
      check_conv(make_shape(17, 33, 1, 1, 0), 1, 13, 7, 82, drt::activation::gelu);
    }
    SUBCASE("no bias") {
      check_conv(make_shape(5, 17, 3, 1, 1), 1, 13, 7, 90, drt::activation::none, 0, false);
      check_conv(make_shape(20, 36, 3, 2, 1, 4), 1, 13, 7, 91, drt::activation::none, 0, false);
    }
    SUBCASE("writing a channel slice (ldy > OC) leaves the other channels untouched") {
      check_conv(make_shape(17, 33, 1, 1, 0), 2, 13, 7, 100, drt::activation::none, 7);
      check_conv(make_shape(5, 17, 3, 1, 1), 1, 13, 7, 101, drt::activation::relu, 3);
      check_conv(make_shape(20, 36, 3, 2, 1, 4), 1, 13, 7, 102, drt::activation::none, 5);
    }
  }

  TEST_CASE("conv2d_gemm: channel runs of every tap vs conv2d_ref on the selected channels") {
    // Reduction = for each tap, the channel runs [2, 9) and [20, 31) of a 32-channel input read at pixel
    // stride 40 (a slice of a wider tensor, as UPerNet's fpn_bottleneck reads its concatenation); the
    // reference is the dense conv of the input with every other channel zeroed.
    const std::size_t ic = 32, oc = 45, ldx = 40, n = 2, h = 11, w = 9;
    for (const std::size_t stride : {std::size_t(1), std::size_t(2)}) {
      const auto s = make_shape(ic, oc, 3, stride, 1);
      const auto weight = random_vector(oc * ic * 9, 110), bias = random_vector(oc, 111);
      const auto x = random_vector(n * h * w * ldx, 112);
      // the implicit-GEMM form: packs the (ky, kx, ic) reduction
      const drt::conv2d conv(weight.data(), bias.data(), s, drt::conv2d_options::implicit_gemm());
      std::vector<drt::conv_segment> segs;
      for (std::size_t t = 0; t < 9; ++t) {
        segs.push_back({t, 2, t * ic + 2, 7});
        segs.push_back({t, 20, t * ic + 20, 11});
      }
      const std::size_t oh = s.out_h(h), ow = s.out_w(w), out_kept = 37;
      std::vector<float> y(n * oh * ow * oc, conv_sentinel);
      drt::conv2d_gemm(x.data(), ldx, n, h, w, s, segs, conv.weights(), conv.bias(), y.data(), oc, out_kept,
                       drt::activation::relu);
      std::vector<float> dense(n * h * w * ic, 0.f), ref(n * oh * ow * oc), got, want;
      for (std::size_t p = 0; p < n * h * w; ++p)
        for (std::size_t c = 0; c < ic; ++c)
          if ((c >= 2 && c < 9) || (c >= 20 && c < 31)) dense[p * ic + c] = x[p * ldx + c];
      drt::conv2d_ref(dense.data(), n, h, w, weight.data(), bias.data(), s, ref.data());
      apply_inplace(drt::activation::relu, ref);
      std::size_t untouched = 0;
      for (std::size_t p = 0; p < n * oh * ow; ++p) {
        for (std::size_t c = 0; c < out_kept; ++c) {
          got.push_back(y[p * oc + c]);
          want.push_back(ref[p * oc + c]);
        }
        for (std::size_t c = out_kept; c < oc; ++c) untouched += y[p * oc + c] == conv_sentinel;
      }
      CHECK(untouched == n * oh * ow * (oc - out_kept));  // dropped outputs are never written
      check_close(got.data(), want.data(), got.size(), "conv2d_gemm stride " + std::to_string(stride), conv_rel,
                  conv_abs);
      std::vector<drt::conv_segment> bad = {{0, 35, 35, 6}};  // channels [35, 41) leave the 40-float pixel
      CHECK_THROWS_WITH_AS(drt::conv2d_gemm(x.data(), ldx, n, h, w, s, bad, conv.weights(), nullptr, y.data(), oc, oc,
                                            drt::activation::none),
                           "conv2d_gemm: segment (tap 0, channels [35, 41), weight rows [35, 41)) leaves the input "
                           "(pixel stride 40), the kernel or the weights (k=288)",
                           drt::shape_error);
    }
  }

  TEST_CASE("conv2d in bf16 and int8 matches the reference of its numerics") {
    for (const drt::precision p : {drt::precision::bf16, drt::precision::int8}) {
      check_conv_lowp(make_shape(3, 16, 7, 4, 3), 1, 29, 23, 700, p);                          // the RGB patch embedding
      check_conv_lowp(make_shape(33, 40, 3, 2, 1), 2, 13, 9, 710, p, drt::activation::relu);  // a stage's patch embedding
      check_conv_lowp(make_shape(17, 35, 1, 1, 0), 1, 7, 5, 720, p, drt::activation::gelu);  // pointwise
      check_conv_lowp(make_shape(24, 24, 3, 1, 1), 1, 11, 6, 730, p);                          // 3x3 stride 1 (implicit GEMM form)
    }
    const auto wt = random_vector(24 * 24 * 9, 740);
    const auto x = random_vector(11 * 6 * 24, 741);
    std::vector<float> y(11 * 6 * 24);
    const drt::conv2d wino(wt.data(), nullptr, make_shape(24, 24, 3, 1, 1), drt::conv2d_options::winograd_form());
    REQUIRE(wino.uses_winograd());
    CHECK_THROWS_WITH_AS(wino.run(x.data(), 1, 11, 6, y.data(), drt::activation::none, 0, drt::precision::int8),
                         doctest::Contains("in int8: only one-group convolutions in the pointwise or implicit-GEMM form "
                                           "run in low precision (this one is in the Winograd form)"),
                         drt::invalid_input);
    const drt::conv2d grouped(wt.data(), nullptr, make_shape(24, 24, 3, 1, 1, 3), drt::conv2d_options::implicit_gemm());
    CHECK_THROWS_WITH_AS(grouped.run(x.data(), 1, 11, 6, y.data(), drt::activation::none, 0, drt::precision::bf16),
                         doctest::Contains("(this one is 3 groups)"), drt::invalid_input);
    std::vector<float> bad = x;
    bad[5] = std::nanf("");
    const drt::conv2d plain(wt.data(), nullptr, make_shape(24, 24, 3, 1, 1), drt::conv2d_options::implicit_gemm());
    CHECK_THROWS_WITH_AS(plain.run(bad.data(), 1, 11, 6, y.data(), drt::activation::none, 0, drt::precision::int8),
                         "conv2d [24 -> 24, 3x3 stride 1] in int8: its input holds non-finite values", drt::invalid_input);
  }

  // run_1x1 (ResNet's reduce / expand / shortcut convs on a path's channel prefixes, in its precision):
  // strided and not, with a residual added before the ReLU, against conv2d_ref on the operands each
  // precision sees: the values read quantized with their own range (int8), weights per output channel
  // with the scale of the full row (the one packed copy serves every prefix), or rounded to bf16.
  TEST_CASE("conv2d::run_1x1: channel prefixes, strides and a residual in fp32, bf16 and int8") {
    const std::size_t ic = 20, oc = 24, n = 2, h = 9, w = 7, in_kept = 13, out_kept = 17, ldx = 23, ldy = 19, ldr = 21;
    const auto weight = random_vector(oc * ic, 900);
    const auto bias = random_vector(oc, 901);
    const auto x = random_vector(n * h * w * ldx, 902, -0.5f, 1.5f);
    for (const std::size_t stride : {1, 2}) {
      const auto shape = make_shape(ic, oc, 1, stride, 0);
      const drt::conv2d conv(weight.data(), bias.data(), shape);
      const std::size_t oh = shape.out_h(h), ow = shape.out_w(w), m = n * oh * ow;
      const auto residual = random_vector(m * ldr, 903 + unsigned(stride));
      // The values the conv reads: the strided pixels' first in_kept channels, dense.
      std::vector<float> read(m * in_kept);
      for (std::size_t b = 0; b < n; ++b)
        for (std::size_t oy = 0; oy < oh; ++oy)
          for (std::size_t ox = 0; ox < ow; ++ox)
            for (std::size_t c = 0; c < in_kept; ++c)
              read[((b * oh + oy) * ow + ox) * in_kept + c] = x[((b * h + oy * stride) * w + ox * stride) * ldx + c];
      for (const drt::precision p : {drt::precision::fp32, drt::precision::bf16, drt::precision::int8}) {
        const bool with_residual = stride == 1 || p != drt::precision::fp32;
        CAPTURE(stride);
        CAPTURE(drt::to_string(p));
        std::vector<float> xs = read, ws(out_kept * in_kept);
        for (std::size_t o = 0; o < out_kept; ++o) {
          float amax = 0.f;
          for (std::size_t i = 0; i < ic; ++i) amax = std::max(amax, std::abs(weight[o * ic + i]));
          const float sc = amax / 127.f;
          for (std::size_t i = 0; i < in_kept; ++i) {
            const float v = weight[o * ic + i];
            ws[o * in_kept + i] = p == drt::precision::int8   ? float(drt::quantize_s8(v, sc)) * sc
                                  : p == drt::precision::bf16 ? drt::from_bf16(drt::to_bf16(v))
                                                              : v;
          }
        }
        if (p == drt::precision::int8) {
          const auto [lo, hi] = drt::detail::value_range(read.data(), read.size(), 1, 1);
          const auto q = drt::quant_params_u8(lo, hi);
          for (auto& v : xs) v = drt::dequantize_u8(drt::quantize_u8(v, q), q);
        } else if (p == drt::precision::bf16) {
          for (auto& v : xs) v = drt::from_bf16(drt::to_bf16(v));
        }
        std::vector<float> want(m * out_kept);
        drt::conv2d_ref(xs.data(), 1, m, 1, ws.data(), bias.data(), make_shape(in_kept, out_kept, 1, 1, 0), want.data());
        for (std::size_t i = 0; i < m; ++i)
          for (std::size_t o = 0; o < out_kept; ++o) {
            float& v = want[i * out_kept + o];
            v = std::max(0.f, v + (with_residual ? residual[i * ldr + o] : 0.f));
          }
        std::vector<float> y(m * ldy, -7.f), got(m * out_kept);
        conv.run_1x1(x.data(), ldx, n, h, w, in_kept, y.data(), ldy, out_kept, drt::activation::relu, p,
                     with_residual ? residual.data() : nullptr, ldr);
        bool untouched = true;  // channels past out_kept keep what they held
        for (std::size_t i = 0; i < m; ++i) {
          std::copy_n(y.data() + i * ldy, out_kept, got.data() + i * out_kept);
          for (std::size_t o = out_kept; o < ldy; ++o) untouched = untouched && y[i * ldy + o] == -7.f;
        }
        CHECK(untouched);
        check_close(got.data(), want.data(), want.size(), "run_1x1 in " + std::string(drt::to_string(p)), conv_rel,
                    conv_abs);
      }
    }
    const drt::conv2d strided(weight.data(), bias.data(), make_shape(ic, oc, 1, 2, 0));
    std::vector<float> y(n * h * w * oc), r(y.size());
    CHECK_THROWS_WITH_AS(strided.run_1x1(x.data(), ldx, n, h, w, in_kept, y.data(), oc, oc, drt::activation::relu,
                                         drt::precision::fp32, r.data(), oc),
                         "conv2d [20 -> 24, 1x1 stride 2] in fp32: run_1x1 adds a residual only to a stride-1 conv",
                         drt::invalid_input);
    CHECK_THROWS_WITH_AS(strided.run_1x1(x.data(), ldx, n, h, w, 21, y.data(), oc, oc),
                         "conv2d [20 -> 24, 1x1 stride 2] in fp32: run_1x1 with channels in=21 (stride 23), out=24 "
                         "(stride 24) needs a one-group 1x1 conv without padding and channels within it",
                         drt::shape_error);
    const auto w3 = random_vector(oc * ic * 9, 910);
    const drt::conv2d three(w3.data(), nullptr, make_shape(ic, oc, 3, 1, 1));
    CHECK_THROWS_AS(three.run_1x1(x.data(), ldx, n, h, w, ic, y.data(), oc, oc), drt::shape_error);
    std::vector<float> bad = x;
    bad[3] = std::numeric_limits<float>::infinity();
    const drt::conv2d one(weight.data(), bias.data(), make_shape(ic, oc, 1, 1, 0));
    CHECK_THROWS_WITH_AS(one.run_1x1(bad.data(), ldx, n, h, w, in_kept, y.data(), oc, oc, drt::activation::none,
                                     drt::precision::int8),
                         "conv2d [20 -> 24, 1x1 stride 1] in int8: its input holds non-finite values", drt::invalid_input);
  }

  TEST_CASE("conv2d_shape geometry") {
    const auto pe = make_shape(3, 32, 7, 4, 3);
    CHECK(pe.out_h(29) == 8);
    CHECK(pe.out_w(23) == 6);
    CHECK(pe.out_h(512) == 128);
    CHECK_FALSE(pe.is_pointwise());
    CHECK(pe.macs(2, 29, 23) == doctest::Approx(2.0 * 8 * 6 * 32 * 3 * 49));
    const auto sr = make_shape(32, 32, 8, 8, 0);
    CHECK(sr.out_h(17) == 2);
    CHECK(sr.out_h(7) == 0);  // smaller than the kernel
    CHECK(make_shape(8, 8, 1, 1, 0).is_pointwise());
    CHECK_FALSE(make_shape(8, 8, 1, 1, 0, 2).is_pointwise());
    CHECK(make_shape(8, 16, 3, 1, 1, 4).macs(1, 5, 5) == doctest::Approx(25.0 * 16 * 2 * 9));
  }

  TEST_CASE_TEMPLATE("conv2d_dw<K> matches conv2d_ref with groups = C, then the activation", K, kernel_size<3>,
                     kernel_size<5>) {
    constexpr std::size_t k = K::value;
    struct dims {
      std::size_t c, n, h, w;
    };
    const dims cases[] = {
        {3, 2, 13, 7}, {5, 1, 7, 13}, {17, 2, 13, 7},
        {33, 1, 9, 6}, {32, 1, 4, 4}, {17, 1, 2, 1},  // smaller than the kernel: every tap near the border is padding
        {1, 1, 5, 3}};
    SUBCASE("none") {
      unsigned seed = 200;
      for (const auto& d : cases) check_dw<drt::activation::none, k>(d.c, d.n, d.h, d.w, seed += 3);
    }
    SUBCASE("relu") {
      unsigned seed = 300;
      for (const auto& d : cases) check_dw<drt::activation::relu, k>(d.c, d.n, d.h, d.w, seed += 3);
    }
    SUBCASE("gelu") {
      unsigned seed = 400;
      for (const auto& d : cases) check_dw<drt::activation::gelu, k>(d.c, d.n, d.h, d.w, seed += 3);
    }
    SUBCASE("no bias") { check_dw<drt::activation::none, k>(17, 1, 13, 7, 500, false); }
  }

  TEST_CASE("conv2d rejects channels not divisible by groups, and inputs smaller than the kernel") {
    const std::vector<float> w(1024, 0.5f);
    CHECK_THROWS_WITH_AS(drt::conv2d(w.data(), nullptr, make_shape(6, 4, 3, 1, 1, 4)),
                         "conv2d: channels 6 -> 4 are not divisible by groups = 4", drt::invalid_input);
    CHECK_THROWS_WITH_AS(drt::conv2d(w.data(), nullptr, make_shape(8, 6, 3, 1, 1, 4)),
                         "conv2d: channels 8 -> 6 are not divisible by groups = 4", drt::invalid_input);
    CHECK_THROWS_WITH_AS(drt::conv2d(w.data(), nullptr, make_shape(8, 8, 3, 1, 1, 0)),
                         "conv2d: channels 8 -> 8 are not divisible by groups = 0", drt::invalid_input);
    CHECK_NOTHROW(drt::conv2d(w.data(), nullptr, make_shape(8, 12, 3, 1, 1, 4)));

    const drt::conv2d sr(w.data(), nullptr, make_shape(2, 2, 8, 8, 0));
    const std::vector<float> x(5 * 9 * 2, 1.f);
    std::vector<float> y(16, conv_sentinel);
    CHECK_THROWS_WITH_AS(sr.run(x.data(), 1, 5, 9, y.data()), "conv2d: input 5x9 is smaller than the 8x8 kernel",
                         drt::shape_error);
    for (float v : y) CHECK(v == conv_sentinel);
  }

  TEST_CASE("conv2d_dw<3>::run_point gives run's output at every position, bit for bit") {
    // the merged Mix-FFN (layers/mix_ffn.hpp) computes the conv one point at a time from gathered taps;
    // run_row's interior loop (several columns at a time, taps unrolled) must give the same bits as
    // its edge loop: w = 6 has one block of interior columns, w = 11 two and a remainder
    for (std::size_t c : {std::size_t(5), std::size_t(16), std::size_t(37)})
    for (std::size_t w : {std::size_t(6), std::size_t(11)}) {
      const std::size_t h = 4;
      const auto weight = random_vector(c * 9, unsigned(c)), bias = random_vector(c, unsigned(c + 1));
      const auto x = random_vector(h * w * c, unsigned(c + 2), -2.f, 2.f);
      const drt::conv2d_dw<3> dw(weight.data(), bias.data(), c);
      std::vector<float> y(h * w * c), point(c);
      dw.run<drt::activation::gelu>(x.data(), 1, h, w, y.data());
      for (std::size_t i = 0; i < h * w; ++i) {
        const std::size_t oy = i / w, ox = i % w;
        const float* taps[9];
        for (std::size_t t = 0; t < 9; ++t) {
          const std::size_t ky = t / 3, kx = t % 3;
          const bool in = oy + ky >= 1 && oy + ky - 1 < h && ox + kx >= 1 && ox + kx - 1 < w;
          taps[t] = in ? x.data() + ((oy + ky - 1) * w + ox + kx - 1) * c : nullptr;
        }
        dw.run_point<drt::activation::gelu>(taps, c, point.data());
        for (std::size_t j = 0; j < c; ++j) { CAPTURE(c); CAPTURE(w); CAPTURE(i); CAPTURE(j); CHECK(point[j] == y[i * c + j]); }
      }
    }
  }

  TEST_CASE("conv2d_dw<3>::run_row with a range accumulator: the same outputs, their exact range, NaN flagged") {
    // the fused Mix-FFN's int8 dense2 takes its band's range from here instead of a pass over it
    for (std::size_t c : {std::size_t(5), std::size_t(16), std::size_t(37)})
      for (std::size_t w : {std::size_t(1), std::size_t(6), std::size_t(11)}) {
        const auto weight = random_vector(c * 9, unsigned(c + 7)), bias = random_vector(c, unsigned(c + 8));
        auto x = random_vector(3 * w * c, unsigned(c + 9), -2.f, 2.f);
        const drt::conv2d_dw<3> dw(weight.data(), bias.data(), c);
        const float* rows[3] = {x.data(), x.data() + w * c, x.data() + 2 * w * c};
        std::vector<float> plain(w * c), ranged(w * c);
        dw.run_row<drt::activation::gelu>(rows, w, c, plain.data());
        drt::detail::range_accumulator acc;
        dw.run_row<drt::activation::gelu>(rows, w, c, ranged.data(), &acc);
        CAPTURE(c);
        CAPTURE(w);
        CHECK(plain == ranged);
        const auto want = drt::detail::value_range(plain.data(), w, c, c);
        const auto got = acc.result();
        CHECK(got.first == want.first);
        CHECK(got.second == want.second);
        CHECK(got.first < got.second);
        x[w * c + c - 1] = std::numeric_limits<float>::quiet_NaN();  // reaches every output of the last channel near it
        drt::detail::range_accumulator bad;
        dw.run_row<drt::activation::gelu>(rows, w, c, ranged.data(), &bad);
        CHECK(std::isnan(bad.result().first));
      }
  }

}  // TEST_SUITE("layers")
