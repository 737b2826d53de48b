#pragma once
/// @file upernet_path.hpp
/// A dynamic execution path of UPerNet + Swin (paper Section III): which Swin blocks run and which
/// channel prefixes of the expensive head convolutions are kept. A value type with a text form for
/// the command line and a JSON form for lookup tables, like `segformer_path`.
///
/// Text form (keys in any order, all optional; omitted = the full model):
///   `depths=2,2,4,2 skip=2.1 bottleneck_in=1024 fpn_out=256 fpn_in=384 pred_in=256`
/// - depths: per backbone stage, keep the first d Swin blocks; the others are the identity (their
///   residual branches are not computed). Shifts stay as in the full model (odd blocks shifted).
/// - skip: explicit skipped blocks as stage.block pairs, zero-based (combined with depths).
/// - bottleneck_in: fpn_bottleneck input channels kept, a prefix of its input in checkpoint order.
///   That input is the concatenation of the L feature levels, D = hidden_size channels each, level 0
///   (fpn_convs.0) first and the pyramid-pooling output (level L-1) last: level i is the slice
///   [i*D, (i+1)*D).
/// - fpn_out: channels kept of every level's slice (a prefix of each slice): fpn_convs.i compute only
///   their first fpn_out outputs, and only the first fpn_out channels of the pyramid-pooling level
///   enter the fpn_bottleneck.
///   Together, level i contributes kept_i = min(fpn_out, clamp(bottleneck_in - i*D, 0, D)) channels
///   to the fpn_bottleneck, whose reduction is sum_i kept_i; a level with kept_i = 0 has its fpn conv
///   and its upsampling skipped.
/// - fpn_in: fpn_convs input channels kept (a prefix of D). Propagated backwards through the top-down
///   path (a channel-wise addition): every lateral conv computes only its first fpn_in outputs, and
///   the pyramid-pooling bottleneck max(fpn_in, kept_{L-1}).
/// - pred_in: classifier input channels kept = fpn_bottleneck output channels computed.
/// - mlp: Swin MLP hidden units kept, as fractions of each block's hidden width (1 value, one per
///   stage or one per block), a prefix of the order the model was loaded in (dynamic/channel_order.hpp).
/// - heads: Swin window-attention heads kept, as fractions of each block's heads (like mlp), a prefix
///   of the model's head order: the fused q/k/v projection computes only those heads and the output
///   projection reads only their channels.
/// - precision: the arithmetic of the Swin backbone's GEMM layers (q/k/v, output, fc1, fc2, patch
///   merging reductions): `precision=int8`, `precision=bf16`, or `precision=encoder:int8`. The one
///   region is `encoder`: the UPerNet head's convolutions run fp32 on every path (docs/precision.md).
/// The lateral convs and the pyramid pooling always run: level 0 is always kept, and it sums every
/// coarser level through the top-down path. Backbone stages past the last feature level do not run.

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../io/upernet_config.hpp"
#include "knobs.hpp"

namespace drt {

/// An UPerNet + Swin execution path. Zero / empty fields mean "as the full model".
struct upernet_path {
  using config_type = upernet_config;

  std::vector<int> depths;                ///< Swin blocks kept per stage (prefix), empty = all
  std::vector<std::pair<int, int>> skip;  ///< explicitly skipped (stage, block), zero-based
  int bottleneck_in = 0;                  ///< fpn_bottleneck input channels kept (prefix of the concat)
  int fpn_out = 0;                        ///< channels kept of every level's slice (fpn_convs outputs)
  int fpn_in = 0;                         ///< fpn_convs input channels kept (= lateral outputs computed)
  int pred_in = 0;                        ///< classifier inputs kept (= fpn_bottleneck outputs computed)
  std::vector<double> mlp;                ///< Swin MLP hidden units kept as fractions (1, per stage or per block)
  std::vector<double> heads;              ///< window-attention heads kept as fractions (1, per stage or per block)
  precision_plan precision;               ///< the backbone's arithmetic (fp32 by default)

  static constexpr const char* keys = "depths, skip, bottleneck_in, fpn_out, fpn_in, pred_in, mlp, heads, precision";

  /// The knob table: the one description the text / JSON forms, validation and sweeps read.
  static const path_family<upernet_path, upernet_config>& family() {
    using C = upernet_config;
    static const path_family<upernet_path, C> f{
        "upernet",
        {
            {"depths", &upernet_path::depths, knob_layout::per_stage,
             [](const C& c, std::size_t s, std::size_t) { return knob_range{0, double(c.backbone.depths[s]), 1}; },
             "per backbone stage, run the first d Swin blocks; the others are the identity", "", "depth"},
            {"skip", &upernet_path::skip, knob_layout::pairs, nullptr,
             "Swin blocks (stage.block) that are the identity, combined with depths"},
            {"bottleneck_in", &upernet_path::bottleneck_in, knob_layout::scalar,
             [](const C& c, std::size_t, std::size_t) {
               return knob_range{1, double(c.hidden_size) * double(c.backbone.out_indices.size()), 1};
             },
             "fpn_bottleneck input channels kept (a prefix of the level concatenation, level 0 first)",
             "a level left with no channels has its fpn conv and upsampling skipped"},
            {"fpn_out", &upernet_path::fpn_out, knob_layout::scalar,
             [](const C& c, std::size_t, std::size_t) { return knob_range{1, double(c.hidden_size), 1}; },
             "channels kept of every level's slice of the fpn_bottleneck input",
             "the fpn convs compute only those outputs"},
            {"fpn_in", &upernet_path::fpn_in, knob_layout::scalar,
             [](const C& c, std::size_t, std::size_t) { return knob_range{1, double(c.hidden_size), 1}; },
             "fpn convs input channels kept",
             "through the top-down path: the lateral convs and the pyramid-pooling bottleneck compute only those",
             nullptr, "", nullptr, "",
             [](const C& c) -> const char* {
               return c.backbone.out_indices.size() < 2 ? "the model has one feature level and no fpn convs" : nullptr;
             }},
            {"pred_in", &upernet_path::pred_in, knob_layout::scalar,
             [](const C& c, std::size_t, std::size_t) { return knob_range{1, double(c.hidden_size), 1}; },
             "classifier input channels kept", "the fpn_bottleneck computes only those outputs"},
            {"mlp", &upernet_path::mlp, knob_layout::per_block,
             [](const C& c, std::size_t s, std::size_t) {
               return knob_range{0, 1, 1.0 / double(std::max<std::size_t>(1, c.backbone.mlp_hidden(s)))};
             },
             "Swin MLP hidden units kept as a fraction of the block's (round(e * hidden), at least 1)",
             "fc1 computes and fc2 reads only those"},
            {"heads", &upernet_path::heads, knob_layout::per_block,
             [](const C& c, std::size_t s, std::size_t) {
               const std::size_t h = s < c.backbone.num_heads.size() ? std::size_t(c.backbone.num_heads[s]) : 1;
               return knob_range{0, 1, 1.0 / double(std::max<std::size_t>(1, h))};
             },
             "window-attention heads kept as a fraction of the block's (round(e * heads), at least 1)",
             "the fused q/k/v projection computes, the output projection reads only those"},
            {"precision", &upernet_path::precision, knob_layout::scalar, nullptr,
             "arithmetic of the Swin backbone's GEMM layers: fp32, bf16 or int8 (region: encoder; the head "
             "stays fp32)",
             "", nullptr, "", nullptr, "", nullptr, "encoder"},
        },
        [](const C& c) { return c.backbone.depths; }};
    return f;
  }

  /// Parses the text form; throws drt::invalid_input naming the text and the bad token.
  static upernet_path parse(const std::string& text) { return parse_path<upernet_path>(text); }
  /// Canonical text form (only the fields that differ from the full model; "full" when none).
  std::string to_string() const { return path_to_string(*this); }
  /// {"depths": [..], "skip": [[s, b], ..], "bottleneck_in": n, ...} with the fields that are set.
  nlohmann::json to_json() const { return path_to_json(*this); }
  /// Reads the JSON form (`to_json`); throws drt::invalid_input naming the key and its value.
  static upernet_path from_json(const nlohmann::json& j) { return path_from_json<upernet_path>(j); }
  /// Throws naming the path and the rule it breaks for this model.
  void validate(const upernet_config& c) const { validate_path(*this, c); }

  bool block_runs(std::size_t s, std::size_t b) const noexcept { return detail::block_kept(depths, skip, s, b); }

  /// Window-attention heads kept by block b of stage s (global block index g in stage order).
  std::size_t heads_kept(const upernet_config& c, std::size_t s, std::size_t g) const {
    const std::size_t h = s < c.backbone.num_heads.size() ? std::size_t(c.backbone.num_heads[s]) : 0;
    return detail::fraction_kept(heads, c.backbone.depths.size(), s, g, h);
  }
  /// Swin MLP hidden units kept by block b of stage s (global block index g in stage order).
  std::size_t mlp_kept(const upernet_config& c, std::size_t s, std::size_t g) const {
    return detail::fraction_kept(mlp, c.backbone.depths.size(), s, g, c.backbone.mlp_hidden(s));
  }
};

}  // namespace drt
