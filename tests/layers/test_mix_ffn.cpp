// mix_ffn (layers/mix_ffn.hpp) against the composition of the references
// (ref: transformers modeling_segformer.py, SegformerMixFFN): linear_ref (dense1), conv2d_ref with
// groups = hidden 3x3 pad 1 (SegformerDWConv), the activation, linear_ref (dense2), plus the residual.
// Channels and hidden sizes off the SIMD width (17 -> 68, 5 -> 20) and on it (32 -> 128), odd maps.
// Tolerance: rel L2 <= 1e-5, max abs <= 1e-4 * max|ref| (float vs double).
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <string>
#include <vector>

#include <drt/core/observer.hpp>
#include <drt/core/parallel.hpp>
#include <drt/layers/mix_ffn.hpp>

#include "test_support.hpp"

using namespace drt_test;

namespace {
constexpr double ffn_rel = 1e-5, ffn_abs = 1e-4;

/// `kept` (0: all): the hidden prefix the layer computes; the reference runs a Mix-FFN of `kept`
/// hidden units built from the first rows of dense1 / the depthwise conv and the first columns of dense2.
void check_ffn(std::size_t n, std::size_t h, std::size_t w, std::size_t c, std::size_t hidden, drt::activation act,
               unsigned seed, std::size_t kept = 0, int threads = 0) {
  const float s1 = 1.f / std::sqrt(float(c)), s2 = 1.f / std::sqrt(float(hidden));
  const auto d1w = random_vector(hidden * c, seed++, -s1, s1), d1b = random_vector(hidden, seed++, -0.2f, 0.2f);
  const auto dww = random_vector(hidden * 9, seed++, -0.4f, 0.4f), dwb = random_vector(hidden, seed++, -0.2f, 0.2f);
  const auto d2w = random_vector(c * hidden, seed++, -s2, s2), d2b = random_vector(c, seed++, -0.2f, 0.2f);
  drt::mix_ffn_weights wts{};
  wts.dense1_w = d1w.data();
  wts.dense1_b = d1b.data();
  wts.dw_w = dww.data();
  wts.dw_b = dwb.data();
  wts.dense2_w = d2w.data();
  wts.dense2_b = d2b.data();
  const drt::mix_ffn ffn(wts, c, hidden, act);
  CHECK(ffn.channels() == c);
  CHECK(ffn.hidden() == hidden);
  CHECK(ffn.macs(h, w) == doctest::Approx(double(h) * w * (2.0 * c * hidden + 9.0 * hidden)));

  const std::size_t m = n * h * w;
  const auto x = random_vector(m * c, seed++, -2.f, 2.f), residual = random_vector(m * c, seed++);
  std::vector<float> out = residual;
  {
    const int before = drt::max_threads();
    drt::set_threads(threads ? threads : before);
    ffn.run(x.data(), n, h, w, out.data(), kept);
    drt::set_threads(before);
  }

  const std::size_t full = hidden;
  if (kept) hidden = kept;
  std::vector<float> d2k(c * hidden);  // dense2's first `hidden` columns
  for (std::size_t o = 0; o < c; ++o)
    for (std::size_t i = 0; i < hidden; ++i) d2k[o * hidden + i] = d2w[o * full + i];
  std::vector<float> a(m * hidden), b(m * hidden), y(m * c), ref(m * c);
  drt::linear_ref(m, x.data(), d1w.data(), d1b.data(), hidden, c, a.data());
  drt::conv2d_shape dw;
  dw.in_channels = dw.out_channels = dw.groups = hidden;
  dw.kernel_h = dw.kernel_w = 3;
  dw.pad_h = dw.pad_w = 1;
  drt::conv2d_ref(a.data(), n, h, w, dww.data(), dwb.data(), dw, b.data());
  for (auto& v : b) {
    if (act == drt::activation::gelu) v = drt::gelu_ref(v);
    if (act == drt::activation::relu) v = std::max(v, 0.f);
  }
  drt::linear_ref(m, b.data(), d2k.data(), d2b.data(), c, hidden, y.data());
  for (std::size_t i = 0; i < m * c; ++i) ref[i] = residual[i] + y[i];
  const std::string what = "mix_ffn " + std::to_string(n) + "x" + std::to_string(h) + "x" + std::to_string(w) + " " +
                           std::to_string(c) + "->" + std::to_string(full) + " kept " + std::to_string(hidden) +
                           " act=" + std::to_string(int(act));
  check_close(out.data(), ref.data(), ref.size(), what + " threads " + std::to_string(threads), ffn_rel, ffn_abs);
  INFO(what);
  CHECK(compare(out.data(), residual.data(), residual.size()).rel_l2 > 1e-2);  // the FFN term is not negligible
}
}  // namespace

TEST_SUITE("layers") {
  TEST_CASE("mix_ffn equals dense1, depthwise 3x3, activation, dense2 and the residual") {
    SUBCASE("gelu (SegFormer)") {
      check_ffn(2, 13, 7, 17, 68, drt::activation::gelu, 10);
      check_ffn(1, 8, 8, 32, 128, drt::activation::gelu, 20);
      check_ffn(1, 1, 1, 5, 20, drt::activation::gelu, 30);
      check_ffn(1, 2, 9, 3, 12, drt::activation::gelu, 35);
    }
    SUBCASE("relu") { check_ffn(2, 7, 5, 17, 68, drt::activation::relu, 40); }
    SUBCASE("none") { check_ffn(1, 5, 11, 33, 40, drt::activation::none, 50); }
  }

  TEST_CASE("mix_ffn compensated bias: a prefix keeps the mean output of the full layer on its calibration rows") {
    // The hidden activations feed dense2 linearly, so adding the dropped units' mean contribution to
    // dense2's bias makes the prefix's output mean over the calibration rows equal the full layer's.
    const std::size_t c = 24, hidden = 96, n = 1, h = 6, w = 7, m = n * h * w;
    unsigned seed = 80;
    const auto d1w = random_vector(hidden * c, seed++, -0.3f, 0.3f), d1b = random_vector(hidden, seed++, 0.f, 0.5f);
    const auto dww = random_vector(hidden * 9, seed++, -0.4f, 0.4f), dwb = random_vector(hidden, seed++, 0.f, 0.3f);
    const auto d2w = random_vector(c * hidden, seed++, -0.2f, 0.2f), d2b = random_vector(c, seed++, -0.2f, 0.2f);
    const drt::mix_ffn ffn({d1w.data(), d1b.data(), dww.data(), dwb.data(), d2w.data(), d2b.data()}, c, hidden);
    const auto x = random_vector(m * c, seed++, -1.f, 1.f);
    // the mean hidden activation, as calibration observes it
    struct mean_observer : drt::activation_observer {
      std::vector<double> sum;
      std::size_t rows = 0;
      std::size_t hidden_units = 0;
      void observe(const void*, const float* a, std::size_t r, std::size_t ch, std::size_t ld) override {
        if (ch != hidden_units) return;  // dense1's inputs
        sum.resize(ch, 0.0);
        for (std::size_t i = 0; i < r; ++i)  // the fused layer reports a band of rows per call
          for (std::size_t j = 0; j < ch; ++j) sum[j] += a[i * ld + j];
        rows += r;
      }
    } obs;
    obs.hidden_units = hidden;
    std::vector<float> full(m * c, 0.f);
    {
      drt::observing_session session(obs);
      ffn.run(x.data(), n, h, w, full.data());
    }
    REQUIRE(obs.rows == m);
    std::vector<float> mean(hidden);
    for (std::size_t j = 0; j < hidden; ++j) mean[j] = float(obs.sum[j] / double(m));
    for (const std::size_t kept : {std::size_t{10}, std::size_t{48}, hidden}) {
      CAPTURE(kept);
      const auto bias = ffn.dense2().compensated_bias(kept, mean.data());
      for (std::size_t o = 0; o < c; ++o) {  // against the plain sum
        double ref = d2b[o];
        for (std::size_t u = kept; u < hidden; ++u) ref += double(d2w[o * hidden + u]) * mean[u];
        CHECK(bias[o] == doctest::Approx(ref).epsilon(1e-5));
      }
      std::vector<float> plain(m * c, 0.f), comp(m * c, 0.f);
      ffn.run(x.data(), n, h, w, plain.data(), kept);
      ffn.run(x.data(), n, h, w, comp.data(), kept, bias.data());
      for (std::size_t o = 0; o < c; ++o) {
        double mf = 0, mc = 0, mp = 0;
        for (std::size_t i = 0; i < m; ++i) {
          mf += full[i * c + o];
          mc += comp[i * c + o];
          mp += plain[i * c + o];
        }
        CHECK(mc / double(m) == doctest::Approx(mf / double(m)).epsilon(1e-4));
        if (kept == 10 && o == 0) CHECK(std::abs(mp - mf) / double(m) > 1e-3);  // without it the mean moves
      }
    }
  }

  TEST_CASE("mix_ffn fused in bands: many bands, runs of bands across threads, image edges and boundaries") {
    // Rows of 64 pixels x 512 hidden units make bands of 3 rows (mix_ffn::band_rows): 7 bands for
    // 20 rows, split into runs whose boundary rows are computed once and shared; 1, 2 and 3 threads
    // (3 runs per image), batch 2, a hidden prefix, and an image of one band.
    CHECK(drt::mix_ffn::band_rows(20, 64, 512) == 3);
    CHECK(drt::mix_ffn::band_rows(4, 8, 16) == 2);  // at most half the image
    CHECK(drt::mix_ffn::band_rows(40, 16, 2048) == 4);  // at least 64 pixels
    for (const int threads : {1, 2, 3}) check_ffn(1, 20, 64, 16, 512, drt::activation::gelu, 90, 0, threads);
    check_ffn(2, 11, 64, 8, 512, drt::activation::gelu, 91, 0, 3);
    check_ffn(1, 19, 64, 8, 512, drt::activation::relu, 92, 300, 2);
    check_ffn(1, 2, 64, 8, 512, drt::activation::gelu, 93, 0, 2);
  }

  TEST_CASE("mix_ffn gives the same bits whatever the number of threads, in every precision") {
    // int8 quantizes dense1 with one range for the whole input and dense2 per band (a function of
    // the shape only), so the runs of bands each thread sweeps do not change the result.
    const std::size_t c = 16, hidden = 512, h = 20, w = 64;
    unsigned seed = 100;
    const auto d1w = random_vector(hidden * c, seed++, -0.25f, 0.25f), d1b = random_vector(hidden, seed++);
    const auto dww = random_vector(hidden * 9, seed++, -0.4f, 0.4f), dwb = random_vector(hidden, seed++);
    const auto d2w = random_vector(c * hidden, seed++, -0.05f, 0.05f), d2b = random_vector(c, seed++);
    const drt::mix_ffn ffn({d1w.data(), d1b.data(), dww.data(), dwb.data(), d2w.data(), d2b.data()}, c, hidden);
    const auto x = random_vector(h * w * c, seed++, -2.f, 2.f);
    const int before = drt::max_threads();
    for (const auto p : {drt::precision::fp32, drt::precision::bf16, drt::precision::int8}) {
      std::vector<std::vector<float>> outs;
      for (const int threads : {1, 2, 3}) {
        drt::set_threads(threads);
        outs.emplace_back(h * w * c, 0.f);
        ffn.run(x.data(), 1, h, w, outs.back().data(), 0, nullptr, p);
      }
      drt::set_threads(before);
      CAPTURE(drt::to_string(p));
      CHECK(outs[0] == outs[1]);
      CHECK(outs[0] == outs[2]);
      double energy = 0;
      for (const float v : outs[0]) energy += double(v) * v;
      CHECK(energy / double(h * w * c) > 1e-3);  // a real output, not zeros
    }
    // int8 with the input's range handed in (as the LayerNorm before it does): the same bits.
    std::vector<float> own(h * w * c, 0.f), given(h * w * c, 0.f);
    const auto range = drt::detail::value_range(x.data(), h * w, c, c);
    ffn.run(x.data(), 1, h, w, own.data(), 0, nullptr, drt::precision::int8);
    ffn.run(x.data(), 1, h, w, given.data(), 0, nullptr, drt::precision::int8, &range);
    CHECK(own == given);
  }

  TEST_CASE("mix_ffn in int8 equals its layers run one after the other, dense2 quantized per band") {
    // The fused layer quantizes dense1's input with one range and dense2's per band; the layers run
    // apart, each int8 linear with its own input range, dense2 one band (mix_ffn::band_rows) at a
    // time, must give the same bits.
    for (const auto& [h, w, c, hidden] : {std::array<std::size_t, 4>{20, 64, 16, 512}, {9, 7, 5, 20}, {2, 3, 32, 128}}) {
      unsigned seed = unsigned(200 + h);
      const auto d1w = random_vector(hidden * c, seed++, -0.25f, 0.25f), d1b = random_vector(hidden, seed++);
      const auto dww = random_vector(hidden * 9, seed++, -0.4f, 0.4f), dwb = random_vector(hidden, seed++);
      const auto d2w = random_vector(c * hidden, seed++, -0.05f, 0.05f), d2b = random_vector(c, seed++);
      const drt::mix_ffn ffn({d1w.data(), d1b.data(), dww.data(), dwb.data(), d2w.data(), d2b.data()}, c, hidden);
      const auto x = random_vector(h * w * c, seed++, -2.f, 2.f), residual = random_vector(h * w * c, seed++);
      std::vector<float> fused = residual, apart = residual, a(h * w * hidden), b(h * w * hidden);
      ffn.run(x.data(), 1, h, w, fused.data(), 0, nullptr, drt::precision::int8);

      const drt::linear dense1(d1w.data(), d1b.data(), hidden, c), dense2(d2w.data(), d2b.data(), c, hidden);
      const drt::conv2d_dw<3> dw(dww.data(), dwb.data(), hidden);
      dense1.run_prefix(h * w, hidden, c, x.data(), c, a.data(), hidden, drt::activation::none, nullptr, 0, nullptr,
                        drt::precision::int8);
      dw.run<drt::activation::gelu>(a.data(), 1, h, w, b.data());
      const std::size_t R = drt::mix_ffn::band_rows(h, w, hidden);
      for (std::size_t y0 = 0; y0 < h; y0 += R) {
        const std::size_t rows = std::min(R, h - y0);
        float* o = apart.data() + y0 * w * c;
        dense2.run_prefix(rows * w, c, hidden, b.data() + y0 * w * hidden, hidden, o, c, drt::activation::none, o, c,
                          nullptr, drt::precision::int8);
      }
      CAPTURE(h);
      CAPTURE(w);
      CHECK(fused == apart);
      CHECK(compare(fused.data(), residual.data(), residual.size()).rel_l2 > 1e-3);  // dense2 added something
    }
  }

  TEST_CASE("mix_ffn on a hidden prefix equals the Mix-FFN of the first hidden units") {
    // prefixes on and off the SIMD width and the GEMM panel width, down to one unit
    for (const std::size_t kept : {1, 7, 16, 33, 64, 127})
      check_ffn(2, 9, 7, 32, 128, drt::activation::gelu, 60 + unsigned(kept), kept);
    check_ffn(1, 5, 6, 17, 68, drt::activation::relu, 70, 20);
  }

}  // TEST_SUITE("layers")
