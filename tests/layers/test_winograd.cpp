// winograd_conv3x3 (layers/winograd.hpp), F(2x2, 3x3), against conv2d_ref: odd sizes (tiles cut by
// the image edge), batch 2, channel counts with SIMD remainders (17, 33) and past a reduction block,
// several tile blocks (block_bytes shrunk), thread-private blocks in L2, channel runs of a wider
// input (the fpn_bottleneck's concatenation), output-channel prefixes and slices (untouched
// beyond), every activation; conv2d (run, forward_prefix, forward_runs) and conv_bn_relu choosing
// it for 3x3 stride-1 convs and not for others, as their conv2d_options say. Tolerance: as the
// direct conv's tests, rel L2 <= 1e-5 and max abs <= 1e-4 * max|ref| (the transforms multiply by
// 0, +-1 and 1/2 only).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include <drt/layers/conv2d.hpp>
#include <drt/layers/upernet_head.hpp>
#include <drt/layers/winograd.hpp>

#include "test_support.hpp"

using namespace drt_test;

namespace {
constexpr double wino_rel = 1e-5, wino_abs = 1e-4;
constexpr double wino4_rel = 1e-5, wino4_abs = 1e-4;
constexpr float winograd_sentinel = -4321.f;

drt::conv2d_shape shape3x3(std::size_t ic, std::size_t oc) {
  drt::conv2d_shape s;
  s.in_channels = ic;
  s.out_channels = oc;
  s.kernel_h = s.kernel_w = 3;
  s.pad_h = s.pad_w = 1;
  return s;
}

float act_ref(drt::activation a, float x) {
  if (a == drt::activation::relu) return drt::activate<drt::activation::relu>(x);
  if (a == drt::activation::gelu) return drt::activate<drt::activation::gelu>(x);
  return x;
}

struct wino_case {
  wino_case(std::size_t ic_, std::size_t oc_, std::size_t n_, std::size_t h_, std::size_t w_)
      : ic(ic_), oc(oc_), n(n_), h(h_), w(w_) {}
  std::size_t ic, oc, n, h, w;
  std::size_t ldx_pad = 0, ldy_pad = 0, out_kept = 0;     // 0: all outputs
  std::vector<std::pair<std::size_t, std::size_t>> runs;  // kept input channel runs [first, first + len); empty: all
  drt::activation act = drt::activation::none;
  std::size_t block_bytes = drt::winograd_conv3x3::default_block_bytes;
  std::size_t tile = 2;  // F(2x2, 3x3) or F(4x4, 3x3)
};

/// winograd_conv3x3::run vs conv2d_ref on the input with the channels outside the runs zeroed.
void check_winograd(const wino_case& c, unsigned seed) {
  const std::size_t ldx = c.ic + c.ldx_pad, ldy = c.oc + c.ldy_pad, out_kept = c.out_kept ? c.out_kept : c.oc;
  const auto weight = random_vector(c.oc * c.ic * 9, seed), bias = random_vector(c.oc, seed + 1);
  const auto x = random_vector(c.n * c.h * c.w * ldx, seed + 2);
  const drt::winograd_conv3x3 wino(weight.data(), c.oc, c.ic, c.tile);
  REQUIRE(wino.tile() == c.tile);
  REQUIRE(wino.in_channels() == c.ic);
  REQUIRE(wino.out_channels() == c.oc);
  std::vector<drt::gemm_segment> segs;
  std::vector<bool> kept(c.ic, c.runs.empty());
  for (const auto& r : c.runs) {
    segs.push_back({r.first, r.first, r.second});
    for (std::size_t i = r.first; i < r.first + r.second; ++i) kept[i] = true;
  }
  if (c.runs.empty()) segs.push_back({0, 0, c.ic});
  const std::size_t pixels = c.n * c.h * c.w;
  std::vector<float> y(pixels * ldy, winograd_sentinel);
  wino.run(x.data(), ldx, c.n, c.h, c.w, segs, bias.data(), y.data(), ldy, out_kept, c.act, c.block_bytes);

  std::vector<float> dense(pixels * c.ic, 0.f), ref(pixels * c.oc), got, want;
  for (std::size_t p = 0; p < pixels; ++p)
    for (std::size_t i = 0; i < c.ic; ++i)
      if (kept[i]) dense[p * c.ic + i] = x[p * ldx + i];
  drt::conv2d_ref(dense.data(), c.n, c.h, c.w, weight.data(), bias.data(), shape3x3(c.ic, c.oc), ref.data());
  std::size_t untouched = 0;
  for (std::size_t p = 0; p < pixels; ++p) {
    for (std::size_t o = 0; o < out_kept; ++o) {
      got.push_back(y[p * ldy + o]);
      want.push_back(act_ref(c.act, ref[p * c.oc + o]));
    }
    for (std::size_t o = out_kept; o < ldy; ++o) untouched += y[p * ldy + o] == winograd_sentinel;
  }
  CHECK(untouched == pixels * (ldy - out_kept));  // dropped outputs and the slice's other channels
  check_close(got.data(), want.data(), got.size(),
              "winograd F(" + std::to_string(c.tile) + ") " + std::to_string(c.ic) + "->" + std::to_string(c.oc) +
                  " on " + std::to_string(c.n) + "x" + std::to_string(c.h) + "x" + std::to_string(c.w),
              c.tile == 2 ? wino_rel : wino4_rel, c.tile == 2 ? wino_abs : wino4_abs);
}

/// The same case with both output tiles.
void check_both(wino_case c, unsigned seed) {
  for (const std::size_t tile : {std::size_t(2), std::size_t(4)}) {
    c.tile = tile;
    check_winograd(c, seed);
  }
}
}  // namespace

TEST_SUITE("layers") {
  TEST_CASE("winograd_conv3x3 matches conv2d_ref") {
    SUBCASE("odd and even sizes, batch 2, a 1x1 image, SIMD remainders") {
      check_both({17, 33, 2, 13, 7}, 200);
      check_both({32, 32, 1, 8, 8}, 201);
      check_both({16, 17, 1, 1, 1}, 202);
      check_both({33, 16, 1, 2, 5}, 203);
    }
    SUBCASE("reduction past a GEMM block, several panels and row blocks") {
      const std::size_t wide = drt::detail::gemm_kc + 40, cols = 5 * drt::packed_matrix::nr / 2;
      check_both({wide, cols, 1, 9, 11}, 210);
      check_both({24, 40, 1, 41, 37}, 211);  // 21 x 19 = 399 tiles: three GEMM row blocks
    }
    SUBCASE("several tile blocks (block_bytes shrunk), tiles split across them") {
      wino_case c{20, 24, 2, 15, 9};
      c.block_bytes = 7 * 36 * (20 + 24) * sizeof(float);  // 7 tiles a block with F(4x4), 3 with F(2x2)
      check_both(c, 220);
    }
    SUBCASE("many tiles, few channels: thread-private blocks in L2 (ResNet's first stages)") {
      // Enough tiles for 4 blocks per thread, whatever the thread count.
      const auto wt = random_vector(24 * 16 * 9, 224);
      for (const std::size_t tile : {std::size_t(2), std::size_t(4)}) {
        const drt::winograd_conv3x3 probe(wt.data(), 24, 16, tile);
        const std::size_t block = probe.l2_block_tiles(1u << 30, 16, 24);
        REQUIRE(block > 0);
        std::size_t side = 1;
        while (side * side < 4 * static_cast<std::size_t>(drt::max_threads()) * block + 1) ++side;
        CHECK(probe.l2_block_tiles(side * side, 16, 24) == block);
        wino_case c{16, 24, 1, tile * side - 1, tile * side};  // height one short: the last tile row is cut
        c.act = drt::activation::relu;
        c.tile = tile;
        check_winograd(c, 225);
        CHECK(probe.l2_block_tiles(side * side, 512, 512) == 0);  // U of 16 MB or more: phase by phase
      }
    }
    SUBCASE("channel runs of a wider input, output prefix into a wider slice, activations") {
      wino_case c{40, 48, 2, 11, 9};
      c.ldx_pad = 8;
      c.ldy_pad = 5;
      c.out_kept = 37;
      c.runs = {{2, 7}, {20, 17}};
      c.act = drt::activation::relu;
      check_both(c, 230);
      c.act = drt::activation::gelu;
      c.runs = {{0, 16}};  // a prefix (ResNet's kept middle channels)
      check_both(c, 231);
    }
  }

  TEST_CASE("DRT_CONV3X3: the 3x3 form named in the environment") {
    CHECK(drt::parse_conv3x3_form(nullptr).winograd);
    CHECK(drt::parse_conv3x3_form(nullptr).tile == 4);
    CHECK(drt::parse_conv3x3_form("").tile == 4);
    CHECK(drt::parse_conv3x3_form("winograd4").tile == 4);
    CHECK(drt::parse_conv3x3_form("winograd2").winograd);
    CHECK(drt::parse_conv3x3_form("winograd2").tile == 2);
    CHECK_FALSE(drt::parse_conv3x3_form("implicit").winograd);
    CHECK_THROWS_WITH_AS(drt::parse_conv3x3_form("Winograd"),
                         "DRT_CONV3X3='Winograd': expected winograd4 (the default), winograd2 or implicit",
                         drt::invalid_input);
    // The environment gives only the default of conv2d_options; a layer's options are explicit.
    const drt::conv3x3_form& env = drt::default_conv3x3_form();
    const drt::conv2d_options defaults;
    CHECK(defaults.winograd == env.winograd);
    CHECK(defaults.winograd_tile == env.tile);
    CHECK(drt::winograd_enabled() == env.winograd);
    CHECK(drt::winograd_default_tile() == env.tile);
    CHECK_FALSE(drt::conv2d_options::implicit_gemm().winograd);
    CHECK(drt::conv2d_options::winograd_form(2).winograd);
    CHECK(drt::conv2d_options::winograd_form(2).winograd_tile == 2);
  }

  TEST_CASE("winograd_conv3x3: which convs use it, the switch, and errors") {
    const auto wino2 = drt::conv2d_options::winograd_form(2);  // whatever DRT_CONV3X3 says
    const auto implicit_gemm = drt::conv2d_options::implicit_gemm();
    CHECK(drt::winograd_conv3x3::applies(3, 1, 1, 1, 64, 64));
    CHECK_FALSE(drt::winograd_conv3x3::applies(3, 2, 1, 1, 64, 64));  // stride 2
    CHECK_FALSE(drt::winograd_conv3x3::applies(3, 1, 0, 1, 64, 64));  // no padding
    CHECK_FALSE(drt::winograd_conv3x3::applies(3, 1, 1, 2, 64, 64));  // grouped
    CHECK_FALSE(drt::winograd_conv3x3::applies(1, 1, 0, 1, 64, 64));  // 1x1
    CHECK_FALSE(drt::winograd_conv3x3::applies(3, 1, 1, 1, 3, 64));   // an RGB input
    const auto weight = random_vector(32 * 24 * 9, 240), bias = random_vector(32, 241);
    const auto x = random_vector(2 * 9 * 7 * 24, 242);
    drt::conv2d_shape s = shape3x3(24, 32);
    const drt::conv2d conv(weight.data(), bias.data(), s, wino2);
    CHECK(!conv.winograd().empty());
    CHECK(conv.winograd().tile() == 2);
    CHECK(drt::conv2d(weight.data(), bias.data(), s, drt::conv2d_options::winograd_form(4)).winograd().tile() == 4);
    s.stride_h = s.stride_w = 2;
    CHECK(drt::conv2d(weight.data(), bias.data(), s, wino2).winograd().empty());
    // A conv keeps one form, chosen when built: the same conv built with conv2d_options::implicit_gemm()
    // is an implicit GEMM, has no Winograd weights, and gives the same result (within rounding).
    CHECK(conv.uses_winograd());
    CHECK_THROWS_WITH_AS(conv.weights(), doctest::Contains("built in the Winograd form"), drt::invalid_input);
    const drt::conv2d implicit(weight.data(), bias.data(), shape3x3(24, 32), implicit_gemm);
    CHECK_FALSE(implicit.uses_winograd());
    CHECK(implicit.winograd().empty());
    CHECK(implicit.weights().k() == 9 * 24);
    std::vector<float> a(2 * 9 * 7 * 32), b(a.size());
    conv.run(x.data(), 2, 9, 7, a.data(), drt::activation::relu);
    implicit.run(x.data(), 2, 9, 7, b.data(), drt::activation::relu);
    check_close(a.data(), b.data(), a.size(), "conv2d winograd vs implicit GEMM", wino_rel, wino_abs);
    // forward_prefix / forward_runs on a strided view: both forms agree with the reference on the
    // kept channels (input channels of no run zeroed), and leave the other output channels alone.
    {
      const std::size_t ldx = 30, ldy = 40, out_kept = 27, n = 2, h = 9, w = 7;
      const auto xs = random_vector(n * h * w * ldx, 247);
      const std::vector<std::vector<drt::gemm_segment>> cases = {
          {{0, 0, 24}}, {{0, 0, 17}}, {{3, 0, 10}, {20, 14, 10}}, {{6, 2, 9}}};
      for (const auto& runs : cases) {
        std::vector<float> dense(n * h * w * 24, 0.f), ref(n * h * w * 32);
        for (std::size_t p = 0; p < n * h * w; ++p)
          for (const auto& r : runs)
            for (std::size_t c = 0; c < r.k; ++c) dense[p * 24 + r.b_row + c] = xs[p * ldx + r.a_offset + c];
        drt::conv2d_ref(dense.data(), n, h, w, weight.data(), bias.data(), shape3x3(24, 32), ref.data());
        for (const drt::conv2d* cv : {&conv, &implicit}) {
          std::vector<float> got(n * h * w * ldy, winograd_sentinel), g, r;
          if (runs.size() == 1 && runs[0].a_offset == 0 && runs[0].b_row == 0)
            cv->forward_prefix(xs.data(), ldx, n, h, w, runs[0].k, got.data(), ldy, out_kept, drt::activation::relu);
          else
            cv->forward_runs(xs.data(), ldx, n, h, w, runs, got.data(), ldy, out_kept, drt::activation::relu);
          std::size_t untouched = 0;
          for (std::size_t p = 0; p < n * h * w; ++p) {
            for (std::size_t c = 0; c < out_kept; ++c) {
              g.push_back(got[p * ldy + c]);
              r.push_back(act_ref(drt::activation::relu, ref[p * 32 + c]));
            }
            for (std::size_t c = out_kept; c < ldy; ++c) untouched += got[p * ldy + c] == winograd_sentinel;
          }
          CHECK(untouched == n * h * w * (ldy - out_kept));
          check_close(g.data(), r.data(), g.size(),
                      std::string(cv->uses_winograd() ? "winograd" : "implicit GEMM") + " runs " +
                          std::to_string(runs.size()) + " first k " + std::to_string(runs[0].k),
                      wino_rel, wino_abs);
        }
      }
      std::vector<float> y(n * h * w * ldy);
      CHECK_THROWS_WITH_AS(implicit.forward_runs(xs.data(), ldx, n, h, w, {{20, 20, 8}}, y.data(), ldy, 32),
                           "conv2d: input channel runs [20, +8) -> [20, +8) (stride 30), out=32 (stride 40) do not "
                           "fit the conv [24 -> 32], groups 1",
                           drt::shape_error);
      CHECK_THROWS_WITH_AS(conv.forward_prefix(xs.data(), ldx, n, h, w, 31, y.data(), ldy, 32),
                           "conv2d: channels in=31 (stride 30), out=32 (stride 40) do not fit the conv [24 -> 32], "
                           "groups 1",
                           drt::shape_error);
    }
    // conv_bn_relu (UPerNet's fpn_convs) too, with an input prefix and an output prefix.
    const auto g = random_vector(32, 243, 0.5f, 1.5f), beta = random_vector(32, 244), mean = random_vector(32, 245);
    const auto var = random_vector(32, 246, 0.5f, 2.f);
    const drt::conv_module_weights cw{weight.data(), g.data(), beta.data(), mean.data(), var.data()};
    const drt::conv_bn_relu cbr(cw, 24, 32, 3, 1e-5f, wino2);
    const drt::conv_bn_relu cbr_implicit(cw, 24, 32, 3, 1e-5f, implicit_gemm);
    CHECK(cbr.conv().uses_winograd());
    CHECK_FALSE(cbr_implicit.conv().uses_winograd());
    std::vector<float> c(2 * 9 * 7 * 32, 0.f), d(c.size(), 0.f);
    cbr.run(x.data(), 24, 2, 9, 7, c.data(), 32, 20, 30);
    cbr_implicit.run(x.data(), 24, 2, 9, 7, d.data(), 32, 20, 30);
    check_close(c.data(), d.data(), c.size(), "conv_bn_relu winograd vs implicit GEMM", wino_rel, wino_abs);

    const drt::winograd_conv3x3 wino(weight.data(), 32, 24);
    std::vector<float> y(2 * 9 * 7 * 32);
    CHECK_THROWS_WITH_AS(
        wino.run(x.data(), 24, 2, 9, 7, {{20, 20, 8}}, nullptr, y.data(), 32, 32, drt::activation::none),
        "winograd_conv3x3: segment channels [20, +8) of a pixel stride 24 against weight rows "
        "[20, +8) of 24",
        drt::shape_error);
    CHECK_THROWS_WITH_AS(
        wino.run(x.data(), 24, 2, 9, 7, {{0, 0, 24}}, nullptr, y.data(), 32, 33, drt::activation::none),
        "winograd_conv3x3: 33 outputs (pixel stride 32) exceed the conv's 32", drt::shape_error);
    CHECK_THROWS_WITH_AS(drt::winograd_conv3x3().run(x.data(), 24, 2, 9, 7, {{0, 0, 24}}, nullptr, y.data(), 32, 32,
                                                     drt::activation::none),
                         "winograd_conv3x3: no weights", drt::invalid_input);
  }
}
