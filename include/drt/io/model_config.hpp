#pragma once
/// @file model_config.hpp
/// Readers for Hugging Face `config.json` files. Every field that changes the graph is read and
/// validated; unknown model types and unsupported values throw naming the file and the field.

#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "file.hpp"

namespace drt {

enum class activation_kind { gelu, relu };

inline const char* to_string(activation_kind a) noexcept { return a == activation_kind::gelu ? "gelu" : "relu"; }

/// ref: transformers configuration_segformer.py, SegformerConfig
struct segformer_config {
  int num_channels = 3;
  int num_encoder_blocks = 4;
  std::vector<int> depths;               ///< blocks per stage
  std::vector<int> sr_ratios;            ///< spatial-reduction ratio per stage
  std::vector<int> hidden_sizes;         ///< channels per stage
  std::vector<int> patch_sizes;          ///< overlapping patch-embedding kernel per stage
  std::vector<int> strides;              ///< patch-embedding stride per stage
  std::vector<int> num_attention_heads;  ///< heads per stage
  std::vector<int> mlp_ratios;           ///< Mix-FFN expansion per stage
  int decoder_hidden_size = 256;
  activation_kind hidden_act = activation_kind::gelu;
  /// Read for the record only: transformers builds every SegFormer LayerNorm with PyTorch's
  /// default eps (1e-5) and ignores this field, so drt does the same (see `norm_eps`).
  double layer_norm_eps = 1e-6;
  double norm_eps = 1e-5;        ///< eps actually used by every LayerNorm (as transformers does)
  double batch_norm_eps = 1e-5;  ///< decode head BatchNorm eps
  std::vector<std::string> class_names;  ///< from id2label, index = class id
  std::string dtype = "float32";         ///< storage dtype recorded in the config
  std::size_t num_classes() const noexcept { return class_names.size(); }
};

namespace detail {

/// The largest integer a config field may hold: every count drt builds from (channels, depths,
/// heads, kernel sizes) is far below it, and products of a few of them still fit in 64 bits.
inline constexpr long long max_config_int = 1LL << 30;

/// A JSON integer in [1, max_config_int], or nothing. Values such as 2^31 or 2^32 + 24 are refused,
/// never wrapped into an int.
inline bool is_config_positive_int(const nlohmann::json& x) { return json_integer_in(x, 1, max_config_int); }

inline std::vector<int> int_list(const nlohmann::json& j, const std::string& path, const char* key) {
  if (!j.contains(key)) throw invalid_input("config '" + path + "': missing field '" + key + "'");
  const auto& v = j[key];
  if (!v.is_array()) throw invalid_input("config '" + path + "': field '" + key + "' must be a list of integers, got " + v.dump());
  std::vector<int> out;
  for (const auto& x : v) {
    if (!is_config_positive_int(x))
      throw invalid_input("config '" + path + "': field '" + key + "' must hold integers in [1, 2^30], got " + v.dump());
    out.push_back(x.get<int>());
  }
  return out;
}

inline int positive_int(const nlohmann::json& j, const std::string& path, const char* key, int fallback) {
  if (!j.contains(key)) return fallback;
  const auto& v = j[key];
  if (!is_config_positive_int(v))
    throw invalid_input("config '" + path + "': field '" + key + "' must be an integer in [1, 2^30], got " + v.dump());
  return v.get<int>();
}

/// An optional string field; anything but a string is an error naming the file and the field.
inline std::string config_string(const nlohmann::json& j, const std::string& path, const char* key,
                                 const std::string& fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  const auto& v = j[key];
  if (!v.is_string()) throw invalid_input("config '" + path + "': field '" + key + "' must be a string, got " + v.dump());
  return v.get<std::string>();
}

/// The storage dtype a config records (`dtype`, or the older `torch_dtype`).
inline std::string config_dtype(const nlohmann::json& j, const std::string& path) {
  return config_string(j, path, "dtype", config_string(j, path, "torch_dtype", "float32"));
}

/// id2label {"0": "sky", ...} -> names by index; the keys must be exactly 0..n-1.
inline std::vector<std::string> class_names(const nlohmann::json& j, const std::string& path) {
  if (!j.contains("id2label") || !j["id2label"].is_object() || j["id2label"].empty())
    throw invalid_input("config '" + path + "': missing or empty 'id2label' (the number of classes comes from it)");
  const auto& m = j["id2label"];
  std::vector<std::string> names(m.size());
  std::vector<bool> seen(m.size(), false);
  for (auto it = m.begin(); it != m.end(); ++it) {
    std::size_t idx = 0;
    try {
      std::size_t used = 0;
      idx = std::stoul(it.key(), &used);
      if (used != it.key().size()) throw std::invalid_argument("");
    } catch (const std::exception&) {
      throw invalid_input("config '" + path + "': id2label key '" + it.key() + "' is not a class index");
    }
    if (idx >= names.size() || seen[idx])
      throw invalid_input("config '" + path + "': id2label keys must be 0.." + std::to_string(names.size() - 1) +
                          ", got '" + it.key() + "'");
    seen[idx] = true;
    names[idx] = it->is_string() ? it->get<std::string>() : it->dump();
  }
  return names;
}

}  // namespace detail

/// The `model_type` of a config.json.
inline std::string read_model_type(const std::string& config_path) {
  const auto j = read_json_file("config", config_path);
  if (!j.is_object() || !j.contains("model_type") || !j["model_type"].is_string())
    throw invalid_input("config '" + config_path + "': missing string field 'model_type'");
  return j["model_type"].get<std::string>();
}

namespace detail {
inline segformer_config parse_segformer_config_checked(const nlohmann::json& j, const std::string& path) {
  if (!j.is_object()) throw invalid_input("config '" + path + "': not a JSON object");
  const std::string type = detail::config_string(j, path, "model_type", "");
  if (type != "segformer")
    throw invalid_input("config '" + path + "': model_type '" + type + "' is not supported here, expected 'segformer'");
  segformer_config c;
  c.num_channels = detail::positive_int(j, path, "num_channels", 3);
  c.num_encoder_blocks = detail::positive_int(j, path, "num_encoder_blocks", 4);
  c.depths = detail::int_list(j, path, "depths");
  c.sr_ratios = detail::int_list(j, path, "sr_ratios");
  c.hidden_sizes = detail::int_list(j, path, "hidden_sizes");
  c.patch_sizes = detail::int_list(j, path, "patch_sizes");
  c.strides = detail::int_list(j, path, "strides");
  c.num_attention_heads = detail::int_list(j, path, "num_attention_heads");
  c.mlp_ratios = detail::int_list(j, path, "mlp_ratios");
  c.decoder_hidden_size = detail::positive_int(j, path, "decoder_hidden_size", 256);
  const std::size_t n = static_cast<std::size_t>(c.num_encoder_blocks);
  const std::pair<const char*, const std::vector<int>*> lists[] = {
      {"depths", &c.depths},         {"sr_ratios", &c.sr_ratios}, {"hidden_sizes", &c.hidden_sizes},
      {"patch_sizes", &c.patch_sizes}, {"strides", &c.strides},   {"num_attention_heads", &c.num_attention_heads},
      {"mlp_ratios", &c.mlp_ratios}};
  for (const auto& [key, list] : lists)
    if (list->size() != n)
      throw invalid_input("config '" + path + "': field '" + key + "' has " + std::to_string(list->size()) +
                          " entries, expected num_encoder_blocks = " + std::to_string(n));
  for (std::size_t s = 0; s < n; ++s)
    if (c.hidden_sizes[s] % c.num_attention_heads[s] != 0)
      throw invalid_input("config '" + path + "': stage " + std::to_string(s) + " hidden size " +
                          std::to_string(c.hidden_sizes[s]) + " is not a multiple of its " +
                          std::to_string(c.num_attention_heads[s]) + " attention heads");
  const std::string act = detail::config_string(j, path, "hidden_act", "gelu");
  if (act == "gelu") c.hidden_act = activation_kind::gelu;
  else if (act == "relu") c.hidden_act = activation_kind::relu;
  else throw invalid_input("config '" + path + "': hidden_act '" + act + "' is not supported (gelu, relu)");
  if (j.contains("layer_norm_eps") && j["layer_norm_eps"].is_number()) c.layer_norm_eps = j["layer_norm_eps"].get<double>();
  if (j.contains("reshape_last_stage") && j["reshape_last_stage"].is_boolean() && !j["reshape_last_stage"].get<bool>())
    throw invalid_input("config '" + path + "': reshape_last_stage = false is not supported (semantic segmentation needs it)");
  c.class_names = detail::class_names(j, path);
  c.dtype = detail::config_dtype(j, path);
  return c;
}
}  // namespace detail

/// Parse and validate a SegFormer config.json.
inline segformer_config parse_segformer_config(const nlohmann::json& j, const std::string& path) {
  return with_json_context("config '" + path + "'", [&] { return detail::parse_segformer_config_checked(j, path); });
}

inline segformer_config load_segformer_config(const std::string& path) {
  return parse_segformer_config(read_json_file("config", path), path);
}

}  // namespace drt
