#pragma once
/// @file upernet_config.hpp
/// UPerNet + Swin configuration: transformers' UperNetConfig with a SwinConfig backbone
/// (`model_type: "upernet"`, `backbone_config.model_type: "swin"`), its reader with validation, and
/// the published Swin-T/S/B + UPerNet geometries. The model is in models/upernet_swin.hpp; dynamic
/// paths (dynamic/upernet_path.hpp) validate against this config.

#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "model_config.hpp"
#include "window_policy.hpp"

namespace drt {

/// ref: transformers configuration_swin.py, SwinConfig (defaults as there: Swin-T).
struct swin_config {
  int num_channels = 3;
  int patch_size = 4;
  int embed_dim = 96;
  std::vector<int> depths{2, 2, 6, 2};
  std::vector<int> num_heads{3, 6, 12, 24};
  int window_size = 7;
  double mlp_ratio = 4.0;
  bool qkv_bias = true;
  double layer_norm_eps = 1e-5;  ///< layernorm_before / layernorm_after only
  activation_kind hidden_act = activation_kind::gelu;
  /// Feature maps returned, as indices into stage_names ["stem", "stage1", ...]: 0 = the embedding output.
  std::vector<int> out_indices{1, 2, 3, 4};
  /// Not a config field: how the window adapts to small grids (SwinBackbone: always_partition).
  window_policy policy = window_policy::always_partition;

  std::size_t num_stages() const noexcept { return depths.size(); }
  std::size_t stage_channels(std::size_t s) const noexcept { return static_cast<std::size_t>(embed_dim) << s; }
  /// Channels of stage_names[idx] (0 = stem).
  std::size_t feature_channels(std::size_t idx) const noexcept {
    return idx == 0 ? static_cast<std::size_t>(embed_dim) : stage_channels(idx - 1);
  }
  /// int(mlp_ratio * dim), as SwinIntermediate.
  std::size_t mlp_hidden(std::size_t s) const noexcept {
    return static_cast<std::size_t>(mlp_ratio * static_cast<double>(stage_channels(s)));
  }
  static std::string stage_name(std::size_t idx) { return idx == 0 ? "stem" : "stage" + std::to_string(idx); }
};

/// ref: transformers configuration_upernet.py, UperNetConfig (the inference fields).
struct upernet_config {
  swin_config backbone;
  int hidden_size = 512;
  std::vector<int> pool_scales{1, 2, 3, 6};
  double batch_norm_eps = 1e-5;          ///< every BatchNorm2d of the head (PyTorch default)
  std::vector<std::string> class_names;  ///< from id2label, index = class id
  std::string dtype = "float32";
  std::size_t num_classes() const noexcept { return class_names.size(); }
};

namespace detail {
namespace upernet_cfg {

inline std::string where(const std::string& path) { return "config '" + path + "': "; }

inline int positive_int(const nlohmann::json& j, const std::string& path, const std::string& prefix, const char* key,
                        int fallback) {
  if (!j.contains(key)) return fallback;
  const auto& v = j[key];
  if (!is_config_positive_int(v))
    throw invalid_input(where(path) + "field '" + prefix + key + "' must be an integer in [1, 2^30], got " + v.dump());
  return v.get<int>();
}

inline double positive_number(const nlohmann::json& j, const std::string& path, const std::string& prefix,
                              const char* key, double fallback) {
  if (!j.contains(key)) return fallback;
  const auto& v = j[key];
  if (!v.is_number() || !(v.get<double>() > 0))
    throw invalid_input(where(path) + "field '" + prefix + key + "' must be a positive number, got " + v.dump());
  return v.get<double>();
}

inline bool boolean(const nlohmann::json& j, const std::string& path, const std::string& prefix, const char* key,
                    bool fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_boolean())
    throw invalid_input(where(path) + "field '" + prefix + key + "' must be true or false, got " + j[key].dump());
  return j[key].get<bool>();
}

inline std::vector<int> positive_list(const nlohmann::json& j, const std::string& path, const std::string& prefix,
                                      const char* key, std::vector<int> fallback) {
  if (!j.contains(key)) return fallback;
  const auto& v = j[key];
  std::vector<int> out;
  bool ok = v.is_array() && !v.empty();
  if (ok)
    for (const auto& x : v) {
      if (!is_config_positive_int(x)) {
        ok = false;
        break;
      }
      out.push_back(x.get<int>());
    }
  if (!ok)
    throw invalid_input(where(path) + "field '" + prefix + key +
                        "' must be a non-empty list of integers in [1, 2^30], got " + v.dump());
  return out;
}

/// out_features / out_indices as transformers aligns them (get_aligned_output_features_output_indices):
/// either one given, both consistent, or neither (= the last stage).
inline std::vector<int> out_indices(const nlohmann::json& b, const std::string& path, std::size_t stages) {
  const std::string p = where(path) + "backbone_config.";
  const std::size_t names = stages + 1;
  std::string all;
  for (std::size_t i = 0; i < names; ++i) all += (i ? ", " : "") + swin_config::stage_name(i);
  std::vector<int> from_features, from_indices;
  const bool has_f = b.contains("out_features") && !b["out_features"].is_null();
  const bool has_i = b.contains("out_indices") && !b["out_indices"].is_null();
  if (has_f) {
    const auto& f = b["out_features"];
    if (!f.is_array() || f.empty())
      throw invalid_input(p + "out_features must be a non-empty list of stage names, got " + f.dump());
    for (const auto& s : f) {
      int found = -1;
      for (std::size_t i = 0; i < names; ++i)
        if (s.is_string() && s.get<std::string>() == swin_config::stage_name(i)) found = static_cast<int>(i);
      if (found < 0) throw invalid_input(p + "out_features entry " + s.dump() + " is not a stage name (" + all + ")");
      from_features.push_back(found);
    }
  }
  if (has_i) {
    const auto& f = b["out_indices"];
    if (!f.is_array() || f.empty())
      throw invalid_input(p + "out_indices must be a non-empty list of stage indices, got " + f.dump());
    for (const auto& s : f) {
      const long long n = static_cast<long long>(names);
      // an integer of any size (a huge unsigned one must not wrap to a valid negative index)
      long long v = s.is_number_unsigned() ? (s.get<std::uint64_t>() < static_cast<std::uint64_t>(n) ? s.get<long long>() : n)
                    : s.is_number_integer() ? s.get<long long>() : n;
      if (v < 0) v += n;  // Python-style negative index, as transformers accepts
      if (v < 0 || v >= n)
        throw invalid_input(p + "out_indices entry " + s.dump() + " is out of range 0.." + std::to_string(n - 1));
      from_indices.push_back(static_cast<int>(v));
    }
  }
  if (has_f && has_i && from_features != from_indices)
    throw invalid_input(p + "out_features " + b["out_features"].dump() + " and out_indices " + b["out_indices"].dump() +
                        " disagree");
  std::vector<int> out = has_f ? from_features : has_i ? from_indices : std::vector<int>{static_cast<int>(stages)};
  for (std::size_t i = 1; i < out.size(); ++i)
    if (out[i] <= out[i - 1])
      throw invalid_input(p + "out_indices must follow the stage order without repeats, got " + shape_str(out));
  return out;
}

}  // namespace upernet_cfg
}  // namespace detail

namespace detail {
inline upernet_config parse_upernet_config_checked(const nlohmann::json& j, const std::string& path) {
  namespace uc = detail::upernet_cfg;
  const std::string at = uc::where(path);
  if (!j.is_object()) throw invalid_input(at + "not a JSON object");
  const std::string type =
      j.contains("model_type") && j["model_type"].is_string() ? j["model_type"].get<std::string>() : "";
  if (type != "upernet")
    throw invalid_input(at + "model_type '" + type + "' is not supported here, expected 'upernet'");
  if (uc::boolean(j, path, "", "use_timm_backbone", false))
    throw invalid_input(at + "use_timm_backbone = true is not supported (a transformers backbone_config is needed)");
  if (!j.contains("backbone_config") || !j["backbone_config"].is_object())
    throw invalid_input(
        at + "missing object field 'backbone_config' (transformers would default to ResNet; drt supports swin)");
  const auto& b = j["backbone_config"];
  const std::string btype =
      b.contains("model_type") && b["model_type"].is_string() ? b["model_type"].get<std::string>() : "";
  if (btype != "swin") throw invalid_input(at + "backbone_config.model_type '" + btype + "' is not supported (swin)");

  upernet_config c;
  swin_config& s = c.backbone;
  const std::string bp = "backbone_config.";
  s.num_channels = uc::positive_int(b, path, bp, "num_channels", s.num_channels);
  s.patch_size = uc::positive_int(b, path, bp, "patch_size", s.patch_size);
  s.embed_dim = uc::positive_int(b, path, bp, "embed_dim", s.embed_dim);
  s.depths = uc::positive_list(b, path, bp, "depths", s.depths);
  s.num_heads = uc::positive_list(b, path, bp, "num_heads", s.num_heads);
  s.window_size = uc::positive_int(b, path, bp, "window_size", s.window_size);
  s.mlp_ratio = uc::positive_number(b, path, bp, "mlp_ratio", s.mlp_ratio);
  s.qkv_bias = uc::boolean(b, path, bp, "qkv_bias", s.qkv_bias);
  s.layer_norm_eps = uc::positive_number(b, path, bp, "layer_norm_eps", s.layer_norm_eps);
  if (s.depths.size() > 16)
    throw invalid_input(at + "field 'backbone_config.depths' has " + std::to_string(s.depths.size()) +
                        " stages, more than drt supports (16)");
  if (s.num_heads.size() != s.depths.size())
    throw invalid_input(at + "field 'backbone_config.num_heads' has " + std::to_string(s.num_heads.size()) +
                        " entries, expected one per stage (len(depths) = " + std::to_string(s.depths.size()) + ")");
  for (std::size_t i = 0; i < s.depths.size(); ++i)
    if (s.stage_channels(i) % static_cast<std::size_t>(s.num_heads[i]) != 0)
      throw invalid_input(at + "backbone_config stage " + std::to_string(i + 1) + " has " +
                          std::to_string(s.stage_channels(i)) + " channels, not a multiple of its " +
                          std::to_string(s.num_heads[i]) + " attention heads");
  for (std::size_t i = 0; i < s.depths.size(); ++i)
    if (s.mlp_hidden(i) == 0)
      throw invalid_input(at + "field 'backbone_config.mlp_ratio' = " + b["mlp_ratio"].dump() +
                          " gives an empty MLP in stage " + std::to_string(i + 1));
  if (b.contains("hidden_act")) {
    const auto& a = b["hidden_act"];
    const std::string act = a.is_string() ? a.get<std::string>() : a.dump();
    if (act == "gelu")
      s.hidden_act = activation_kind::gelu;
    else if (act == "relu")
      s.hidden_act = activation_kind::relu;
    else
      throw invalid_input(at + "backbone_config.hidden_act '" + act + "' is not supported (gelu, relu)");
  }
  if (uc::boolean(b, path, bp, "use_absolute_embeddings", false))
    throw invalid_input(at + "backbone_config.use_absolute_embeddings = true is not supported");
  s.out_indices = uc::out_indices(b, path, s.depths.size());

  c.hidden_size = uc::positive_int(j, path, "", "hidden_size", c.hidden_size);
  c.pool_scales = uc::positive_list(j, path, "", "pool_scales", c.pool_scales);
  c.class_names = detail::class_names(j, path);
  c.dtype = detail::config_dtype(j, path);
  return c;
}
}  // namespace detail

/// Parse and validate an UPerNet config.json with a Swin backbone_config.
inline upernet_config parse_upernet_config(const nlohmann::json& j, const std::string& path) {
  return with_json_context("config '" + path + "'", [&] { return detail::parse_upernet_config_checked(j, path); });
}

inline upernet_config load_upernet_config(const std::string& path) {
  return parse_upernet_config(read_json_file("config", path), path);
}

/// The standard Swin-T/S/B + UPerNet geometry ("swin-t-upernet", "swin-s-upernet", "swin-b-upernet")
/// with `classes` output classes (ADE20K: 150), as published with Swin (window 7, head 512).
inline upernet_config standard_upernet_swin_config(const std::string& name, std::size_t classes = 150) {
  upernet_config c;
  swin_config& s = c.backbone;
  if (name == "swin-t-upernet") {
    s.embed_dim = 96;
    s.depths = {2, 2, 6, 2};
    s.num_heads = {3, 6, 12, 24};
  } else if (name == "swin-s-upernet") {
    s.embed_dim = 96;
    s.depths = {2, 2, 18, 2};
    s.num_heads = {3, 6, 12, 24};
  } else if (name == "swin-b-upernet") {
    s.embed_dim = 128;
    s.depths = {2, 2, 18, 2};
    s.num_heads = {4, 8, 16, 32};
  } else {
    throw invalid_input("unknown UPerNet architecture '" + name + "' (swin-t-upernet, swin-s-upernet, swin-b-upernet)");
  }
  if (classes == 0) throw invalid_input("architecture '" + name + "': the number of classes must be positive");
  s.window_size = 7;
  s.out_indices = {1, 2, 3, 4};
  c.hidden_size = 512;
  c.pool_scales = {1, 2, 3, 6};
  for (std::size_t k = 0; k < classes; ++k) c.class_names.push_back("class_" + std::to_string(k));
  return c;
}

}  // namespace drt
