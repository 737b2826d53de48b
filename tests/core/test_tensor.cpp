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

TEST_CASE("shape_str and the exception hierarchy") {
  CHECK(drt::shape_str(std::vector<int>{768, 3072, 1, 1}) == "[768, 3072, 1, 1]");
  CHECK(drt::shape_str(std::vector<int>{}) == "[]");
  CHECK_THROWS_AS(throw drt::shape_error("x"), std::invalid_argument);
  CHECK_THROWS_AS(throw drt::io_error("x"), std::runtime_error);
}
}
