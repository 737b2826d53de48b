#pragma once
/// @file resnet_path.hpp
/// A dynamic execution path of a ResNet in the style of Once-for-All (Cai et al., ICLR 2020):
/// elastic depth, elastic expand ratio and elastic width on the pretrained weights, every choice a
/// prefix of the checkpoint's blocks or channels. A value type with a text form for the command line
/// and a JSON form for lookup tables, like `segformer_path`.
///
/// Text form (keys in any order, all optional; omitted = the full model):
///   `depths=2,3,4,2 expand=0.5 width=256,512,768,2048` or `mid=64,96,192,384`
/// - depths: per stage, run the first d blocks (1 <= d <= the model's); the others are the identity.
///   The first block always runs: it carries the stage's stride and its shortcut projection.
/// - mid: middle channels kept per block, a channel count: the bottleneck's 1x1 reduce outputs, its
///   3x3 inputs and outputs and its 1x1 expand inputs (basic blocks: the first 3x3's outputs and the
///   second's inputs). 1 value (every block), one per stage, or one per block of the model in stage
///   order (entries of blocks that do not run are ignored).
/// - expand: the same as fractions of each block's pretrained middle width, 0 < e <= 1 (1 = full;
///   OFA's expand ratio 0.25 of the output width is expand=1 here, 0.2 is expand=0.8). The count kept
///   is round(e * middle), at least 1. Give `mid` or `expand`, not both.
/// - width: output channels kept per stage (a channel count per stage). The residual additions tie
///   every block of a stage to one width: each block's last conv and the stage's shortcut projection
///   compute the first `width` channels, and the next stage's first block (its first conv and its
///   shortcut) and the classifier read only those.
/// - precision: the arithmetic of the stages' 1x1 convs (the bottleneck's reduce and expand convs, the
///   shortcut projections): `precision=int8`, `precision=bf16` or `precision=encoder:int8`, on every
///   channel prefix (the packed panels of each precision serve every width). int8 quantizes each
///   conv's input with its own range. The stem, the 3x3 convs (Winograd in fp32: 4x fewer
///   multiplications than the direct form, about what int8's rate would give) and the classifier stay
///   fp32 (docs/precision.md).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../io/resnet_config.hpp"
#include "knobs.hpp"

namespace drt {

/// A ResNet execution path. Empty fields mean "as the full model".
struct resnet_path {
  using config_type = resnet_config;

  std::vector<int> depths;     ///< blocks run per stage (prefix), empty = all
  std::vector<int> mid;        ///< middle channels kept: 1, one per stage or one per block
  std::vector<double> expand;  ///< middle channels kept as fractions: 1, one per stage or one per block
  std::vector<int> width;      ///< output channels kept per stage
  precision_plan precision;    ///< the 1x1 convs' arithmetic (fp32 by default)

  static constexpr const char* keys = "depths, mid, expand, width, precision";

  /// The knob table: the one description the text / JSON forms, validation and sweeps read.
  static const path_family<resnet_path, resnet_config>& family() {
    using C = resnet_config;
    static const path_family<resnet_path, C> f{
        "resnet",
        {
            {"depths", &resnet_path::depths, knob_layout::per_stage,
             [](const C& c, std::size_t s, std::size_t) { return knob_range{1, double(c.depths[s]), 1}; },
             "per stage, run the first d blocks; the others are the identity", "", "depth",
             " (the first block sets the stage's resolution and width)"},
            {"mid", &resnet_path::mid, knob_layout::per_block,
             [](const C& c, std::size_t s, std::size_t) { return knob_range{1, double(c.mid_channels(s)), 1}; },
             "middle channels kept per block: the reduce conv's outputs, the 3x3's inputs and outputs, the "
             "expand conv's inputs", "", nullptr, "", "expand", "set the middle channels (give one)"},
            {"expand", &resnet_path::expand, knob_layout::per_block,
             [](const C& c, std::size_t s, std::size_t) {
               return knob_range{0, 1, 1.0 / double(std::max<std::size_t>(1, c.mid_channels(s)))};
             },
             "middle channels kept as a fraction of the block's (round(e * middle), at least 1)"},
            {"width", &resnet_path::width, knob_layout::per_stage,
             [](const C& c, std::size_t s, std::size_t) { return knob_range{1, double(c.hidden_sizes[s]), 1}; },
             "output channels kept per stage (every block's last conv and the shortcut projection)",
             "the next stage's first block and the classifier read only those"},
            {"precision", &resnet_path::precision, knob_layout::scalar, nullptr,
             "arithmetic of the stages' 1x1 convs (reduce, expand, shortcut projections): fp32, bf16 or int8 "
             "(region: encoder; the stem, the 3x3 convs and the classifier stay fp32)",
             "", nullptr, "", nullptr, "", nullptr, "encoder"},
        },
        [](const C& c) { return c.depths; }};
    return f;
  }

  /// Parses the text form; throws drt::invalid_input naming the text and the bad token.
  static resnet_path parse(const std::string& text) { return parse_path<resnet_path>(text); }
  /// Canonical text form (only the fields that are set; "full" when none).
  std::string to_string() const { return path_to_string(*this); }
  /// {"depths": [..], "mid": [..], "expand": [..], "width": [..]} with the fields that are set.
  nlohmann::json to_json() const { return path_to_json(*this); }
  /// Reads the JSON form (`to_json`); throws drt::invalid_input naming the key and its value.
  static resnet_path from_json(const nlohmann::json& j) { return path_from_json<resnet_path>(j); }
  /// Throws naming the path and the rule it breaks for this model.
  void validate(const resnet_config& c) const { validate_path(*this, c); }

  bool block_runs(std::size_t s, std::size_t b) const noexcept { return detail::block_kept(depths, {}, s, b); }

  /// Middle channels kept by block b of stage s (global block index g in stage order) of a model with
  /// config c; the path must be valid for c.
  std::size_t mid_kept(const resnet_config& c, std::size_t s, std::size_t g) const {
    const std::size_t full = c.mid_channels(s);
    if (!mid.empty()) return static_cast<std::size_t>(mid[pick(mid.size(), c.num_stages(), s, g)]);
    return detail::fraction_kept(expand, c.num_stages(), s, g, full);
  }

  /// Output channels kept by stage s.
  std::size_t width_kept(const resnet_config& c, std::size_t s) const {
    return width.empty() ? static_cast<std::size_t>(c.hidden_sizes[s]) : static_cast<std::size_t>(width[s]);
  }

private:
  /// Index into a list of 1, per-stage or per-block values.
  static std::size_t pick(std::size_t size, std::size_t stages, std::size_t s, std::size_t g) noexcept {
    return detail::per_block_index(size, stages, s, g);
  }
};

}  // namespace drt
