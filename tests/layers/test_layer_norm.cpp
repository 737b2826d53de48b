// layer_norm (layers/layer_norm.hpp) against layer_norm_ref for C = 1, 7, 32, 33, 160 (below, at,
// above and not a multiple of the SIMD width), strided rows, and in place (y aliasing x).
// Tolerance: rel L2 <= 1e-5, max abs <= 1e-4 * max|ref| (float two-pass statistics vs double).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <drt/layers/gemm_int8.hpp>
#include <drt/layers/layer_norm.hpp>

#include "test_support.hpp"

using namespace drt_test;

namespace {
constexpr double ln_rel = 1e-5, ln_abs = 1e-4;

/// Rows with a per-row offset and scale so the mean and variance matter.
std::vector<float> rows(std::size_t m, std::size_t c, unsigned seed) {
  auto x = random_vector(m * c, seed);
  const auto off = random_vector(m, seed + 1, -3.f, 3.f), sc = random_vector(m, seed + 2, 0.1f, 4.f);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < c; ++j) x[i * c + j] = off[i] + sc[i] * x[i * c + j];
  return x;
}
}  // namespace

TEST_SUITE("layers") {
  TEST_CASE("layer_norm matches layer_norm_ref") {
    // For every C and eps: the layer, its input and the reference output.
    auto for_each_case = [](auto&& fn) {
      const std::size_t m = 13;
      unsigned seed = 1;
      for (std::size_t c : {1, 7, 32, 33, 160})
        for (float eps : {1e-5f, 1e-6f}) {
          const auto g = random_vector(c, seed++, 0.5f, 1.5f), b = random_vector(c, seed++);
          const auto x = rows(m, c, seed += 3);
          const drt::layer_norm ln(g.data(), b.data(), c, eps);
          CHECK(ln.channels() == c);
          std::vector<float> ref(m * c);
          drt::layer_norm_ref(m, c, x.data(), g.data(), b.data(), eps, ref.data());
          fn(ln, m, c, x, ref, "layer_norm C=" + std::to_string(c) + " eps=" + std::to_string(eps));
        }
    };
    using vec = std::vector<float>;

    SUBCASE("out of place, parallel and serial") {
      for_each_case([](const drt::layer_norm& ln, std::size_t m, std::size_t c, const vec& x, const vec& ref,
                       const std::string& what) {
        for (bool par : {true, false}) {
          std::vector<float> y(m * c, -9.f);
          ln.run(m, x.data(), c, y.data(), c, par);
          check_close(y.data(), ref.data(), ref.size(), what, ln_rel, ln_abs);
        }
      });
    }
    SUBCASE("in place") {
      for_each_case([](const drt::layer_norm& ln, std::size_t m, std::size_t c, const vec& x, const vec& ref,
                       const std::string& what) {
        std::vector<float> y = x;
        ln.run(m, y.data(), c, y.data(), c);
        check_close(y.data(), ref.data(), ref.size(), what + " in place", ln_rel, ln_abs);
      });
    }
    SUBCASE("strided rows, in place and out of place") {
      for_each_case([](const drt::layer_norm& ln, std::size_t m, std::size_t c, const vec& x, const vec& ref,
                       const std::string& what) {
        const std::size_t ld = c + 5;
        std::vector<float> xs(m * ld, 77.f);
        for (std::size_t i = 0; i < m; ++i)
          for (std::size_t j = 0; j < c; ++j) xs[i * ld + j] = x[i * c + j];
        std::vector<float> ys(m * ld, -9.f);
        ln.run(m, xs.data(), ld, ys.data(), ld);
        ln.run(m, xs.data(), ld, xs.data(), ld);
        std::vector<float> got(m * c), got_inplace(m * c);
        std::size_t pad_changed = 0;
        for (std::size_t i = 0; i < m; ++i) {
          for (std::size_t j = 0; j < c; ++j) {
            got[i * c + j] = ys[i * ld + j];
            got_inplace[i * c + j] = xs[i * ld + j];
          }
          for (std::size_t j = c; j < ld; ++j) pad_changed += (ys[i * ld + j] != -9.f) + (xs[i * ld + j] != 77.f);
        }
        CHECK(pad_changed == 0);
        check_close(got.data(), ref.data(), ref.size(), what + " strided", ln_rel, ln_abs);
        check_close(got_inplace.data(), ref.data(), ref.size(), what + " strided in place", ln_rel, ln_abs);
      });
    }
  }

  TEST_CASE("layer_norm::run_with_ranges writes run's bits and each group's value_range; NaN where not finite") {
    // groups of 1, 5, 40 (a 32-row block and a short one) and all rows (101: four blocks)
    unsigned seed = 40;
    for (std::size_t m : {std::size_t(23), std::size_t(101)})
    for (std::size_t c : {1, 7, 16, 33, 160}) {
      const auto g = random_vector(c, seed++, 0.5f, 1.5f), b = random_vector(c, seed++);
      auto x = rows(m, c, seed += 3);
      const drt::layer_norm ln(g.data(), b.data(), c, 1e-5f);
      std::vector<float> y(m * c), yr(m * c);
      ln.run(m, x.data(), c, y.data(), c);
      {
        std::vector<float> y0(m * c);
        ln.run_with_ranges(m, x.data(), c, y0.data(), c, 0, nullptr);  // no groups: the rows, no ranges
        CHECK(y0 == y);
      }
      for (std::size_t group : {std::size_t(1), std::size_t(5), std::size_t(40), m}) {
        CAPTURE(m);
        CAPTURE(c);
        CAPTURE(group);
        std::vector<std::pair<float, float>> ranges((m + group - 1) / group);
        ln.run_with_ranges(m, x.data(), c, yr.data(), c, group, ranges.data());
        CHECK(yr == y);
        for (std::size_t gi = 0; gi < ranges.size(); ++gi) {
          const std::size_t r0 = gi * group, rows_in = std::min(group, m - r0);
          const auto want = drt::detail::value_range(y.data() + r0 * c, rows_in, c, c);
          CHECK(ranges[gi].first == want.first);
          CHECK(ranges[gi].second == want.second);
        }
      }
      // A non-finite input row makes its group's range NaN (the int8 layer reading it refuses it),
      // the other groups keep theirs.
      x[7 * c] = std::numeric_limits<float>::infinity();
      std::vector<std::pair<float, float>> ranges((m + 4) / 5);
      ln.run_with_ranges(m, x.data(), c, yr.data(), c, 5, ranges.data());
      CHECK(std::isnan(ranges[1].first));
      CHECK(std::isnan(ranges[1].second));
      CHECK(std::isfinite(ranges[0].first));
      CHECK(std::isfinite(ranges[2].second));
    }
  }

  TEST_CASE("layer_norm of a constant row is beta; C = 1 is beta") {
    const std::size_t c = 33;
    const auto g = random_vector(c, 5), b = random_vector(c, 6);
    const drt::layer_norm ln(g.data(), b.data(), c, 1e-5f);
    std::vector<float> x(2 * c, 2.5f), y(2 * c);
    ln.run(2, x.data(), c, y.data(), c);
    for (std::size_t j = 0; j < c; ++j) {
      CHECK(y[j] == doctest::Approx(b[j]).epsilon(1e-6));
      CHECK(y[c + j] == doctest::Approx(b[j]).epsilon(1e-6));
    }
    const float g1 = 2.f, b1 = -0.75f;
    const drt::layer_norm one(&g1, &b1, 1, 1e-5f);
    std::vector<float> x1 = {3.f, -100.f, 0.f}, y1(3);
    one.run(3, x1.data(), 1, y1.data(), 1);
    for (float v : y1) CHECK(v == b1);
  }

}  // TEST_SUITE("layers")

TEST_SUITE("layers") {
TEST_CASE("layer_norm keeps its accuracy on rows with a large common offset") {
  const std::size_t m = 64, c = 160;
  for (const float offset : {1000.f, 10000.f}) {
    auto x = drt_test::random_vector(m * c, 99, -1.f, 1.f);
    for (auto& v : x) v += offset;
    const std::vector<float> g(c, 1.f), b(c, 0.f);
    std::vector<float> y(m * c), ref(m * c);
    drt::layer_norm(g.data(), b.data(), c, 1e-5f).run(m, x.data(), c, y.data(), c);
    drt::layer_norm_ref(m, c, x.data(), g.data(), b.data(), 1e-5f, ref.data());
    CAPTURE(offset);
    drt_test::check_close(y.data(), ref.data(), y.size(), "offset rows", 1e-6, 1e-5);
  }
}
}
