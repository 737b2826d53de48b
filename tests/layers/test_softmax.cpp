// softmax_row (layers/softmax.hpp) against softmax_ref for n = 1, 3, 8, 17, 256 and around the
// SIMD width, for ordinary logits and large magnitudes (+-80, +-1e4) that overflow a naive exp.
// Tolerance: rel L2 <= 1e-5, max abs <= 1e-4 * max|ref| (xsimd exp vs double exp); every output
// finite, in [0, 1], summing to 1 within 1e-5. softmax_row_u8 (int8 attention's numerator codes)
// against round(255 exp(x - max)) in double: every code within 1 of it, at most 1 in 2000 off (the
// AVX-512 exp is a polynomial accurate to 1e-3 of a code: only values next to a rounding boundary
// may round the other way), the row's largest 255, the returned sum their sum.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <utility>
#include <set>
#include <string>
#include <vector>

#include <drt/layers/softmax.hpp>

#include "test_support.hpp"

using namespace drt_test;

namespace {
constexpr double sm_rel = 1e-5, sm_abs = 1e-4;

std::vector<std::size_t> lengths() {
  constexpr std::size_t w = xsimd::batch<float>::size;
  std::set<std::size_t> s{1, 3, 8, 17, 256, w - 1, w, w + 1, 2 * w + 3};
  s.erase(0);
  return {s.begin(), s.end()};
}

void check_softmax(std::vector<float> x, const std::string& what) {
  const std::size_t n = x.size();
  std::vector<float> ref(n);
  drt::softmax_ref(x.data(), ref.data(), n);
  drt::softmax_row(x.data(), n);
  double sum = 0;
  std::size_t bad = 0;
  for (float v : x) {
    sum += v;
    bad += !(std::isfinite(v) && v >= 0.f && v <= 1.f);
  }
  INFO(what);
  CHECK(bad == 0);
  CHECK(sum == doctest::Approx(1.0).epsilon(1e-5));
  check_close(x.data(), ref.data(), n, what, sm_rel, sm_abs);
}
}  // namespace

TEST_SUITE("layers") {
  TEST_CASE("softmax_row matches softmax_ref") {
    unsigned seed = 1;
    for (std::size_t n : lengths()) {
      const std::string len = " n=" + std::to_string(n);
      check_softmax(random_vector(n, seed++, -5.f, 5.f), "[-5, 5]" + len);
      check_softmax(random_vector(n, seed++, -80.f, 80.f), "[-80, 80]" + len);
      check_softmax(random_vector(n, seed++, 70.f, 80.f), "[70, 80]" + len);  // exp(80) overflows float
      check_softmax(random_vector(n, seed++, -80.f, -70.f), "[-80, -70]" + len);
      check_softmax(random_vector(n, seed++, -1e4f, 1e4f), "[-1e4, 1e4]" + len);
    }
  }

  TEST_CASE("softmax_row: known values") {
    constexpr std::size_t w = xsimd::batch<float>::size;
    SUBCASE("a single element is 1") {
      float x = 87.5f;
      drt::softmax_row(&x, 1);
      CHECK(x == 1.f);
    }
    SUBCASE("equal logits give 1/n, in the SIMD body and the tail") {
      for (std::size_t n : {std::size_t(3), w, 2 * w + 3}) {
        std::vector<float> x(n, 80.f);
        drt::softmax_row(x.data(), n);
        for (float v : x) CHECK(v == doctest::Approx(1.0 / n).epsilon(1e-6));
      }
    }
    SUBCASE("a max of +80 among -80s takes all the mass, wherever it sits") {
      const std::size_t n = 2 * w + 3;
      for (std::size_t at : {std::size_t(0), w - 1, w, n - 1}) {
        std::vector<float> x(n, -80.f);
        x[at] = 80.f;
        drt::softmax_row(x.data(), n);
        for (std::size_t j = 0; j < n; ++j) CHECK(x[j] == doctest::Approx(j == at ? 1.0 : 0.0));
      }
    }
    SUBCASE("log-ratio of two entries is their logit difference") {
      std::vector<float> x = {80.f, 78.f, -80.f, 79.f, 0.f, 80.f, 77.5f, 1.f, 2.f};
      drt::softmax_row(x.data(), x.size());
      CHECK(std::log(x[0] / x[1]) == doctest::Approx(2.0).epsilon(1e-5));
      CHECK(std::log(x[5] / x[6]) == doctest::Approx(2.5).epsilon(1e-5));
      CHECK(x[0] == x[5]);
    }
  }

  TEST_CASE("softmax_row_u8: codes of the exact numerators, in the SIMD body and the tail") {
    std::size_t values = 0, off = 0;
    unsigned seed = 50;
    for (std::size_t n : {std::size_t(1), std::size_t(15), std::size_t(16), std::size_t(17), std::size_t(49),
                          std::size_t(256), std::size_t(300), std::size_t(1024)})
      for (const auto& [lo, hi] : {std::pair<float, float>{-5.f, 5.f}, {-12.f, 3.f}, {70.f, 80.f}, {-1e4f, 1e4f}}) {
        const auto x = random_vector(n, seed++, lo, hi);
        std::vector<std::uint8_t> codes(n + 1, 77);  // one guard byte past the row
        const std::uint32_t sum = drt::softmax_row_u8(x.data(), n, codes.data());
        INFO("n=" << n << " [" << lo << ", " << hi << "]");
        CHECK(codes[n] == 77);
        double mx = x[0];
        for (float v : x) mx = std::max<double>(mx, v);
        std::uint32_t total = 0;
        int worst = 0, largest = 0;
        for (std::size_t j = 0; j < n; ++j) {
          const int want = static_cast<int>(std::nearbyint(255.0 * std::exp(double(x[j]) - mx)));
          const int d = std::abs(int(codes[j]) - want);
          worst = std::max(worst, d);
          off += d != 0;
          total += codes[j];
          largest = std::max<int>(largest, codes[j]);
        }
        values += n;
        CHECK(worst <= 1);
        CHECK(largest == 255);
        CHECK(sum == total);
      }
    CHECK(off * 2000 <= values);
  }

}  // TEST_SUITE("layers")
