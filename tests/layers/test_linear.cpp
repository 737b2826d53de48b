// linear (layers/linear.hpp) against linear_ref on sizes that leave SIMD and tile remainders,
// with and without bias, fused activation, residual (also in place) and strided rows.
// Tolerance: rel L2 <= 1e-5, max abs <= 1e-4 * max|ref| (float FMA vs double reference).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <drt/core/observer.hpp>
#include <drt/layers/linear.hpp>

#include "test_support.hpp"

using namespace drt_test;

namespace {
constexpr double lin_rel = 1e-5, lin_abs = 1e-4;
constexpr std::size_t lin_mr = drt::detail::gemm_mr, lin_nr = drt::detail::gemm_nr;

float apply(drt::activation a, float v) {
  if (a == drt::activation::relu) return drt::activate<drt::activation::relu>(v);
  if (a == drt::activation::gelu) return drt::activate<drt::activation::gelu>(v);
  return v;
}
}  // namespace

TEST_SUITE("layers") {
  TEST_CASE("linear matches linear_ref") {
    struct dims {
      std::size_t m, in, out;
    };
    unsigned seed = 1;
    for (const dims d : {dims{1, 1, 1}, dims{lin_mr - 1, 3, lin_nr - 1}, dims{13, 17, 33}, dims{50, 32, 64},
                         dims{2 * lin_mr + 1, 64, 160}, dims{7, 160, 2 * lin_nr + 1}}) {
      for (bool with_bias : {true, false}) {
        const auto w = random_vector(d.out * d.in, seed++), b = random_vector(d.out, seed++),
                   x = random_vector(d.m * d.in, seed++);
        const drt::linear lin(w.data(), with_bias ? b.data() : nullptr, d.out, d.in);
        CHECK(lin.in_features() == d.in);
        CHECK(lin.out_features() == d.out);
        CHECK((lin.bias() != nullptr) == with_bias);
        std::vector<float> y(d.m * d.out), ref(d.m * d.out);
        lin.run(d.m, x.data(), d.in, y.data(), d.out);
        drt::linear_ref(d.m, x.data(), w.data(), with_bias ? b.data() : nullptr, d.out, d.in, ref.data());
        check_close(y.data(), ref.data(), ref.size(),
                    "linear m=" + std::to_string(d.m) + " " + std::to_string(d.in) + "->" + std::to_string(d.out),
                    lin_rel, lin_abs);
      }
    }
  }

  TEST_CASE("linear with activation, residual and strided rows equals act(linear_ref) + residual") {
    const std::size_t m = 2 * lin_mr + 3, in = 37, out = lin_nr + 5;
    const std::size_t ldx = in + 4, ldy = out + 3;
    const auto w = random_vector(out * in, 81), b = random_vector(out, 82);
    const drt::linear lin(w.data(), b.data(), out, in);
    auto xs = random_vector(m * ldx, 83);
    std::vector<float> x(m * in);  // contiguous copy for the reference
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t c = 0; c < in; ++c) x[i * in + c] = xs[i * ldx + c];
    std::vector<float> lin_out(m * out);
    drt::linear_ref(m, x.data(), w.data(), b.data(), out, in, lin_out.data());
    const auto res = random_vector(m * ldy, 84);

    auto reference = [&](drt::activation act) {
      std::vector<float> ref(m * out);
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t o = 0; o < out; ++o) ref[i * out + o] = apply(act, lin_out[i * out + o]) + res[i * ldy + o];
      return ref;
    };
    const drt::activation acts[] = {drt::activation::none, drt::activation::relu, drt::activation::gelu};

    SUBCASE("separate residual") {
      for (auto act : acts) {
        CAPTURE(static_cast<int>(act));
        std::vector<float> y(m * ldy, -7.f);
        lin.run(m, xs.data(), ldx, y.data(), ldy, act, res.data(), ldy);
        std::vector<float> got(m * out);
        std::size_t pad_changed = 0;
        for (std::size_t i = 0; i < m; ++i)
          for (std::size_t o = 0; o < ldy; ++o)
            if (o < out)
              got[i * out + o] = y[i * ldy + o];
            else
              pad_changed += y[i * ldy + o] != -7.f;
        CHECK(pad_changed == 0);
        const auto ref = reference(act);
        check_close(got.data(), ref.data(), ref.size(), "linear + residual", lin_rel, lin_abs);
      }
    }
    SUBCASE("residual in place (y holds it on entry)") {
      for (auto act : acts) {
        CAPTURE(static_cast<int>(act));
        std::vector<float> y = res;
        lin.run(m, xs.data(), ldx, y.data(), ldy, act, y.data(), ldy, /*allow_parallel=*/false);
        std::vector<float> got(m * out);
        std::size_t pad_changed = 0;
        for (std::size_t i = 0; i < m; ++i)
          for (std::size_t o = 0; o < ldy; ++o)
            if (o < out)
              got[i * out + o] = y[i * ldy + o];
            else
              pad_changed += y[i * ldy + o] != res[i * ldy + o];
        CHECK(pad_changed == 0);
        const auto ref = reference(act);
        check_close(got.data(), ref.data(), ref.size(), "linear + residual in place", lin_rel, lin_abs);
      }
    }
  }


  // The low precisions through `linear` (the kernels themselves: test_gemm_int8.cpp, test_gemm_bf16.cpp).
  // References in double from the documented numerics: bf16 rounds both operands (nearest even) and
  // sums exactly; int8 quantizes the input with the calibrated or the call's own range and the weights
  // per output channel (max|w| / 127). Tolerance rel L2 <= 1e-5 (fp32 sums of exact products).
  TEST_CASE("linear in bf16 and int8 equals its low-precision reference on every prefix") {
    const std::size_t m = 2 * lin_mr + 5, in = 71, out = lin_nr + 9, ldx = in + 3;
    const auto w = random_vector(out * in, 91), b = random_vector(out, 92);
    auto x = random_vector(m * ldx, 93, -2.f, 3.f);
    const drt::linear lin(w.data(), b.data(), out, in);
    std::vector<float> scale(out);
    for (std::size_t o = 0; o < out; ++o) {
      float amax = 0.f;
      for (std::size_t c = 0; c < in; ++c) amax = std::max(amax, std::abs(w[o * in + c]));
      scale[o] = amax / 127.f;
    }
    // reference of the first `outs` outputs from the first `ins` inputs; q: int8 input quantization
    auto reference = [&](drt::precision p, std::size_t outs, std::size_t ins, const drt::quant_params& q) {
      std::vector<float> ref(m * outs);
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t o = 0; o < outs; ++o) {
          double acc = 0;
          for (std::size_t c = 0; c < ins; ++c) {
            const float xv = x[i * ldx + c], wv = w[o * in + c];
            if (p == drt::precision::bf16)
              acc += double(drt::from_bf16(drt::to_bf16(xv))) * drt::from_bf16(drt::to_bf16(wv));
            else
              acc += double(drt::dequantize_u8(drt::quantize_u8(xv, q), q)) *
                     (double(drt::quantize_s8(wv, scale[o])) * scale[o]);
          }
          ref[i * outs + o] = float(acc + b[o]);
        }
      return ref;
    };
    auto call_range = [&](std::size_t ins) {
      float lo = x[0], hi = x[0];
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t c = 0; c < ins; ++c) lo = std::min(lo, x[i * ldx + c]), hi = std::max(hi, x[i * ldx + c]);
      return drt::quant_params_u8(lo, hi);
    };
    struct prefix {
      std::size_t outs, ins;
    };
    for (const prefix pf : {prefix{out, in}, prefix{out - 3, in}, prefix{5, 33}, prefix{lin_nr, 4}, prefix{1, 1}}) {
      CAPTURE(pf.outs);
      CAPTURE(pf.ins);
      std::vector<float> y(m * pf.outs);
      lin.run_prefix(m, pf.outs, pf.ins, x.data(), ldx, y.data(), pf.outs, drt::activation::none, nullptr, 0, nullptr,
                     drt::precision::bf16);
      auto ref = reference(drt::precision::bf16, pf.outs, pf.ins, {});
      check_close(y.data(), ref.data(), ref.size(), "linear bf16", lin_rel, lin_abs);
      lin.run_prefix(m, pf.outs, pf.ins, x.data(), ldx, y.data(), pf.outs, drt::activation::none, nullptr, 0, nullptr,
                     drt::precision::int8);
      ref = reference(drt::precision::int8, pf.outs, pf.ins, call_range(pf.ins));
      check_close(y.data(), ref.data(), ref.size(), "linear int8, the call's own range", lin_rel, lin_abs);
    }
    SUBCASE("a calibrated range is used as set, and clips what falls outside it") {
      drt::linear cal = lin;
      CHECK(cal.input_quant() == nullptr);
      cal.set_input_range(-1.f, 1.5f);  // x spans [-2, 3]: both ends clip
      REQUIRE(cal.input_quant() != nullptr);
      std::vector<float> y(m * out);
      cal.run(m, x.data(), ldx, y.data(), out, drt::activation::none, nullptr, 0, true, drt::precision::int8);
      const auto ref = reference(drt::precision::int8, out, in, drt::quant_params_u8(-1.f, 1.5f));
      check_close(y.data(), ref.data(), ref.size(), "linear int8, calibrated", lin_rel, lin_abs);
      const auto unclipped = reference(drt::precision::int8, out, in, call_range(in));
      double diff = 0;
      for (std::size_t i = 0; i < y.size(); ++i) diff = std::max(diff, double(std::abs(y[i] - unclipped[i])));
      CHECK(diff > 0.1);  // the clip changed the result: the range was really applied
      cal.clear_input_range();
      CHECK(cal.input_quant() == nullptr);
    }
    SUBCASE("int8 with a non-finite input is refused with the layer's shape, calibrated range or not") {
      for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
        x[5] = bad;
        std::vector<float> y(m * out);
        CHECK_THROWS_WITH_AS(lin.run(m, x.data(), ldx, y.data(), out, drt::activation::none, nullptr, 0, true,
                                     drt::precision::int8),
                             doctest::Contains("non-finite"), drt::invalid_input);
        drt::linear cal = lin;
        cal.set_input_range(-1.f, 1.5f);  // quantizing alone would clamp the NaN to a finite code
        CHECK_THROWS_WITH_AS(cal.run(m, x.data(), ldx, y.data(), out, drt::activation::none, nullptr, 0, true,
                                     drt::precision::int8),
                             doctest::Contains("non-finite"), drt::invalid_input);
      }
    }
    SUBCASE("every precision reports the input it reads to an observer (int8 calibration)") {
      struct counter : drt::activation_observer {
        const void* layer = nullptr;
        std::size_t rows = 0, cols = 0;
        void observe(const void* l, const float*, std::size_t r, std::size_t c, std::size_t) override {
          layer = l, rows = r, cols = c;
        }
      } obs;
      drt::observing_session session(obs);
      std::vector<float> y(m * out);
      lin.run_prefix(m, 7, 20, x.data(), ldx, y.data(), 7);
      CHECK(obs.layer == &lin);
      CHECK(obs.rows == m);
      CHECK(obs.cols == 20);
    }
  }

}  // TEST_SUITE("layers")
