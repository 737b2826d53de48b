// value_range / range_accumulator / merge_ranges (core/value_range.hpp): the int8 layers' input
// ranges. Known values with a row stride whose padding must be ignored, the SIMD body and its tail,
// an empty input, NaN and infinities anywhere flagged as {NaN, NaN}, a large input split over the
// threads equal to the one-thread pass, and merges in any order equal to one pass. Exact: min and
// max are exact, so every check is ==.
#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
#include <limits>
#include <utility>
#include <vector>

#include <drt/core/value_range.hpp>

#include "test_support.hpp"

using drt_test::random_vector;

TEST_SUITE("core") {
  TEST_CASE("value_range: known values, row stride padding ignored, tails, empty") {
    const float pad = 1e9f;  // outside every range below: read, it would show
    for (const std::size_t cols : {std::size_t(1), std::size_t(15), std::size_t(16), std::size_t(17), std::size_t(40)}) {
      const std::size_t rows = 3, ld = cols + 5;
      std::vector<float> x(rows * ld, pad);
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t c = 0; c < cols; ++c) x[r * ld + c] = float(r) - float(c) * 0.5f;
      const auto got = drt::detail::value_range(x.data(), rows, cols, ld);
      CAPTURE(cols);
      CHECK(got.first == -0.5f * float(cols - 1));
      CHECK(got.second == 2.f);
    }
    CHECK(drt::detail::value_range(nullptr, 0, 8, 8) == std::pair<float, float>{0.f, 0.f});
  }

  TEST_CASE("value_range: a NaN or an infinity anywhere gives {NaN, NaN}") {
    const std::size_t rows = 5, cols = 37;
    for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity()})
      for (const std::size_t at : {std::size_t(0), std::size_t(16), std::size_t(36), rows * cols - 1}) {
        auto x = random_vector(rows * cols, 3u);
        x[at] = bad;
        const auto got = drt::detail::value_range(x.data(), rows, cols, cols);
        CAPTURE(at);
        CHECK(std::isnan(got.first));
        CHECK(std::isnan(got.second));
      }
  }

  TEST_CASE("value_range: a large input split over the threads equals one thread's pass") {
    const std::size_t rows = 1024, cols = 320;  // 327 K values: split outside a parallel region
    auto x = random_vector(rows * cols, 11u, -3.f, 3.f);
    x[rows * cols - 7] = -9.f;  // the extremes in the last chunk and the first
    x[5] = 8.f;
    const auto split = drt::detail::value_range(x.data(), rows, cols, cols);
    const auto serial = drt::detail::value_range_serial(x.data(), rows, cols, cols);
    CHECK(split == serial);
    CHECK(split == std::pair<float, float>{-9.f, 8.f});
    x[rows * cols / 2] = std::numeric_limits<float>::quiet_NaN();
    CHECK(std::isnan(drt::detail::value_range(x.data(), rows, cols, cols).first));
  }

  TEST_CASE("range_accumulator and merge_ranges: vectors and scalars, any merge order, NaN kept, empty neutral") {
    using simd = drt::detail::range_accumulator::simd;
    constexpr std::size_t W = simd::size;
    const auto x = random_vector(4 * W + 3, 21u, -5.f, 5.f);
    const auto want = drt::detail::value_range_serial(x.data(), 1, x.size(), x.size());
    drt::detail::range_accumulator a, b, empty;
    for (std::size_t i = 0; i < 2 * W; i += W) a.add(simd::load_unaligned(x.data() + i));
    for (std::size_t i = 2 * W; i < 4 * W; i += W) b.add(simd::load_unaligned(x.data() + i));
    for (std::size_t i = 4 * W; i < x.size(); ++i) b.add(x[i]);
    CHECK(drt::detail::merge_ranges(a.result(), b.result()) == want);
    CHECK(drt::detail::merge_ranges(b.result(), a.result()) == want);
    CHECK(drt::detail::merge_ranges(empty.result(), drt::detail::merge_ranges(a.result(), b.result())) == want);
    CHECK(empty.result().first == std::numeric_limits<float>::infinity());
    CHECK(empty.result().second == -std::numeric_limits<float>::infinity());
    b.add(std::numeric_limits<float>::infinity());
    CHECK(std::isnan(b.result().first));
    CHECK(std::isnan(drt::detail::merge_ranges(a.result(), b.result()).first));
    CHECK(std::isnan(drt::detail::merge_ranges(b.result(), a.result()).second));
  }
}
