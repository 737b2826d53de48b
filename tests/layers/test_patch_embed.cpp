// overlap_patch_embed (layers/patch_embed.hpp) against conv2d_ref (k x k, stride s, padding k/2)
// followed by layer_norm_ref (ref: transformers modeling_segformer.py, SegformerOverlapPatchEmbeddings):
// the stage-1 7x7/4 embedding of 3 channels and the 3x3/2 embeddings of later stages, on odd sizes.
// Tolerance: rel L2 <= 1e-5, max abs <= 1e-4 * max|ref| (float vs double).
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include <drt/layers/patch_embed.hpp>

#include "test_support.hpp"

using namespace drt_test;

namespace {
constexpr double pe_rel = 1e-5, pe_abs = 1e-4;

void check_embed(std::size_t n, std::size_t h, std::size_t w, std::size_t ic, std::size_t oc, std::size_t patch,
                 std::size_t stride, std::size_t expect_oh, std::size_t expect_ow, unsigned seed) {
  const float sc = 1.f / std::sqrt(float(ic * patch * patch));
  const auto pw = random_vector(oc * ic * patch * patch, seed++, -sc, sc), pb = random_vector(oc, seed++, -0.2f, 0.2f);
  const auto g = random_vector(oc, seed++, 0.5f, 1.5f), b = random_vector(oc, seed++, -0.3f, 0.3f);
  const float eps = 1e-6f;
  const drt::overlap_patch_embed pe(pw.data(), pb.data(), g.data(), b.data(), ic, oc, patch, stride, eps);
  const std::size_t oh = pe.out_h(h), ow = pe.out_w(w);
  CHECK(oh == expect_oh);
  CHECK(ow == expect_ow);
  CHECK(pe.shape().pad_h == patch / 2);
  CHECK(pe.shape().stride_w == stride);

  const auto x = random_vector(n * h * w * ic, seed++, -2.f, 2.f);
  std::vector<float> y(n * oh * ow * oc, 1e9f), conv(n * oh * ow * oc), ref(n * oh * ow * oc);
  pe.run(x.data(), n, h, w, y.data());
  drt::conv2d_ref(x.data(), n, h, w, pw.data(), pb.data(), pe.shape(), conv.data());
  drt::layer_norm_ref(n * oh * ow, oc, conv.data(), g.data(), b.data(), eps, ref.data());
  check_close(y.data(), ref.data(), ref.size(),
              "patch embed " + std::to_string(ic) + "->" + std::to_string(oc) + " k=" + std::to_string(patch) +
                  " s=" + std::to_string(stride) + " on " + std::to_string(h) + "x" + std::to_string(w),
              pe_rel, pe_abs);
}
}  // namespace

TEST_SUITE("layers") {
  TEST_CASE("overlap_patch_embed equals conv2d_ref then layer_norm_ref") {
    SUBCASE("7x7 stride 4 (stage 1)") {
      check_embed(2, 29, 23, 3, 32, 7, 4, 8, 6, 1);
      check_embed(1, 13, 7, 3, 17, 7, 4, 4, 2, 2);
      check_embed(1, 3, 2, 3, 5, 7, 4, 1, 1, 3);
    }
    SUBCASE("3x3 stride 2 (stages 2-4)") {
      check_embed(2, 8, 6, 32, 64, 3, 2, 4, 3, 10);
      check_embed(1, 13, 7, 17, 33, 3, 2, 7, 4, 11);
      check_embed(1, 1, 1, 5, 160, 3, 2, 1, 1, 12);
    }
  }

}  // TEST_SUITE("layers")
