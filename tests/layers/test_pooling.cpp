// max_pool2d and adaptive_avg_pool2d (layers/pooling.hpp) against their plain references on odd
// shapes: 13x7 and 9x11 maps, channel counts 1, 5, 17, 33 (SIMD remainders), batch 2; max-pool
// kernels 3/2 pad 1 (the ResNet stem), 2/2, 3/1 pad 1, 5/3 pad 2; adaptive bins 1, 2, 3, 6 (UPerNet's
// pyramid), bins that overlap (7 -> 3) or repeat pixels (2 -> 3), and the identity (in = out).
// Tolerance: max-pool is exact (bit-for-bit); average pooling rel L2 <= 1e-6, max abs <= 1e-6 * max|ref|
// (float accumulation vs double), on inputs in [0.5, 1.5] so that no mean cancels to near zero (a
// relative bound on a cancelled mean would measure the reference's rounding, not the kernel).
#include <doctest/doctest.h>

#include <limits>
#include <string>
#include <vector>

#include <drt/layers/pooling.hpp>

#include "test_support.hpp"

using namespace drt_test;

namespace {
void check_max_pool(std::size_t n, std::size_t h, std::size_t w, std::size_t c, const drt::pool2d_shape& p,
                    unsigned seed, float lo = -1.f, float hi = 1.f) {
  const auto x = random_vector(n * h * w * c, seed, lo, hi);
  const std::size_t oh = p.out(h), ow = p.out(w);
  std::vector<float> y(n * oh * ow * c, 123.f), ref(n * oh * ow * c, -123.f);
  drt::max_pool2d(x.data(), n, h, w, c, p, y.data());
  drt::max_pool2d_ref(x.data(), n, h, w, c, p, ref.data());
  INFO("max_pool2d k=" << p.kernel << " s=" << p.stride << " p=" << p.pad << " on " << n << "x" << h << "x" << w << "x"
                       << c);
  CHECK(y == ref);
  for (float v : y) REQUIRE(std::isfinite(v));  // padding never wins (it is -inf, not 0)
}

void check_adaptive(std::size_t n, std::size_t h, std::size_t w, std::size_t c, std::size_t oh, std::size_t ow,
                    unsigned seed) {
  const auto x = random_vector(n * h * w * c, seed, 0.5f, 1.5f);
  std::vector<float> y(n * oh * ow * c, 123.f), ref(n * oh * ow * c, -123.f);
  drt::adaptive_avg_pool2d(x.data(), n, h, w, c, y.data(), oh, ow);
  drt::adaptive_avg_pool2d_ref(x.data(), n, h, w, c, ref.data(), oh, ow);
  check_close(y.data(), ref.data(), y.size(),
              "adaptive_avg_pool2d " + std::to_string(n) + "x" + std::to_string(h) + "x" + std::to_string(w) + "x" +
                  std::to_string(c) + " -> " + std::to_string(oh) + "x" + std::to_string(ow),
              1e-6, 1e-6);
}
}  // namespace

TEST_SUITE("layers") {
  TEST_CASE("max_pool2d matches max_pool2d_ref on odd shapes") {
    const drt::pool2d_shape kernels[] = {{3, 2, 1}, {2, 2, 0}, {3, 1, 1}, {5, 3, 2}};
    unsigned seed = 1;
    for (const auto& p : kernels)
      for (std::size_t c : {1, 5, 17, 33}) {
        check_max_pool(2, 9, 11, c, p, seed++);
        check_max_pool(1, 13, 7, c, p, seed++);
      }
    SUBCASE("ResNet stem: 3/2 pad 1 output sizes (ceil_mode=False)") {
      const drt::pool2d_shape p{3, 2, 1};
      CHECK(p.out(9) == 5);
      CHECK(p.out(11) == 6);
      CHECK(p.out(112) == 56);
      CHECK(p.out(1) == 1);
    }
    SUBCASE("all-negative inputs: padded borders still take the largest real value") {
      for (std::size_t c : {1, 5, 17, 33}) check_max_pool(1, 9, 11, c, {3, 2, 1}, 100 + unsigned(c), -5.f, -1.f);
    }
    SUBCASE("1x1 input") { check_max_pool(1, 1, 1, 17, {3, 2, 1}, 7); }
  }

  TEST_CASE("adaptive_avg_pool2d matches adaptive_avg_pool2d_ref on odd shapes") {
    unsigned seed = 50;
    for (std::size_t c : {1, 5, 17, 33}) {
      for (std::size_t bins : {1, 2, 3, 6}) {
        check_adaptive(1, 13, 7, c, bins, bins, seed++);  // 7 -> 6 and 7 -> 3: overlapping bins
        check_adaptive(2, 9, 11, c, bins, bins, seed++);
      }
      check_adaptive(1, 13, 7, c, 13, 7, seed++);  // identity
      check_adaptive(1, 2, 5, c, 3, 6, seed++);    // more bins than pixels: pixels repeat
      check_adaptive(2, 13, 7, c, 1, 3, seed++);   // non-square output
    }
  }

  TEST_CASE("adaptive_avg_pool2d to 1x1 is the per-channel mean; identity copies") {
    const std::size_t h = 13, w = 7, c = 5;
    const auto x = random_vector(h * w * c, 3);
    std::vector<float> y(c);
    drt::adaptive_avg_pool2d(x.data(), 1, h, w, c, y.data(), 1, 1);
    for (std::size_t j = 0; j < c; ++j) {
      double s = 0;
      for (std::size_t i = 0; i < h * w; ++i) s += x[i * c + j];
      CHECK(y[j] == doctest::Approx(s / double(h * w)).epsilon(1e-5));
    }
    std::vector<float> same(x.size());
    drt::adaptive_avg_pool2d(x.data(), 1, h, w, c, same.data(), h, w);
    CHECK(same == x);
  }

  TEST_CASE("pooling errors name the sizes") {
    std::vector<float> x(4 * 4 * 3), y(64);
    CHECK_THROWS_WITH_AS(drt::max_pool2d(x.data(), 1, 1, 1, 3, drt::pool2d_shape{5, 1, 0}, y.data()),
                         "max_pool2d: input 1x1 with kernel 5, padding 0 gives no output", drt::shape_error);
    CHECK_THROWS_WITH_AS(drt::max_pool2d(x.data(), 1, 4, 4, 3, drt::pool2d_shape{3, 1, 2}, y.data()),
                         "max_pool2d: input 4x4 with kernel 3, padding 2 gives no output", drt::shape_error);
    CHECK_THROWS_WITH_AS(drt::adaptive_avg_pool2d(x.data(), 1, 4, 4, 3, y.data(), 0, 2),
                         "adaptive_avg_pool2d: cannot pool 4x4 to 0x2", drt::shape_error);
  }
}
