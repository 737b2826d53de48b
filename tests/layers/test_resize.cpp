// resize_bilinear and upsample_argmax (layers/resize.hpp) against resize_bilinear_ref
// (align_corners=False): upsampling 3x5 -> 12x20, downsampling 20x12 -> 7x5, non-integer ratios,
// the identity, channel counts around the SIMD width, channel-slice reads (ldx > C) and writes
// (ldy > C) that leave the other channels untouched; argmax of the upsampled logits.
// Tolerance: rel L2 <= 1e-5, max abs <= 1e-4 * max|ref| (float taps vs double reference); the
// identity resize is exact. upsample_argmax must agree with the double reference wherever the
// reference's top-2 margin exceeds 1e-4 (below that float rounding may legitimately flip the winner).
// resize_bilinear_sum (several maps upsampled and summed onto a base or a broadcast bias, ReLU) against
// resize_bilinear_sum_ref, same tolerance.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include <drt/layers/resize.hpp>

#include "test_support.hpp"

using namespace drt_test;

namespace {
constexpr double rs_rel = 1e-5, rs_abs = 1e-4;
constexpr float resize_sentinel = 555.f;

struct resize_case {
  std::size_t n, h, w, c, oh, ow;
};

std::string describe(const resize_case& r) {
  return std::to_string(r.n) + "x" + std::to_string(r.h) + "x" + std::to_string(r.w) + "x" + std::to_string(r.c) +
         " -> " + std::to_string(r.oh) + "x" + std::to_string(r.ow);
}

/// Reads channels [x_off, x_off + C) of an input of row stride ldx, writes channels
/// [y_off, y_off + C) of an output of row stride ldy; compares with the reference on the
/// contiguous slice and checks every other output channel still holds the resize_sentinel.
void check_resize(const resize_case& r, unsigned seed, std::size_t x_off = 0, std::size_t ldx_extra = 0,
                  std::size_t y_off = 0, std::size_t ldy_extra = 0) {
  const std::size_t ldx = r.c + x_off + ldx_extra, ldy = r.c + y_off + ldy_extra;
  const auto xs = random_vector(r.n * r.h * r.w * ldx, seed, -2.f, 2.f);
  std::vector<float> x(r.n * r.h * r.w * r.c);
  for (std::size_t p = 0; p < r.n * r.h * r.w; ++p)
    for (std::size_t j = 0; j < r.c; ++j) x[p * r.c + j] = xs[p * ldx + x_off + j];
  std::vector<float> y(r.n * r.oh * r.ow * ldy, resize_sentinel), ref(r.n * r.oh * r.ow * r.c);
  drt::resize_bilinear(xs.data() + x_off, r.n, r.h, r.w, r.c, ldx, y.data() + y_off, r.oh, r.ow, ldy);
  drt::resize_bilinear_ref(x.data(), r.n, r.h, r.w, r.c, ref.data(), r.oh, r.ow);
  std::vector<float> got(ref.size());
  std::size_t other_changed = 0;
  for (std::size_t p = 0; p < r.n * r.oh * r.ow; ++p)
    for (std::size_t j = 0; j < ldy; ++j) {
      if (j >= y_off && j < y_off + r.c)
        got[p * r.c + j - y_off] = y[p * ldy + j];
      else
        other_changed += y[p * ldy + j] != resize_sentinel;
    }
  CHECK(other_changed == 0);
  check_close(got.data(), ref.data(), ref.size(), describe(r), rs_rel, rs_abs);
  if (r.h == r.oh && r.w == r.ow) CHECK(got == x);  // weights 1 and 0: exact
}
}  // namespace

TEST_SUITE("layers") {
  TEST_CASE("resize_bilinear matches resize_bilinear_ref") {
    constexpr std::size_t w = xsimd::batch<float>::size;
    const std::size_t channels[] = {1, 3, w - 1, w, w + 1, 17, 33};
    SUBCASE("upsampling 3x5 -> 12x20 (x4) and 7x5 -> 19x27 (non-integer)") {
      unsigned seed = 10;
      for (std::size_t c : channels) {
        check_resize({2, 3, 5, c, 12, 20}, seed++);
        check_resize({1, 7, 5, c, 19, 27}, seed++);
      }
    }
    SUBCASE("downsampling 20x12 -> 7x5") {
      unsigned seed = 30;
      for (std::size_t c : channels) check_resize({2, 20, 12, c, 7, 5}, seed++);
    }
    SUBCASE("identity size is an exact copy") {
      unsigned seed = 50;
      for (std::size_t c : channels) check_resize({2, 9, 6, c, 9, 6}, seed++);
    }
    SUBCASE("single pixel and single row/column sources") {
      check_resize({1, 1, 1, 17, 4, 5}, 60);
      check_resize({1, 1, 6, 5, 3, 13}, 61);
      check_resize({2, 7, 1, 9, 2, 4}, 62);
    }
    SUBCASE("channel slices: read at ldx > C, write at ldy > C, other channels untouched") {
      // The decode head writes each stage into its slice of the concatenation.
      check_resize({2, 3, 5, 17, 12, 20}, 70, /*x_off=*/0, /*ldx_extra=*/0, /*y_off=*/33, /*ldy_extra=*/14);
      check_resize({1, 6, 5, 32, 12, 10}, 71, 0, 0, 0, 96);
      check_resize({1, 20, 12, 5, 7, 5}, 72, 3, 4, 7, 2);
      check_resize({2, 9, 6, 9, 9, 6}, 73, 5, 0, 2, 1);
    }
  }

  TEST_CASE("resize_bilinear: new data at the same address gives the new result (no stale row cache)") {
    // The few-channel path caches interpolated source rows per thread; a second call on the same
    // buffer with other contents (as a pooled buffer next frame) must not reuse them. With one source
    // row every output row of every thread reads it, so a stale entry would be hit.
    for (const resize_case r : {resize_case{1, 1, 6, 1, 16, 24}, resize_case{3, 4, 6, 1, 16, 24}}) {
      std::vector<float> x = random_vector(r.n * r.h * r.w, 80), y(r.n * r.oh * r.ow), ref(y.size());
      for (int round = 0; round < 2; ++round) {
        if (round == 1)
          for (auto& v : x) v = -3.f * v + 1.f;
        drt::resize_bilinear(x.data(), r.n, r.h, r.w, 1, 1, y.data(), r.oh, r.ow, 1);
        drt::resize_bilinear_ref(x.data(), r.n, r.h, r.w, 1, ref.data(), r.oh, r.ow);
        check_close(y.data(), ref.data(), ref.size(), describe(r) + " round " + std::to_string(round), rs_rel,
                    rs_abs);
      }
    }
  }

  TEST_CASE("upsample_argmax equals argmax of the reference bilinear upsampling") {
    // logits NCHW [2, 11, 5, 7] -> 19 x 27.
    const std::size_t n = 2, k = 11, h = 5, w = 7, oh = 19, ow = 27;
    const auto v = random_vector(n * k * h * w, 90, -3.f, 3.f);
    drt::tensor4 logits = drt::tensor4::from_shape({n, k, h, w});
    std::copy(v.begin(), v.end(), logits.data());
    const auto labels = drt::upsample_argmax(logits, oh, ow);
    REQUIRE(labels.shape(0) == n);
    REQUIRE(labels.shape(1) == oh);
    REQUIRE(labels.shape(2) == ow);

    // Naive: NCHW -> NHWC, upsample with the double reference, argmax (first maximum wins).
    std::vector<float> nhwc(n * h * w * k), up(n * oh * ow * k);
    for (std::size_t b = 0; b < n; ++b)
      for (std::size_t c = 0; c < k; ++c)
        for (std::size_t p = 0; p < h * w; ++p) nhwc[(b * h * w + p) * k + c] = v[(b * k + c) * h * w + p];
    drt::resize_bilinear_ref(nhwc.data(), n, h, w, k, up.data(), oh, ow);
    std::size_t mismatched = 0, near_ties = 0, classes_seen = 0;
    std::vector<int> seen(k, 0);
    for (std::size_t b = 0; b < n; ++b)
      for (std::size_t y = 0; y < oh; ++y)
        for (std::size_t x = 0; x < ow; ++x) {
          const float* p = up.data() + ((b * oh + y) * ow + x) * k;
          std::size_t best = 0;
          for (std::size_t c = 1; c < k; ++c)
            if (p[c] > p[best]) best = c;
          float second = -1e30f;
          for (std::size_t c = 0; c < k; ++c)
            if (c != best) second = std::max(second, p[c]);
          const auto got = static_cast<std::size_t>(labels(b, y, x));
          if (p[best] - second < 1e-4f) {
            ++near_ties;
            mismatched += got >= k || p[best] - p[got] > 1e-4f;
          } else {
            mismatched += got != best;
          }
          seen[best] = 1;
        }
    for (int s : seen) classes_seen += s;
    CHECK(mismatched == 0);
    CHECK(near_ties <= 5);     // the comparison is not vacuous
    CHECK(classes_seen >= 8);  // and the labels vary
  }

  TEST_CASE("upsample_argmax: ties go to the lower class, one class gives zeros, identity size") {
    const std::size_t n = 1, k = 7, h = 3, w = 4;
    auto v = random_vector(n * k * h * w, 95, -1.f, 1.f);
    // Classes 2 and 5 share the same plane, larger than every other class everywhere.
    for (std::size_t p = 0; p < h * w; ++p) v[2 * h * w + p] = v[5 * h * w + p] = 5.f + v[p];
    drt::tensor4 logits = drt::tensor4::from_shape({n, k, h, w});
    std::copy(v.begin(), v.end(), logits.data());
    for (auto [oh, ow] : {std::pair<std::size_t, std::size_t>{h, w}, {11, 9}}) {
      const auto labels = drt::upsample_argmax(logits, oh, ow);
      std::size_t not_two = 0;
      for (auto l : labels) not_two += l != 2;
      CHECK(not_two == 0);
    }
    drt::tensor4 one = drt::tensor4::from_shape({2, 1, h, w});
    std::fill(one.begin(), one.end(), -3.f);
    const auto zeros = drt::upsample_argmax(one, 6, 5);
    std::size_t nonzero = 0;
    for (auto l : zeros) nonzero += l != 0;
    CHECK(nonzero == 0);
    CHECK(zeros.size() == 2 * 6 * 5);

    // Identity size: the labels are the per-pixel argmax of the logits themselves.
    const auto v2 = random_vector(2 * k * h * w, 96);
    drt::tensor4 l2 = drt::tensor4::from_shape({2, k, h, w});
    std::copy(v2.begin(), v2.end(), l2.data());
    const auto id = drt::upsample_argmax(l2, h, w);
    std::size_t wrong = 0;
    for (std::size_t b = 0; b < 2; ++b)
      for (std::size_t p = 0; p < h * w; ++p) {
        std::size_t best = 0;
        for (std::size_t c = 1; c < k; ++c)
          if (v2[(b * k + c) * h * w + p] > v2[(b * k + best) * h * w + p]) best = c;
        wrong += static_cast<std::size_t>(id(b, p / w, p % w)) != best;
      }
    CHECK(wrong == 0);
  }

  TEST_CASE("bilinear_sum::rows with a range accumulator: the same outputs and their exact range") {
    // the folded decoder's int8 classifier takes its block's range from here instead of a pass
    const std::size_t n = 1, oh = 6, ow = 10;
    for (const std::size_t c : {std::size_t(5), std::size_t(33)})
      for (const std::size_t maps : {std::size_t(2), std::size_t(9)}) {  // one chunk of the pixel sweep, and two
        std::vector<std::vector<float>> data;
        std::vector<drt::bilinear_source> xs;
        for (std::size_t i = 0; i < maps; ++i) data.push_back(random_vector(3 * 5 * c, unsigned(90 + i + c), -2.f, 2.f));
        for (const auto& d : data) xs.push_back({d.data(), 3, 5});
        const auto bias = random_vector(c, unsigned(80 + c), -1.f, 1.f);
        const drt::bilinear_sum sum(xs, n, c, oh, ow, bias.data(), drt::activation::relu);
        std::vector<float> plain(oh * ow * c), ranged(oh * ow * c);
        sum.rows(1, 5, plain.data());
        drt::detail::range_accumulator acc;
        sum.rows(1, 5, ranged.data(), &acc);
        CAPTURE(c);
        CAPTURE(maps);
        CHECK(plain == ranged);
        const auto want = drt::detail::value_range(plain.data(), 4 * ow, c, c);
        CHECK(acc.result().first == want.first);
        CHECK(acc.result().second == want.second);
        CHECK(want.second > 0.f);
      }
  }

  TEST_CASE("resize_bilinear_sum matches resize_bilinear_sum_ref") {
    struct sum_case {
      std::size_t n, oh, ow, c;
      std::vector<std::pair<std::size_t, std::size_t>> sizes;  // of the summed maps
    };
    const std::vector<sum_case> cases = {
        {1, 12, 20, 16, {{6, 10}, {3, 5}, {2, 3}}},    // the decoder's 1/8, 1/16, 1/32 onto 1/4
        {2, 13, 9, 19, {{7, 5}, {4, 3}, {1, 1}}},      // odd sizes, a 1x1 map, channels past the SIMD width
        {3, 5, 7, 3, {{5, 7}, {2, 9}}},                // the identity size; a map wider than the output
        {1, 8, 8, 40, {}},                             // no maps: base + ReLU only
        {1, 6, 10, 33, {{3, 5}, {2, 3}, {1, 2}, {6, 10}, {4, 4}, {2, 7}, {5, 5}, {3, 3}, {1, 1}}},  // more maps
        // than one chunk of the pixel sweep (8): the sum carried in the output between chunks
    };
    unsigned seed = 77;
    for (const auto& k : cases)
      for (const bool with_bias : {false, true})
        for (const auto act : {drt::activation::none, drt::activation::relu}) {
          std::vector<std::vector<float>> maps;
          std::vector<drt::bilinear_source> xs;
          for (const auto& [h, w] : k.sizes) maps.push_back(random_vector(k.n * h * w * k.c, seed++, -2.f, 2.f));
          for (std::size_t i = 0; i < maps.size(); ++i) xs.push_back({maps[i].data(), k.sizes[i].first, k.sizes[i].second});
          const auto base = random_vector(k.n * k.oh * k.ow * k.c, seed++, -2.f, 2.f);
          const auto bias = random_vector(k.c, seed++, -1.f, 1.f);
          std::vector<float> got = base, ref = base;
          drt::resize_bilinear_sum(xs, k.n, k.c, got.data(), k.oh, k.ow, with_bias ? bias.data() : nullptr, act);
          drt::resize_bilinear_sum_ref(xs, k.n, k.c, ref.data(), k.oh, k.ow, with_bias ? bias.data() : nullptr, act);
          const std::string what = std::to_string(k.n) + "x" + std::to_string(k.oh) + "x" + std::to_string(k.ow) + "x" +
                                   std::to_string(k.c) + ", " + std::to_string(xs.size()) + " maps" +
                                   (with_bias ? ", bias" : ", base") + (act == drt::activation::relu ? ", relu" : "");
          check_close(got.data(), ref.data(), ref.size(), what, rs_rel, rs_abs);
          if (act == drt::activation::relu) {
            const auto negatives = std::count_if(got.begin(), got.end(), [](float v) { return v < 0.f; });
            CHECK(negatives == 0);
            const auto zeros = std::count(got.begin(), got.end(), 0.f);
            CHECK(zeros > 0);  // the ReLU really cut something, so the check above can fail
          }
        }
    CHECK_THROWS_WITH_AS(drt::resize_bilinear_sum({}, 1, 1, nullptr, 1, 1, nullptr, drt::activation::gelu),
                         "resize_bilinear_sum: only none and relu activations are supported", drt::invalid_input);
  }
}  // TEST_SUITE("layers")
