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
/// The lateral convs and the pyramid pooling always run: level 0 is always kept, and it sums every
/// coarser level through the top-down path. Backbone stages past the last feature level do not run.

#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../io/upernet_config.hpp"
#include "path.hpp"

namespace drt {

/// An UPerNet + Swin execution path. Zero / empty fields mean "as the full model".
struct upernet_path {
  std::vector<int> depths;                ///< Swin blocks kept per stage (prefix), empty = all
  std::vector<std::pair<int, int>> skip;  ///< explicitly skipped (stage, block), zero-based
  int bottleneck_in = 0;                  ///< fpn_bottleneck input channels kept (prefix of the concat)
  int fpn_out = 0;                        ///< channels kept of every level's slice (fpn_convs outputs)
  int fpn_in = 0;                         ///< fpn_convs input channels kept (= lateral outputs computed)
  int pred_in = 0;                        ///< classifier inputs kept (= fpn_bottleneck outputs computed)

  static constexpr const char* keys = "depths, skip, bottleneck_in, fpn_out, fpn_in, pred_in";

  /// Parses the text form; throws drt::invalid_input naming the text and the bad token.
  static upernet_path parse(const std::string& text) {
    upernet_path p;
    std::set<std::string> seen;
    for (const auto& [k, v] : detail::split_path_text(text)) {
      if (!seen.insert(k).second)
        throw invalid_input(detail::path_where(text) + ": key '" + detail::path_shown(k) + "' given twice");
      if (k == "depths") {
        p.depths = detail::parse_path_list(text, k, v);
      } else if (k == "skip") {
        p.skip = detail::parse_skip_pairs(text, v);
      } else if (k == "bottleneck_in" || k == "fpn_out" || k == "fpn_in" || k == "pred_in") {
        const int n = detail::parse_path_int(text, k, v);
        if (n == 0) throw invalid_input(detail::path_where(text) + ": " + k + "=0 keeps no channels");
        (k == "bottleneck_in" ? p.bottleneck_in
         : k == "fpn_out"     ? p.fpn_out
         : k == "fpn_in"      ? p.fpn_in
                              : p.pred_in) = n;
      } else {
        throw invalid_input(detail::path_where(text) + ": key '" + detail::path_shown(k) +
                            "' does not apply to upernet (keys: " + keys + ")");
      }
    }
    return p;
  }

  /// Canonical text form (only the fields that differ from the full model; "full" when none).
  std::string to_string() const {
    std::string s;
    auto add = [&](const std::string& part) { s += (s.empty() ? "" : " ") + part; };
    if (!depths.empty()) add("depths=" + detail::join_ints(depths));
    if (!skip.empty()) add("skip=" + detail::skip_pairs_string(skip));
    if (bottleneck_in) add("bottleneck_in=" + std::to_string(bottleneck_in));
    if (fpn_out) add("fpn_out=" + std::to_string(fpn_out));
    if (fpn_in) add("fpn_in=" + std::to_string(fpn_in));
    if (pred_in) add("pred_in=" + std::to_string(pred_in));
    return s.empty() ? "full" : s;
  }

  /// {"depths": [..], "skip": [[s, b], ..], "bottleneck_in": n, ...} with the fields that are set.
  nlohmann::json to_json() const {
    nlohmann::json j = nlohmann::json::object();
    if (!depths.empty()) j["depths"] = depths;
    if (!skip.empty()) {
      j["skip"] = nlohmann::json::array();
      for (const auto& [s, b] : skip) j["skip"].push_back({s, b});
    }
    if (bottleneck_in) j["bottleneck_in"] = bottleneck_in;
    if (fpn_out) j["fpn_out"] = fpn_out;
    if (fpn_in) j["fpn_in"] = fpn_in;
    if (pred_in) j["pred_in"] = pred_in;
    return j;
  }

  /// Reads the JSON form (`to_json`); throws drt::invalid_input naming the key and its value.
  static upernet_path from_json(const nlohmann::json& j) {
    if (!j.is_object()) throw invalid_input("path JSON " + detail::path_json_shown(j) + " is not an object");
    upernet_path p;
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string& k = it.key();
      const detail::path_json_reader r{k, *it};
      if (k == "depths")
        p.depths = r.integers();
      else if (k == "skip")
        p.skip = r.skip_pairs();
      else if (k == "bottleneck_in")
        p.bottleneck_in = r.integer(*it);
      else if (k == "fpn_out")
        p.fpn_out = r.integer(*it);
      else if (k == "fpn_in")
        p.fpn_in = r.integer(*it);
      else if (k == "pred_in")
        p.pred_in = r.integer(*it);
      else
        throw invalid_input(detail::path_json_where(k) + " does not apply to upernet (keys: " + keys + ")");
    }
    return p;
  }

  /// Throws naming the path and the rule it breaks for this model.
  void validate(const upernet_config& c) const {
    const std::string where = "path '" + to_string() + "'";
    const auto& model_depths = c.backbone.depths;
    const std::size_t stages = model_depths.size();
    if (!depths.empty()) {
      if (depths.size() != stages)
        throw invalid_input(where + ": depths has " + std::to_string(depths.size()) + " entries, the model has " +
                            std::to_string(stages) + " stages");
      for (std::size_t s = 0; s < stages; ++s)
        if (depths[s] < 0 || depths[s] > model_depths[s])
          throw invalid_input(
              where + ": stage " + std::to_string(s) + " depth " + std::to_string(depths[s]) +
              (depths[s] < 0 ? " is negative" : " exceeds the model's " + std::to_string(model_depths[s])));
    }
    for (const auto& [s, b] : skip)
      if (s < 0 || static_cast<std::size_t>(s) >= stages || b < 0 || b >= model_depths[static_cast<std::size_t>(s)])
        throw invalid_input(where + ": skipped block " + std::to_string(s) + "." + std::to_string(b) +
                            " does not exist (depths " + detail::join_ints(model_depths) + ")");
    const int d = c.hidden_size, levels = static_cast<int>(c.backbone.out_indices.size());
    auto check = [&](const char* key, int v, int max) {
      if (v != 0 && (v < 1 || v > max))
        throw invalid_input(where + ": " + key + "=" + std::to_string(v) + " must be between 1 and " +
                            std::to_string(max));
    };
    check("bottleneck_in", bottleneck_in, d * levels);
    check("fpn_out", fpn_out, d);
    check("fpn_in", fpn_in, d);
    check("pred_in", pred_in, d);
    if (fpn_in && levels < 2)
      throw invalid_input(where + ": fpn_in does not apply: the model has one feature level and no fpn convs");
  }

  bool block_runs(std::size_t s, std::size_t b) const noexcept {
    if (!depths.empty() && s < depths.size() && static_cast<int>(b) >= depths[s]) return false;
    for (const auto& [ss, bb] : skip)
      if (static_cast<std::size_t>(ss) == s && static_cast<std::size_t>(bb) == b) return false;
    return true;
  }
};

}  // namespace drt
