#pragma once
/// @file resnet_config.hpp
/// ResNet configuration (ref: transformers configuration_resnet.py, ResNetConfig), its reader with
/// validation, and the published ResNet-18/34/50/101/152 geometries. The model is in
/// models/resnet.hpp; dynamic paths (dynamic/resnet_path.hpp) validate against this config.

#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "model_config.hpp"

namespace drt {

/// The residual block of every stage (ref: ResNetBasicLayer, ResNetBottleNeckLayer).
enum class resnet_layer_type { basic, bottleneck };

inline const char* to_string(resnet_layer_type t) noexcept {
  return t == resnet_layer_type::basic ? "basic" : "bottleneck";
}

/// ref: transformers configuration_resnet.py, ResNetConfig (defaults are ResNetConfig's = ResNet-50).
struct resnet_config {
  int num_channels = 3;
  int embedding_size = 64;                              ///< stem output channels
  std::vector<int> hidden_sizes{256, 512, 1024, 2048};  ///< output channels per stage
  std::vector<int> depths{3, 4, 6, 3};                  ///< residual blocks per stage
  resnet_layer_type layer_type = resnet_layer_type::bottleneck;
  activation_kind hidden_act = activation_kind::relu;  ///< only ReLU is supported
  bool downsample_in_first_stage = false;              ///< stage 0 has stride 2 (else 1); the others always 2
  bool downsample_in_bottleneck = false;               ///< stride on the first 1x1 conv instead of the 3x3
  /// Not a config field: transformers builds every BatchNorm2d with PyTorch's default eps.
  double batch_norm_eps = 1e-5;
  /// From id2label, index = class id. Empty (absent or {}) = no classifier: a backbone-only model.
  std::vector<std::string> class_names;
  std::string dtype = "float32";  ///< storage dtype recorded in the config

  std::size_t num_classes() const noexcept { return class_names.size(); }
  std::size_t num_stages() const noexcept { return depths.size(); }
  std::size_t num_blocks() const noexcept {
    std::size_t b = 0;
    for (int d : depths) b += static_cast<std::size_t>(d);
    return b;
  }
  /// Middle channels of the blocks of stage s: the bottleneck's reduced width (hidden / 4, ref:
  /// ResNetBottleNeckLayer reduction = 4), or the output width of a basic block's first conv.
  std::size_t mid_channels(std::size_t s) const noexcept {
    const auto h = static_cast<std::size_t>(hidden_sizes[s]);
    return layer_type == resnet_layer_type::bottleneck ? h / 4 : h;
  }
  /// Channels of the feature maps a backbone returns: stem, then every stage (ref: ResNetBackbone.num_features).
  std::vector<std::size_t> feature_channels() const {
    std::vector<std::size_t> out{static_cast<std::size_t>(embedding_size)};
    for (int h : hidden_sizes) out.push_back(static_cast<std::size_t>(h));
    return out;
  }
};

namespace detail {

inline std::vector<int> resnet_int_list(const nlohmann::json& j, const std::string& path, const char* key,
                                        std::vector<int> fallback) {
  if (!j.contains(key)) return fallback;
  auto v = int_list(j, path, key);
  if (v.empty()) throw invalid_input("config '" + path + "': field '" + key + "' must not be empty");
  return v;
}

inline bool resnet_bool(const nlohmann::json& j, const std::string& path, const char* key, bool fallback) {
  if (!j.contains(key)) return fallback;
  const auto& v = j[key];
  if (!v.is_boolean())
    throw invalid_input("config '" + path + "': field '" + key + "' must be true or false, got " + v.dump());
  return v.get<bool>();
}

}  // namespace detail

namespace detail {
inline resnet_config parse_resnet_config_checked(const nlohmann::json& j, const std::string& path) {
  if (!j.is_object()) throw invalid_input("config '" + path + "': not a JSON object");
  const std::string type = detail::config_string(j, path, "model_type", "");
  if (type != "resnet")
    throw invalid_input("config '" + path + "': model_type '" + type + "' is not supported here, expected 'resnet'");
  resnet_config c;
  c.num_channels = detail::positive_int(j, path, "num_channels", c.num_channels);
  c.embedding_size = detail::positive_int(j, path, "embedding_size", c.embedding_size);
  c.hidden_sizes = detail::resnet_int_list(j, path, "hidden_sizes", c.hidden_sizes);
  c.depths = detail::resnet_int_list(j, path, "depths", c.depths);
  if (c.depths.size() != c.hidden_sizes.size())
    throw invalid_input("config '" + path + "': field 'depths' has " + std::to_string(c.depths.size()) +
                        " entries, expected one per entry of 'hidden_sizes' (" + std::to_string(c.hidden_sizes.size()) +
                        ")");
  if (j.contains("layer_type")) {
    const auto& v = j["layer_type"];
    const std::string lt = v.is_string() ? v.get<std::string>() : v.dump();
    if (lt == "basic")
      c.layer_type = resnet_layer_type::basic;
    else if (lt == "bottleneck")
      c.layer_type = resnet_layer_type::bottleneck;
    else
      throw invalid_input("config '" + path + "': layer_type '" + lt + "' is not supported (basic, bottleneck)");
  }
  if (j.contains("hidden_act")) {
    const auto& v = j["hidden_act"];
    const std::string act = v.is_string() ? v.get<std::string>() : v.dump();
    if (act != "relu") throw invalid_input("config '" + path + "': hidden_act '" + act + "' is not supported (relu)");
  }
  c.downsample_in_first_stage = detail::resnet_bool(j, path, "downsample_in_first_stage", false);
  c.downsample_in_bottleneck = detail::resnet_bool(j, path, "downsample_in_bottleneck", false);
  if (c.layer_type == resnet_layer_type::bottleneck)
    for (std::size_t s = 0; s < c.hidden_sizes.size(); ++s)
      if (c.hidden_sizes[s] < 4)
        throw invalid_input("config '" + path + "': stage " + std::to_string(s) + " hidden size " +
                            std::to_string(c.hidden_sizes[s]) +
                            " is too small for a bottleneck layer (reduction 4 leaves no channels)");
  if (j.contains("id2label")) {
    const auto& m = j["id2label"];
    if (!m.is_object())
      throw invalid_input("config '" + path + "': field 'id2label' must be an object {\"0\": name, ...}, got " +
                          m.dump());
    // An empty map is transformers' num_labels = 0: the classifier is an identity, i.e. there is none.
    if (!m.empty()) c.class_names = detail::class_names(j, path);
  }
  c.dtype = detail::config_dtype(j, path);
  return c;
}
}  // namespace detail

/// Parse and validate a ResNet config.json. Absent fields take ResNetConfig's defaults, as
/// transformers does; present ones are checked and a bad one throws naming the file and the field.
inline resnet_config parse_resnet_config(const nlohmann::json& j, const std::string& path) {
  return with_json_context("config '" + path + "'", [&] { return detail::parse_resnet_config_checked(j, path); });
}

inline resnet_config load_resnet_config(const std::string& path) {
  return parse_resnet_config(read_json_file("config", path), path);
}

/// The published ResNet geometries ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"; the
/// microsoft/resnet-* configs) with `classes` output classes (ImageNet: 1000; 0 = backbone only).
inline resnet_config standard_resnet_config(const std::string& name, std::size_t classes = 1000) {
  resnet_config c;  // ResNetConfig defaults: ResNet-50
  c.embedding_size = 64;
  if (name == "resnet18" || name == "resnet34") {
    c.layer_type = resnet_layer_type::basic;
    c.hidden_sizes = {64, 128, 256, 512};
    c.depths = name == "resnet18" ? std::vector<int>{2, 2, 2, 2} : std::vector<int>{3, 4, 6, 3};
  } else if (name == "resnet50" || name == "resnet101" || name == "resnet152") {
    c.layer_type = resnet_layer_type::bottleneck;
    c.hidden_sizes = {256, 512, 1024, 2048};
    c.depths = name == "resnet50"    ? std::vector<int>{3, 4, 6, 3}
               : name == "resnet101" ? std::vector<int>{3, 4, 23, 3}
                                     : std::vector<int>{3, 8, 36, 3};
  } else {
    throw invalid_input("unknown ResNet architecture '" + name +
                        "' (resnet18, resnet34, resnet50, resnet101, resnet152)");
  }
  for (std::size_t k = 0; k < classes; ++k) c.class_names.push_back("class_" + std::to_string(k));
  return c;
}

}  // namespace drt
