// Bootstrap intervals of the mIoU (eval/bootstrap.hpp): per-image counts by hand, the degenerate and
// two-image cases whose quantiles are known exactly, determinism and merge-order independence, the
// interval narrowing with more images (the LUT's "miou_interval" field: tests/engine/test_lut.cpp).
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include <drt/eval/bootstrap.hpp>

namespace {
// One image of `pixels` pixels whose prediction is right with probability `p_right` (seeded).
void add_noisy_image(drt::confusion_by_image& acc, std::size_t index, std::size_t pixels, double p_right,
                     std::mt19937& rng) {
  std::vector<std::uint8_t> label(pixels);
  std::vector<std::int32_t> pred(pixels);
  std::uniform_int_distribution<int> cls(0, 2);
  std::bernoulli_distribution right(p_right);
  for (std::size_t i = 0; i < pixels; ++i) {
    label[i] = static_cast<std::uint8_t>(cls(rng));
    pred[i] = right(rng) ? label[i] : (label[i] + 1) % 3;
  }
  acc.add(index, label.data(), pred.data(), pixels, "image " + std::to_string(index));
}
}  // namespace

TEST_SUITE("eval") {
TEST_CASE("bootstrap: per-image IoU counts are TP and TP + FP + FN per class") {
  // labels 0 0 1 1 2 (9 ignored), predictions 0 1 1 1 0 (2)
  drt::confusion_matrix cm(3, 9);
  const std::uint8_t l[] = {0, 0, 1, 1, 2, 9};
  const std::int32_t p[] = {0, 1, 1, 1, 0, 2};
  cm.add(l, p, 6);
  const auto c = drt::iou_counts::of(cm);
  CHECK(c.tp == std::vector<std::uint64_t>{1, 2, 0});
  CHECK(c.uni == std::vector<std::uint64_t>{3, 3, 1});  // class 0: TP 1 + FN 1 + FP 1; 1: 2 + FP 1; 2: FN 1
  const auto iou = cm.iou();
  for (std::size_t k = 0; k < 3; ++k) CHECK(iou[k] == doctest::Approx(double(c.tp[k]) / double(c.uni[k])));
}

TEST_CASE("bootstrap: identical images give a zero-width interval at the set's mIoU; none give NaN") {
  drt::confusion_by_image acc(3, 9);
  const std::uint8_t l[] = {0, 0, 1, 1, 2};
  const std::int32_t p[] = {0, 1, 1, 1, 0};
  for (std::size_t i = 0; i < 7; ++i) acc.add(i, l, p, 5);
  const auto ci = acc.interval(500);
  REQUIRE(ci.valid());
  CHECK(ci.low == doctest::Approx(acc.miou()));
  CHECK(ci.high == doctest::Approx(acc.miou()));
  CHECK(ci.resamples == 500);
  CHECK(acc.images() == 7);
  CHECK_FALSE(drt::confusion_by_image(3).interval().valid());
  CHECK_THROWS_AS(acc.interval(100, 1.5), drt::invalid_input);
}

TEST_CASE("bootstrap: two images, the quantiles are the all-A and all-B resamples") {
  // Image A: class 0 right everywhere (IoU 1). Image B: class 0 always predicted as 1 (IoU of 0 and
  // of 1 both 0). Resamples {A,A}: mIoU 1 (class 1 absent); {B,B}: 0; {A,B}: class 0 2/4, class 1 0
  // -> 0.25. P(AA) = P(BB) = 1/4, so the 2.5 % and 97.5 % quantiles are 0 and 1 exactly.
  drt::confusion_by_image acc(2);
  const std::uint8_t la[] = {0, 0}, lb[] = {0, 0};
  const std::int32_t pa[] = {0, 0}, pb[] = {1, 1};
  acc.add(0, la, pa, 2);
  acc.add(1, lb, pb, 2);
  CHECK(acc.miou() == doctest::Approx(0.25));
  const auto ci = acc.interval(2000);
  CHECK(ci.low == 0.0);
  CHECK(ci.high == 1.0);
  // A 40 % level cuts inside: the 30 % and 70 % quantiles are the {A,B} value.
  const auto mid = acc.interval(2000, 0.4);
  CHECK(mid.low == doctest::Approx(0.25));
  CHECK(mid.high == doctest::Approx(0.25));
}

TEST_CASE("bootstrap: deterministic, independent of merge order, and narrower with more images") {
  std::mt19937 rng(7);
  drt::confusion_by_image all(3), a(3), b(3);
  std::vector<drt::confusion_by_image*> parts{&a, &b};
  for (std::size_t i = 0; i < 40; ++i) {
    std::mt19937 r1(static_cast<unsigned>(100 + i)), r2(static_cast<unsigned>(100 + i));
    const double p = 0.5 + 0.4 * double(i % 5) / 4.0;  // images of different difficulty
    add_noisy_image(all, i, 300, p, r1);
    add_noisy_image(*parts[(i * 7) % 3 == 0 ? 1 : 0], i, 300, p, r2);  // another order, split in two
  }
  drt::confusion_by_image merged(3);
  merged.merge(b);
  merged.merge(a);
  const auto ci = all.interval(), cj = merged.interval();
  CHECK(merged.miou() == all.miou());
  CHECK(ci.low == cj.low);
  CHECK(ci.high == cj.high);
  CHECK(ci.low < all.miou());
  CHECK(ci.high > all.miou());
  const auto again = all.interval();
  CHECK(again.low == ci.low);
  // 10 of the same images: a wider interval (the width falls about as 1/sqrt(images))
  drt::confusion_by_image few(3);
  for (std::size_t i = 0; i < 10; ++i) {
    std::mt19937 r1(static_cast<unsigned>(100 + i));
    add_noisy_image(few, i, 300, 0.5 + 0.4 * double(i % 5) / 4.0, r1);
  }
  const auto cf = few.interval();
  CHECK(cf.high - cf.low > 1.4 * (ci.high - ci.low));
  (void)rng;
}

}
