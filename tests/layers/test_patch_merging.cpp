// Swin patch merging (layers/patch_merging.hpp) against the step-by-step reference (explicit
// padding, the four strided slices of SwinPatchMerging, concatenation, layer_norm_ref, linear_ref) on
// odd sizes (7x9, 1x1, 5x2) and even ones, batch 1 and 2, channel counts off the SIMD width; the
// channel order of the 2x2 gather checked by value.
// Tolerance: rel L2 <= 1e-5, max abs <= 1e-4 * max|ref| (float vs double).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include <drt/layers/patch_merging.hpp>

#include "test_support.hpp"

using namespace drt_test;

TEST_SUITE("layers") {
  TEST_CASE("patch_merging gather: transformers' order x[0::2,0::2], x[1::2,0::2], x[0::2,1::2], x[1::2,1::2]") {
    // 3x3 single-channel map 1..9: output (0,0) = [1, 4, 2, 5]; (0,1) = [3, 6, 0, 0]; (1,0) = [7, 0, 8, 0]
    std::vector<float> x{1, 2, 3, 4, 5, 6, 7, 8, 9}, y(2 * 2 * 4);
    drt::patch_merge_gather(x.data(), 1, 3, 3, 1, y.data());
    CHECK(y == std::vector<float>{1, 4, 2, 5, 3, 6, 0, 0, 7, 0, 8, 0, 9, 0, 0, 0});
  }

  TEST_CASE("patch_merging: vs the reference on odd and even sizes") {
    struct mc {
      std::size_t n, h, w, c;
    };
    unsigned seed = 40;
    for (const mc& p :
         {mc{1, 7, 9, 6}, mc{2, 7, 9, 13}, mc{1, 8, 6, 32}, mc{1, 1, 1, 5}, mc{2, 5, 2, 24}, mc{1, 28, 28, 3}}) {
      const std::string what = "N=" + std::to_string(p.n) + " " + std::to_string(p.h) + "x" + std::to_string(p.w) +
                               " C=" + std::to_string(p.c);
      CAPTURE(what);
      const std::size_t c = p.c, oh = drt::patch_merging_out(p.h), ow = drt::patch_merging_out(p.w);
      const auto x = random_vector(p.n * p.h * p.w * c, seed);
      const auto g = random_vector(4 * c, seed + 1, 0.5f, 1.5f), b = random_vector(4 * c, seed + 2, -0.2f, 0.2f);
      const auto red = random_vector(2 * c * 4 * c, seed + 3);
      std::vector<float> got(p.n * oh * ow * 2 * c), ref(got.size());
      const drt::patch_merging pm(g.data(), b.data(), red.data(), c);
      CHECK(pm.out_channels() == 2 * c);
      pm.run(x.data(), p.n, p.h, p.w, got.data());
      drt::patch_merging_ref(x.data(), p.n, p.h, p.w, c, g.data(), b.data(), red.data(), 1e-5f, ref.data());
      check_close(got.data(), ref.data(), ref.size(), what, 1e-5, 1e-4);
      seed += 10;
    }
  }
}
