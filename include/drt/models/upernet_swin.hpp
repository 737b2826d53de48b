#pragma once
/// @file upernet_swin.hpp
/// UPerNet with a Swin backbone (`model_type: "upernet"`, `backbone_config.model_type: "swin"`), built
/// from a hub-layout directory. ref: transformers modeling_swin.py (SwinBackbone, SwinEmbeddings,
/// SwinPatchEmbeddings, SwinEncoder, SwinStage, SwinLayer) and modeling_upernet.py
/// (UperNetForSemanticSegmentation, UperNetHead). Activations are NHWC inside; inputs and outputs
/// are NCHW so they compare 1:1 with transformers.
///
/// Semantics worth knowing (all from the transformers code):
/// - the input is zero-padded (bottom/right) to a multiple of the patch size before the patch conv;
/// - SwinBackbone runs the encoder with always_partition=True: every block keeps the configured
///   window and shifts by window/2 on odd blocks even when the grid is no larger than the window
///   (the grid is padded up to a window); `swin_config::policy` selects SwinModel's clamp instead;
/// - `layer_norm_eps` is used by layernorm_before / layernorm_after only; the embedding norm, the
///   patch-merging norms and the `hidden_states_norms` use PyTorch's default eps 1e-5;
/// - the feature map of stage s is the stage output before patch merging, normalized by
///   `hidden_states_norms.stage{s}` (`stem`: the embedding output);
/// - the logits are upsampled to the input size (bilinear, align_corners=False).

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../io/model_config.hpp"
#include "../io/safetensors.hpp"
#include "../layers/conv2d.hpp"
#include "../layers/layer_norm.hpp"
#include "../layers/linear.hpp"
#include "../layers/patch_merging.hpp"
#include "../layers/resize.hpp"
#include "../layers/upernet_head.hpp"
#include "../layers/window_attention.hpp"

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
  if (!v.is_number_integer() || v.get<long long>() <= 0 || v.get<long long>() > (1LL << 30))
    throw invalid_input(where(path) + "field '" + prefix + key + "' must be a positive integer, got " + v.dump());
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
      if (!x.is_number_integer() || x.get<long long>() <= 0 || x.get<long long>() > (1LL << 30)) {
        ok = false;
        break;
      }
      out.push_back(x.get<int>());
    }
  if (!ok)
    throw invalid_input(where(path) + "field '" + prefix + key +
                        "' must be a non-empty list of positive integers, got " + v.dump());
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
      long long v = s.is_number_integer() ? s.get<long long>() : n;
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

/// Parse and validate an UPerNet config.json with a Swin backbone_config.
inline upernet_config parse_upernet_config(const nlohmann::json& j, const std::string& path) {
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
  c.dtype = j.value("dtype", j.value("torch_dtype", std::string("float32")));
  return c;
}

inline upernet_config load_upernet_config(const std::string& path) {
  return parse_upernet_config(detail::read_json_file(path), path);
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

/// Outputs of one forward pass, in PyTorch's NCHW layout.
struct upernet_output {
  tensor4 logits;                 ///< [N, classes, H, W], upsampled to the input size as transformers
  std::vector<tensor4> features;  ///< backbone feature maps [N, C_i, H_i, W_i] (normalized) when requested
};

/// One Swin block (ref: SwinLayer): x += attention(ln_before(x)); x += fc2(act(fc1(ln_after(x)))).
struct swin_block {
  layer_norm norm_before, norm_after;
  window_attention attention;
  linear fc1, fc2;  ///< intermediate.dense [hidden, C], output.dense [C, hidden]
};

class upernet_swin_model {
public:
  /// Load a hub-layout directory: config.json + model.safetensors.
  static upernet_swin_model from_dir(const std::string& dir) {
    auto cfg = load_upernet_config(dir + "/config.json");
    safetensors_file weights(dir + "/model.safetensors");
    return upernet_swin_model(std::move(cfg), weights);
  }

  /// Build from a checkpoint; every tensor is checked for presence and shape.
  upernet_swin_model(upernet_config cfg, const safetensors_file& st) : cfg_(std::move(cfg)) {
    std::vector<host_tensor> keep;  // converted tensors live only while the layers pack them
    build([&](const std::string& name, const std::vector<std::int64_t>& shape) -> const float* {
      keep.push_back(st.read_float(name, shape));
      return keep.back().data.data();
    });
  }

  /// A model with random weights (fixed seed) for benchmarks when no checkpoint is at hand:
  /// weights ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), norms near identity, variances in [0.5, 1.5].
  static upernet_swin_model with_random_weights(upernet_config cfg, unsigned seed = 0) {
    return upernet_swin_model(std::move(cfg), seed);
  }

private:
  upernet_swin_model(upernet_config cfg, unsigned seed) : cfg_(std::move(cfg)) {
    std::vector<std::vector<float>> keep;
    std::mt19937 gen(seed);
    build([&](const std::string& name, const std::vector<std::int64_t>& shape) -> const float* {
      std::size_t n = 1;
      for (auto d : shape) n *= static_cast<std::size_t>(d);
      const std::size_t fan_in = shape.size() > 1 ? n / static_cast<std::size_t>(shape[0]) : 1;
      const bool is_var = name.size() >= 11 && name.compare(name.size() - 11, 11, "running_var") == 0;
      const bool is_scale = shape.size() == 1 && name.size() >= 6 && name.compare(name.size() - 6, 6, "weight") == 0;
      const float a = shape.size() > 1 ? 1.0f / std::sqrt(static_cast<float>(fan_in)) : 0.1f;
      std::uniform_real_distribution<float> d(-a, a);
      std::vector<float> v(n);
      for (auto& x : v) x = is_var ? 1.0f + d(gen) * 5.0f : (is_scale ? 1.0f + d(gen) : d(gen));
      keep.push_back(std::move(v));
      return keep.back().data();
    });
  }

  /// Builds every layer from `get(name, shape) -> const float*` (pointers valid until the layer is made).
  template <class Get>
  void build(Get&& get) {
    const swin_config& s = cfg_.backbone;
    using i64 = std::int64_t;
    const float default_eps = 1e-5f;  // nn.LayerNorm(dim) without eps, as transformers builds them
    const float block_eps = static_cast<float>(s.layer_norm_eps);
    const i64 C0 = s.embed_dim, P = s.patch_size, IC = s.num_channels;
    conv2d_shape pe;
    pe.in_channels = static_cast<std::size_t>(IC);
    pe.out_channels = static_cast<std::size_t>(C0);
    pe.kernel_h = pe.kernel_w = pe.stride_h = pe.stride_w = static_cast<std::size_t>(P);
    patch_embed_ = conv2d(get("backbone.embeddings.patch_embeddings.projection.weight", {C0, IC, P, P}),
                          get("backbone.embeddings.patch_embeddings.projection.bias", {C0}), pe);
    embed_norm_ = layer_norm(get("backbone.embeddings.norm.weight", {C0}), get("backbone.embeddings.norm.bias", {C0}),
                             static_cast<std::size_t>(C0), default_eps);
    const i64 ws = s.window_size, table = (2 * ws - 1) * (2 * ws - 1);
    for (std::size_t st = 0; st < s.num_stages(); ++st) {
      const i64 C = static_cast<i64>(s.stage_channels(st)), hid = static_cast<i64>(s.mlp_hidden(st));
      const i64 heads = s.num_heads[st];
      std::vector<swin_block> blocks;
      for (int j = 0; j < s.depths[st]; ++j) {
        const std::string b = "backbone.encoder.layers." + std::to_string(st) + ".blocks." + std::to_string(j) + ".";
        window_attention_weights aw{};
        aw.q_w = get(b + "attention.self.query.weight", {C, C});
        aw.k_w = get(b + "attention.self.key.weight", {C, C});
        aw.v_w = get(b + "attention.self.value.weight", {C, C});
        if (s.qkv_bias) {
          aw.q_b = get(b + "attention.self.query.bias", {C});
          aw.k_b = get(b + "attention.self.key.bias", {C});
          aw.v_b = get(b + "attention.self.value.bias", {C});
        }
        aw.rel_table = get(b + "attention.self.relative_position_bias_table", {table, heads});
        aw.o_w = get(b + "attention.output.dense.weight", {C, C});
        aw.o_b = get(b + "attention.output.dense.bias", {C});
        swin_block blk;
        blk.norm_before = layer_norm(get(b + "layernorm_before.weight", {C}), get(b + "layernorm_before.bias", {C}),
                                     static_cast<std::size_t>(C), block_eps);
        blk.attention = window_attention(aw, static_cast<std::size_t>(C), static_cast<std::size_t>(heads),
                                         static_cast<std::size_t>(ws));
        blk.norm_after = layer_norm(get(b + "layernorm_after.weight", {C}), get(b + "layernorm_after.bias", {C}),
                                    static_cast<std::size_t>(C), block_eps);
        blk.fc1 = linear(get(b + "intermediate.dense.weight", {hid, C}), get(b + "intermediate.dense.bias", {hid}),
                         static_cast<std::size_t>(hid), static_cast<std::size_t>(C));
        blk.fc2 = linear(get(b + "output.dense.weight", {C, hid}), get(b + "output.dense.bias", {C}),
                         static_cast<std::size_t>(C), static_cast<std::size_t>(hid));
        blocks.push_back(std::move(blk));
      }
      blocks_.push_back(std::move(blocks));
      if (st + 1 < s.num_stages()) {
        const std::string d = "backbone.encoder.layers." + std::to_string(st) + ".downsample.";
        merges_.emplace_back(get(d + "norm.weight", {4 * C}), get(d + "norm.bias", {4 * C}),
                             get(d + "reduction.weight", {2 * C, 4 * C}), static_cast<std::size_t>(C), default_eps);
      }
    }
    std::vector<std::size_t> in_channels;
    for (int idx : s.out_indices) {
      const i64 C = static_cast<i64>(s.feature_channels(static_cast<std::size_t>(idx)));
      const std::string n =
          "backbone.hidden_states_norms." + swin_config::stage_name(static_cast<std::size_t>(idx)) + ".";
      feature_norms_.emplace_back(get(n + "weight", {C}), get(n + "bias", {C}), static_cast<std::size_t>(C),
                                  default_eps);
      in_channels.push_back(static_cast<std::size_t>(C));
    }
    // UPerNet head
    const i64 D = cfg_.hidden_size, K = static_cast<i64>(cfg_.num_classes());
    const i64 L = static_cast<i64>(in_channels.size()), CL = static_cast<i64>(in_channels.back());
    const i64 S = static_cast<i64>(cfg_.pool_scales.size());
    auto module = [&](const std::string& p, const std::vector<i64>& wshape) {
      conv_module_weights m;
      const i64 oc = wshape[0];
      m.conv_w = get(p + "conv.weight", wshape);
      m.bn_g = get(p + "batch_norm.weight", {oc});
      m.bn_b = get(p + "batch_norm.bias", {oc});
      m.bn_mean = get(p + "batch_norm.running_mean", {oc});
      m.bn_var = get(p + "batch_norm.running_var", {oc});
      return m;
    };
    upernet_head_weights hw;
    for (i64 i = 0; i < S; ++i)
      hw.psp.push_back(module("decode_head.psp_modules." + std::to_string(i) + ".1.", {D, CL, 1, 1}));
    hw.bottleneck = module("decode_head.bottleneck.", {D, CL + S * D, 3, 3});
    for (i64 i = 0; i + 1 < L; ++i) {
      hw.lateral.push_back(module("decode_head.lateral_convs." + std::to_string(i) + ".",
                                  {D, static_cast<i64>(in_channels[static_cast<std::size_t>(i)]), 1, 1}));
      hw.fpn.push_back(module("decode_head.fpn_convs." + std::to_string(i) + ".", {D, D, 3, 3}));
    }
    hw.fpn_bottleneck = module("decode_head.fpn_bottleneck.", {D, L * D, 3, 3});
    hw.cls_w = get("decode_head.classifier.weight", {K, D, 1, 1});
    hw.cls_b = get("decode_head.classifier.bias", {K});
    std::vector<std::size_t> scales(cfg_.pool_scales.begin(), cfg_.pool_scales.end());
    head_ = upernet_head(hw, in_channels, static_cast<std::size_t>(D), static_cast<std::size_t>(K), scales,
                         static_cast<float>(cfg_.batch_norm_eps));
  }

public:
  const upernet_config& config() const noexcept { return cfg_; }
  std::size_t num_stages() const noexcept { return blocks_.size(); }
  const upernet_head& decode_head() const noexcept { return head_; }
  const std::vector<swin_block>& stage_blocks(std::size_t s) const noexcept { return blocks_[s]; }

  /// Token grid of stage s (s = 0..stages-1) for an H x W input: ceil(H/P) x ceil(W/P), halved
  /// (rounding up) by every patch merging.
  std::vector<std::pair<std::size_t, std::size_t>> stage_sizes(std::size_t height, std::size_t width) const {
    const std::size_t p = static_cast<std::size_t>(cfg_.backbone.patch_size);
    std::size_t h = (height + p - 1) / p, w = (width + p - 1) / p;
    std::vector<std::pair<std::size_t, std::size_t>> out;
    for (std::size_t s = 0; s < num_stages(); ++s) {
      out.emplace_back(h, w);
      h = patch_merging_out(h);
      w = patch_merging_out(w);
    }
    return out;
  }

  /// Multiply-accumulates of one H x W image (convs, linears, attention matmuls; norms, softmax and
  /// resizes not counted), for FLOP-rate reports.
  double macs(std::size_t height, std::size_t width) const {
    const swin_config& s = cfg_.backbone;
    const auto sizes = stage_sizes(height, width);
    const double P = s.patch_size;
    double m = double(sizes[0].first) * sizes[0].second * s.num_channels * P * P * s.embed_dim;
    std::vector<std::size_t> fh, fw;
    if (s.out_indices.front() == 0) {
      fh.push_back(sizes[0].first);
      fw.push_back(sizes[0].second);
    }
    for (std::size_t st = 0; st < num_stages(); ++st) {
      const std::size_t h = sizes[st].first, w = sizes[st].second, ws = static_cast<std::size_t>(s.window_size);
      for (std::size_t j = 0; j < blocks_[st].size(); ++j) {
        const auto& blk = blocks_[st][j];
        m += blk.attention.macs(make_window_geometry(h, w, ws, j % 2 ? ws / 2 : 0, s.policy));
        m += 2.0 * h * w * blk.fc1.in_features() * blk.fc1.out_features();
      }
      if (st + 1 < num_stages()) m += merges_[st].macs(h, w);
      for (int idx : s.out_indices)
        if (static_cast<std::size_t>(idx) == st + 1) {
          fh.push_back(h);
          fw.push_back(w);
        }
    }
    return m + head_.macs(fh, fw);
  }

  /// pixel_values: [N, C, H, W] float32, normalized. Returns logits [N, K, H, W].
  upernet_output forward(const tensor4& pixel_values, bool keep_features = false) const {
    const swin_config& s = cfg_.backbone;
    const std::size_t n = pixel_values.shape(0), c = pixel_values.shape(1);
    const std::size_t height = pixel_values.shape(2), width = pixel_values.shape(3);
    if (c != static_cast<std::size_t>(s.num_channels) || n == 0 || height == 0 || width == 0)
      throw shape_error("upernet: pixel_values has shape " + shape_str(pixel_values.shape()) + ", expected [N, " +
                        std::to_string(s.num_channels) + ", H, W] with N, H, W >= 1");
    // Patch embedding on the input zero-padded to a multiple of the patch (ref: SwinPatchEmbeddings.maybe_pad)
    const std::size_t P = static_cast<std::size_t>(s.patch_size);
    const std::size_t hp = (height + P - 1) / P * P, wp = (width + P - 1) / P * P;
    tensor4 x = tensor4::from_shape({n, hp, wp, c});
    std::fill(x.begin(), x.end(), 0.f);
    {
      const float* src = pixel_values.data();
      float* dst = x.data();
      for (std::size_t b = 0; b < n; ++b)
        for (std::size_t ch = 0; ch < c; ++ch)
          for (std::size_t yy = 0; yy < height; ++yy)
            for (std::size_t xx = 0; xx < width; ++xx)
              dst[((b * hp + yy) * wp + xx) * c + ch] = src[((b * c + ch) * height + yy) * width + xx];
    }
    std::size_t h = hp / P, w = wp / P, C = static_cast<std::size_t>(s.embed_dim);
    detail::aligned_vector<float> cur(n * h * w * C), normed, hidden;
    patch_embed_.run(x.data(), n, hp, wp, cur.data());
    embed_norm_.run(n * h * w, cur.data(), C, cur.data(), C);

    std::vector<detail::aligned_vector<float>> feats(s.out_indices.size());
    std::vector<std::size_t> fh, fw;
    std::size_t next_feature = 0;
    auto take_feature = [&](std::size_t idx) {
      if (next_feature >= s.out_indices.size() || static_cast<std::size_t>(s.out_indices[next_feature]) != idx) return;
      auto& f = feats[next_feature];
      f.resize(n * h * w * C);
      feature_norms_[next_feature].run(n * h * w, cur.data(), C, f.data(), C);
      fh.push_back(h);
      fw.push_back(w);
      ++next_feature;
    };
    take_feature(0);
    const std::size_t ws = static_cast<std::size_t>(s.window_size);
    const activation act = s.hidden_act == activation_kind::gelu ? activation::gelu : activation::relu;
    for (std::size_t st = 0; st < num_stages(); ++st) {
      const std::size_t m = n * h * w;
      normed.resize(m * C);
      for (std::size_t j = 0; j < blocks_[st].size(); ++j) {
        const auto& blk = blocks_[st][j];
        // ref: SwinStage: shift_size = 0 on even blocks, window_size // 2 on odd ones
        const auto g = make_window_geometry(h, w, ws, j % 2 == 1 ? ws / 2 : 0, s.policy);
        blk.norm_before.run(m, cur.data(), C, normed.data(), C);
        blk.attention.run(normed.data(), n, g, cur.data());
        blk.norm_after.run(m, cur.data(), C, normed.data(), C);
        const std::size_t hid = blk.fc1.out_features();
        hidden.resize(m * hid);
        blk.fc1.run(m, normed.data(), C, hidden.data(), hid, act);
        blk.fc2.run(m, hidden.data(), hid, cur.data(), C, activation::none, cur.data(), C);
      }
      take_feature(st + 1);
      if (st + 1 < num_stages()) {
        const std::size_t oh = patch_merging_out(h), ow = patch_merging_out(w);
        detail::aligned_vector<float> merged(n * oh * ow * 2 * C);
        merges_[st].run(cur.data(), n, h, w, merged.data());
        cur = std::move(merged);
        h = oh;
        w = ow;
        C *= 2;
      }
    }

    upernet_output out;
    std::vector<const float*> fp;
    for (std::size_t i = 0; i < feats.size(); ++i) {
      fp.push_back(feats[i].data());
      if (keep_features)
        out.features.push_back(to_nchw(feats[i].data(), n, fh[i], fw[i], feature_norms_[i].channels()));
    }
    const std::size_t k = head_.classes();
    detail::aligned_vector<float> logits(n * fh[0] * fw[0] * k);
    head_.run(fp, n, fh, fw, logits.data());
    // Upsample to the input size: NCHW planes resized as a batch of single-channel maps.
    const tensor4 small = to_nchw(logits.data(), n, fh[0], fw[0], k);
    out.logits = tensor4::from_shape({n, k, height, width});
    resize_bilinear(small.data(), n * k, fh[0], fw[0], 1, 1, out.logits.data(), height, width, 1);
    return out;
  }

private:
  static tensor4 to_nchw(const float* p, std::size_t n, std::size_t h, std::size_t w, std::size_t c) {
    tensor4 out = tensor4::from_shape({n, c, h, w});
    float* dst = out.data();
    for (std::size_t b = 0; b < n; ++b)
      for (std::size_t y = 0; y < h; ++y)
        for (std::size_t x = 0; x < w; ++x)
          for (std::size_t ch = 0; ch < c; ++ch)
            dst[((b * c + ch) * h + y) * w + x] = p[((b * h + y) * w + x) * c + ch];
    return out;
  }

  upernet_config cfg_;
  conv2d patch_embed_;
  layer_norm embed_norm_;
  std::vector<std::vector<swin_block>> blocks_;
  std::vector<patch_merging> merges_;
  std::vector<layer_norm> feature_norms_;  ///< one per out_indices entry
  upernet_head head_;
};

}  // namespace drt
