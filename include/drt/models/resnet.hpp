#pragma once
/// @file resnet.hpp
/// ResNet (basic and bottleneck variants) built from a hub-layout directory, as an image classifier
/// or as a backbone (the stem and stage feature maps DETR-style detectors consume).
/// ref: transformers modeling_resnet.py (ResNetModel, ResNetForImageClassification, ResNetBackbone),
///      configuration_resnet.py (ResNetConfig).
/// Activations are NHWC inside; inputs and hidden states are NCHW so they compare 1:1 with transformers.
/// Every BatchNorm is folded into the convolution before it at load; the end of each residual block
/// (last conv + shortcut + ReLU) is one fused pass.
///
/// Dynamic paths (dynamic/resnet_path.hpp, Once-for-All style): `compile(path)` gives a
/// `resnet_execution` (blocks run per stage, middle channels per block, output width per stage, the
/// 1x1 convs' precision) that `forward` runs without copying weights: skipped blocks cost nothing,
/// every conv reads and writes only its kept channel prefixes (`conv2d::forward_prefix`,
/// `conv2d::run_1x1`), activations are stored dense at the kept widths. `layers(h, w, exec)` lists what runs, named as the profile scopes of `forward`.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include "../core/simd.hpp"

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/profiler.hpp"
#include "../core/tensor.hpp"
#include "../layers/gemm.hpp"
#include "../dynamic/resnet_path.hpp"
#include "../io/model_config.hpp"
#include "../io/resnet_config.hpp"
#include "../io/safetensors.hpp"
#include "../io/weight_source.hpp"
#include "../layers/activation.hpp"
#include "../layers/batch_norm.hpp"
#include "../layers/conv2d.hpp"
#include "../layers/gemm.hpp"
#include "../layers/linear.hpp"
#include "../layers/pooling.hpp"
#include "layer_info.hpp"

namespace drt {

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

/// Which parts of the network run (the dynamic path, made by `resnet_model::compile`); the defaults
/// run everything. Channel counts are prefixes in checkpoint order.
struct resnet_execution {
  std::vector<std::size_t> depths;            ///< blocks run per stage (the first d); empty = all
  std::vector<std::vector<std::size_t>> mid;  ///< middle channels per stage and block; empty = all
  std::vector<std::size_t> width;             ///< output channels per stage; empty = all
  /// The arithmetic of the stages' 1x1 convs (reduce, expand, shortcut projections; path knob
  /// `precision`, region encoder). The stem, the 3x3 convs and the classifier stay fp32.
  precision encoder = precision::fp32;
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

/// y[m, :c] = relu(y[m, :c] + residual[m, :c]) for m pixels, y of pixel stride c, residual of pixel
/// stride ldr >= c (a channel prefix of a wider map).
inline void add_relu_rows(float* y, std::size_t c, const float* residual, std::size_t ldr, std::size_t m) {
  if (ldr == c) return add_relu_inplace(y, residual, m * c);
  parallel_for(
      m,
      [&](std::size_t i) {
        float* yr = y + i * c;
        const float* rr = residual + i * ldr;
        for (std::size_t j = 0; j < c; ++j) yr[j] = std::max(yr[j] + rr[j], 0.f);
      },
      static_cast<double>(m) * c);
}

}  // namespace detail

class resnet_model {
public:
  /// Load a hub-layout directory: config.json + model.safetensors (`options`: e.g. allow
  /// non-finite weights, refused by default).
  static resnet_model from_dir(const std::string& dir, safetensors_options options = {},
                               const conv2d_options& convs = {}) {
    auto cfg = load_resnet_config(dir + "/config.json");
    safetensors_file weights(dir + "/model.safetensors", options);
    return resnet_model(std::move(cfg), weights, convs);
  }

  /// Build from a checkpoint; every tensor is checked for presence and shape. A
  /// ResNetForImageClassification checkpoint (`resnet.*` + `classifier.1.*`) gives a classifier when
  /// the config has classes; a bare ResNetModel / ResNetBackbone checkpoint (`embedder.*`,
  /// `encoder.*`) gives a backbone without one.
  resnet_model(resnet_config cfg, const safetensors_file& st, const conv2d_options& convs = {})
      : cfg_(std::move(cfg)), convs_(convs) {
    const bool bare = !st.contains("resnet.embedder.embedder.convolution.weight") &&
                      st.contains("embedder.embedder.convolution.weight");
    weight_reader get(safetensors_source(st));
    build(get, bare ? "" : "resnet.", !bare && cfg_.num_classes() > 0);
  }

  /// Build from any weight source (checkpoint, synthetic, edited) with ResNetForImageClassification
  /// names (`resnet.*`, and `classifier.1.*` when the config has classes).
  resnet_model(resnet_config cfg, const weight_source& source, const conv2d_options& convs = {})
      : cfg_(std::move(cfg)), convs_(convs) {
    weight_reader get(source);
    build(get, "resnet.", cfg_.num_classes() > 0);
  }

  /// A model with synthetic weights (`random_source`) for benchmarks and profiles when no
  /// checkpoint is at hand.
  static resnet_model with_random_weights(resnet_config cfg, unsigned seed = 0, const conv2d_options& convs = {}) {
    return resnet_model(std::move(cfg), seed, convs);
  }

private:
  resnet_model(resnet_config cfg, unsigned seed, const conv2d_options& convs)
      : resnet_model(std::move(cfg), random_source(seed), convs) {}

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
    return conv2d(w.data(), bias.data(), s, convs_);
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
  /// The options its convs were built with (the form of the stride-1 3x3 convs).
  const conv2d_options& conv_options() const noexcept { return convs_; }
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
      for (const auto& l : blocks.front().layer) {  // only the first block of a stage changes the size
        h = l.shape().out_h(h);
        w = l.shape().out_w(w);
      }
      out.emplace_back(h, w);
    }
    return out;
  }

  /// Compiles a path into what `forward` runs (validated once; switching paths is then a lookup).
  resnet_execution compile(const resnet_path& path) const {
    path.validate(cfg_);
    resnet_execution e;
    std::size_t g = 0;
    for (std::size_t s = 0; s < stages_.size(); ++s) {
      e.depths.push_back(path.depths.empty() ? stages_[s].size() : static_cast<std::size_t>(path.depths[s]));
      e.mid.emplace_back();
      for (std::size_t j = 0; j < stages_[s].size(); ++j, ++g) e.mid[s].push_back(path.mid_kept(cfg_, s, g));
      e.width.push_back(path.width_kept(cfg_, s));
    }
    e.encoder = path.precision.of("encoder");
    if (e.encoder != precision::fp32)  // pack once here, not in the first frame
      for_each_1x1([&](const conv2d& c) { c.prepare(e.encoder); });
    return e;
  }

  /// Blocks of stage s that `exec` runs (the first ones; at least the first).
  std::size_t blocks_run(const resnet_execution& exec, std::size_t s) const noexcept {
    const std::size_t d = s < exec.depths.size() ? exec.depths[s] : stages_[s].size();
    return std::max<std::size_t>(1, std::min(d, stages_[s].size()));
  }
  /// Middle channels block j of stage s computes under `exec`.
  std::size_t mid_kept(const resnet_execution& exec, std::size_t s, std::size_t j) const noexcept {
    return s < exec.mid.size() && j < exec.mid[s].size() ? exec.mid[s][j]
                                                         : stages_[s][j].layer.front().shape().out_channels;
  }
  /// Output channels stage s computes under `exec`.
  std::size_t width_kept(const resnet_execution& exec, std::size_t s) const noexcept {
    return s < exec.width.size() ? exec.width[s] : static_cast<std::size_t>(cfg_.hidden_sizes[s]);
  }

  /// The layers `forward` runs for a batch of N images of H x W under `exec`, in execution order, with
  /// exact MACs: `stem.conv`, `stem.pool`, then per block `stage<s>.block<j>.shortcut` (a projection),
  /// `.conv1`, `.conv2`(, `.conv3`), `.residual` (the addition + ReLU; timed with conv3 in a
  /// bottleneck, where it is fused), then `pool` and `classifier`. Stages and blocks count from 1.
  /// Region: the stem and the stages are the encoder, `pool` and `classifier` the decoder (the head).
  std::vector<layer_info> layers(std::size_t height, std::size_t width, const resnet_execution& exec = {},
                                 std::size_t n = 1) const {
    std::vector<layer_info> out;
    visit_layers(height, width, exec, n, [&](layer_info&& l) { out.push_back(std::move(l)); });
    return out;
  }

  /// MACs per convolution / linear layer for one H x W image under `exec`, in execution order, named as
  /// the checkpoint's modules (without the `resnet.` prefix): the MAC layers of `layers()`. Pooling and
  /// the residual adds are not counted.
  std::vector<resnet_layer_macs> macs(std::size_t height, std::size_t width, const resnet_execution& exec = {}) const {
    std::vector<resnet_layer_macs> out;
    visit_layers(height, width, exec, 1, [&](layer_info&& l) {
      if (l.kind == layer_kind::conv || l.kind == layer_kind::linear) out.push_back({l.module, l.macs});
    });
    return out;
  }

  /// Sum of `macs(height, width, exec)` = total_macs(layers(height, width, exec)).
  double total_macs(std::size_t height, std::size_t width, const resnet_execution& exec = {}) const {
    double total = 0;
    for (const auto& l : macs(height, width, exec)) total += l.macs;
    return total;
  }

  /// Runs `path` (compiled on each call; hold a `resnet_execution` to switch paths per frame).
  resnet_output forward(const tensor4& pixel_values, const resnet_path& path, bool keep_hidden_states = false) const {
    return forward(pixel_values, keep_hidden_states, compile(path));
  }

  /// pixel_values: [N, C, H, W] float32, normalized. Returns the logits [N, classes], the pooled
  /// features and, when `keep_hidden_states`, the stem and stage outputs (NCHW). Under a path with
  /// narrower stages, the stage outputs and the pooled features hold only the channels computed
  /// (the first `width` of each stage).
  resnet_output forward(const tensor4& pixel_values, bool keep_hidden_states = false,
                        const resnet_execution& exec = {}) const {
    resnet_output out;
    const std::size_t n = pixel_values.shape(0);
    const encoded last =
        encode(pixel_values, exec, [&](std::size_t, const float* p, std::size_t h, std::size_t w, std::size_t ch) {
          if (keep_hidden_states) out.hidden_states.push_back(nhwc_to_nchw(p, n, h, w, ch));
        });
    // ref: ResNetModel.pooler = AdaptiveAvgPool2d((1, 1)); [N, 1, 1, C] is [N, C].
    out.pooled = tensor2::from_shape({n, last.c});
    {
      profile_scope ps("pool");
      adaptive_avg_pool2d(last.data, n, last.h, last.w, last.c, out.pooled.data(), 1, 1);
    }
    out.logits = tensor2::from_shape({n, num_classes()});
    if (has_classifier_) {
      profile_scope ps("classifier");
      gemm_epilogue ep;
      ep.bias = classifier_.bias();
      gemm(n, num_classes(), last.c, out.pooled.data(), last.c, classifier_.weights(), out.logits.data(), num_classes(),
           ep);
    }
    return out;
  }

  /// Backbone use: the stem output (after the max-pool) and every stage output, NHWC [N, H, W, C]
  /// (ref: ResNetBackbone feature_maps, all of stage_names; pick by index 0 = "stem", s = "stage<s>").
  /// Under a path with narrower stages, C is the stage's kept width.
  std::vector<tensor4> features(const tensor4& pixel_values, const resnet_execution& exec = {}) const {
    std::vector<tensor4> maps;
    const std::size_t n = pixel_values.shape(0);
    encode(pixel_values, exec, [&](std::size_t, const float* p, std::size_t h, std::size_t w, std::size_t ch) {
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
  /// Calls f(layer_info) for every layer `forward` runs, in order, with its checkpoint module (without
  /// the `resnet.` prefix). The one description of the graph that layers() and macs() share.
  template <class F>
  void visit_layers(std::size_t height, std::size_t width, const resnet_execution& exec, std::size_t n, F&& f) const {
    auto emit = [&](std::string name, layer_kind kind, std::size_t k, std::size_t c, std::size_t p, std::size_t q,
                    std::size_t r, std::size_t stride, std::size_t params, const std::string& module,
                    std::string timed_as = {}, precision arithmetic = precision::fp32) {
      // The backbone (stem, stages) is the encoder; the head (global pooling, classifier) the decoder.
      const auto region = name == "pool" || name == "classifier" ? model_region::decoder : model_region::encoder;
      layer_info l = make_layer(std::move(name), kind, region, n, k, c, p, q, r, stride, params);
      l.timed_as = std::move(timed_as);
      l.module = module;
      l.arithmetic = arithmetic;
      f(std::move(l));
    };
    const auto& st = stem_.shape();
    const std::size_t E = st.out_channels, sh = st.out_h(height), sw = st.out_w(width);
    emit("stem.conv", layer_kind::conv, E, st.in_channels, sh, sw, st.kernel_h, st.stride_h,
         E * st.in_channels * st.kernel_h * st.kernel_w + E, "embedder.embedder");
    std::size_t h = stem_pool().out(sh), w = stem_pool().out(sw), c = E;
    emit("stem.pool", layer_kind::pool, E, E, h, w, stem_pool().kernel, stem_pool().stride, 0, "embedder.pooler");
    for (std::size_t s = 0; s < stages_.size(); ++s) {
      const std::size_t cout = width_kept(exec, s);
      for (std::size_t j = 0; j < blocks_run(exec, s); ++j) {
        const auto& b = stages_[s][j];
        const std::string pre = "stage" + std::to_string(s + 1) + ".block" + std::to_string(j + 1) + ".";
        const std::string mod = "encoder.stages." + std::to_string(s) + ".layers." + std::to_string(j) + ".";
        const std::size_t mid = mid_kept(exec, s, j);
        std::size_t oh = h, ow = w;
        for (const auto& l : b.layer) {
          oh = l.shape().out_h(oh);
          ow = l.shape().out_w(ow);
        }
        if (b.has_shortcut) {
          const auto& ss = b.shortcut.shape();
          emit(pre + "shortcut", layer_kind::conv, cout, c, oh, ow, 1, ss.stride_h, cout * c + cout, mod + "shortcut", {},
               exec.encoder);
        }
        std::size_t lh = h, lw = w;
        for (std::size_t i = 0; i < b.layer.size(); ++i) {
          const auto& ls = b.layer[i].shape();
          const std::size_t in = i == 0 ? c : mid, o = i + 1 == b.layer.size() ? cout : mid;
          lh = ls.out_h(lh);
          lw = ls.out_w(lw);
          emit(pre + "conv" + std::to_string(i + 1), layer_kind::conv, o, in, lh, lw, ls.kernel_h, ls.stride_h,
               o * in * ls.kernel_h * ls.kernel_w + o, mod + "layer." + std::to_string(i), {},
               is_1x1(b.layer[i]) ? exec.encoder : precision::fp32);
        }
        emit(pre + "residual", layer_kind::elementwise, cout, cout, oh, ow, 1, 1, 0, mod.substr(0, mod.size() - 1),
             b.layer.size() == 3 ? pre + "conv3" : std::string());
        h = oh;
        w = ow;
        c = cout;
      }
    }
    emit("pool", layer_kind::pool, c, c, 1, 1, 1, 1, 0, "pooler");
    if (has_classifier_)
      emit("classifier", layer_kind::linear, num_classes(), c, 1, 1, 1, 1, num_classes() * c + num_classes(),
           "classifier.1");
  }

  /// The last feature map of an encoding: NHWC [N, h, w, c] (valid until this thread's next call).
  struct encoded {
    const float* data = nullptr;
    std::size_t h = 0, w = 0, c = 0;
  };

  /// Runs the stem and the stages under `exec`; calls on_feature(index, nhwc, h, w, channels) for the
  /// stem output and each stage output. Activations are dense: a stage's maps hold its kept width.
  template <class F>
  encoded encode(const tensor4& pixel_values, const resnet_execution& exec, F&& on_feature) const {
    check_input(pixel_values);
    const std::size_t n = pixel_values.shape(0), c = pixel_values.shape(1);
    std::size_t h = pixel_values.shape(2), w = pixel_values.shape(3);
    buffers& buf = thread_buffers();
    const bool prof = profiling_active();
    const std::size_t E = stem_.shape().out_channels;
    {
      const tensor4 x = nchw_to_nhwc(pixel_values.data(), n, c, h, w);
      const std::size_t sh = stem_.shape().out_h(h), sw = stem_.shape().out_w(w);
      grow(buf.t1, n * sh * sw * E);
      {
        profile_scope ps("stem.conv");
        stem_.run(x.data(), n, h, w, buf.t1.data(), activation::relu);
      }
      h = stem_pool().out(sh);
      w = stem_pool().out(sw);
      grow(buf.cur, n * h * w * E);
      {
        profile_scope ps("stem.pool");
        max_pool2d(buf.t1.data(), n, sh, sw, E, stem_pool(), buf.cur.data());
      }
      on_feature(0, buf.cur.data(), h, w, E);
    }
    std::size_t ch = E;
    for (std::size_t s = 0; s < stages_.size(); ++s) {
      const std::size_t width = width_kept(exec, s);
      for (std::size_t j = 0; j < blocks_run(exec, s); ++j) {
        profile_prefix pp(prof ? "stage" + std::to_string(s + 1) + ".block" + std::to_string(j + 1) + "."
                               : std::string());
        run_block(stages_[s][j], n, h, w, ch, mid_kept(exec, s, j), width, exec.encoder, buf);
        std::swap(buf.cur, buf.next);
        ch = width;
      }
      on_feature(s + 1, buf.cur.data(), h, w, ch);
    }
    return {buf.cur.data(), h, w, ch};
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

  /// buf.cur [N, h, w, cin] -> buf.next [N, h', w', cout]; h and w become the output size. `mid` and
  /// `cout` are the block's kept middle and output channels, `cin` the channels of its input (the
  /// previous block's kept width): every conv reads and writes only those prefixes. `p`: the 1x1
  /// convs' arithmetic.
  void run_block(const resnet_block& b, std::size_t n, std::size_t& h, std::size_t& w, std::size_t cin, std::size_t mid,
                 std::size_t cout, precision p, buffers& buf) const {
    const float* x = buf.cur.data();
    // The shortcut's geometry equals the block's (1x1 pad 0 and 3x3 pad 1 with the same stride agree).
    std::size_t oh = h, ow = w;
    for (const auto& l : b.layer) {
      oh = l.shape().out_h(oh);
      ow = l.shape().out_w(ow);
    }
    const std::size_t m = n * oh * ow;
    const float* residual = x;  // identity: same size; its first cout channels
    std::size_t ldr = cin;
    if (b.has_shortcut) {
      grow(buf.sc, m * cout);
      profile_scope ps("shortcut");
      b.shortcut.run_1x1(x, cin, n, h, w, cin, buf.sc.data(), cout, cout, activation::none, p);
      residual = buf.sc.data();
      ldr = cout;
    }
    grow(buf.next, m * cout);
    const auto& l0 = b.layer[0];
    const std::size_t h1 = l0.shape().out_h(h), w1 = l0.shape().out_w(w);
    grow(buf.t1, n * h1 * w1 * mid);
    {
      profile_scope ps("conv1");
      if (is_1x1(l0)) l0.run_1x1(x, cin, n, h, w, cin, buf.t1.data(), mid, mid, activation::relu, p);
      else l0.forward_prefix(x, cin, n, h, w, cin, buf.t1.data(), mid, mid, activation::relu);
    }
    if (b.layer.size() == 3) {  // bottleneck: 3x3, then the 1x1 expand fused with the residual and ReLU
      const auto& l1 = b.layer[1];
      grow(buf.t2, m * mid);
      {
        profile_scope ps("conv2");
        l1.forward_prefix(buf.t1.data(), mid, n, h1, w1, mid, buf.t2.data(), mid, mid, activation::relu);
      }
      const auto& l2 = b.layer[2];
      profile_scope ps("conv3");
      l2.run_1x1(buf.t2.data(), mid, n, oh, ow, mid, buf.next.data(), cout, cout, activation::relu, p, residual, ldr);
    } else {  // basic: 3x3 without activation, then residual + ReLU
      {
        profile_scope ps("conv2");
        b.layer[1].forward_prefix(buf.t1.data(), mid, n, h1, w1, mid, buf.next.data(), cout, cout, activation::none);
      }
      profile_scope ps("residual");
      detail::add_relu_rows(buf.next.data(), cout, residual, ldr, m);
    }
    h = oh;
    w = ow;
  }

  /// The convs a path's precision lowers: 1x1, no padding, one group (any stride).
  static bool is_1x1(const conv2d& c) noexcept {
    const auto& s = c.shape();
    return s.kernel_h == 1 && s.kernel_w == 1 && s.pad_h == 0 && s.pad_w == 0 && s.groups == 1;
  }
  /// Calls f(conv) for every 1x1 conv of the stages (shortcut projections, reduce and expand convs).
  template <class F>
  void for_each_1x1(F&& f) const {
    for (const auto& stage : stages_)
      for (const auto& b : stage) {
        if (b.has_shortcut) f(b.shortcut);
        for (const auto& l : b.layer)
          if (is_1x1(l)) f(l);
      }
  }

  resnet_config cfg_;
  conv2d_options convs_;  ///< the form of the convs, given when built
  conv2d stem_;
  std::vector<std::vector<resnet_block>> stages_;
  linear classifier_;
  bool has_classifier_ = false;
};

}  // namespace drt
