#pragma once
/// @file resnet.hpp
/// ResNet (basic and bottleneck variants) built from a hub-layout directory, as an image classifier
/// or as a backbone (the stem and stage feature maps DETR-style detectors consume).
/// ref: transformers modeling_resnet.py (ResNetModel, ResNetForImageClassification, ResNetBackbone),
///      configuration_resnet.py (ResNetConfig).
/// Activations are NHWC inside; inputs and hidden states are NCHW so they compare 1:1 with transformers.
/// Every BatchNorm is folded into the convolution before it at load; the end of each residual block
/// (last conv + shortcut + ReLU) is one fused pass.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <xsimd/xsimd.hpp>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor.hpp"
#include "../io/model_config.hpp"
#include "../io/safetensors.hpp"
#include "../layers/activation.hpp"
#include "../layers/batch_norm.hpp"
#include "../layers/conv2d.hpp"
#include "../layers/gemm.hpp"
#include "../layers/linear.hpp"
#include "../layers/pooling.hpp"

namespace drt {

// ---------------------------------------------------------------------------------------- config

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

/// Parse and validate a ResNet config.json. Absent fields take ResNetConfig's defaults, as
/// transformers does; present ones are checked and a bad one throws naming the file and the field.
inline resnet_config parse_resnet_config(const nlohmann::json& j, const std::string& path) {
  if (!j.is_object()) throw invalid_input("config '" + path + "': not a JSON object");
  const std::string type = j.value("model_type", std::string());
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
  c.dtype = j.value("dtype", j.value("torch_dtype", std::string("float32")));
  return c;
}

inline resnet_config load_resnet_config(const std::string& path) {
  return parse_resnet_config(detail::read_json_file(path), path);
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

// ----------------------------------------------------------------------------------------- model

/// Outputs of one forward pass, in PyTorch's layouts.
struct resnet_output {
  tensor2 logits;  ///< [N, classes]; [N, 0] when the model has no classifier
  tensor2 pooled;  ///< [N, hidden_sizes.back()]: the pooler output, flattened (ref: ResNetModel.pooler)
  /// When requested: NCHW [N, C, H, W]; [0] = stem (after the max-pool), [1..S] = the stage outputs
  /// (ref: ResNetEncoder hidden_states).
  std::vector<tensor4> hidden_states;
};

/// MACs of one convolution or linear layer, named as its module in the checkpoint.
struct resnet_layer_macs {
  std::string name;
  double macs = 0;
};

/// One residual block (ref: ResNetBottleNeckLayer / ResNetBasicLayer), every BatchNorm folded.
/// Bottleneck: layer[0] 1x1 reduce, layer[1] 3x3, layer[2] 1x1 expand; basic: layer[0], layer[1] 3x3.
struct resnet_block {
  std::vector<conv2d> layer;
  conv2d shortcut;  ///< 1x1 projection (ref: ResNetShortCut); used when has_shortcut
  bool has_shortcut = false;
  std::size_t stride = 1;
};

namespace detail {

/// y[m, n] = relu(a[m, k] x B + bias + residual[m, n]): the end of every residual block
/// (ref: `hidden_state += residual; hidden_state = self.activation(hidden_state)`). gemm's epilogue
/// adds the residual after its activation, so the ReLU is applied to each block of rows right after
/// the GEMM wrote it, while it is still in cache. residual may alias y.
inline void gemm_residual_relu(std::size_t m, std::size_t n, std::size_t k, const float* a, std::size_t lda,
                               const packed_matrix& b, const float* bias, const float* residual, float* y) {
  const std::size_t want = 4 * static_cast<std::size_t>(max_threads());
  std::size_t rows = gemm_mc;
  if ((m + rows - 1) / rows < want) {
    rows = (m + want - 1) / want;
    rows = std::max(gemm_mr, (rows + gemm_mr - 1) / gemm_mr * gemm_mr);
  }
  const std::size_t blocks = (m + rows - 1) / rows;
  parallel_for(
      blocks,
      [&](std::size_t bi) {
        const std::size_t r0 = bi * rows, mr = std::min(rows, m - r0);
        gemm_epilogue ep;
        ep.bias = bias;
        ep.residual = residual + r0 * n;
        ep.ldr = n;
        gemm(mr, n, k, a + r0 * lda, lda, b, y + r0 * n, n, ep, /*allow_parallel=*/false);
        activate_inplace<activation::relu>(y + r0 * n, mr * n);
      },
      2.0 * static_cast<double>(m) * n * k);
}

/// y = relu(y + residual) over `count` floats (the end of a basic block, after its 3x3 conv).
inline void add_relu_inplace(float* y, const float* residual, std::size_t count) {
  using batch = xsimd::batch<float>;
  constexpr std::size_t W = batch::size, chunk = 1 << 14;
  const std::size_t chunks = (count + chunk - 1) / chunk;
  parallel_for(
      chunks,
      [&](std::size_t ci) {
        const std::size_t i0 = ci * chunk, i1 = std::min(count, i0 + chunk);
        std::size_t i = i0;
        for (; i + W <= i1; i += W)
          xsimd::max(batch::load_unaligned(y + i) + batch::load_unaligned(residual + i), batch(0.f))
              .store_unaligned(y + i);
        for (; i < i1; ++i) y[i] = std::max(y[i] + residual[i], 0.f);
      },
      static_cast<double>(count));
}

}  // namespace detail

class resnet_model {
public:
  /// Load a hub-layout directory: config.json + model.safetensors.
  static resnet_model from_dir(const std::string& dir) {
    auto cfg = load_resnet_config(dir + "/config.json");
    safetensors_file weights(dir + "/model.safetensors");
    return resnet_model(std::move(cfg), weights);
  }

  /// Build from a checkpoint; every tensor is checked for presence and shape. A
  /// ResNetForImageClassification checkpoint (`resnet.*` + `classifier.1.*`) gives a classifier when
  /// the config has classes; a bare ResNetModel / ResNetBackbone checkpoint (`embedder.*`,
  /// `encoder.*`) gives a backbone without one.
  resnet_model(resnet_config cfg, const safetensors_file& st) : cfg_(std::move(cfg)) {
    const bool bare = !st.contains("resnet.embedder.embedder.convolution.weight") &&
                      st.contains("embedder.embedder.convolution.weight");
    std::vector<host_tensor> keep;  // converted tensors live only while the layers pack them
    build(
        [&](const std::string& name, const std::vector<std::int64_t>& shape) -> const float* {
          keep.push_back(st.read_float(name, shape));
          return keep.back().data.data();
        },
        bare ? "" : "resnet.", !bare && cfg_.num_classes() > 0);
  }

  /// A model with random weights (fixed seed) for benchmarks and profiles when no checkpoint is at
  /// hand: weights ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), BatchNorms near identity, variances in [0.5, 1.5].
  static resnet_model with_random_weights(resnet_config cfg, unsigned seed = 0) {
    return resnet_model(std::move(cfg), seed);
  }

private:
  resnet_model(resnet_config cfg, unsigned seed) : cfg_(std::move(cfg)) {
    std::vector<std::vector<float>> keep;
    std::mt19937 gen(seed);
    build(
        [&](const std::string& name, const std::vector<std::int64_t>& shape) -> const float* {
          std::size_t n = 1;
          for (auto d : shape) n *= static_cast<std::size_t>(d);
          const std::size_t fan_in = shape.size() > 1 ? n / static_cast<std::size_t>(shape[0]) : 1;
          const auto ends_with = [&](const char* s) {
            const std::string suffix(s);
            return name.size() >= suffix.size() &&
                   name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
          };
          const bool is_var = ends_with("running_var");
          const bool is_scale = shape.size() == 1 && ends_with("normalization.weight");
          const float a = shape.size() > 1 ? 1.0f / std::sqrt(static_cast<float>(fan_in)) : 0.1f;
          std::uniform_real_distribution<float> d(-a, a);
          std::vector<float> v(n);
          for (auto& x : v) x = is_var ? 1.0f + d(gen) * 5.0f : (is_scale ? 1.0f + d(gen) : d(gen));
          keep.push_back(std::move(v));
          return keep.back().data();
        },
        "resnet.", cfg_.num_classes() > 0);
  }

  /// conv (bias=False) + BatchNorm2d folded into one conv2d (ref: ResNetConvLayer, ResNetShortCut;
  /// padding kernel // 2, which is 0 for the shortcut's 1x1).
  template <class Get>
  conv2d conv_bn(Get& get, const std::string& prefix, std::int64_t in, std::int64_t out, std::int64_t k,
                 std::size_t stride) const {
    const float* wp = get(prefix + "convolution.weight", {out, in, k, k});
    std::vector<float> w(wp, wp + out * in * k * k);
    const std::string bn = prefix + "normalization.";
    const float* g = get(bn + "weight", {out});
    const float* b = get(bn + "bias", {out});
    const float* mean = get(bn + "running_mean", {out});
    const float* var = get(bn + "running_var", {out});
    const auto affine =
        batch_norm_to_affine(g, b, mean, var, static_cast<std::size_t>(out), static_cast<float>(cfg_.batch_norm_eps));
    const auto bias = fold_batch_norm(w, static_cast<std::size_t>(in * k * k), {}, affine);
    conv2d_shape s;
    s.in_channels = static_cast<std::size_t>(in);
    s.out_channels = static_cast<std::size_t>(out);
    s.kernel_h = s.kernel_w = static_cast<std::size_t>(k);
    s.stride_h = s.stride_w = stride;
    s.pad_h = s.pad_w = static_cast<std::size_t>(k / 2);
    return conv2d(w.data(), bias.data(), s);
  }

  /// Builds every layer from `get(name, shape) -> const float*` (pointers valid until the layer is made).
  template <class Get>
  void build(Get&& get, const std::string& prefix, bool with_classifier) {
    const auto& c = cfg_;
    const std::int64_t E = c.embedding_size;
    // ref: ResNetEmbeddings: 7x7/2 conv pad 3 + BN + act, then MaxPool2d(3, 2, padding 1).
    stem_ = conv_bn(get, prefix + "embedder.embedder.", c.num_channels, E, 7, 2);
    std::int64_t in = E;
    for (std::size_t s = 0; s < c.num_stages(); ++s) {
      // ref: ResNetEncoder: stage 0 strides by 2 only with downsample_in_first_stage, the others always.
      const std::size_t stage_stride = s == 0 && !c.downsample_in_first_stage ? 1 : 2;
      const std::int64_t out = c.hidden_sizes[s];
      std::vector<resnet_block> blocks;
      for (int j = 0; j < c.depths[s]; ++j) {
        // ref: ResNetStage: only the first layer strides and changes the width.
        const std::size_t stride = j == 0 ? stage_stride : 1;
        const std::int64_t bin = j == 0 ? in : out;
        const std::string p = prefix + "encoder.stages." + std::to_string(s) + ".layers." + std::to_string(j) + ".";
        resnet_block blk;
        blk.stride = stride;
        if (c.layer_type == resnet_layer_type::bottleneck) {
          // ref: ResNetBottleNeckLayer (reduction 4); downsample_in_bottleneck moves the stride to the 1x1.
          const std::int64_t r = out / 4;
          const bool dib = c.downsample_in_bottleneck;
          blk.layer.push_back(conv_bn(get, p + "layer.0.", bin, r, 1, dib ? stride : 1));
          blk.layer.push_back(conv_bn(get, p + "layer.1.", r, r, 3, dib ? 1 : stride));
          blk.layer.push_back(conv_bn(get, p + "layer.2.", r, out, 1, 1));
        } else {
          // ref: ResNetBasicLayer: 3x3 (stride) + act, 3x3 without activation.
          blk.layer.push_back(conv_bn(get, p + "layer.0.", bin, out, 3, stride));
          blk.layer.push_back(conv_bn(get, p + "layer.1.", out, out, 3, 1));
        }
        // ref: should_apply_shortcut = in_channels != out_channels or stride != 1
        blk.has_shortcut = bin != out || stride != 1;
        if (blk.has_shortcut) blk.shortcut = conv_bn(get, p + "shortcut.", bin, out, 1, stride);
        blocks.push_back(std::move(blk));
      }
      stages_.push_back(std::move(blocks));
      in = out;
    }
    if (with_classifier) {
      // ref: ResNetForImageClassification.classifier = Sequential(Flatten(), Linear(hidden_sizes[-1], num_labels))
      const std::int64_t K = static_cast<std::int64_t>(c.num_classes());
      const float* w = get("classifier.1.weight", {K, in});  // weight checked first, as every layer's
      const float* b = get("classifier.1.bias", {K});
      classifier_ = linear(w, b, static_cast<std::size_t>(K), static_cast<std::size_t>(in));
      has_classifier_ = true;
    }
  }

public:
  const resnet_config& config() const noexcept { return cfg_; }
  std::size_t num_stages() const noexcept { return stages_.size(); }
  bool has_classifier() const noexcept { return has_classifier_; }
  /// Output classes of the classifier (0 without one).
  std::size_t num_classes() const noexcept { return has_classifier_ ? classifier_.out_features() : 0; }
  const conv2d& stem() const noexcept { return stem_; }
  const std::vector<resnet_block>& stage_blocks(std::size_t s) const noexcept { return stages_[s]; }
  const linear& classifier() const noexcept { return classifier_; }
  /// The stem's max-pool (ref: ResNetEmbeddings.pooler).
  static constexpr pool2d_shape stem_pool() noexcept { return pool2d_shape{3, 2, 1}; }

  /// Spatial sizes (H, W) of the feature maps for an H x W input: [0] stem (after the max-pool),
  /// [1..S] stages.
  std::vector<std::pair<std::size_t, std::size_t>> feature_sizes(std::size_t height, std::size_t width) const {
    std::vector<std::pair<std::size_t, std::size_t>> out;
    std::size_t h = stem_pool().out(stem_.shape().out_h(height)), w = stem_pool().out(stem_.shape().out_w(width));
    out.emplace_back(h, w);
    for (const auto& blocks : stages_) {
      for (const auto& b : blocks) {
        for (const auto& l : b.layer) {
          h = l.shape().out_h(h);
          w = l.shape().out_w(w);
        }
      }
      out.emplace_back(h, w);
    }
    return out;
  }

  /// MACs per convolution / linear layer for one H x W image, in execution order, named as the
  /// checkpoint's modules (without the `resnet.` prefix). Pooling and the residual adds are not counted.
  std::vector<resnet_layer_macs> macs(std::size_t height, std::size_t width) const {
    std::vector<resnet_layer_macs> out;
    out.push_back({"embedder.embedder", stem_.shape().macs(1, height, width)});
    std::size_t h = stem_pool().out(stem_.shape().out_h(height)), w = stem_pool().out(stem_.shape().out_w(width));
    for (std::size_t s = 0; s < stages_.size(); ++s)
      for (std::size_t j = 0; j < stages_[s].size(); ++j) {
        const auto& b = stages_[s][j];
        const std::string p = "encoder.stages." + std::to_string(s) + ".layers." + std::to_string(j) + ".";
        const std::size_t h0 = h, w0 = w;
        for (std::size_t i = 0; i < b.layer.size(); ++i) {
          out.push_back({p + "layer." + std::to_string(i), b.layer[i].shape().macs(1, h, w)});
          h = b.layer[i].shape().out_h(h);
          w = b.layer[i].shape().out_w(w);
        }
        if (b.has_shortcut) out.push_back({p + "shortcut", b.shortcut.shape().macs(1, h0, w0)});
      }
    if (has_classifier_)
      out.push_back({"classifier.1", static_cast<double>(classifier_.in_features()) * classifier_.out_features()});
    return out;
  }

  /// Sum of `macs(height, width)`.
  double total_macs(std::size_t height, std::size_t width) const {
    double total = 0;
    for (const auto& l : macs(height, width)) total += l.macs;
    return total;
  }

  /// pixel_values: [N, C, H, W] float32, normalized. Returns the logits [N, classes], the pooled
  /// features and, when `keep_hidden_states`, the stem and stage outputs (NCHW).
  resnet_output forward(const tensor4& pixel_values, bool keep_hidden_states = false) const {
    resnet_output out;
    const std::size_t n = pixel_values.shape(0);
    const float* last =
        encode(pixel_values, [&](std::size_t, const float* p, std::size_t h, std::size_t w, std::size_t ch) {
          if (keep_hidden_states) out.hidden_states.push_back(to_nchw(p, n, h, w, ch));
        });
    const auto last_size = feature_sizes(pixel_values.shape(2), pixel_values.shape(3)).back();
    const std::size_t C = static_cast<std::size_t>(cfg_.hidden_sizes.back());
    // ref: ResNetModel.pooler = AdaptiveAvgPool2d((1, 1)); [N, 1, 1, C] is [N, C].
    out.pooled = tensor2::from_shape({n, C});
    adaptive_avg_pool2d(last, n, last_size.first, last_size.second, C, out.pooled.data(), 1, 1);
    out.logits = tensor2::from_shape({n, num_classes()});
    if (has_classifier_) classifier_.run(n, out.pooled.data(), C, out.logits.data(), num_classes());
    return out;
  }

  /// Backbone use: the stem output (after the max-pool) and every stage output, NHWC [N, H, W, C]
  /// (ref: ResNetBackbone feature_maps, all of stage_names; pick by index 0 = "stem", s = "stage<s>").
  std::vector<tensor4> features(const tensor4& pixel_values) const {
    std::vector<tensor4> maps;
    const std::size_t n = pixel_values.shape(0);
    encode(pixel_values, [&](std::size_t, const float* p, std::size_t h, std::size_t w, std::size_t ch) {
      tensor4 t = tensor4::from_shape({n, h, w, ch});
      std::copy(p, p + n * h * w * ch, t.data());
      maps.push_back(std::move(t));
    });
    return maps;
  }

  /// Throws drt::shape_error unless pixel_values is [N >= 1, num_channels, H >= 1, W >= 1].
  void check_input(const tensor4& pixel_values) const {
    const auto& s = pixel_values.shape();
    if (s[0] == 0 || s[1] != static_cast<std::size_t>(cfg_.num_channels) || s[2] == 0 || s[3] == 0)
      throw shape_error("resnet: pixel_values has shape " + shape_str(s) + ", expected [N, " +
                        std::to_string(cfg_.num_channels) + ", H, W] with N, H, W >= 1");
  }

private:
  /// Runs the stem and the stages; calls on_feature(index, nhwc, h, w, channels) for the stem output
  /// and each stage output. Returns the last stage's output (valid until this thread's next call).
  template <class F>
  const float* encode(const tensor4& pixel_values, F&& on_feature) const {
    check_input(pixel_values);
    const std::size_t n = pixel_values.shape(0), c = pixel_values.shape(1);
    std::size_t h = pixel_values.shape(2), w = pixel_values.shape(3);
    buffers& buf = thread_buffers();
    {
      const tensor4 x = nchw_to_nhwc(pixel_values.data(), n, c, h, w);
      const std::size_t sh = stem_.shape().out_h(h), sw = stem_.shape().out_w(w);
      const std::size_t E = stem_.shape().out_channels;
      grow(buf.t1, n * sh * sw * E);
      stem_.run(x.data(), n, h, w, buf.t1.data(), activation::relu);
      h = stem_pool().out(sh);
      w = stem_pool().out(sw);
      grow(buf.cur, n * h * w * E);
      max_pool2d(buf.t1.data(), n, sh, sw, E, stem_pool(), buf.cur.data());
      on_feature(0, buf.cur.data(), h, w, E);
    }
    for (std::size_t s = 0; s < stages_.size(); ++s) {
      for (const auto& b : stages_[s]) {
        run_block(b, n, h, w, buf);
        std::swap(buf.cur, buf.next);
      }
      on_feature(s + 1, buf.cur.data(), h, w, static_cast<std::size_t>(cfg_.hidden_sizes[s]));
    }
    return buf.cur.data();
  }

  struct buffers {
    detail::aligned_vector<float> cur, next, t1, t2, sc;
  };
  /// Activation buffers, one set per calling thread, grown on demand and reused by every later call
  /// (and every model): after the first frame of a given size a forward pass allocates only its outputs.
  static buffers& thread_buffers() {
    thread_local buffers b;
    return b;
  }

  static void grow(detail::aligned_vector<float>& v, std::size_t size) {
    if (v.size() < size) v.resize(size);
  }

  /// buf.cur [N, h, w, IC] -> buf.next [N, h', w', OC]; h and w become the output size.
  void run_block(const resnet_block& b, std::size_t n, std::size_t& h, std::size_t& w, buffers& buf) const {
    const float* x = buf.cur.data();
    // The shortcut's geometry equals the block's (1x1 pad 0 and 3x3 pad 1 with the same stride agree).
    const auto& last = b.layer.back().shape();
    std::size_t oh = h, ow = w;
    for (const auto& l : b.layer) {
      oh = l.shape().out_h(oh);
      ow = l.shape().out_w(ow);
    }
    const std::size_t oc = last.out_channels, m = n * oh * ow;
    const float* residual = x;  // identity: same size and width
    if (b.has_shortcut) {
      grow(buf.sc, m * oc);
      b.shortcut.run(x, n, h, w, buf.sc.data());
      residual = buf.sc.data();
    }
    grow(buf.next, m * oc);
    const auto& l0 = b.layer[0];
    const std::size_t h1 = l0.shape().out_h(h), w1 = l0.shape().out_w(w);
    grow(buf.t1, n * h1 * w1 * l0.shape().out_channels);
    l0.run(x, n, h, w, buf.t1.data(), activation::relu);
    if (b.layer.size() == 3) {  // bottleneck: 3x3, then the 1x1 expand fused with the residual and ReLU
      const auto& l1 = b.layer[1];
      grow(buf.t2, m * l1.shape().out_channels);
      l1.run(buf.t1.data(), n, h1, w1, buf.t2.data(), activation::relu);
      const auto& l2 = b.layer[2];
      detail::gemm_residual_relu(m, oc, l2.shape().in_channels, buf.t2.data(), l2.shape().in_channels, l2.weights(),
                                 l2.bias(), residual, buf.next.data());
    } else {  // basic: 3x3 without activation, then residual + ReLU
      b.layer[1].run(buf.t1.data(), n, h1, w1, buf.next.data());
      detail::add_relu_inplace(buf.next.data(), residual, m * oc);
    }
    h = oh;
    w = ow;
  }

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

  resnet_config cfg_;
  conv2d stem_;
  std::vector<std::vector<resnet_block>> stages_;
  linear classifier_;
  bool has_classifier_ = false;
};

}  // namespace drt
