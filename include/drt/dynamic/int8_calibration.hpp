#pragma once
/// @file int8_calibration.hpp
/// The int8 input ranges of a model's GEMM layers, calibrated on images (issue 20). An int8 linear
/// quantizes its float input to u8 with one scale and zero point per tensor (layers/gemm_int8.hpp);
/// without a calibrated range it uses each call's own [min, max] ("dynamic"). Calibration runs the
/// images in fp32 with an observer on every linear (core/observer.hpp), keeps each layer's exact
/// [min, max] and a uniform sample of its inputs, and chooses the range by one of:
/// - minmax: the observed [min, max] (never clips; an outlier widens every step);
/// - percentile: the sample's [1 - p, p] quantiles (clips the tails; p = 99.99 % by default);
/// - mse: the clip of each end of [min, max] whose quantize-dequantize error on the sample is
///   smallest (the MSE-optimal clip of PyTorch's HistogramObserver and similar quantizers).
/// The ranges are stored as JSON by layer name (checkpoint module names) and applied at load.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../core/observer.hpp"
#include "../core/parallel.hpp"
#include "../layers/gemm_int8.hpp"
#include "../layers/linear.hpp"

namespace drt {

enum class range_method { minmax, percentile, mse };

inline const char* to_string(range_method m) noexcept {
  switch (m) {
    case range_method::minmax: return "minmax";
    case range_method::percentile: return "percentile";
    case range_method::mse: return "mse";
  }
  return "?";
}

inline range_method parse_range_method(const std::string& v) {
  if (v == "minmax") return range_method::minmax;
  if (v == "percentile") return range_method::percentile;
  if (v == "mse") return range_method::mse;
  throw invalid_input("int8 calibration method '" + v + "' is not one of minmax, percentile, mse");
}

/// What one layer's inputs looked like on the calibration images.
struct observed_range {
  float min = 0.f, max = 0.f;
  std::size_t values = 0;      ///< values seen
  std::vector<float> sample;  ///< a uniform sample of them (up to `per_call` per layer call)
};

/// Collects observed_range per layer (by name) from the linears' reports while images run.
class range_observer : public activation_observer {
public:
  explicit range_observer(std::map<const void*, std::string> layers, std::size_t per_call = 4096)
      : layers_(std::move(layers)), per_call_(per_call) {}

  void observe(const void* layer, const float* x, std::size_t rows, std::size_t cols, std::size_t ld) override {
    const auto it = layers_.find(layer);
    if (it == layers_.end() || rows == 0 || cols == 0) return;
    auto& r = ranges_[it->second];
    const auto [lo, hi] = detail::value_range(x, rows, cols, ld);
    if (!std::isfinite(lo) || !std::isfinite(hi))
      throw invalid_input("int8 calibration: layer '" + it->second + "' received non-finite inputs");
    r.min = r.values ? std::min(r.min, lo) : lo;
    r.max = r.values ? std::max(r.max, hi) : hi;
    r.values += rows * cols;
    std::uniform_int_distribution<std::size_t> row(0, rows - 1), col(0, cols - 1);
    const std::size_t take = std::min(per_call_, rows * cols);
    for (std::size_t i = 0; i < take; ++i) r.sample.push_back(x[row(rng_) * ld + col(rng_)]);
  }
  const std::map<std::string, observed_range>& ranges() const noexcept { return ranges_; }

private:
  std::map<const void*, std::string> layers_;
  std::size_t per_call_;
  std::map<std::string, observed_range> ranges_;
  std::mt19937_64 rng_{20261206};
};

namespace detail {
/// Mean squared error of quantizing the sample to u8 over [lo, hi] and back.
inline double u8_roundtrip_mse(const std::vector<float>& sample, float lo, float hi) {
  const quant_params q = quant_params_u8(lo, hi);
  double err = 0;
  for (const float v : sample) {
    const double d = double(dequantize_u8(quantize_u8(v, q), q)) - v;
    err += d * d;
  }
  return sample.empty() ? 0.0 : err / double(sample.size());
}
}  // namespace detail

/// The range `method` chooses for one layer (`pct`: the percentile method's upper quantile, in %).
inline std::pair<float, float> choose_range(const observed_range& r, range_method method, double pct = 99.99) {
  if (method == range_method::minmax || r.sample.empty()) return {r.min, r.max};
  if (method == range_method::percentile) {
    std::vector<float> s = r.sample;
    auto at = [&](double p) {
      const auto i = static_cast<std::size_t>(std::min(double(s.size() - 1), std::max(0.0, p * double(s.size() - 1))));
      std::nth_element(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(i), s.end());
      return s[i];
    };
    const float hi = at(pct / 100.0), lo = at(1.0 - pct / 100.0);
    return {std::max(r.min, lo), std::min(r.max, hi)};
  }
  // mse: clip each end in turn (the upper, then the lower with the upper chosen) to a fraction
  // f in [0.06, 1] of its observed value, keeping the f of least quantize-dequantize error.
  float best_lo = r.min, best_hi = r.max;
  double best = detail::u8_roundtrip_mse(r.sample, r.min, r.max);
  for (const bool upper : {true, false})
    for (int i = 1; i < 100; ++i) {
      const float f = 1.f - 0.0095f * float(i);  // 0.99 .. 0.06
      const float lo = upper ? best_lo : r.min * f, hi = upper ? r.max * f : best_hi;
      const double e = detail::u8_roundtrip_mse(r.sample, lo, hi);
      if (e < best) best = e, best_lo = lo, best_hi = hi;
    }
  return {best_lo, best_hi};
}

/// A model's calibrated int8 input ranges by layer name, with how they were made.
struct int8_calibration {
  std::string method;  ///< minmax, percentile or mse
  std::string source;  ///< what they were measured on
  std::map<std::string, std::pair<float, float>> ranges;

  nlohmann::json to_json() const {
    nlohmann::json j;
    j["method"] = method;
    j["source"] = source;
    for (const auto& [name, r] : ranges) j["ranges"][name] = {r.first, r.second};
    return j;
  }
  /// Throws naming `where` (e.g. the file) and the bad entry.
  static int8_calibration from_json(const nlohmann::json& j, const std::string& where) {
    int8_calibration c;
    if (!j.is_object() || !j.contains("ranges") || !j["ranges"].is_object())
      throw invalid_input(where + ": not an int8 calibration (expected an object with \"ranges\")");
    c.method = j.value("method", std::string());
    c.source = j.value("source", std::string());
    for (auto it = j["ranges"].begin(); it != j["ranges"].end(); ++it) {
      const auto& v = it.value();
      if (!v.is_array() || v.size() != 2 || !v[0].is_number() || !v[1].is_number())
        throw invalid_input(where + ": range of layer '" + it.key() + "' must be [lo, hi]");
      const float lo = v[0].get<float>(), hi = v[1].get<float>();
      if (!std::isfinite(lo) || !std::isfinite(hi) || lo > hi)
        throw invalid_input(where + ": range of layer '" + it.key() + "' [" + std::to_string(lo) + ", " +
                            std::to_string(hi) + "] must be finite with lo <= hi");
      c.ranges[it.key()] = {lo, hi};
    }
    return c;
  }
};

/// Runs `run()` (the calibration images through `model` in fp32, on this thread) with every linear
/// observed, and chooses each layer's range with `method`. Model: anything with `for_each_linear`.
/// Runs single-threaded (an observing_session does).
template <class Model, class Run>
int8_calibration calibrate_int8(Model& model, Run&& run, range_method method, const std::string& source,
                                double pct = 99.99) {
  std::map<const void*, std::string> layers;
  model.for_each_linear([&](const std::string& name, linear& l) { layers[&l] = name; });
  range_observer obs(layers);
  {
    observing_session session(obs);  // on this thread only
    run();
  }
  int8_calibration c;
  c.method = to_string(method);
  c.source = source;
  for (const auto& [ptr, name] : layers) {
    const auto it = obs.ranges().find(name);
    if (it == obs.ranges().end()) continue;  // never ran (e.g. a layer the paths skip): stays dynamic
    c.ranges[name] = choose_range(it->second, method, pct);
  }
  return c;
}

/// Sets every named layer's int8 input range; throws when the calibration names a layer the model
/// lacks (it was made for another model). Layers it does not name keep per-call ranges.
template <class Model>
void apply_int8_calibration(Model& model, const int8_calibration& c, const std::string& where) {
  std::size_t found = 0;
  model.for_each_linear([&](const std::string& name, linear& l) {
    const auto it = c.ranges.find(name);
    if (it == c.ranges.end()) return;
    l.set_input_range(it->second.first, it->second.second);
    ++found;
  });
  if (found != c.ranges.size())
    for (const auto& [name, r] : c.ranges) {
      bool has = false;
      model.for_each_linear([&](const std::string& n, linear&) { has = has || n == name; });
      if (!has) throw invalid_input(where + ": layer '" + name + "' is not a GEMM layer of this model");
    }
}

}  // namespace drt
