#pragma once
/// @file path.hpp
/// A dynamic execution path (paper Section III): which encoder blocks run and which channel
/// prefixes of the expensive decoder layers are kept. A value type with a text form for the
/// command line and a JSON form for lookup tables.
///
/// SegFormer text form (keys in any order, all optional; omitted = the full model):
///   `depths=2,3,5,3 fuse_in=1024 pred_in=768 linear0_in=64 skip=0.1,2.0 propagate=1`
/// - depths: per stage, keep the first d blocks (the rest are the identity)
/// - skip: explicit skipped blocks as stage.block pairs, zero-based (combined with depths)
/// - fuse_in: Conv2DFuse input channels kept; pred_in: Conv2DPred input channels kept (= Conv2DFuse
///   outputs computed); linear0_in: DecodeLinear0 input channels kept
/// - propagate: 1 (default) propagates dropped Conv2DFuse inputs back to the decoder linears (their
///   dropped outputs are never computed); 0 runs the linears in full, which is how the paper's
///   Table III counts MACs.
/// - mlp: Mix-FFN hidden units kept, as fractions of each block's hidden width (1 value, one per
///   stage or one per block): `mlp=0.5` or `mlp=1,1,0.75,0.5`. The units kept are a prefix of the
///   order the model was loaded in (dynamic/channel_order.hpp: by importance by default).
/// - heads: attention heads kept, as fractions of each block's heads (1 value, one per stage or one
///   per block, like mlp): `heads=0.5`. Query, key and value compute only the kept heads' channels
///   and the output projection reads only those; the heads kept are a prefix of the model's order
///   (by importance by default). Stage 0 of the SegFormer family has a single head, which stays.
/// - tokens: image tokens kept by each block's attention and Mix-FFN, as fractions of the stage's
///   grid (1 value, one per stage or one per block): `tokens=1,1,0.5,0.5`. Similar neighbouring
///   tokens are merged (averaged) for the block's queries, output projection, dense1 and dense2, and
///   every token gets its merged token's result back (layers/token_merge.hpp: at least one token per
///   2 x 2 window stays, so fractions must exceed 0.25). Keys and values still come from every token.
/// - precision: the arithmetic of the GEMM layers, for the whole model or per region
///   (`precision=int8`, `precision=encoder:int8,decoder:bf16`; regions encoder and decoder), and of
///   the attention products (region `attention`: fp32 or bf16, by default bf16 on a bf16 or int8
///   encoder): `precision=int8,attention:fp32`. core/precision.hpp, docs/precision.md.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../io/model_config.hpp"
#include "knobs.hpp"

namespace drt {

/// A SegFormer execution path. Zero / empty fields mean "as the full model".
struct segformer_path {
  using config_type = segformer_config;

  std::vector<int> depths;                  ///< blocks kept per stage (prefix), empty = all
  std::vector<std::pair<int, int>> skip;    ///< explicitly skipped (stage, block), zero-based
  int fuse_in = 0;                          ///< Conv2DFuse input channels kept
  int pred_in = 0;                          ///< Conv2DPred input channels kept
  int linear0_in = 0;                       ///< DecodeLinear0 input channels kept
  bool propagate = true;                    ///< propagate dropped fuse inputs back to the linears
  std::vector<double> mlp;                  ///< Mix-FFN hidden units kept as fractions (1, per stage or per block)
  std::vector<double> heads;                ///< attention heads kept as fractions (1, per stage or per block)
  std::vector<double> tokens;               ///< image tokens kept (merged) as fractions (1, per stage or per block)
  precision_plan precision;                 ///< arithmetic per region (fp32 everywhere by default)

  static constexpr const char* keys = "depths, skip, fuse_in, pred_in, linear0_in, propagate, mlp, heads, tokens, precision";

  /// The knob table: the one description the text / JSON forms, validation and sweeps read.
  static const path_family<segformer_path, segformer_config>& family() {
    using C = segformer_config;
    static const path_family<segformer_path, C> f{
        "segformer",
        {
            {"depths", &segformer_path::depths, knob_layout::per_stage,
             [](const C& c, std::size_t s, std::size_t) { return knob_range{0, double(c.depths[s]), 1}; },
             "per stage, run the first d blocks; the others are the identity", "", "depth"},
            {"skip", &segformer_path::skip, knob_layout::pairs, nullptr,
             "blocks (stage.block) that are the identity, combined with depths"},
            {"fuse_in", &segformer_path::fuse_in, knob_layout::scalar,
             [](const C& c, std::size_t, std::size_t) {
               return knob_range{1, double(c.decoder_hidden_size) * double(c.depths.size()), 1};
             },
             "Conv2DFuse input channels kept (a prefix of the concatenation, stage 3 first)",
             "with propagate=1 the decoder linears do not compute the dropped outputs"},
            {"pred_in", &segformer_path::pred_in, knob_layout::scalar,
             [](const C& c, std::size_t, std::size_t) { return knob_range{1, double(c.decoder_hidden_size), 1}; },
             "Conv2DPred input channels kept", "Conv2DFuse computes only those outputs"},
            {"linear0_in", &segformer_path::linear0_in, knob_layout::scalar,
             [](const C& c, std::size_t, std::size_t) {
               return knob_range{1, c.hidden_sizes.empty() ? 0.0 : double(c.hidden_sizes[0]), 1};
             },
             "DecodeLinear0 input channels kept (stage 0's features)"},
            {"propagate", &segformer_path::propagate, knob_layout::scalar, nullptr,
             "0 runs the decoder linears in full (the paper's Table III accounting)",
             "1 (default) propagates dropped Conv2DFuse inputs back to the decoder linears"},
            {"mlp", &segformer_path::mlp, knob_layout::per_block,
             [](const C& c, std::size_t s, std::size_t) {
               return knob_range{0, 1, 1.0 / double(std::max<std::size_t>(1, mlp_hidden(c, s)))};
             },
             "Mix-FFN hidden units kept as a fraction of the block's (round(e * hidden), at least 1)",
             "dense1 computes, the depthwise conv and dense2 read only those"},
            {"heads", &segformer_path::heads, knob_layout::per_block,
             [](const C& c, std::size_t s, std::size_t) {
               return knob_range{0, 1, 1.0 / double(std::max<std::size_t>(1, attention_heads(c, s)))};
             },
             "attention heads kept as a fraction of the block's (round(e * heads), at least 1)",
             "query, key and value compute, the attention and the output projection read only those"},
            {"tokens", &segformer_path::tokens, knob_layout::per_block,
             [](const C&, std::size_t, std::size_t) { return knob_range{0.25, 1, 0}; },
             "image tokens kept by the block as a fraction of its grid (similar neighbours merged; > 0.25: one "
             "token per 2x2 window stays)",
             "queries, the output projection, dense1 and dense2 run on the merged tokens; keys, values and the "
             "depthwise conv on all"},
            {"precision", &segformer_path::precision, knob_layout::scalar, nullptr,
             "arithmetic of the GEMM layers: fp32, bf16 or int8, whole model or per region (encoder, decoder); "
             "attention:fp32|bf16 the attention products' (default bf16 under a bf16 or int8 encoder)",
             "", nullptr, "", nullptr, "", nullptr, "encoder,decoder,attention"},
        },
        [](const C& c) { return c.depths; }};
    return f;
  }

  /// Parses the text form; throws drt::invalid_input naming the text and the bad token.
  static segformer_path parse(const std::string& text) { return parse_path<segformer_path>(text); }
  /// Canonical text form (only the fields that differ from the full model; "full" when none).
  std::string to_string() const { return path_to_string(*this); }
  nlohmann::json to_json() const { return path_to_json(*this); }
  /// Reads the JSON form (`to_json`); throws drt::invalid_input naming the key and its value.
  static segformer_path from_json(const nlohmann::json& j) { return path_from_json<segformer_path>(j); }
  /// Throws naming the path and the rule it breaks for this model.
  void validate(const segformer_config& c) const {
    validate_path(*this, c);
  }

  bool block_runs(std::size_t s, std::size_t b) const noexcept { return detail::block_kept(depths, skip, s, b); }

  /// The attention products' arithmetic: region `attention` when named, else the encoder's.
  drt::precision attention_arithmetic() const noexcept {
    const drt::precision* a = precision.named("attention");
    return a ? *a : precision.of("encoder");
  }

  /// Mix-FFN hidden width of stage s's blocks in the full model.
  static std::size_t mlp_hidden(const segformer_config& c, std::size_t s) {
    if (s >= c.hidden_sizes.size() || s >= c.mlp_ratios.size()) return 0;  // a config load_segformer_config refuses
    return static_cast<std::size_t>(c.hidden_sizes[s]) * static_cast<std::size_t>(c.mlp_ratios[s]);
  }
  /// Attention heads of stage s's blocks in the full model.
  static std::size_t attention_heads(const segformer_config& c, std::size_t s) {
    return s < c.num_attention_heads.size() ? static_cast<std::size_t>(c.num_attention_heads[s]) : 0;
  }
  /// Attention heads kept by block b of stage s (global block index g); the path must be valid for c.
  std::size_t heads_kept(const segformer_config& c, std::size_t s, std::size_t g) const {
    return detail::fraction_kept(heads, c.depths.size(), s, g, attention_heads(c, s));
  }
  /// Mix-FFN hidden units kept by block b of stage s (global block index g in stage order); the path
  /// must be valid for c.
  std::size_t mlp_kept(const segformer_config& c, std::size_t s, std::size_t g) const {
    return detail::fraction_kept(mlp, c.depths.size(), s, g, mlp_hidden(c, s));
  }
};

}  // namespace drt
