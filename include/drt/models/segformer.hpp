#pragma once
/// @file segformer.hpp
/// SegFormer (MiT encoder + All-MLP decode head) built from a hub-layout directory.
/// ref: transformers modeling_segformer.py (SegformerModel, SegformerForSemanticSegmentation).
/// Activations are NHWC inside; inputs and outputs are NCHW so they compare 1:1 with transformers.

#include <cstddef>
#include <cmath>
#include <memory>
#include <random>
#include <map>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/profiler.hpp"
#include "../core/tensor.hpp"
#include "../io/model_config.hpp"
#include "../io/safetensors.hpp"
#include "../io/weight_source.hpp"
#include "../dynamic/channel_order.hpp"
#include "../dynamic/int8_calibration.hpp"
#include "../dynamic/path.hpp"
#include "layer_info.hpp"
#include "../layers/attention.hpp"
#include "../layers/decode_head.hpp"
#include "../layers/layer_norm.hpp"
#include "../layers/mix_ffn.hpp"
#include "../layers/patch_embed.hpp"
#include "../layers/resize.hpp"
#include "../layers/token_merge.hpp"

namespace drt {

/// The standard MiT-B0/B1/B2 + All-MLP geometry (name "segformer-b0" / "-b1" / "-b2") with `classes`
/// output classes (ADE20K: 150), as published with SegFormer.
inline segformer_config standard_segformer_config(const std::string& name, std::size_t classes = 150) {
  segformer_config c;
  c.depths = {2, 2, 2, 2};
  c.sr_ratios = {8, 4, 2, 1};
  c.patch_sizes = {7, 3, 3, 3};
  c.strides = {4, 2, 2, 2};
  c.num_attention_heads = {1, 2, 5, 8};
  c.mlp_ratios = {4, 4, 4, 4};
  if (name == "segformer-b0") {
    c.hidden_sizes = {32, 64, 160, 256};
    c.decoder_hidden_size = 256;
  } else if (name == "segformer-b1") {
    c.hidden_sizes = {64, 128, 320, 512};
    c.decoder_hidden_size = 256;
  } else if (name == "segformer-b2") {
    c.hidden_sizes = {64, 128, 320, 512};
    c.depths = {3, 4, 6, 3};
    c.decoder_hidden_size = 768;
  } else {
    throw invalid_input("unknown SegFormer architecture '" + name + "' (segformer-b0, segformer-b1, segformer-b2)");
  }
  if (classes == 0) throw invalid_input("architecture '" + name + "': the number of classes must be positive");
  for (std::size_t k = 0; k < classes; ++k) c.class_names.push_back("class_" + std::to_string(k));
  return c;
}

/// How a SegFormer graph is built from its weights.
struct segformer_options {
  /// true (default): the All-MLP decoder is folded exactly into per-stage GEMMs (layers/decode_head.hpp,
  /// docs/decoder_fold.md); false: the checkpoint's graph as published (the paper's accounting and
  /// its Conv2DFuse knob).
  bool fold_decoder = true;
  /// The order the prunable channel groups (every Mix-FFN's hidden units) are packed in; an `mlp`
  /// prefix keeps the first units of it (dynamic/channel_order.hpp). Default: the data-free weight
  /// order, computed at load; {"checkpoint"}: as stored; a calibrated order: its permutations.
  /// Paths without channel knobs on these groups compute the same under every order.
  channel_order order = weight_order_request();
  /// Calibrated int8 input ranges of the GEMM layers (dynamic/int8_calibration.hpp), applied at load;
  /// null: a path in int8 quantizes each layer call's input with its own range.
  std::shared_ptr<const int8_calibration> int8 = nullptr;
};

/// Outputs of one forward pass, in PyTorch's NCHW layout.
struct segformer_output {
  tensor4 logits;               ///< [N, classes, H_0, W_0] at stage-0 resolution (not upsampled, as transformers)
  std::vector<tensor4> stages;  ///< encoder stage outputs [N, C_s, H_s, W_s] when requested
};

/// Encoder stage outputs of one batch, NHWC.
struct segformer_features {
  std::size_t n = 0;
  std::vector<detail::aligned_vector<float>> maps;  ///< per stage [N, H_s, W_s, C_s]
  std::vector<std::size_t> hs, ws, channels;
};

/// Which parts of the graph run (the dynamic path; defaults run everything).
struct segformer_execution {
  /// skip[s][j] != 0 bypasses block j of stage s (identity). Empty = run all.
  std::vector<std::vector<unsigned char>> skip;
  /// Mix-FFN hidden units each block computes (a prefix), and dense2's compensated biases.
  unit_prefixes mlp;
  /// Attention heads each block runs (a prefix of the head order; 0 = all).
  unit_prefixes heads;
  /// The fraction of its grid's tokens each block keeps, merging the others (path knob `tokens`,
  /// layers/token_merge.hpp): [stage][block], empty = all.
  std::vector<std::vector<double>> tokens;
  decode_head_channels head;  ///< channel prefixes of the decode head (and its arithmetic)
  precision encoder = precision::fp32;  ///< the encoder's linears' arithmetic (path knob `precision`)
  precision attention = precision::fp32;  ///< the attention products' (region `attention`, fp32 or bf16)
  bool is_skipped(std::size_t s, std::size_t j) const noexcept {
    return s < skip.size() && j < skip[s].size() && skip[s][j] != 0;
  }
  /// Tokens block j of stage s keeps of an h x w grid (all of them unless the path merges).
  std::size_t tokens_kept(std::size_t s, std::size_t j, std::size_t h, std::size_t w) const noexcept {
    if (s >= tokens.size() || j >= tokens[s].size() || tokens[s][j] >= 1.0) return h * w;
    const double want = std::round(tokens[s][j] * static_cast<double>(h * w));
    return token_merge::kept_tokens(h, w, static_cast<std::size_t>(std::max(1.0, want)));
  }
};

/// One transformer block (ref: SegformerLayer): x += attn(ln1(x)); x += ffn(ln2(x)).
struct segformer_block {
  layer_norm norm1, norm2;
  efficient_self_attention attention;
  mix_ffn ffn;
};

class segformer_model {
public:
  /// Load a hub-layout directory: config.json + model.safetensors (`options`: e.g. allow
  /// non-finite weights, refused by default).
  static segformer_model from_dir(const std::string& dir, safetensors_options options = {},
                                  segformer_options build = {}) {
    auto cfg = load_segformer_config(dir + "/config.json");
    safetensors_file weights(dir + "/model.safetensors", options);
    return segformer_model(std::move(cfg), weights, build);
  }

  /// Build from a checkpoint; every tensor is checked for presence and shape.
  segformer_model(segformer_config cfg, const safetensors_file& st, segformer_options build = {})
      : segformer_model(std::move(cfg), safetensors_source(st), build) {}

  /// Build from any weight source (checkpoint, synthetic, edited).
  segformer_model(segformer_config cfg, const weight_source& source, segformer_options options = {})
      : cfg_(std::move(cfg)), build_(std::move(options)) {
    const auto groups = channel_groups(cfg_);
    build_.order = resolve_order(build_.order, source, groups);
    weight_reader get(build_.order.is_identity() ? source : permuted_source(source, build_.order, groups));
    build(get);
    if (auto m = build_.order.moments.find(classifier_group); m != build_.order.moments.end())
      classifier_refit_ = linear_refit(m->second, head_.classifier());
    if (build_.int8) apply_int8_calibration(*this, *build_.int8, "int8 calibration (" + build_.int8->source + ")");
  }

  /// A model with synthetic weights (see `random_source`) for benchmarks and profiles when no
  /// checkpoint is at hand.
  static segformer_model with_random_weights(segformer_config cfg, unsigned seed = 0, segformer_options build = {}) {
    return segformer_model(std::move(cfg), random_source(seed), build);
  }

private:
  /// Builds every layer from `get(name, shape) -> const float*` (pointers valid until the layer is made).
  template <class Get>
  void build(Get&& get) {
    const auto& c = cfg_;
    const float eps = static_cast<float>(c.norm_eps);
    std::size_t in_ch = static_cast<std::size_t>(c.num_channels);
    for (std::size_t s = 0; s < static_cast<std::size_t>(c.num_encoder_blocks); ++s) {
      const std::int64_t C = c.hidden_sizes[s], P = c.patch_sizes[s], R = c.sr_ratios[s];
      const std::int64_t hidden = C * c.mlp_ratios[s];
      const std::string pe = "segformer.encoder.patch_embeddings." + std::to_string(s) + ".";
      embeds_.emplace_back(get(pe + "proj.weight", {C, static_cast<std::int64_t>(in_ch), P, P}), get(pe + "proj.bias", {C}),
                           get(pe + "layer_norm.weight", {C}), get(pe + "layer_norm.bias", {C}), in_ch,
                           static_cast<std::size_t>(C), static_cast<std::size_t>(P),
                           static_cast<std::size_t>(c.strides[s]), eps);
      std::vector<segformer_block> blocks;
      for (int j = 0; j < c.depths[s]; ++j) {
        const std::string b = "segformer.encoder.block." + std::to_string(s) + "." + std::to_string(j) + ".";
        efficient_attention_weights aw{};
        aw.q_w = get(b + "attention.self.query.weight", {C, C});
        aw.q_b = get(b + "attention.self.query.bias", {C});
        aw.k_w = get(b + "attention.self.key.weight", {C, C});
        aw.k_b = get(b + "attention.self.key.bias", {C});
        aw.v_w = get(b + "attention.self.value.weight", {C, C});
        aw.v_b = get(b + "attention.self.value.bias", {C});
        if (R > 1) {
          aw.sr_w = get(b + "attention.self.sr.weight", {C, C, R, R});
          aw.sr_b = get(b + "attention.self.sr.bias", {C});
          aw.sr_ln_g = get(b + "attention.self.layer_norm.weight", {C});
          aw.sr_ln_b = get(b + "attention.self.layer_norm.bias", {C});
        }
        aw.o_w = get(b + "attention.output.dense.weight", {C, C});
        aw.o_b = get(b + "attention.output.dense.bias", {C});
        mix_ffn_weights fw{};
        fw.dense1_w = get(b + "mlp.dense1.weight", {hidden, C});
        fw.dense1_b = get(b + "mlp.dense1.bias", {hidden});
        fw.dw_w = get(b + "mlp.dwconv.dwconv.weight", {hidden, 1, 3, 3});
        fw.dw_b = get(b + "mlp.dwconv.dwconv.bias", {hidden});
        fw.dense2_w = get(b + "mlp.dense2.weight", {C, hidden});
        fw.dense2_b = get(b + "mlp.dense2.bias", {C});
        segformer_block blk;
        blk.norm1 = layer_norm(get(b + "layer_norm_1.weight", {C}), get(b + "layer_norm_1.bias", {C}),
                               static_cast<std::size_t>(C), eps);
        blk.norm2 = layer_norm(get(b + "layer_norm_2.weight", {C}), get(b + "layer_norm_2.bias", {C}),
                               static_cast<std::size_t>(C), eps);
        blk.attention = efficient_self_attention(aw, static_cast<std::size_t>(C),
                                                 static_cast<std::size_t>(c.num_attention_heads[s]),
                                                 static_cast<std::size_t>(R), eps);
        blk.ffn = mix_ffn(fw, static_cast<std::size_t>(C), static_cast<std::size_t>(hidden),
                          c.hidden_act == activation_kind::gelu ? activation::gelu : activation::relu);
        blocks.push_back(std::move(blk));
      }
      blocks_.push_back(std::move(blocks));
      const std::string ln = "segformer.encoder.layer_norm." + std::to_string(s) + ".";
      stage_norms_.emplace_back(get(ln + "weight", {C}), get(ln + "bias", {C}), static_cast<std::size_t>(C), eps);
      in_ch = static_cast<std::size_t>(C);
    }
    const std::int64_t D = c.decoder_hidden_size, K = static_cast<std::int64_t>(c.num_classes());
    const std::int64_t S = c.num_encoder_blocks;
    decode_head_weights hw{};
    std::vector<std::size_t> chans;
    for (std::int64_t s = 0; s < S; ++s) {
      const std::string p = "decode_head.linear_c." + std::to_string(s) + ".proj.";
      hw.linear_w.push_back(get(p + "weight", {D, c.hidden_sizes[static_cast<std::size_t>(s)]}));
      hw.linear_b.push_back(get(p + "bias", {D}));
      chans.push_back(static_cast<std::size_t>(c.hidden_sizes[static_cast<std::size_t>(s)]));
    }
    hw.fuse_w = get("decode_head.linear_fuse.weight", {D, S * D, 1, 1});
    hw.bn_g = get("decode_head.batch_norm.weight", {D});
    hw.bn_b = get("decode_head.batch_norm.bias", {D});
    hw.bn_mean = get("decode_head.batch_norm.running_mean", {D});
    hw.bn_var = get("decode_head.batch_norm.running_var", {D});
    hw.cls_w = get("decode_head.classifier.weight", {K, D, 1, 1});
    hw.cls_b = get("decode_head.classifier.bias", {K});
    head_ = mlp_decode_head(hw, chans, static_cast<std::size_t>(D), static_cast<std::size_t>(K),
                            static_cast<float>(c.batch_norm_eps), build_.fold_decoder);
  }

public:
  const segformer_config& config() const noexcept { return cfg_; }
  const segformer_options& options() const noexcept { return build_; }
  /// true when the decoder is folded (the default; see segformer_options).
  bool decoder_folded() const noexcept { return head_.folded(); }
  std::size_t num_stages() const noexcept { return embeds_.size(); }
  const mlp_decode_head& decode_head() const noexcept { return head_; }
  /// The channel order the model is packed in (resolved: the permutations, or empty for the checkpoint's).
  const channel_order& order() const noexcept { return build_.order; }

  /// The prunable channel groups (dynamic/channel_order.hpp): every block's Mix-FFN hidden units,
  /// produced by dense1 (rows) and the depthwise conv, consumed by dense2 (columns); every block's
  /// attention heads (units of head_dim channels), produced by query, key and value (rows),
  /// consumed by the output projection (columns); the classifier's inputs.
  /// The group of block j of stage s's Mix-FFN hidden units.
  static std::string group_name(std::size_t s, std::size_t j) {
    return "segformer.encoder.block." + std::to_string(s) + "." + std::to_string(j) + ".mlp";
  }
  /// The group of block j of stage s's attention heads.
  static std::string head_group_name(std::size_t s, std::size_t j) {
    return "segformer.encoder.block." + std::to_string(s) + "." + std::to_string(j) + ".attention";
  }
  static std::vector<channel_group> channel_groups(const segformer_config& c) {
    std::vector<channel_group> out;
    for (std::size_t s = 0; s < c.depths.size(); ++s) {
      const auto C = static_cast<std::int64_t>(c.hidden_sizes[s]);
      const auto H = static_cast<std::int64_t>(segformer_path::mlp_hidden(c, s));
      for (int j = 0; j < c.depths[s]; ++j) {
        const std::string m = group_name(s, static_cast<std::size_t>(j));
        out.push_back({m,
                       static_cast<std::size_t>(H),
                       {{m + ".dense1.weight", {H, C}, 0, false},
                        {m + ".dense1.bias", {H}, 0, false},
                        {m + ".dwconv.dwconv.weight", {H, 1, 3, 3}, 0, false},
                        {m + ".dwconv.dwconv.bias", {H}, 0, false},
                        {m + ".dense2.weight", {C, H}, 1, true}},
                       false,
                       ""});
      }
    }
    for (std::size_t s = 0; s < c.depths.size(); ++s) {
      const auto C = static_cast<std::int64_t>(c.hidden_sizes[s]);
      const std::size_t heads = segformer_path::attention_heads(c, s), d = static_cast<std::size_t>(C) / heads;
      for (int j = 0; j < c.depths[s]; ++j) {
        const std::string a = head_group_name(s, static_cast<std::size_t>(j)), q = a + ".self.";
        channel_group g{a, heads, {}, false, ""};
        for (const char* p : {"query", "key", "value"}) {
          g.tensors.push_back({q + p + ".weight", {C, C}, 0, false, d});
          g.tensors.push_back({q + p + ".bias", {C}, 0, false, d});
        }
        g.tensors.push_back({a + ".output.dense.weight", {C, C}, 1, true, d});
        out.push_back(std::move(g));
      }
    }
    // The classifier's inputs (pred_in): Conv2DFuse's outputs and their BatchNorm, a refit group.
    const auto D = static_cast<std::int64_t>(c.decoder_hidden_size), K = static_cast<std::int64_t>(c.num_classes());
    out.push_back(classifier_input_group(classifier_group, "decode_head.linear_fuse",
                                         {D, c.num_encoder_blocks * D, 1, 1}, "decode_head.batch_norm",
                                         "decode_head.classifier", K));
    return out;
  }
  /// The classifier refit on its first `pred_in` inputs and packed for `p` (dynamic/refit.hpp): null
  /// when pred_in keeps every input or the model's order holds no moments of them.
  std::shared_ptr<const linear> refit_classifier(std::size_t pred_in, precision p = precision::fp32) const {
    return classifier_refit_.on(pred_in, head_.classifier(), p);
  }
  /// The refit group of the classifier's inputs (a path's `pred_in` prefix of them).
  static constexpr const char* classifier_group = "decode_head.classifier";
  /// The layer object that reports each group's activations (core/observer.hpp), with the group's name.
  std::map<const void*, std::string> group_layers() const {
    std::map<const void*, std::string> out;
    for (std::size_t s = 0; s < blocks_.size(); ++s)
      for (std::size_t j = 0; j < blocks_[s].size(); ++j)
        out[&blocks_[s][j].ffn.dense2()] = group_name(s, j);  // its inputs are the hidden units
    out[&head_.classifier()] = classifier_group;
    return out;
  }
  /// Every GEMM layer a precision lowers, with its checkpoint module name (the folded decoder's
  /// composed M_s as "decode_head.folded_linear.s"): what int8 calibration sets ranges on.
  template <class F>
  void for_each_linear(F&& f) {
    for (std::size_t s = 0; s < blocks_.size(); ++s)
      for (std::size_t j = 0; j < blocks_[s].size(); ++j) {
        const std::string b = "segformer.encoder.block." + std::to_string(s) + "." + std::to_string(j) + ".";
        blocks_[s][j].attention.for_each_linear([&](const char* n, linear& l) { f(b + "attention." + n, l); });
        blocks_[s][j].ffn.for_each_linear([&](const char* n, linear& l) { f(b + "mlp." + n, l); });
      }
    if (head_.folded()) head_.for_each_linear(f);
  }
  const overlap_patch_embed& patch_embed(std::size_t s) const noexcept { return embeds_[s]; }
  /// The arithmetic of stage s's patch embedding: the encoder's (an im2col GEMM in bf16 / int8,
  /// conv2d::run), but for the stem on the image, which stays fp32: in low precision it tripled the
  /// logits' error against transformers (vendored B0 case, int8 4.7e-3 -> 1.2e-2 rel L2, bf16 9.7e-4
  /// -> 2.6e-3) and ran no faster (B2 512x512 on a Xeon: 2.4 ms in int8, 2.1 in fp32; docs/precision.md).
  static precision patch_embed_arithmetic(std::size_t s, const segformer_execution& exec) noexcept {
    return s == 0 ? precision::fp32 : exec.encoder;
  }
  const std::vector<segformer_block>& stage_blocks(std::size_t s) const noexcept { return blocks_[s]; }

  /// Per-stage spatial sizes for an H x W input.
  std::vector<std::pair<std::size_t, std::size_t>> stage_sizes(std::size_t height, std::size_t width) const {
    std::vector<std::pair<std::size_t, std::size_t>> out;
    for (const auto& e : embeds_) {
      height = e.out_h(height);
      width = e.out_w(width);
      out.emplace_back(height, width);
    }
    return out;
  }

  /// Throws drt::invalid_input when H x W is too small for the model (names the stage and sizes).
  void check_input(std::size_t height, std::size_t width) const {
    const auto sizes = stage_sizes(height, width);
    for (std::size_t s = 0; s < sizes.size(); ++s) {
      const auto r = static_cast<std::size_t>(cfg_.sr_ratios[s]);
      if (sizes[s].first == 0 || sizes[s].second == 0 || sizes[s].first < r || sizes[s].second < r)
        throw invalid_input("segformer: input " + std::to_string(height) + "x" + std::to_string(width) +
                            " is too small: stage " + std::to_string(s) + " would be " +
                            std::to_string(sizes[s].first) + "x" + std::to_string(sizes[s].second) +
                            ", smaller than its " + std::to_string(r) + "x" + std::to_string(r) +
                            " spatial-reduction kernel");
    }
  }

  /// Compiles a path into what `forward` runs (validated once; switching paths is then a lookup).
  segformer_execution compile(const segformer_path& path) const {
    path.validate(cfg_);
    segformer_execution e;
    const auto per_stage = detail::blocks_per_stage(blocks_);
    e.skip = detail::block_skip_flags(path, per_stage);
    if (!path.mlp.empty())
      e.mlp = unit_prefixes::plan(
          per_stage, build_.order, [&](std::size_t s, std::size_t g) { return path.mlp_kept(cfg_, s, g); }, &group_name,
          [&](std::size_t s, std::size_t j) -> const linear& { return blocks_[s][j].ffn.dense2(); });
    if (!path.heads.empty())  // no compensation: the order holds no means of multi-channel units
      e.heads = unit_prefixes::plan(
          per_stage, build_.order, [&](std::size_t s, std::size_t g) { return path.heads_kept(cfg_, s, g); },
          &head_group_name, [&](std::size_t s, std::size_t j) -> const linear& { return blocks_[s][j].attention.output(); });
    if (!path.tokens.empty())
      for (std::size_t st = 0, g = 0; st < per_stage.size(); ++st) {
        e.tokens.emplace_back();
        for (std::size_t j = 0; j < per_stage[st]; ++j, ++g)
          e.tokens[st].push_back(path.tokens[detail::per_block_index(path.tokens.size(), per_stage.size(), st, g)]);
      }
    e.head.fuse_in = static_cast<std::size_t>(path.fuse_in);
    e.head.pred_in = static_cast<std::size_t>(path.pred_in);
    e.head.linear0_in = static_cast<std::size_t>(path.linear0_in);
    e.head.propagate = path.propagate;
    e.head.arithmetic = path.precision.of("decoder");
    e.head = head_.resolve(e.head);
    e.head.classifier = refit_classifier(e.head.pred_in, e.head.arithmetic);
    e.encoder = path.precision.of("encoder");
    e.attention = path.attention_arithmetic();
    if (e.encoder != precision::fp32) {
      for (std::size_t st = 0; st < embeds_.size(); ++st) embeds_[st].prepare(patch_embed_arithmetic(st, e));
      for (const auto& blocks : blocks_)
        for (const auto& b : blocks) {
          b.attention.for_each_linear([&](const char*, const linear& l) { l.prepare(e.encoder); });
          b.ffn.for_each_linear([&](const char*, const linear& l) { l.prepare(e.encoder); });
        }
    }
    return e;
  }

  /// The layers `forward` runs for a batch of N images of H x W under `exec`, with exact MACs.
  std::vector<layer_info> layers(std::size_t height, std::size_t width, const segformer_execution& exec = {},
                                 std::size_t n = 1) const {
    std::vector<layer_info> out;
    auto add = [&](std::string name, layer_kind kind, model_region region, std::size_t k, std::size_t c, std::size_t p,
                   std::size_t q, std::size_t r, std::size_t stride, std::size_t params,
                   std::size_t batch = 1) -> std::string& {
      out.push_back(make_layer(std::move(name), kind, region, batch * n, k, c, p, q, r, stride, params));
      return out.back().module;  // the caller names the checkpoint module
    };
    const auto enc = model_region::encoder, dec = model_region::decoder;
    std::size_t h = height, w = width, cin = static_cast<std::size_t>(cfg_.num_channels);
    std::vector<std::size_t> hs, ws;
    for (std::size_t s = 0; s < embeds_.size(); ++s) {
      const auto& es = embeds_[s].shape();
      const std::size_t oh = es.out_h(h), ow = es.out_w(w), C = es.out_channels, T = oh * ow;
      const std::string st = "Stage" + std::to_string(s + 1);
      const std::string pe = "segformer.encoder.patch_embeddings." + std::to_string(s) + ".";
      add("PatchEmbed" + std::to_string(s + 1) + "_Conv2D", layer_kind::conv, enc, C, cin, oh, ow, es.kernel_h,
          es.stride_h, C * cin * es.kernel_h * es.kernel_w + C) = pe + "proj";
      out.back().arithmetic = patch_embed_arithmetic(s, exec);
      add("PatchEmbed" + std::to_string(s + 1) + "_LayerNorm", layer_kind::norm, enc, C, C, T, 1, 1, 1, 2 * C) =
          pe + "layer_norm";
      for (std::size_t j = 0; j < blocks_[s].size(); ++j) {
        if (exec.is_skipped(s, j)) continue;
        const auto& a = blocks_[s][j].attention;
        const auto& f = blocks_[s][j].ffn;
        const std::size_t sr = a.sr_ratio(), S = a.reduced_tokens(oh, ow), d = C / a.heads();
        const std::size_t heads = exec.heads.at(s, j) ? std::min(exec.heads.at(s, j), a.heads()) : a.heads(),
                          ch = heads * d;  // the channels of the heads kept
        const std::size_t hid = exec.mlp.at(s, j) ? std::min(exec.mlp.at(s, j), f.hidden()) : f.hidden();
        const std::size_t M = exec.tokens_kept(s, j, oh, ow);  // the tokens the merged layers run on
        const std::string b = st + " Block" + std::to_string(j + 1) + " ";
        const std::string mb = "segformer.encoder.block." + std::to_string(s) + "." + std::to_string(j) + ".";
        const std::string ma = mb + "attention.self";
        const std::size_t first = out.size();
        add(b + "attention.layer_norm_1", layer_kind::norm, enc, C, C, T, 1, 1, 1, 2 * C) = mb + "layer_norm_1";
        if (M < T)  // the plan: 9 cosine similarities per token (layers/token_merge.hpp)
          add(b + "tokens.merge", layer_kind::elementwise, enc, 9, C, T, 1, 1, 1, 0) = mb + "tokens";
        add(b + "attention.query", layer_kind::linear, enc, ch, C, M, 1, 1, 1, ch * C + ch) = ma + ".query";
        if (sr > 1) {
          add(b + "attention.sr", layer_kind::conv, enc, C, C, oh / sr, ow / sr, sr, sr, C * C * sr * sr + C) =
              ma + ".sr";
          out.back().arithmetic = exec.encoder;  // a linear over gathered patches (layers/attention.hpp)
          add(b + "attention.sr_layer_norm", layer_kind::norm, enc, C, C, S, 1, 1, 1, 2 * C) = ma + ".layer_norm";
        }
        add(b + "attention.key", layer_kind::linear, enc, ch, C, S, 1, 1, 1, ch * C + ch) = ma + ".key";
        add(b + "attention.value", layer_kind::linear, enc, ch, C, S, 1, 1, 1, ch * C + ch) = ma + ".value";
        add(b + "attention.qk", layer_kind::attention_matmul, enc, S, d, M, 1, 1, 1, 0, heads) = ma;
        add(b + "attention.softmax", layer_kind::softmax, enc, S, S, M, 1, 1, 1, 0, heads) = ma;
        add(b + "attention.pv", layer_kind::attention_matmul, enc, d, S, M, 1, 1, 1, 0, heads) = ma;
        for (std::size_t i = out.size() - 3; i < out.size(); ++i) {
          out[i].timed_as = b + "attention.qk_softmax_pv";
          // the products in the `attention` region's arithmetic, the softmax in fp32 (multi_head_attention)
          if (out[i].kind == layer_kind::attention_matmul) out[i].arithmetic = exec.attention;
        }
        add(b + "attention.output", layer_kind::linear, enc, C, ch, M, 1, 1, 1, C * ch + C) = mb + "attention.output.dense";
        add(b + "mlp.layer_norm_2", layer_kind::norm, enc, C, C, T, 1, 1, 1, 2 * C) = mb + "layer_norm_2";
        add(b + "mlp.dense1", layer_kind::linear, enc, hid, C, M, 1, 1, 1, hid * C + hid) = mb + "mlp.dense1";
        add(b + "mlp.dwconv", layer_kind::depthwise_conv, enc, hid, 1, oh, ow, 3, 1, hid * 10) =
            mb + "mlp.dwconv.dwconv";
        add(b + "mlp.dense2", layer_kind::linear, enc, C, hid, M, 1, 1, 1, hid * C + C) = mb + "mlp.dense2";
        for (std::size_t i = out.size() - 3; i < out.size(); ++i) out[i].timed_as = b + "mlp";  // fused (mix_ffn::run)
        if (M < T)  // the merged block: its layers gather and scatter rows (layers/token_merge.hpp)
          for (std::size_t i = first; i < out.size(); ++i)
            if (out[i].kind != layer_kind::norm) out[i].variant = "tokens=" + detail::fraction_string(exec.tokens[s][j]);
      }
      add(st + "_LayerNorm", layer_kind::norm, enc, C, C, T, 1, 1, 1, 2 * C) =
          "segformer.encoder.layer_norm." + std::to_string(s);
      hs.push_back(oh);
      ws.push_back(ow);
      h = oh;
      w = ow;
      cin = C;
    }
    const auto ch = head_.with_defaults(exec.head);  // range-checked, nothing composed
    const std::size_t D = head_.hidden(), fuse_in = ch.fuse_in, pred_in = ch.pred_in, linear0_in = ch.linear0_in;
    if (head_.folded()) {
      // sum_s up(M_s f_s) + c: one GEMM per stage at its own resolution (stage 0's per row block),
      // then per row block the upsample-sum with the ReLU and the classifier.
      for (std::size_t s = 0; s < head_.stages(); ++s) {
        if (head_.stage_outputs_kept(s, fuse_in) == 0) continue;
        const std::size_t cs = s == 0 ? linear0_in : head_.stage_channels(s);
        add("DecodeLinearFuse" + std::to_string(s), layer_kind::linear, dec, pred_in, cs, hs[s] * ws[s], 1, 1, 1,
            pred_in * cs + (s == 0 ? pred_in : 0)) = "decode_head.linear_c." + std::to_string(s) + ".proj";
      }
      // the upsample-sum ends in linear_fuse's BatchNorm (folded) and the ReLU
      add("DecodeUpsampleSumReLU", layer_kind::resize, dec, pred_in, pred_in, hs[0], ws[0], 1, 1, 0) =
          "decode_head.batch_norm";
    } else {
      for (std::size_t s = 0; s < head_.stages(); ++s) {
        const std::size_t kept = ch.propagate ? head_.stage_outputs_kept(s, fuse_in) : D;
        if (kept == 0) continue;
        const std::size_t cs = s == 0 ? linear0_in : head_.stage_channels(s);
        const std::string lc = "decode_head.linear_c." + std::to_string(s);
        add("DecodeLinear" + std::to_string(s), layer_kind::linear, dec, kept, cs, hs[s] * ws[s], 1, 1, 1,
            kept * cs + kept) = lc + ".proj";
        if (hs[s] != hs[0] || ws[s] != ws[0])
          add("DecodeUpsample" + std::to_string(s), layer_kind::resize, dec, kept, kept, hs[0], ws[0], 1, 1, 0) = lc;
      }
      add("Conv2DFuse", layer_kind::conv, dec, pred_in, fuse_in, hs[0], ws[0], 1, 1, pred_in * fuse_in + pred_in) =
          "decode_head.linear_fuse";
    }
    add("Conv2DPred", layer_kind::conv, dec, head_.classes(), pred_in, hs[0], ws[0], 1, 1,
        head_.classes() * pred_in + head_.classes()) = "decode_head.classifier";
    for (auto& l : out)  // the linears run in the path's precision (sr and attention products: above)
      if (l.kind == layer_kind::linear)
        l.arithmetic = l.region == model_region::encoder ? exec.encoder : exec.head.arithmetic;
    if (head_.folded())  // stage 0's GEMM, the upsample-sum and the classifier run per row block, timed together
      for (auto& l : out)
        if (l.name == "DecodeLinearFuse0" || l.name == "DecodeUpsampleSumReLU" || l.name == "Conv2DPred")
          l.timed_as = mlp_decode_head::fused_pass_name;
    return out;
  }

  /// Runs `path` (compiled on each call; hold a `segformer_execution` to switch paths per frame).
  segformer_output forward(const tensor4& pixel_values, const segformer_path& path, bool keep_stages = false) const {
    return forward(pixel_values, keep_stages, compile(path));
  }

  /// pixel_values: [N, C, H, W] float32, normalized. Returns logits [N, K, H_0, W_0].
  segformer_output forward(const tensor4& pixel_values, bool keep_stages = false,
                           const segformer_execution& exec = {}) const {
    const segformer_features f = encode(pixel_values, exec);
    segformer_output out;
    if (keep_stages)
      for (std::size_t s = 0; s < f.maps.size(); ++s)
        out.stages.push_back(nhwc_to_nchw(f.maps[s].data(), f.n, f.hs[s], f.ws[s], f.channels[s]));
    out.logits = decode(f, exec.head);
    return out;
  }

  /// The encoder half: stage outputs (NHWC) for the blocks `exec` runs. Every decoder path of the
  /// same encoder path reuses them (the sweep measures many decoder masks on one encoding).
  segformer_features encode(const tensor4& pixel_values, const segformer_execution& exec = {}) const {
    const std::size_t n = pixel_values.shape(0), c = pixel_values.shape(1);
    const std::size_t height = pixel_values.shape(2), width = pixel_values.shape(3);
    if (c != static_cast<std::size_t>(cfg_.num_channels) || n == 0)
      throw shape_error("segformer: pixel_values has shape " + shape_str(pixel_values.shape()) + ", expected [N, " +
                        std::to_string(cfg_.num_channels) + ", H, W] with N >= 1");
    check_input(height, width);
    tensor4 x = nchw_to_nhwc(pixel_values.data(), n, c, height, width);
    segformer_features out;
    out.n = n;
    out.maps.resize(num_stages());
    std::size_t h = height, w = width;
    const float* in = x.data();
    const bool prof = profiling_active();
    for (std::size_t s = 0; s < num_stages(); ++s) {
      const auto& e = embeds_[s];
      const std::size_t oh = e.out_h(h), ow = e.out_w(w), C = e.shape().out_channels, m = n * oh * ow;
      auto& f = out.maps[s];
      f.resize(m * C);
      const std::string st = prof ? "Stage" + std::to_string(s + 1) : std::string();
      {
        profile_prefix pp(prof ? "PatchEmbed" + std::to_string(s + 1) + "_" : std::string());
        e.run(in, n, h, w, f.data(), patch_embed_arithmetic(s, exec));
      }
      detail::aligned_vector<float> normed(m * C);
      for (std::size_t j = 0; j < blocks_[s].size(); ++j) {
        if (exec.is_skipped(s, j)) continue;  // a bypassed block is the identity: nothing computed
        const auto& blk = blocks_[s][j];
        profile_prefix pp(prof ? st + " Block" + std::to_string(j + 1) + " " : std::string());
        // An int8 encoder's projections take each image's LayerNorm output range from the LayerNorm
        // (found while it writes) instead of scanning the output again per layer.
        const bool ranges = exec.encoder == precision::int8;
        std::vector<std::pair<float, float>> range(ranges ? n : 0);
        {
          profile_scope ps("attention.layer_norm_1");
          if (ranges) blk.norm1.run_with_ranges(m, f.data(), C, normed.data(), C, oh * ow, range.data());
          else blk.norm1.run(m, f.data(), C, normed.data(), C);
        }
        // Token merging (path knob `tokens`): one plan per image from the attention's inputs, used by
        // the attention and the Mix-FFN.
        std::vector<token_merge> merges;
        if (const std::size_t keep = exec.tokens_kept(s, j, oh, ow); keep < oh * ow) {
          profile_scope ps("tokens.merge");
          for (std::size_t b = 0; b < n; ++b)
            merges.push_back(token_merge::plan(normed.data() + b * oh * ow * C, C, oh, ow, C, keep));
        }
        blk.attention.run(normed.data(), n, oh, ow, f.data(), exec.encoder, exec.attention, exec.heads.at(s, j),
                          merges.empty() ? nullptr : merges.data(), ranges ? range.data() : nullptr);
        std::pair<float, float> all;  // the whole batch's range: dense1 quantizes the batch alike
        {
          profile_scope ps("mlp.layer_norm_2");
          if (ranges) {
            blk.norm2.run_with_ranges(m, f.data(), C, normed.data(), C, m, &all);
          } else {
            blk.norm2.run(m, f.data(), C, normed.data(), C);
          }
        }
        if (merges.empty())
          blk.ffn.run(normed.data(), n, oh, ow, f.data(), exec.mlp.at(s, j), exec.mlp.bias_at(s, j), exec.encoder,
                      ranges ? &all : nullptr);
        else
          for (std::size_t b = 0; b < n; ++b)
            blk.ffn.run_merged(normed.data() + b * oh * ow * C, merges[b], oh, ow, f.data() + b * oh * ow * C,
                               exec.mlp.at(s, j), exec.mlp.bias_at(s, j), exec.encoder);
      }
      {
        const std::string name = prof ? st + "_LayerNorm" : std::string();
        profile_scope ps(name.c_str());
        stage_norms_[s].run(m, f.data(), C, f.data(), C);
      }
      out.hs.push_back(oh);
      out.ws.push_back(ow);
      out.channels.push_back(C);
      in = f.data();
      h = oh;
      w = ow;
    }
    return out;
  }

  /// The decoder half on an encoding: logits [N, K, H_0, W_0] (NCHW) for the channel prefixes `ch`.
  tensor4 decode(const segformer_features& f, const decode_head_channels& ch = {}) const {
    std::vector<const float*> fp;
    for (const auto& m : f.maps) fp.push_back(m.data());
    tensor4 logits = tensor4::from_shape({f.n, head_.classes(), f.hs[0], f.ws[0]});
    head_.run(fp, f.n, f.hs, f.ws, logits.data(), ch, /*nchw=*/true);
    return logits;
  }

private:
  segformer_config cfg_;
  segformer_options build_;
  std::vector<overlap_patch_embed> embeds_;
  std::vector<std::vector<segformer_block>> blocks_;
  std::vector<layer_norm> stage_norms_;
  mlp_decode_head head_;
  linear_refit classifier_refit_;  ///< the classifier refit on pred_in prefixes (a calibrated order with its moments)
};

}  // namespace drt
