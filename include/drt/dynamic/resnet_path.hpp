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

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <iomanip>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../io/resnet_config.hpp"
#include "path.hpp"

namespace drt {

namespace detail {
inline double parse_path_fraction(const std::string& text, const std::string& key, const std::string& v) {
  bool ok = !v.empty() && v.size() <= 12 && v.front() != '.' && v.back() != '.';
  int dots = 0;
  for (char ch : v) {
    if (ch == '.')
      ++dots;
    else if (!std::isdigit(static_cast<unsigned char>(ch)))
      ok = false;
  }
  if (!ok || dots > 1)
    throw invalid_input(path_where(text) + ": " + path_shown(key) + "=" + path_shown(v) + " is not a number");
  return std::strtod(v.c_str(), nullptr);
}

inline std::string fraction_string(double v) {
  std::ostringstream o;
  o << v;  // shortest of %g with 6 significant digits: 0.5, 1, 0.375
  const std::string g = o.str();
  if (g.find('e') == std::string::npos || !std::isfinite(v)) return g;
  // %g chose an exponent (below 1e-4, or 1e6 and up): the same digits as a plain decimal, the only
  // form `parse` reads back (lookup tables store paths as text).
  std::ostringstream f;
  const double a = std::fabs(v);
  const int precision = a >= 1 ? 0 : 5 - static_cast<int>(std::floor(std::log10(a)));
  f << std::fixed << std::setprecision(precision) << v;
  std::string s = f.str();
  if (s.find('.') != std::string::npos) {
    s.erase(s.find_last_not_of('0') + 1);
    if (s.back() == '.') s.pop_back();
  }
  return s;
}
}  // namespace detail

/// A ResNet execution path. Empty fields mean "as the full model".
struct resnet_path {
  std::vector<int> depths;     ///< blocks run per stage (prefix), empty = all
  std::vector<int> mid;        ///< middle channels kept: 1, one per stage or one per block
  std::vector<double> expand;  ///< middle channels kept as fractions: 1, one per stage or one per block
  std::vector<int> width;      ///< output channels kept per stage

  static constexpr const char* keys = "depths, mid, expand, width";

  /// Parses the text form; throws drt::invalid_input naming the text and the bad token.
  static resnet_path parse(const std::string& text) {
    resnet_path p;
    std::set<std::string> seen;
    for (const auto& [k, v] : detail::split_path_text(text)) {
      if (!seen.insert(k).second)
        throw invalid_input(detail::path_where(text) + ": key '" + detail::path_shown(k) + "' given twice");
      if (k == "depths")
        p.depths = detail::parse_path_list(text, k, v);
      else if (k == "mid")
        p.mid = detail::parse_path_list(text, k, v);
      else if (k == "width")
        p.width = detail::parse_path_list(text, k, v);
      else if (k == "expand") {
        std::size_t start = 0;
        while (start <= v.size()) {
          const auto comma = v.find(',', start);
          p.expand.push_back(detail::parse_path_fraction(
              text, k, v.substr(start, comma == std::string::npos ? std::string::npos : comma - start)));
          if (comma == std::string::npos) break;
          start = comma + 1;
        }
      } else {
        throw invalid_input(detail::path_where(text) + ": key '" + detail::path_shown(k) +
                            "' does not apply to resnet (keys: " + keys + ")");
      }
    }
    return p;
  }

  /// Canonical text form (only the fields that are set; "full" when none).
  std::string to_string() const {
    std::string s;
    auto add = [&](const std::string& part) { s += (s.empty() ? "" : " ") + part; };
    if (!depths.empty()) add("depths=" + detail::join_ints(depths));
    if (!mid.empty()) add("mid=" + detail::join_ints(mid));
    if (!expand.empty()) {
      std::string v;
      for (std::size_t i = 0; i < expand.size(); ++i) v += (i ? "," : "") + detail::fraction_string(expand[i]);
      add("expand=" + v);
    }
    if (!width.empty()) add("width=" + detail::join_ints(width));
    return s.empty() ? "full" : s;
  }

  /// {"depths": [..], "mid": [..], "expand": [..], "width": [..]} with the fields that are set.
  nlohmann::json to_json() const {
    nlohmann::json j = nlohmann::json::object();
    if (!depths.empty()) j["depths"] = depths;
    if (!mid.empty()) j["mid"] = mid;
    if (!expand.empty()) j["expand"] = expand;
    if (!width.empty()) j["width"] = width;
    return j;
  }

  /// Reads the JSON form (`to_json`); throws drt::invalid_input naming the key and its value.
  static resnet_path from_json(const nlohmann::json& j) {
    if (!j.is_object()) throw invalid_input("path JSON " + detail::path_json_shown(j) + " is not an object");
    resnet_path p;
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string& k = it.key();
      const detail::path_json_reader r{k, *it};
      if (k == "depths")
        p.depths = r.integers();
      else if (k == "mid")
        p.mid = r.integers();
      else if (k == "expand")
        p.expand = r.numbers();
      else if (k == "width")
        p.width = r.integers();
      else
        throw invalid_input(detail::path_json_where(k) + " does not apply to resnet (keys: " + keys + ")");
    }
    return p;
  }

  /// Throws naming the path and the rule it breaks for this model.
  void validate(const resnet_config& c) const {
    const std::string where = "path '" + to_string() + "'";
    const std::size_t stages = c.num_stages(), blocks = c.num_blocks();
    if (!depths.empty()) {
      if (depths.size() != stages)
        throw invalid_input(where + ": depths has " + std::to_string(depths.size()) + " entries, the model has " +
                            std::to_string(stages) + " stages");
      for (std::size_t s = 0; s < stages; ++s) {
        if (depths[s] < 1)
          throw invalid_input(where + ": stage " + std::to_string(s) + " depth " + std::to_string(depths[s]) +
                              " must be at least 1 (the first block sets the stage's resolution and width)");
        if (depths[s] > c.depths[s])
          throw invalid_input(where + ": stage " + std::to_string(s) + " depth " + std::to_string(depths[s]) +
                              " exceeds the model's " + std::to_string(c.depths[s]));
      }
    }
    if (!mid.empty() && !expand.empty())
      throw invalid_input(where + ": mid and expand both set the middle channels (give one)");
    auto check_count = [&](const char* key, std::size_t n) {
      if (n != 0 && n != 1 && n != stages && n != blocks)
        throw invalid_input(where + ": " + key + " has " + std::to_string(n) + " entries, expected 1 (every block), " +
                            std::to_string(stages) + " (one per stage) or " + std::to_string(blocks) +
                            " (one per block)");
    };
    check_count("mid", mid.size());
    check_count("expand", expand.size());
    std::size_t g = 0;
    for (std::size_t s = 0; s < stages; ++s)
      for (int b = 0; b < c.depths[s]; ++b, ++g) {
        const std::string blk = "block " + std::to_string(s) + "." + std::to_string(b);
        const std::size_t full = c.mid_channels(s);
        if (!mid.empty()) {
          const int v = mid[pick(mid.size(), stages, s, g)];
          if (v < 1 || static_cast<std::size_t>(v) > full)
            throw invalid_input(where + ": " + blk + " mid=" + std::to_string(v) + " must be between 1 and " +
                                std::to_string(full));
        }
        if (!expand.empty()) {
          const double e = expand[pick(expand.size(), stages, s, g)];
          if (!(e > 0.0 && e <= 1.0))
            throw invalid_input(where + ": " + blk + " expand=" + detail::fraction_string(e) +
                                " must be a fraction in (0, 1]");
        }
      }
    if (!width.empty()) {
      if (width.size() != stages)
        throw invalid_input(where + ": width has " + std::to_string(width.size()) + " entries, the model has " +
                            std::to_string(stages) + " stages");
      for (std::size_t s = 0; s < stages; ++s)
        if (width[s] < 1 || width[s] > c.hidden_sizes[s])
          throw invalid_input(where + ": stage " + std::to_string(s) + " width=" + std::to_string(width[s]) +
                              " must be between 1 and " + std::to_string(c.hidden_sizes[s]));
    }
  }

  bool block_runs(std::size_t s, std::size_t b) const noexcept {
    return depths.empty() || s >= depths.size() || static_cast<int>(b) < depths[s];
  }

  /// Middle channels kept by block b of stage s (global block index g in stage order) of a model with
  /// config c; the path must be valid for c.
  std::size_t mid_kept(const resnet_config& c, std::size_t s, std::size_t g) const {
    const std::size_t full = c.mid_channels(s);
    if (!mid.empty()) return static_cast<std::size_t>(mid[pick(mid.size(), c.num_stages(), s, g)]);
    if (!expand.empty()) {
      const double e = expand[pick(expand.size(), c.num_stages(), s, g)];
      return std::max<std::size_t>(1, static_cast<std::size_t>(std::lround(e * static_cast<double>(full))));
    }
    return full;
  }

  /// Output channels kept by stage s.
  std::size_t width_kept(const resnet_config& c, std::size_t s) const {
    return width.empty() ? static_cast<std::size_t>(c.hidden_sizes[s]) : static_cast<std::size_t>(width[s]);
  }

private:
  /// Index into a list of 1, per-stage or per-block values.
  static std::size_t pick(std::size_t size, std::size_t stages, std::size_t s, std::size_t g) noexcept {
    return size == 1 ? 0 : size == stages ? s : g;
  }
};

}  // namespace drt
