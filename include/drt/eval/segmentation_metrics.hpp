#pragma once
/// @file segmentation_metrics.hpp
/// Semantic-segmentation accuracy as the model cards compute it: one confusion matrix accumulated
/// over the whole set (pixels labelled `ignore_index` skipped), IoU per class = TP / (TP + FP + FN),
/// mIoU = mean over classes, pixel accuracy = correct / counted.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"

namespace drt {

class confusion_matrix {
public:
  explicit confusion_matrix(std::size_t classes, int ignore_index = -1)
      : k_(classes), ignore_(ignore_index), m_(classes * classes, 0) {}

  std::size_t classes() const noexcept { return k_; }
  int ignore_index() const noexcept { return ignore_; }

  /// Adds one image: `label` and `prediction` hold one class index per pixel (same size).
  /// `where` names the image in errors (a label outside [0, classes) other than the ignore index).
  void add(const std::uint8_t* label, const std::int32_t* prediction, std::size_t pixels, const std::string& where = "") {
    for (std::size_t i = 0; i < pixels; ++i) {
      const int l = label[i];
      if (l == ignore_) continue;
      if (l < 0 || static_cast<std::size_t>(l) >= k_)
        throw invalid_input("labels '" + where + "': class index " + std::to_string(l) + " at pixel " +
                            std::to_string(i) + " is outside 0.." + std::to_string(k_ - 1) + " (ignore index " +
                            std::to_string(ignore_) + ")");
      const int p = prediction[i];
      if (p < 0 || static_cast<std::size_t>(p) >= k_)
        throw invalid_input("prediction for '" + where + "': class " + std::to_string(p) + " is outside 0.." +
                            std::to_string(k_ - 1));
      ++m_[static_cast<std::size_t>(l) * k_ + static_cast<std::size_t>(p)];
    }
  }
  void merge(const confusion_matrix& o) {
    for (std::size_t i = 0; i < m_.size(); ++i) m_[i] += o.m_[i];
  }

  /// count(label = l, prediction = p)
  std::uint64_t at(std::size_t l, std::size_t p) const noexcept { return m_[l * k_ + p]; }

  /// IoU per class; a class absent from both labels and predictions gets NaN (excluded from the mean).
  std::vector<double> iou() const {
    std::vector<double> out(k_);
    for (std::size_t c = 0; c < k_; ++c) {
      std::uint64_t tp = at(c, c), fp = 0, fn = 0;
      for (std::size_t o = 0; o < k_; ++o)
        if (o != c) {
          fp += at(o, c);
          fn += at(c, o);
        }
      const std::uint64_t den = tp + fp + fn;
      out[c] = den ? double(tp) / double(den) : std::numeric_limits<double>::quiet_NaN();
    }
    return out;
  }
  double miou() const {
    double s = 0;
    std::size_t n = 0;
    for (double v : iou())
      if (v == v) {
        s += v;
        ++n;
      }
    return n ? s / double(n) : 0.0;
  }
  double pixel_accuracy() const {
    std::uint64_t tp = 0, all = 0;
    for (std::size_t l = 0; l < k_; ++l)
      for (std::size_t p = 0; p < k_; ++p) {
        all += at(l, p);
        if (l == p) tp += at(l, p);
      }
    return all ? double(tp) / double(all) : 0.0;
  }

  /// mIoU, pixel accuracy, per-class IoU (by name) and the matrix (rows = label, columns = prediction).
  nlohmann::json to_json(const std::vector<std::string>& names = {}) const {
    nlohmann::json j;
    j["mIoU"] = miou();
    j["pixel_acc"] = pixel_accuracy();
    const auto ious = iou();
    nlohmann::json per = nlohmann::json::object();
    for (std::size_t c = 0; c < k_; ++c) {
      const std::string name = c < names.size() ? names[c] : std::to_string(c);
      per[name] = ious[c] == ious[c] ? nlohmann::json(ious[c]) : nlohmann::json(nullptr);
    }
    j["per_class_iou"] = per;
    j["ignore_index"] = ignore_;
    nlohmann::json rows = nlohmann::json::array();
    for (std::size_t l = 0; l < k_; ++l) {
      std::vector<std::uint64_t> r(m_.begin() + static_cast<std::ptrdiff_t>(l * k_),
                                   m_.begin() + static_cast<std::ptrdiff_t>((l + 1) * k_));
      rows.push_back(r);
    }
    j["confusion_matrix"] = rows;
    return j;
  }

private:
  std::size_t k_;
  int ignore_;
  std::vector<std::uint64_t> m_;
};

}  // namespace drt
