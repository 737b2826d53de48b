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
///
/// Dynamic paths (dynamic/upernet_path.hpp): `compile(path)` gives an `upernet_execution` that
/// `forward` runs without copying weights: skipped Swin blocks are the identity and cost nothing, and
/// the UPerNet head (layers/upernet_head.hpp, whose convs take run-time channel prefixes) computes
/// only the kept channels, propagated backwards from the classifier to the fpn_bottleneck, the fpn
/// convs and the lateral path. The form of the 3x3 convs (Winograd or implicit GEMM) is chosen when
/// the model is built, from its `conv2d_options`. `layers(h, w, exec)` lists what runs, named as the
/// profile scopes of `forward`.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/profiler.hpp"
#include "../core/tensor.hpp"
#include "../layers/gemm.hpp"
#include "../core/observer.hpp"
#include "../dynamic/channel_order.hpp"
#include "../dynamic/upernet_path.hpp"
#include "../io/model_config.hpp"
#include "../io/safetensors.hpp"
#include "../io/upernet_config.hpp"
#include "../io/weight_source.hpp"
#include "../layers/batch_norm.hpp"
#include "../layers/conv2d.hpp"
#include "../layers/layer_norm.hpp"
#include "../layers/linear.hpp"
#include "../layers/patch_merging.hpp"
#include "../layers/resize.hpp"
#include "../layers/upernet_head.hpp"
#include "../layers/window_attention.hpp"
#include "layer_info.hpp"

namespace drt {

/// Outputs of one forward pass, in PyTorch's NCHW layout.
struct upernet_output {
  tensor4 logits;                 ///< [N, classes, H, W], upsampled to the input size as transformers
  std::vector<tensor4> features;  ///< backbone feature maps [N, C_i, H_i, W_i] (normalized) when requested
};

/// Normalized backbone feature maps of one batch (the head's input), NHWC.
struct upernet_features {
  std::size_t n = 0, height = 0, width = 0;         ///< batch and input size (the logits are upsampled to it)
  std::vector<detail::aligned_vector<float>> maps;  ///< per level [N, H_i, W_i, C_i]
  std::vector<std::size_t> hs, ws, channels;
};

/// One Swin block (ref: SwinLayer): x += attention(ln_before(x)); x += fc2(act(fc1(ln_after(x)))).
struct swin_block {
  layer_norm norm_before, norm_after;
  window_attention attention;
  linear fc1, fc2;  ///< intermediate.dense [hidden, C], output.dense [C, hidden]
};

/// Which parts of the graph run (the dynamic path, made by `upernet_swin_model::compile`); the
/// defaults run everything. The head's channel prefixes are the head's own (upernet_head_channels;
/// see dynamic/upernet_path.hpp for their semantics); the backbone adds block skips.
struct upernet_execution : upernet_head_channels {
  /// skip[s][j] != 0 bypasses Swin block j of stage s (identity). Empty = run all.
  std::vector<std::vector<unsigned char>> skip;
  /// MLP hidden units each Swin block computes (a prefix), and fc2's compensated biases.
  unit_prefixes mlp;
  /// Window-attention heads each Swin block runs (a prefix of the head order; 0 = all).
  unit_prefixes heads;
  /// The arithmetic of the backbone's GEMM layers (path knob `precision`, region encoder).
  precision encoder = precision::fp32;
  bool is_skipped(std::size_t s, std::size_t j) const noexcept {
    return s < skip.size() && j < skip[s].size() && skip[s][j] != 0;
  }
};

class upernet_swin_model {
public:
  /// Load a hub-layout directory: config.json + model.safetensors (`options`: e.g. allow
  /// non-finite weights, refused by default; `convs`: the form of the 3x3 convs, see conv2d_options).
  /// `order`: how the prunable channel groups (every Swin MLP's hidden units) are packed, as
  /// segformer_options::order (default: the data-free weight order).
  static upernet_swin_model from_dir(const std::string& dir, safetensors_options options = {},
                                     const conv2d_options& convs = {},
                                     const channel_order& order = weight_order_request()) {
    auto cfg = load_upernet_config(dir + "/config.json");
    safetensors_file weights(dir + "/model.safetensors", options);
    return upernet_swin_model(std::move(cfg), safetensors_source(weights), convs, order);
  }

  /// Build from a checkpoint; every tensor is checked for presence and shape.
  upernet_swin_model(upernet_config cfg, const safetensors_file& st, const conv2d_options& convs = {},
                     const channel_order& order = weight_order_request())
      : upernet_swin_model(std::move(cfg), safetensors_source(st), convs, order) {}

  /// Build from any weight source (checkpoint, synthetic, edited) with the checkpoint's names.
  upernet_swin_model(upernet_config cfg, const weight_source& source, const conv2d_options& convs = {},
                     const channel_order& order = weight_order_request())
      : cfg_(std::move(cfg)), convs_(convs) {
    const auto groups = channel_groups(cfg_);
    order_ = resolve_order(order, source, groups);
    weight_reader get(order_.is_identity() ? source : permuted_source(source, order_, groups));
    build(get);
    if (auto m = order_.moments.find(classifier_group); m != order_.moments.end())
      classifier_refit_ = linear_refit(m->second, head_.classifier());
  }

  /// The group of block j of stage s's MLP hidden units (intermediate.dense rows, output.dense columns).
  static std::string group_name(std::size_t s, std::size_t j) {
    return "backbone.encoder.layers." + std::to_string(s) + ".blocks." + std::to_string(j) + ".intermediate";
  }
  /// The group of block j of stage s's window-attention heads.
  static std::string head_group_name(std::size_t s, std::size_t j) {
    return "backbone.encoder.layers." + std::to_string(s) + ".blocks." + std::to_string(j) + ".attention";
  }
  /// The prunable channel groups (dynamic/channel_order.hpp): every Swin block's MLP hidden units;
  /// every block's heads (units of head_dim query, key and value rows and output-projection
  /// columns, and one column of the relative position bias table); the classifier's inputs.
  static std::vector<channel_group> channel_groups(const upernet_config& c) {
    std::vector<channel_group> out;
    const swin_config& s = c.backbone;
    for (std::size_t st = 0; st < s.depths.size(); ++st) {
      const auto C = static_cast<std::int64_t>(s.stage_channels(st));
      const auto H = static_cast<std::int64_t>(s.mlp_hidden(st));
      for (int j = 0; j < s.depths[st]; ++j) {
        const std::string b =
            "backbone.encoder.layers." + std::to_string(st) + ".blocks." + std::to_string(j) + ".";
        out.push_back({group_name(st, static_cast<std::size_t>(j)),
                       static_cast<std::size_t>(H),
                       {{b + "intermediate.dense.weight", {H, C}, 0, false},
                        {b + "intermediate.dense.bias", {H}, 0, false},
                        {b + "output.dense.weight", {C, H}, 1, true}},
                       false,
                       ""});
      }
    }
    const auto ws = static_cast<std::int64_t>(s.window_size), table = (2 * ws - 1) * (2 * ws - 1);
    for (std::size_t st = 0; st < s.depths.size(); ++st) {
      const auto C = static_cast<std::int64_t>(s.stage_channels(st)), heads = std::int64_t(s.num_heads[st]);
      const auto d = static_cast<std::size_t>(C / heads);
      for (int j = 0; j < s.depths[st]; ++j) {
        const std::string a = head_group_name(st, static_cast<std::size_t>(j)), q = a + ".self.";
        channel_group g{a, static_cast<std::size_t>(heads), {}, false, ""};
        for (const char* p : {"query", "key", "value"}) {
          g.tensors.push_back({q + p + ".weight", {C, C}, 0, false, d});
          if (s.qkv_bias) g.tensors.push_back({q + p + ".bias", {C}, 0, false, d});
        }
        // a bias per head and relative position: moves with its head, scores nothing
        g.tensors.push_back({q + "relative_position_bias_table", {table, heads}, 1, false, 1, false});
        g.tensors.push_back({a + ".output.dense.weight", {C, C}, 1, true, d});
        out.push_back(std::move(g));
      }
    }
    // The classifier's inputs (pred_in): fpn_bottleneck's outputs and their BatchNorm, a refit group.
    const auto D = static_cast<std::int64_t>(c.hidden_size), K = static_cast<std::int64_t>(c.num_classes());
    const auto L = static_cast<std::int64_t>(s.out_indices.size());
    out.push_back(classifier_input_group(classifier_group, "decode_head.fpn_bottleneck.conv", {D, L * D, 3, 3},
                                         "decode_head.fpn_bottleneck.batch_norm", "decode_head.classifier", K));
    return out;
  }
  /// The refit group of the classifier's inputs (a path's `pred_in` prefix of them).
  static constexpr const char* classifier_group = "decode_head.classifier";
  /// The layer object that reports each group's activations (core/observer.hpp), with the group's name.
  std::map<const void*, std::string> group_layers() const {
    std::map<const void*, std::string> out;
    for (std::size_t s = 0; s < blocks_.size(); ++s)
      for (std::size_t j = 0; j < blocks_[s].size(); ++j) out[&blocks_[s][j].fc2] = group_name(s, j);  // reads the units
    out[&head_.classifier()] = classifier_group;
    return out;
  }
  /// The channel order the model is packed in (resolved: the permutations, or empty for the checkpoint's).
  const channel_order& order() const noexcept { return order_; }

  /// A model with synthetic weights (`random_source`, checkpoint order) for benchmarks when no
  /// checkpoint is at hand.
  static upernet_swin_model with_random_weights(upernet_config cfg, unsigned seed = 0,
                                                const conv2d_options& convs = {}) {
    return upernet_swin_model(std::move(cfg), seed, convs);
  }

private:
  upernet_swin_model(upernet_config cfg, unsigned seed, const conv2d_options& convs)
      : upernet_swin_model(std::move(cfg), random_source(seed), convs, channel_order{}) {}

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
                          get("backbone.embeddings.patch_embeddings.projection.bias", {C0}), pe, convs_);
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
    for (int idx : s.out_indices) {
      const i64 C = static_cast<i64>(s.feature_channels(static_cast<std::size_t>(idx)));
      const std::string n =
          "backbone.hidden_states_norms." + swin_config::stage_name(static_cast<std::size_t>(idx)) + ".";
      feature_norms_.emplace_back(get(n + "weight", {C}), get(n + "bias", {C}), static_cast<std::size_t>(C),
                                  default_eps);
      in_channels_.push_back(static_cast<std::size_t>(C));
    }
    // UPerNet head (ref: UperNetHead); every conv module is conv + BatchNorm (folded) + ReLU.
    const i64 D = cfg_.hidden_size, K = static_cast<i64>(cfg_.num_classes());
    const i64 L = static_cast<i64>(in_channels_.size()), CL = static_cast<i64>(in_channels_.back());
    const i64 S = static_cast<i64>(cfg_.pool_scales.size());
    const float bn_eps = static_cast<float>(cfg_.batch_norm_eps);
    d_ = static_cast<std::size_t>(D);
    classes_ = static_cast<std::size_t>(K);
    scales_.assign(cfg_.pool_scales.begin(), cfg_.pool_scales.end());
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
    // Read in checkpoint order; the tensors stay alive until build returns.
    upernet_head_weights hw;
    for (i64 i = 0; i < S; ++i)
      hw.psp.push_back(module("decode_head.psp_modules." + std::to_string(i) + ".1.", {D, CL, 1, 1}));
    hw.bottleneck = module("decode_head.bottleneck.", {D, CL + S * D, 3, 3});
    for (i64 i = 0; i + 1 < L; ++i) {
      const i64 ci = static_cast<i64>(in_channels_[static_cast<std::size_t>(i)]);
      hw.lateral.push_back(module("decode_head.lateral_convs." + std::to_string(i) + ".", {D, ci, 1, 1}));
      hw.fpn.push_back(module("decode_head.fpn_convs." + std::to_string(i) + ".", {D, D, 3, 3}));
    }
    hw.fpn_bottleneck = module("decode_head.fpn_bottleneck.", {D, L * D, 3, 3});
    hw.cls_w = get("decode_head.classifier.weight", {K, D, 1, 1});  // in checkpoint order (weight, bias)
    hw.cls_b = get("decode_head.classifier.bias", {K});
    head_ = upernet_head(hw, in_channels_, d_, classes_, scales_, bn_eps, convs_);
  }

public:
  const upernet_config& config() const noexcept { return cfg_; }
  /// The options its convs were built with (the form of the 3x3 convs).
  const conv2d_options& conv_options() const noexcept { return convs_; }
  /// The UPerNet decode head (layers/upernet_head.hpp).
  const upernet_head& head() const noexcept { return head_; }
  std::size_t num_stages() const noexcept { return blocks_.size(); }
  const std::vector<swin_block>& stage_blocks(std::size_t s) const noexcept { return blocks_[s]; }
  std::size_t levels() const noexcept { return in_channels_.size(); }  ///< feature levels of the head (L)
  std::size_t hidden() const noexcept { return d_; }                   ///< the head's width (D)
  std::size_t classes() const noexcept { return classes_; }

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

  /// Compiles a path into what `forward` runs (validated once; switching paths is then a lookup).
  upernet_execution compile(const upernet_path& path) const {
    path.validate(cfg_);
    upernet_execution e;
    const auto per_stage = detail::blocks_per_stage(blocks_);
    e.skip = detail::block_skip_flags(path, per_stage);
    if (!path.mlp.empty())
      e.mlp = unit_prefixes::plan(
          per_stage, order_, [&](std::size_t s, std::size_t g) { return path.mlp_kept(cfg_, s, g); }, &group_name,
          [&](std::size_t s, std::size_t j) -> const linear& { return blocks_[s][j].fc2; });
    if (!path.heads.empty())  // no compensation: the order holds no means of multi-channel units
      e.heads = unit_prefixes::plan(
          per_stage, order_, [&](std::size_t s, std::size_t g) { return path.heads_kept(cfg_, s, g); },
          &head_group_name, [&](std::size_t s, std::size_t j) -> const linear& { return blocks_[s][j].attention.output(); });
    const std::size_t L = levels(), D = d_;
    const std::size_t bin = path.bottleneck_in ? static_cast<std::size_t>(path.bottleneck_in) : L * D;
    const std::size_t fout = path.fpn_out ? static_cast<std::size_t>(path.fpn_out) : D;
    e.fpn_in = path.fpn_in ? static_cast<std::size_t>(path.fpn_in) : D;
    e.pred_in = path.pred_in ? static_cast<std::size_t>(path.pred_in) : D;
    e.classifier = classifier_refit_.on(e.pred_in, head_.classifier(), precision::fp32);
    for (std::size_t i = 0; i < L; ++i) e.level_kept.push_back(bin <= i * D ? 0 : std::min({D, bin - i * D, fout}));
    // Level 0 is always kept and sums every coarser level through the top-down path: each lateral
    // computes the fpn_in channels the fpn convs read; the last level also feeds its own slice.
    for (std::size_t i = 0; i < L; ++i)
      e.lateral_kept.push_back(i + 1 < L ? e.fpn_in : L > 1 ? std::max(e.fpn_in, e.level_kept[i]) : e.level_kept[i]);
    e.encoder = path.precision.of("encoder");
    if (e.encoder != precision::fp32)  // pack once here, not in the first frame
      for_each_linear([&](const std::string&, const linear& l) { l.prepare(e.encoder); });
    return e;
  }

  /// Every GEMM layer a precision lowers (the backbone's), with its checkpoint module name (the fused
  /// q/k/v projection as `...attention.self.qkv`): what int8 calibration sets ranges on.
  template <class F>
  void for_each_linear(F&& f) const {
    visit_linears(*this, f);
  }
  template <class F>
  void for_each_linear(F&& f) {
    visit_linears(*this, f);
  }

  /// The layers `forward` runs for a batch of N images of H x W under `exec`, in execution order, with
  /// exact MACs. Backbone (region encoder): `PatchEmbed_Conv2D`, `PatchEmbed_LayerNorm`, per block
  /// `Stage<s> Block<j> layernorm_before`, `attention.qkv`, `.qk`, `.softmax`, `.pv`, `.output` (one
  /// timed pass: `Stage<s> Block<j> attention`), `layernorm_after`, `mlp.fc1`, `mlp.fc2`, then
  /// `hidden_states_norms.stage<s>` and `Stage<s> patch_merging.norm` / `.reduction` (timed as
  /// `Stage<s> patch_merging`). Head (region decoder): `psp_modules.<i>.pool`, `psp_modules.<i>`,
  /// `psp_modules.<i>.upsample`, `bottleneck`, `lateral_convs.<i>`, `top_down.<i>` (upsampling of
  /// level i added into level i-1), `fpn_convs.<i>`, `fpn_upsample.<i>`, `fpn_bottleneck`,
  /// `classifier`, `logits_upsample`. Stages and blocks count from 1, head modules from 0 (checkpoint names).
  std::vector<layer_info> layers(std::size_t height, std::size_t width, const upernet_execution& exec = {},
                                 std::size_t n = 1) const {
    std::vector<layer_info> out;
    auto add = [&](std::string name, layer_kind kind, model_region region, std::size_t k, std::size_t c, std::size_t p,
                   std::size_t q, std::size_t r, std::size_t stride, std::size_t params, std::size_t batch = 1,
                   std::string timed_as = {}) -> std::string& {
      out.push_back(make_layer(std::move(name), kind, region, batch * n, k, c, p, q, r, stride, params));
      out.back().timed_as = std::move(timed_as);
      return out.back().module;  // the caller names the checkpoint module
    };
    const auto enc = model_region::encoder, dec = model_region::decoder;
    const swin_config& s = cfg_.backbone;
    const std::size_t P = static_cast<std::size_t>(s.patch_size), IC = static_cast<std::size_t>(s.num_channels);
    std::size_t h = (height + P - 1) / P, w = (width + P - 1) / P, C = static_cast<std::size_t>(s.embed_dim);
    add("PatchEmbed_Conv2D", layer_kind::conv, enc, C, IC, h, w, P, P, C * IC * P * P + C) =
        "backbone.embeddings.patch_embeddings.projection";
    add("PatchEmbed_LayerNorm", layer_kind::norm, enc, C, C, h * w, 1, 1, 1, 2 * C) = "backbone.embeddings.norm";
    std::vector<std::size_t> fh, fw;
    auto feature = [&](std::size_t idx) {
      for (int o : s.out_indices)
        if (static_cast<std::size_t>(o) == idx) {
          add("hidden_states_norms." + swin_config::stage_name(idx), layer_kind::norm, enc, C, C, h * w, 1, 1, 1,
              2 * C) = "backbone.hidden_states_norms." + swin_config::stage_name(idx);
          fh.push_back(h);
          fw.push_back(w);
        }
    };
    feature(0);
    const std::size_t ws = static_cast<std::size_t>(s.window_size), run = stages_run();
    for (std::size_t st = 0; st < run; ++st) {
      const std::string sn = "Stage" + std::to_string(st + 1);
      for (std::size_t j = 0; j < blocks_[st].size(); ++j) {
        if (exec.is_skipped(st, j)) continue;
        const auto& blk = blocks_[st][j];
        const auto g = make_window_geometry(h, w, ws, j % 2 == 1 ? ws / 2 : 0, s.policy);
        const std::size_t T = g.tokens(), rows = g.windows() * T, d = C / blk.attention.heads();
        const std::size_t heads = exec.heads.at(st, j) ? std::min(exec.heads.at(st, j), blk.attention.heads())
                                                       : blk.attention.heads(),
                          ch = heads * d;  // the channels of the heads kept
        const std::size_t full_hid = blk.fc1.out_features(), bias = s.qkv_bias ? 3 * ch : 0;
        const std::size_t hid = exec.mlp.at(st, j) ? std::min(exec.mlp.at(st, j), full_hid) : full_hid;
        const std::string b = sn + " Block" + std::to_string(j + 1) + " ", att = b + "attention";
        const std::string mb = "backbone.encoder.layers." + std::to_string(st) + ".blocks." + std::to_string(j) + ".";
        const std::size_t wh = g.windows() * heads;
        add(b + "layernorm_before", layer_kind::norm, enc, C, C, h * w, 1, 1, 1, 2 * C) = mb + "layernorm_before";
        // query, key and value run as one GEMM: the layer names the first module it fuses
        add(b + "attention.qkv", layer_kind::linear, enc, 3 * ch, C, rows, 1, 1, 1, 3 * ch * C + bias, 1, att) =
            mb + "attention.self.query";
        add(b + "attention.qk", layer_kind::attention_matmul, enc, T, d, T, 1, 1, 1, 0, wh, att) = mb + "attention.self";
        add(b + "attention.softmax", layer_kind::softmax, enc, T, T, T, 1, 1, 1, 0, wh, att) = mb + "attention.self";
        add(b + "attention.pv", layer_kind::attention_matmul, enc, d, T, T, 1, 1, 1, 0, wh, att) = mb + "attention.self";
        add(b + "attention.output", layer_kind::linear, enc, C, ch, h * w, 1, 1, 1, C * ch + C, 1, att) =
            mb + "attention.output.dense";
        add(b + "layernorm_after", layer_kind::norm, enc, C, C, h * w, 1, 1, 1, 2 * C) = mb + "layernorm_after";
        add(b + "mlp.fc1", layer_kind::linear, enc, hid, C, h * w, 1, 1, 1, hid * C + hid) = mb + "intermediate.dense";
        add(b + "mlp.fc2", layer_kind::linear, enc, C, hid, h * w, 1, 1, 1, hid * C + C) = mb + "output.dense";
      }
      feature(st + 1);
      if (st + 1 < run) {
        const std::size_t oh = patch_merging_out(h), ow = patch_merging_out(w);
        const std::string pm = sn + " patch_merging";
        const std::string md = "backbone.encoder.layers." + std::to_string(st) + ".downsample.";
        add(pm + ".norm", layer_kind::norm, enc, 4 * C, 4 * C, oh * ow, 1, 1, 1, 8 * C, 1, pm) = md + "norm";
        add(pm + ".reduction", layer_kind::linear, enc, 2 * C, 4 * C, oh * ow, 1, 1, 1, 8 * C * C, 1, pm) =
            md + "reduction";
        h = oh;
        w = ow;
        C *= 2;
      }
    }
    // Head
    const std::size_t L = levels(), D = d_, cl = in_channels_.back(), hl = fh[L - 1], wl = fw[L - 1];
    for (std::size_t i = 0; i < scales_.size(); ++i) {
      const std::size_t sc = scales_[i];
      const std::string pm = "psp_modules." + std::to_string(i), mp = "decode_head." + pm;
      // ref: UperNetPyramidPoolingBlock = [AdaptiveAvgPool2d, UperNetConvModule] as modules 0 and 1
      add(pm + ".pool", layer_kind::pool, dec, cl, cl, sc, sc, 1, 1, 0) = mp + ".0";
      add(pm, layer_kind::conv, dec, D, cl, sc, sc, 1, 1, D * cl + D) = mp + ".1";
      add(pm + ".upsample", layer_kind::resize, dec, D, D, hl, wl, 1, 1, 0) = mp;
    }
    const std::size_t lb = head_.lateral_kept(exec, L - 1), cb = cl + scales_.size() * D;
    add("bottleneck", layer_kind::conv, dec, lb, cb, hl, wl, 3, 1, lb * cb * 9 + lb) = "decode_head.bottleneck";
    for (std::size_t i = 0; i + 1 < L; ++i) {
      const std::size_t lk = head_.lateral_kept(exec, i);
      add("lateral_convs." + std::to_string(i), layer_kind::conv, dec, lk, in_channels_[i], fh[i], fw[i], 1, 1,
          lk * in_channels_[i] + lk) = "decode_head.lateral_convs." + std::to_string(i);
    }
    const std::size_t fin = head_.fpn_in_kept(exec);
    for (std::size_t i = L - 1; i > 0; --i)  // level i upsampled into level i - 1's lateral output
      add("top_down." + std::to_string(i), layer_kind::resize, dec, fin, fin, fh[i - 1], fw[i - 1], 1, 1, 0) =
          "decode_head.lateral_convs." + std::to_string(i - 1);
    std::size_t kin = 0;
    for (std::size_t i = 0; i < L; ++i) {
      const std::size_t kept = head_.level_kept(exec, i);
      kin += kept;
      if (kept == 0) continue;
      // the last level is the PSP bottleneck's output, which has no fpn_conv
      const std::string level = i + 1 < L ? "decode_head.fpn_convs." + std::to_string(i) : "decode_head.bottleneck";
      if (i + 1 < L)
        add("fpn_convs." + std::to_string(i), layer_kind::conv, dec, kept, fin, fh[i], fw[i], 3, 1,
            kept * fin * 9 + kept) = level;
      if (i + 1 == L || fh[i] != fh[0] || fw[i] != fw[0])
        add("fpn_upsample." + std::to_string(i), layer_kind::resize, dec, kept, kept, fh[0], fw[0], 1, 1, 0) = level;
    }
    const std::size_t pred = head_.pred_in_kept(exec);
    add("fpn_bottleneck", layer_kind::conv, dec, pred, kin, fh[0], fw[0], 3, 1, pred * kin * 9 + pred) =
        "decode_head.fpn_bottleneck";
    add("classifier", layer_kind::conv, dec, classes_, pred, fh[0], fw[0], 1, 1, classes_ * pred + classes_) =
        "decode_head.classifier";
    // ref: UperNetForSemanticSegmentation.forward interpolates the classifier's output to the input size
    add("logits_upsample", layer_kind::resize, dec, classes_, classes_, height, width, 1, 1, 0) =
        "decode_head.classifier";
    for (auto& l : out)  // the backbone's linears run in the path's precision; the window products in fp32
      if (l.kind == layer_kind::linear && l.region == enc) l.arithmetic = exec.encoder;
    return out;
  }

  /// Multiply-accumulates of one H x W image under `exec` (convs, linears, attention matmuls; norms,
  /// softmax, pooling and resizes not counted): total_macs(layers(height, width, exec)).
  double macs(std::size_t height, std::size_t width, const upernet_execution& exec = {}) const {
    return total_macs(layers(height, width, exec));
  }

  /// Runs `path` (compiled on each call; hold an `upernet_execution` to switch paths per frame).
  upernet_output forward(const tensor4& pixel_values, const upernet_path& path, bool keep_features = false) const {
    return forward(pixel_values, keep_features, compile(path));
  }

  /// pixel_values: [N, C, H, W] float32, normalized. Returns logits [N, K, H, W].
  upernet_output forward(const tensor4& pixel_values, bool keep_features = false,
                         const upernet_execution& exec = {}) const {
    const upernet_features f = encode(pixel_values, exec);
    upernet_output out;
    if (keep_features)
      for (std::size_t i = 0; i < f.maps.size(); ++i)
        out.features.push_back(nhwc_to_nchw(f.maps[i].data(), f.n, f.hs[i], f.ws[i], f.channels[i]));
    out.logits = decode(f, exec);
    return out;
  }

  /// The backbone: the normalized feature maps (NHWC) for the blocks `exec` runs. Every head path of
  /// the same backbone path reuses them.
  upernet_features encode(const tensor4& pixel_values, const upernet_execution& exec = {}) const {
    const swin_config& s = cfg_.backbone;
    const std::size_t n = pixel_values.shape(0), c = pixel_values.shape(1);
    const std::size_t height = pixel_values.shape(2), width = pixel_values.shape(3);
    if (c != static_cast<std::size_t>(s.num_channels) || n == 0 || height == 0 || width == 0)
      throw shape_error("upernet: pixel_values has shape " + shape_str(pixel_values.shape()) + ", expected [N, " +
                        std::to_string(s.num_channels) + ", H, W] with N, H, W >= 1");
    const bool prof = profiling_active();
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
    {
      profile_scope ps("PatchEmbed_Conv2D");
      patch_embed_.run(x.data(), n, hp, wp, cur.data());
    }
    {
      profile_scope ps("PatchEmbed_LayerNorm");
      embed_norm_.run(n * h * w, cur.data(), C, cur.data(), C);
    }
    upernet_features out;
    out.n = n;
    out.height = height;
    out.width = width;
    out.maps.resize(s.out_indices.size());
    std::size_t next_feature = 0;
    auto take_feature = [&](std::size_t idx) {
      if (next_feature >= s.out_indices.size() || static_cast<std::size_t>(s.out_indices[next_feature]) != idx) return;
      auto& f = out.maps[next_feature];
      f.resize(n * h * w * C);
      const std::string name = prof ? "hidden_states_norms." + swin_config::stage_name(idx) : std::string();
      profile_scope ps(name.c_str());
      feature_norms_[next_feature].run(n * h * w, cur.data(), C, f.data(), C);
      out.hs.push_back(h);
      out.ws.push_back(w);
      out.channels.push_back(C);
      ++next_feature;
    };
    take_feature(0);
    const std::size_t ws = static_cast<std::size_t>(s.window_size), run = stages_run();
    const activation act = s.hidden_act == activation_kind::gelu ? activation::gelu : activation::relu;
    for (std::size_t st = 0; st < run; ++st) {
      const std::size_t m = n * h * w;
      normed.resize(m * C);
      const std::string sn = prof ? "Stage" + std::to_string(st + 1) : std::string();
      for (std::size_t j = 0; j < blocks_[st].size(); ++j) {
        if (exec.is_skipped(st, j)) continue;  // a bypassed block is the identity: nothing computed
        const auto& blk = blocks_[st][j];
        profile_prefix pp(prof ? sn + " Block" + std::to_string(j + 1) + " " : std::string());
        // ref: SwinStage: shift_size = 0 on even blocks, window_size // 2 on odd ones
        const auto g = make_window_geometry(h, w, ws, j % 2 == 1 ? ws / 2 : 0, s.policy);
        {
          profile_scope ps("layernorm_before");
          blk.norm_before.run(m, cur.data(), C, normed.data(), C);
        }
        {
          profile_scope ps("attention");
          blk.attention.run(normed.data(), n, g, cur.data(), exec.encoder, exec.heads.at(st, j));
        }
        {
          profile_scope ps("layernorm_after");
          blk.norm_after.run(m, cur.data(), C, normed.data(), C);
        }
        const std::size_t hid = exec.mlp.at(st, j) ? std::min(exec.mlp.at(st, j), blk.fc1.out_features())
                                                   : blk.fc1.out_features();
        hidden.resize(m * hid);
        {
          profile_scope ps("mlp.fc1");
          blk.fc1.run_prefix(m, hid, C, normed.data(), C, hidden.data(), hid, act, nullptr, 0, nullptr, exec.encoder);
        }
        profile_scope ps("mlp.fc2");
        blk.fc2.run_prefix(m, C, hid, hidden.data(), hid, cur.data(), C, activation::none, cur.data(), C,
                           exec.mlp.bias_at(st, j), exec.encoder);
      }
      take_feature(st + 1);
      if (st + 1 < run) {  // patch merging only when the next stage runs
        const std::size_t oh = patch_merging_out(h), ow = patch_merging_out(w);
        detail::aligned_vector<float> merged(n * oh * ow * 2 * C);
        {
          const std::string name = prof ? sn + " patch_merging" : std::string();
          profile_scope ps(name.c_str());
          merges_[st].run(cur.data(), n, h, w, merged.data(), exec.encoder);
        }
        cur = std::move(merged);
        h = oh;
        w = ow;
        C *= 2;
      }
    }
    return out;
  }

  /// The head on an encoding under `exec`'s channel prefixes: logits [N, K, H, W] (NCHW) upsampled
  /// to the input size. Every dropped channel is never computed: see upernet_execution.
  tensor4 decode(const upernet_features& f, const upernet_execution& exec = {}) const {
    const std::size_t L = levels(), n = f.n;
    if (f.maps.size() != L)
      throw invalid_input("upernet head: got " + std::to_string(f.maps.size()) + " feature maps, expected " +
                          std::to_string(L));
    std::vector<const float*> feats(L);
    for (std::size_t i = 0; i < L; ++i) feats[i] = f.maps[i].data();
    const std::size_t h0 = f.hs[0], w0 = f.ws[0];
    detail::aligned_vector<float> logits(n * h0 * w0 * classes_);
    head_.run(feats, n, f.hs, f.ws, logits.data(), exec);
    // Upsample to the input size: NCHW planes resized as a batch of single-channel maps.
    const tensor4 small = nhwc_to_nchw(logits.data(), n, h0, w0, classes_);
    tensor4 out = tensor4::from_shape({n, classes_, f.height, f.width});
    profile_scope ps("logits_upsample");
    resize_bilinear(small.data(), n * classes_, h0, w0, 1, 1, out.data(), f.height, f.width, 1);
    return out;
  }

private:
  template <class Self, class F>
  static void visit_linears(Self& self, F& f) {
    for (std::size_t s = 0; s < self.blocks_.size(); ++s) {
      for (std::size_t j = 0; j < self.blocks_[s].size(); ++j) {
        const std::string b = "backbone.encoder.layers." + std::to_string(s) + ".blocks." + std::to_string(j) + ".";
        auto& blk = self.blocks_[s][j];
        blk.attention.for_each_linear([&](const char* n, auto& l) {
          f(b + (std::string(n) == "qkv" ? "attention.self.qkv" : "attention.output.dense"), l);
        });
        f(b + "intermediate.dense", blk.fc1);
        f(b + "output.dense", blk.fc2);
      }
      if (s < self.merges_.size() && self.merges_[s].in_channels())
        f("backbone.encoder.layers." + std::to_string(s) + ".downsample.reduction", self.merges_[s].reduction());
    }
  }

  /// Backbone stages that run: up to the last one a feature level reads.
  std::size_t stages_run() const noexcept {
    int last = 0;
    for (int o : cfg_.backbone.out_indices) last = std::max(last, o);
    return static_cast<std::size_t>(last);
  }

  upernet_config cfg_;
  channel_order order_;
  conv2d_options convs_;
  conv2d patch_embed_;
  layer_norm embed_norm_;
  std::vector<std::vector<swin_block>> blocks_;
  std::vector<patch_merging> merges_;
  std::vector<layer_norm> feature_norms_;  ///< one per out_indices entry
  // UPerNet head, every BatchNorm folded (ref: UperNetHead); the auxiliary FCN head is training only.
  std::vector<std::size_t> in_channels_, scales_;  ///< channels per feature level, pool scales
  std::size_t d_ = 0, classes_ = 0;
  upernet_head head_;
  linear_refit classifier_refit_;  ///< the classifier refit on pred_in prefixes (a calibrated order with its moments)
};

}  // namespace drt
