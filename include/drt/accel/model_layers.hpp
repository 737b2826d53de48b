#pragma once
/// @file model_layers.hpp
/// The layer list of any model family (`any_model`: SegFormer, Swin + UPerNet, ResNet) under a
/// dynamic path given as text, for the accelerator model: the same `layers(h, w, exec)` the CPU runs,
/// so a path is costed exactly as it executes. Kept apart from estimate.hpp so the accelerator
/// headers do not pull in every model.

#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "../models/any_model.hpp"
#include "../models/family.hpp"
#include "../models/layer_info.hpp"

namespace drt {

/// A model's layers under one path, with the path's canonical text.
struct path_layers {
  std::string path;               ///< canonical text form ("full" for the full model)
  std::vector<layer_info> layers;  ///< in execution order, exact MACs
};

namespace detail {
/// "full" (the canonical text of the full model), possibly padded with blanks.
inline bool is_full_path_text(const std::string& t) {
  const auto a = t.find_first_not_of(" \t"), b = t.find_last_not_of(" \t");
  return a != std::string::npos && t.substr(a, b - a + 1) == "full";
}
}  // namespace detail

/// Layers of `model` for an H x W input (batch n) under `path_text`, parsed with the family's path
/// type (model_family<Model>::path_type); "" and "full" are the full model. Throws drt::invalid_input for a path that
/// does not parse or does not fit the model.
inline path_layers model_path_layers(const any_model& model, const std::string& path_text, std::size_t height,
                                     std::size_t width, std::size_t n = 1) {
  return std::visit(
      [&](const auto& m) {
        using family = model_family<std::decay_t<decltype(m)>>;
        const auto p = family::parse(detail::is_full_path_text(path_text) ? std::string() : path_text);
        return path_layers{p.to_string(), family::layers(m, height, width, family::compile(m, p), n)};
      },
      model);
}

/// The input size the paper's Section V uses per family, H x W: 512 x 512 for the segmentation models,
/// 480 x 640 for ResNet-50 ("640 x 480").
inline std::pair<std::size_t, std::size_t> default_accel_input(const any_model& model) noexcept {
  return std::holds_alternative<resnet_model>(model) ? std::pair<std::size_t, std::size_t>{480, 640}
                                                      : std::pair<std::size_t, std::size_t>{512, 512};
}

}  // namespace drt
