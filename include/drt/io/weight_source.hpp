#pragma once
/// @file weight_source.hpp
/// Where a model's weights come from: a function (name, expected shape) -> float32 values.
/// A checkpoint checks presence and shape (the error names file, tensor and both shapes); the
/// random source gives deterministic synthetic weights per tensor name (benchmarks, profiles of
/// architectures without a checkpoint, property tests that edit a few tensors of a model).

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "safetensors.hpp"

namespace drt {

using weight_source = std::function<std::vector<float>(const std::string& name, const std::vector<std::int64_t>& shape)>;

/// Tensors of a safetensors file, converted to float32, with their shapes checked.
inline weight_source safetensors_source(const safetensors_file& file) {
  return [&file](const std::string& name, const std::vector<std::int64_t>& shape) {
    return file.read_float(name, shape).data;
  };
}

/// Synthetic weights, the same for a given (seed, name): matrices ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
/// 1-D `*weight` (norm scales) ~ 1 + U(-0.1, 0.1), `running_var` in [0.5, 1.5], other vectors U(-0.1, 0.1).
inline weight_source random_source(unsigned seed = 0) {
  return [seed](const std::string& name, const std::vector<std::int64_t>& shape) {
    std::size_t n = 1;
    for (auto d : shape) n *= static_cast<std::size_t>(d);
    const std::size_t fan_in = shape.size() > 1 && shape[0] > 0 ? n / static_cast<std::size_t>(shape[0]) : 1;
    auto ends_with = [&](const char* suffix) {
      const std::string s(suffix);
      return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
    };
    const bool is_var = ends_with("running_var");
    const bool is_scale = shape.size() == 1 && ends_with("weight");
    const float a = shape.size() > 1 ? 1.0f / std::sqrt(static_cast<float>(fan_in)) : 0.1f;
    std::seed_seq seq{seed, static_cast<unsigned>(std::hash<std::string>{}(name))};
    std::mt19937 gen(seq);
    std::uniform_real_distribution<float> d(-a, a);
    std::vector<float> v(n);
    for (auto& x : v) x = is_var ? 1.0f + d(gen) * 5.0f : (is_scale ? 1.0f + d(gen) : d(gen));
    return v;
  };
}

/// `reader(name, shape) -> const float*` for a model's build step: the values stay valid as long as
/// the reader lives (the layers pack them into their own layout meanwhile).
class weight_reader {
public:
  explicit weight_reader(weight_source source) : source_(std::move(source)) {}
  const float* operator()(const std::string& name, const std::vector<std::int64_t>& shape) {
    keep_.push_back(source_(name, shape));
    return keep_.back().data();
  }

private:
  weight_source source_;
  std::vector<std::vector<float>> keep_;  // a moved vector keeps its buffer: pointers stay valid
};

}  // namespace drt
