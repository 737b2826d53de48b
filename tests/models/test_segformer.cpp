// SegFormer against the transformers fixtures (../shared) and the vendored CamVid case.
#include <doctest/doctest.h>

#include <drt/models/segformer.hpp>

#include "test_support.hpp"

using namespace drt_test;

namespace {
drt::tensor4 as_tensor4(const drt::host_tensor& t) {
  REQUIRE(t.shape.size() == 4);
  drt::tensor4 x = drt::tensor4::from_shape({std::size_t(t.shape[0]), std::size_t(t.shape[1]),
                                             std::size_t(t.shape[2]), std::size_t(t.shape[3])});
  std::copy(t.data.begin(), t.data.end(), x.data());
  return x;
}
void check_shape_eq(const drt::tensor4& x, const std::vector<std::int64_t>& s) {
  REQUIRE(x.dimension() == s.size());
  for (std::size_t i = 0; i < s.size(); ++i) REQUIRE(std::int64_t(x.shape(i)) == s[i]);
}
}  // namespace

TEST_SUITE("models") {
TEST_CASE("segformer-b0 fixture: logits and encoder stages match transformers") {
  const std::string dir = shared_dir() + "/fixtures/segformer-b0";
  if (!require_file(dir + "/model.safetensors")) return;
  const auto model = drt::segformer_model::from_dir(dir);
  for (const char* name : {"case_64x64", "case_96x80", "case_512x512"}) {
    SUBCASE(name) {
      const drt::safetensors_file io(dir + "/" + name + ".safetensors");
      const auto x = as_tensor4(io.read_float("pixel_values"));
      const auto out = model.forward(x, true);
      const auto ref = io.read_float("logits");
      check_shape_eq(out.logits, ref.shape);
      check_close(out.logits.data(), ref.data.data(), ref.data.size(), std::string(name) + " logits");
      for (std::size_t s = 0; s < 4; ++s) {
        const std::string key = "encoder_stage" + std::to_string(s);
        if (!io.contains(key)) continue;
        const auto r = io.read_float(key);
        check_shape_eq(out.stages[s], r.shape);
        check_close(out.stages[s].data(), r.data.data(), r.data.size(), std::string(name) + " " + key);
      }
    }
  }
}
}
