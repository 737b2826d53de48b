// linear (layers/linear.hpp) against linear_ref on sizes that leave SIMD and tile remainders,
// with and without bias, fused activation, residual (also in place) and strided rows.
// Tolerance: rel L2 <= 1e-5, max abs <= 1e-4 * max|ref| (float FMA vs double reference).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include <drt/layers/linear.hpp>

#include "test_support.hpp"

using namespace drt_test;

namespace {
constexpr double lin_rel = 1e-5, lin_abs = 1e-4;
constexpr std::size_t tile_mr = drt::detail::gemm_mr, tile_nr = drt::detail::gemm_nr;

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
    for (const dims d : {dims{1, 1, 1}, dims{tile_mr - 1, 3, tile_nr - 1}, dims{13, 17, 33}, dims{50, 32, 64},
                         dims{2 * tile_mr + 1, 64, 160}, dims{7, 160, 2 * tile_nr + 1}}) {
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
    const std::size_t m = 2 * tile_mr + 3, in = 37, out = tile_nr + 5;
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

}  // TEST_SUITE("layers")
