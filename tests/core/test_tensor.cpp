// Core: layout conversions, shape formatting, exception hierarchy.
#include <doctest/doctest.h>

#include <drt/core/error.hpp>
#include <drt/core/tensor.hpp>

TEST_SUITE("core") {
TEST_CASE("NCHW <-> NHWC conversions are exact inverses on odd shapes") {
  const std::size_t n = 2, c = 5, h = 3, w = 7;
  std::vector<float> src(n * c * h * w);
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = float(i);
  const auto nhwc = drt::nchw_to_nhwc(src.data(), n, c, h, w);
  CHECK(nhwc.shape(3) == c);
  CHECK(nhwc(1, 2, 6, 4) == src[((1 * c + 4) * h + 2) * w + 6]);
  const auto back = drt::nhwc_to_nchw(nhwc);
  CHECK(std::equal(back.begin(), back.end(), src.begin()));
}

TEST_CASE("NHWC -> NCHW over several 32x32 transpose tiles with ragged edges equals the plain loop") {
  const std::size_t n = 2, h = 9, w = 11, c = 70;  // 99 pixels x 70 channels: 4 x 3 tiles, none whole at the edge
  std::vector<float> src(n * h * w * c);
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = float(i) * 0.5f - 7.f;
  const auto nchw = drt::nhwc_to_nchw(src.data(), n, h, w, c);
  REQUIRE(nchw.shape(1) == c);
  std::size_t wrong = 0;
  for (std::size_t b = 0; b < n; ++b)
    for (std::size_t y = 0; y < h; ++y)
      for (std::size_t x = 0; x < w; ++x)
        for (std::size_t ch = 0; ch < c; ++ch)
          wrong += nchw(b, ch, y, x) != src[((b * h + y) * w + x) * c + ch] ? 1 : 0;
  CHECK(wrong == 0);
  const auto nhwc = drt::nchw_to_nhwc(nchw.data(), n, c, h, w);
  CHECK(std::equal(nhwc.begin(), nhwc.end(), src.begin()));
}

TEST_CASE("shape_str and the exception hierarchy") {
  CHECK(drt::shape_str(std::vector<int>{768, 3072, 1, 1}) == "[768, 3072, 1, 1]");
  CHECK(drt::shape_str(std::vector<int>{}) == "[]");
  CHECK_THROWS_AS(throw drt::shape_error("x"), std::invalid_argument);
  CHECK_THROWS_AS(throw drt::io_error("x"), std::runtime_error);
}
}
