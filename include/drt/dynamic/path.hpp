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

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdint>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../io/model_config.hpp"
#include "channel_selection.hpp"

namespace drt {

namespace detail {
/// Text from a path as it appears in messages: printable ASCII as is, every other byte as \xHH
/// (a NUL or a terminal escape in a hostile path must not cut or garble the message).
inline std::string path_shown(const std::string& s) {
  static const char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size());
  for (const unsigned char ch : s) {
    if (ch >= 0x20 && ch < 0x7f) {
      out += static_cast<char>(ch);
    } else {
      out += "\\x";
      out += hex[ch >> 4];
      out += hex[ch & 15];
    }
  }
  return out;
}

/// "path 'text'", the start of every message about a path's text form.
inline std::string path_where(const std::string& text) { return "path '" + path_shown(text) + "'"; }

/// Splits "k=v k=v" into pairs; throws on anything else.
inline std::vector<std::pair<std::string, std::string>> split_path_text(const std::string& text) {
  std::vector<std::pair<std::string, std::string>> out;
  std::istringstream in(text);
  std::string tok;
  while (in >> tok) {
    const auto eq = tok.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == tok.size())
      throw invalid_input(path_where(text) + ": cannot parse '" + path_shown(tok) + "' (expected key=value)");
    out.emplace_back(tok.substr(0, eq), tok.substr(eq + 1));
  }
  return out;
}

inline int parse_path_int(const std::string& text, const std::string& key, const std::string& v) {
  if (v.empty() || !std::all_of(v.begin(), v.end(), [](unsigned char ch) { return std::isdigit(ch); }) || v.size() > 9)
    throw invalid_input(path_where(text) + ": " + path_shown(key) + "=" + path_shown(v) +
                        " is not a non-negative integer");
  return std::stoi(v);
}

inline std::vector<int> parse_path_list(const std::string& text, const std::string& key, const std::string& v) {
  std::vector<int> out;
  std::size_t start = 0;
  while (start <= v.size()) {
    const auto comma = v.find(',', start);
    out.push_back(parse_path_int(text, key, v.substr(start, comma == std::string::npos ? std::string::npos : comma - start)));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

/// "0.1,2.0" -> {(0, 1), (2, 0)}; throws naming the text and the bad entry.
inline std::vector<std::pair<int, int>> parse_skip_pairs(const std::string& text, const std::string& v) {
  std::vector<std::pair<int, int>> out;
  std::size_t start = 0;
  while (start <= v.size()) {
    const auto comma = v.find(',', start);
    const std::string pair = v.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    const auto dot = pair.find('.');
    if (dot == std::string::npos)
      throw invalid_input(path_where(text) + ": skip entry '" + path_shown(pair) + "' must be stage.block (e.g. 0.1)");
    out.emplace_back(parse_path_int(text, "skip stage", pair.substr(0, dot)),
                     parse_path_int(text, "skip block", pair.substr(dot + 1)));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

inline std::string join_ints(const std::vector<int>& v) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

inline std::string skip_pairs_string(const std::vector<std::pair<int, int>>& skip) {
  std::string v;
  for (std::size_t i = 0; i < skip.size(); ++i)
    v += (i ? "," : "") + std::to_string(skip[i].first) + "." + std::to_string(skip[i].second);
  return v;
}

/// A JSON value as messages show it: compact, cut after 60 characters.
inline std::string path_json_shown(const nlohmann::json& v) {
  std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

/// Every from_json error: "path JSON: key 'k' " + rest.
inline std::string path_json_where(const std::string& key) { return "path JSON: key '" + path_shown(key) + "'"; }

/// Reading a path's JSON form strictly: integers must be JSON integers that fit an int (no silent
/// truncation of 2.5 or wrapping of 2^40 + 1), lists must be arrays, skip entries [stage, block].
/// Ranges that depend on the model are left to `validate`, as for the text form.
struct path_json_reader {
  const std::string& key;
  const nlohmann::json& whole;  ///< the key's whole value, shown when it is malformed

  [[noreturn]] void malformed() const {
    throw invalid_input(path_json_where(key) + " has a malformed value " + path_json_shown(whole));
  }
  int integer(const nlohmann::json& v) const {
    if (!v.is_number_integer()) malformed();
    const bool fits = v.is_number_unsigned() ? v.get<std::uint64_t>() <= std::uint64_t{INT_MAX}
                                             : v.get<std::int64_t>() >= INT_MIN && v.get<std::int64_t>() <= INT_MAX;
    if (!fits)
      throw invalid_input(path_json_where(key) + " has value " + path_json_shown(v) +
                          ", outside the int range [-2147483648, 2147483647]");
    return static_cast<int>(v.get<std::int64_t>());
  }
  std::vector<int> integers() const {
    if (!whole.is_array()) malformed();
    std::vector<int> out;
    for (const auto& v : whole) out.push_back(integer(v));
    return out;
  }
  std::vector<double> numbers() const {
    if (!whole.is_array()) malformed();
    std::vector<double> out;
    for (const auto& v : whole) {
      if (!v.is_number()) malformed();
      out.push_back(v.get<double>());
    }
    return out;
  }
  std::vector<std::pair<int, int>> skip_pairs() const {
    if (!whole.is_array()) malformed();
    std::vector<std::pair<int, int>> out;
    for (const auto& e : whole) {
      if (!e.is_array() || e.size() != 2) malformed();
      out.emplace_back(integer(e[0]), integer(e[1]));
    }
    return out;
  }
  bool boolean() const {
    if (!whole.is_boolean()) malformed();
    return whole.get<bool>();
  }
};
}  // namespace detail

/// A SegFormer execution path. Zero / empty fields mean "as the full model".
struct segformer_path {
  std::vector<int> depths;                  ///< blocks kept per stage (prefix), empty = all
  std::vector<std::pair<int, int>> skip;    ///< explicitly skipped (stage, block), zero-based
  int fuse_in = 0;                          ///< Conv2DFuse input channels kept
  int pred_in = 0;                          ///< Conv2DPred input channels kept
  int linear0_in = 0;                       ///< DecodeLinear0 input channels kept
  bool propagate = true;                    ///< propagate dropped fuse inputs back to the linears

  static constexpr const char* keys = "depths, skip, fuse_in, pred_in, linear0_in, propagate";

  /// Parses the text form; throws drt::invalid_input naming the text and the bad token.
  static segformer_path parse(const std::string& text) {
    segformer_path p;
    std::set<std::string> seen;
    for (const auto& [k, v] : detail::split_path_text(text)) {
      if (!seen.insert(k).second)
        throw invalid_input(detail::path_where(text) + ": key '" + detail::path_shown(k) + "' given twice");
      if (k == "depths") p.depths = detail::parse_path_list(text, k, v);
      else if (k == "fuse_in" || k == "pred_in" || k == "linear0_in") {
        const int n = detail::parse_path_int(text, k, v);
        if (n == 0) throw invalid_input(detail::path_where(text) + ": " + k + "=0 keeps no channels");
        (k == "fuse_in" ? p.fuse_in : k == "pred_in" ? p.pred_in : p.linear0_in) = n;
      } else if (k == "propagate") {
        if (v != "0" && v != "1")
          throw invalid_input(detail::path_where(text) + ": propagate=" + detail::path_shown(v) + " must be 0 or 1");
        p.propagate = v == "1";
      } else if (k == "skip") {
        p.skip = detail::parse_skip_pairs(text, v);
      } else {
        throw invalid_input(detail::path_where(text) + ": key '" + detail::path_shown(k) +
                            "' does not apply to segformer (keys: " + keys + ")");
      }
    }
    return p;
  }

  /// Canonical text form (only the fields that differ from the full model).
  std::string to_string() const {
    std::string s;
    auto add = [&](const std::string& part) { s += (s.empty() ? "" : " ") + part; };
    if (!depths.empty()) add("depths=" + detail::join_ints(depths));
    if (!skip.empty()) add("skip=" + detail::skip_pairs_string(skip));
    if (fuse_in) add("fuse_in=" + std::to_string(fuse_in));
    if (pred_in) add("pred_in=" + std::to_string(pred_in));
    if (linear0_in) add("linear0_in=" + std::to_string(linear0_in));
    if (!propagate) add("propagate=0");
    return s.empty() ? "full" : s;
  }

  nlohmann::json to_json() const {
    nlohmann::json j = nlohmann::json::object();
    if (!depths.empty()) j["depths"] = depths;
    if (!skip.empty()) {
      j["skip"] = nlohmann::json::array();
      for (const auto& [s, b] : skip) j["skip"].push_back({s, b});
    }
    if (fuse_in) j["fuse_in"] = fuse_in;
    if (pred_in) j["pred_in"] = pred_in;
    if (linear0_in) j["linear0_in"] = linear0_in;
    if (!propagate) j["propagate"] = false;
    return j;
  }

  /// Reads the JSON form (`to_json`); throws drt::invalid_input naming the key and its value.
  static segformer_path from_json(const nlohmann::json& j) {
    if (!j.is_object()) throw invalid_input("path JSON " + detail::path_json_shown(j) + " is not an object");
    segformer_path p;
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string& k = it.key();
      const detail::path_json_reader r{k, *it};
      if (k == "depths") p.depths = r.integers();
      else if (k == "skip") p.skip = r.skip_pairs();
      else if (k == "fuse_in") p.fuse_in = r.integer(*it);
      else if (k == "pred_in") p.pred_in = r.integer(*it);
      else if (k == "linear0_in") p.linear0_in = r.integer(*it);
      else if (k == "propagate") p.propagate = r.boolean();
      else throw invalid_input(detail::path_json_where(k) + " does not apply to segformer (keys: " + keys + ")");
    }
    return p;
  }

  /// Throws naming the path and the rule it breaks for this model.
  void validate(const segformer_config& c) const {
    const std::string where = "path '" + to_string() + "'";
    const std::size_t stages = c.depths.size();
    if (!depths.empty()) {
      if (depths.size() != stages)
        throw invalid_input(where + ": depths has " + std::to_string(depths.size()) + " entries, the model has " +
                            std::to_string(stages) + " stages");
      for (std::size_t s = 0; s < stages; ++s)
        if (depths[s] > c.depths[s])
          throw invalid_input(where + ": stage " + std::to_string(s) + " depth " + std::to_string(depths[s]) +
                              " exceeds the model's " + std::to_string(c.depths[s]));
    }
    for (const auto& [s, b] : skip)
      if (s < 0 || static_cast<std::size_t>(s) >= stages || b < 0 || b >= c.depths[static_cast<std::size_t>(s)])
        throw invalid_input(where + ": skipped block " + std::to_string(s) + "." + std::to_string(b) +
                            " does not exist (depths " + detail::join_ints(c.depths) + ")");
    const int d = c.decoder_hidden_size, full = d * static_cast<int>(stages);
    auto check = [&](const char* key, int v, int max) {
      if (v != 0 && (v < 1 || v > max))
        throw invalid_input(where + ": " + key + "=" + std::to_string(v) + " must be between 1 and " + std::to_string(max));
    };
    check("fuse_in", fuse_in, full);
    check("pred_in", pred_in, d);
    check("linear0_in", linear0_in, c.hidden_sizes.empty() ? 0 : c.hidden_sizes[0]);
  }

  bool block_runs(std::size_t s, std::size_t b) const noexcept {
    if (!depths.empty() && s < depths.size() && static_cast<int>(b) >= depths[s]) return false;
    for (const auto& [ss, bb] : skip)
      if (static_cast<std::size_t>(ss) == s && static_cast<std::size_t>(bb) == b) return false;
    return true;
  }
};

}  // namespace drt
