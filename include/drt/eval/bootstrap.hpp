#pragma once
/// @file bootstrap.hpp
/// How sure is a measured mIoU? A percentile bootstrap over the images (Efron & Tibshirani, "An
/// Introduction to the Bootstrap", 1993, ch. 13): draw as many images as the set has, with
/// replacement, compute the mIoU of the drawn set exactly as the set's own mIoU is computed (counts
/// summed over the images, then IoU per class, then the mean over classes present), repeat, and take
/// the quantiles. The unit of resampling is the image, since pixels of one image are not independent.
///
/// `confusion_by_image` accumulates a set's confusion matrix and keeps each image's per-class counts
/// (2 K numbers an image), which is all the bootstrap needs. The resamples are drawn from a fixed seed
/// and depend only on the number of images, so every path of a sweep is resampled with the same draws
/// (paired: two paths' intervals differ by the paths, not by the luck of the draw).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "segmentation_metrics.hpp"

namespace drt {

/// A two-sided interval of a statistic: [low, high] holds `level` of the bootstrap distribution.
struct miou_interval {
  double low = std::numeric_limits<double>::quiet_NaN();
  double high = std::numeric_limits<double>::quiet_NaN();
  double level = 0.95;
  std::size_t resamples = 0;
  bool valid() const noexcept { return std::isfinite(low) && std::isfinite(high); }
};

/// One image's contribution to every class's IoU: true positives and the union (TP + FP + FN).
struct iou_counts {
  std::vector<std::uint64_t> tp, uni;

  static iou_counts of(const confusion_matrix& cm) {
    const std::size_t k = cm.classes();
    iou_counts c{std::vector<std::uint64_t>(k, 0), std::vector<std::uint64_t>(k, 0)};
    for (std::size_t l = 0; l < k; ++l)
      for (std::size_t p = 0; p < k; ++p) {
        const std::uint64_t v = cm.at(l, p);
        if (l == p) {
          c.tp[l] += v;
          c.uni[l] += v;
        } else {
          c.uni[l] += v;  // a false negative of l
          c.uni[p] += v;  // a false positive of p
        }
      }
    return c;
  }
};

/// The bootstrap distribution's [(1 - level) / 2, (1 + level) / 2] quantiles of the mIoU of
/// `images` (in a fixed order: the draws index it). Deterministic for a given seed and image count.
/// An empty set gives an invalid (NaN) interval; one image, a zero-width one.
inline miou_interval bootstrap_miou(const std::vector<iou_counts>& images, std::size_t resamples = 1000,
                                    double level = 0.95, std::uint64_t seed = 0x5eed2212) {
  miou_interval out;
  out.level = level;
  if (!(level > 0 && level < 1)) throw invalid_input("bootstrap: level " + std::to_string(level) + " is not in (0, 1)");
  if (images.empty() || resamples == 0) return out;
  const std::size_t n = images.size(), k = images[0].tp.size();
  for (const auto& im : images)
    if (im.tp.size() != k || im.uni.size() != k)
      throw invalid_input("bootstrap: images with " + std::to_string(im.tp.size()) + " and " + std::to_string(k) +
                          " classes");
  std::mt19937_64 rng(seed);
  std::vector<double> stats;
  stats.reserve(resamples);
  std::vector<std::uint64_t> weight(n), tp(k), uni(k);
  for (std::size_t r = 0; r < resamples; ++r) {
    std::fill(weight.begin(), weight.end(), 0);
    for (std::size_t d = 0; d < n; ++d) ++weight[static_cast<std::size_t>(rng() % n)];
    std::fill(tp.begin(), tp.end(), 0);
    std::fill(uni.begin(), uni.end(), 0);
    for (std::size_t i = 0; i < n; ++i) {
      if (!weight[i]) continue;
      for (std::size_t c = 0; c < k; ++c) {
        tp[c] += weight[i] * images[i].tp[c];
        uni[c] += weight[i] * images[i].uni[c];
      }
    }
    double s = 0;
    std::size_t present = 0;
    for (std::size_t c = 0; c < k; ++c)
      if (uni[c]) {
        s += double(tp[c]) / double(uni[c]);
        ++present;
      }
    stats.push_back(present ? s / double(present) : 0.0);
  }
  std::sort(stats.begin(), stats.end());
  // Quantiles by linear interpolation between order statistics (type 7, numpy's default).
  auto quantile = [&](double q) {
    const double pos = q * double(stats.size() - 1);
    const std::size_t lo = static_cast<std::size_t>(std::floor(pos)), hi = std::min(lo + 1, stats.size() - 1);
    return stats[lo] + (pos - double(lo)) * (stats[hi] - stats[lo]);
  };
  out.low = quantile(0.5 * (1 - level));
  out.high = quantile(0.5 * (1 + level));
  out.resamples = resamples;
  return out;
}

/// A labelled set's confusion matrix that also keeps every image's per-class counts, so that its
/// mIoU comes with a bootstrap interval. Images are keyed by their index in the set: accumulators of
/// several threads merge in any order and give the same interval.
class confusion_by_image {
public:
  explicit confusion_by_image(std::size_t classes = 0, int ignore_index = -1) : total_(classes, ignore_index) {}

  /// Adds image `image` of the set (see confusion_matrix::add).
  void add(std::size_t image, const std::uint8_t* label, const std::int32_t* prediction, std::size_t pixels,
           const std::string& where = "") {
    confusion_matrix one(total_.classes(), total_.ignore_index());
    one.add(label, prediction, pixels, where);
    total_.merge(one);
    images_.emplace_back(image, iou_counts::of(one));
  }
  void merge(const confusion_by_image& o) {
    total_.merge(o.total_);
    images_.insert(images_.end(), o.images_.begin(), o.images_.end());
  }

  const confusion_matrix& total() const noexcept { return total_; }
  double miou() const { return total_.miou(); }
  double pixel_accuracy() const { return total_.pixel_accuracy(); }
  std::size_t images() const noexcept { return images_.size(); }

  /// The bootstrap interval of miou() over the images added (bootstrap_miou).
  miou_interval interval(std::size_t resamples = 1000, double level = 0.95) const {
    auto sorted = images_;
    std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<iou_counts> counts;
    counts.reserve(sorted.size());
    for (auto& s : sorted) counts.push_back(std::move(s.second));
    return bootstrap_miou(counts, resamples, level);
  }

private:
  confusion_matrix total_;
  std::vector<std::pair<std::size_t, iou_counts>> images_;
};

}  // namespace drt
