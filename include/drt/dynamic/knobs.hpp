#pragma once
/// @file knobs.hpp
/// The one path language of every model family: a family declares a *knob table* (for each knob:
/// its key, its value kind, the struct member it lives in, its valid range for a model config, its
/// granularity and a one-line doc), and the generic functions here read and write every family's
/// text form, JSON form and validation from that table. `segformer_path`, `upernet_path` and
/// `resnet_path` are thin value types over it; a sweep enumerates a family's knobs with
/// `path_knobs<Path>(config)`.
///
/// Text form: space-separated `key=value` tokens, keys in any order, each at most once; a key left
/// out means "as the full model"; the empty text and "full" (how it prints) are the full model.
/// Values by kind:
/// - integer (a channel count): `fuse_in=1024`; 0 is refused in text ("keeps no channels"): the
///   full model is spelled by leaving the key out
/// - int list: `depths=2,3,5,3`
/// - skip pairs: `skip=0.1,2.0` (stage.block, zero-based)
/// - fractions: `expand=0.5,0.25` (plain decimals, no exponent)
/// - bool: `propagate=0` or `propagate=1`
/// JSON form: an object with the keys that differ from the full model: integers, arrays of
/// integers, [[stage, block], ...], arrays of numbers, booleans. Integers must fit an int.
///
/// Every channel knob keeps a *prefix* of a channel order (the checkpoint's, or one a model was
/// packed in once at load), so no path ever copies weights.

#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <iomanip>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../core/precision.hpp"

namespace drt {

/// What a knob's value is.
enum class knob_kind {
  integer,     ///< one int; 0 (the default) = the full model
  int_list,    ///< a list of ints
  skip_pairs,  ///< a list of (stage, block) pairs
  fractions,   ///< a list of numbers
  boolean,     ///< true / false
  precision,   ///< a precision_plan: `int8` or `encoder:int8,decoder:bf16`
};

/// How a knob's entries map onto the model.
enum class knob_layout {
  scalar,     ///< one value for the whole model
  per_stage,  ///< exactly one entry per stage
  per_block,  ///< 1 entry (every block), one per stage or one per block in stage order
  pairs,      ///< (stage, block) pairs naming blocks of the model
};

inline const char* to_string(knob_kind k) noexcept {
  switch (k) {
    case knob_kind::integer: return "integer";
    case knob_kind::int_list: return "int_list";
    case knob_kind::skip_pairs: return "skip_pairs";
    case knob_kind::fractions: return "fractions";
    case knob_kind::boolean: return "boolean";
    case knob_kind::precision: return "precision";
  }
  return "?";
}

inline const char* to_string(knob_layout l) noexcept {
  switch (l) {
    case knob_layout::scalar: return "scalar";
    case knob_layout::per_stage: return "per_stage";
    case knob_layout::per_block: return "per_block";
    case knob_layout::pairs: return "pairs";
  }
  return "?";
}

/// Valid values of one entry of a knob: [min, max] (fractions: (min, max]), in steps of `step`
/// (0: continuous).
struct knob_range {
  double min = 0, max = 0, step = 1;
};

/// One entry of a knob as `path_knobs` lists it: where it applies and its range.
struct knob_entry {
  int stage = -1;  ///< -1 for a scalar knob
  int block = -1;  ///< the block within the stage (per_block layout), else -1
  knob_range range;
};

/// A knob of a family for one model config: what a generic sweep enumerates.
struct knob_info {
  std::string name;  ///< the key in the text and JSON forms
  knob_kind kind = knob_kind::integer;
  knob_layout layout = knob_layout::scalar;
  double min = 0, max = 0, step = 1;  ///< bounds over all entries (the scalar's own range); step 0 = continuous
  bool min_exclusive = false;         ///< fractions: (min, max]
  std::vector<knob_entry> entries;    ///< per entry: scalar 1, per_stage / pairs one per stage (pairs: block index
                                      ///< range), per_block one per block of the model
  std::string prunes;                 ///< what the knob removes
  std::string propagates;             ///< what it removes backwards (empty: nothing)
  std::string doc() const { return propagates.empty() ? prunes : prunes + "; " + propagates; }
};

/// One row of a family's knob table. `Path` is the path struct, `Config` the model config.
template <class Path, class Config>
struct path_knob {
  using member = std::variant<int Path::*, std::vector<int> Path::*, std::vector<std::pair<int, int>> Path::*,
                              std::vector<double> Path::*, bool Path::*, precision_plan Path::*>;
  const char* name;
  member field;  ///< where the value lives; its type gives the kind
  knob_layout layout;
  /// Valid range of the entry for stage s, block b (scalar knobs: s = b = 0). Unused for pairs.
  knob_range (*range)(const Config&, std::size_t s, std::size_t b);
  const char* prunes;
  const char* propagates = "";
  /// Depth-style range messages ("stage 1 depth 5 exceeds the model's 4"): the entry's noun; null
  /// for "stage 1 width=513 must be between 1 and 512".
  const char* noun = nullptr;
  const char* below_min_note = "";  ///< appended to a depth-style "must be at least" message
  /// Another knob this one may not be combined with, and the reason ("set the middle channels").
  const char* excludes = nullptr;
  const char* excludes_reason = "";
  /// Null when the knob applies to the model, else why not (a set value is then refused).
  const char* (*not_applicable)(const Config&) = nullptr;
  /// precision knobs: the model's region names, comma-separated ("encoder,decoder").
  const char* regions = nullptr;

  knob_kind kind() const noexcept { return static_cast<knob_kind>(field.index()); }
};

/// A family's path language: its name, its knobs in canonical order and its block structure.
template <class Path, class Config>
struct path_family {
  const char* name;  ///< in messages: "does not apply to segformer"
  std::vector<path_knob<Path, Config>> knobs;
  std::vector<int> (*stage_depths)(const Config&);  ///< blocks per stage of the model

  /// "depths, skip, ...": the keys in table order.
  std::string keys() const {
    std::string s;
    for (const auto& k : knobs) s += (s.empty() ? "" : ", ") + std::string(k.name);
    return s;
  }
};

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

/// "a,b,c" -> {"a", "b", "c"}; "" -> {""} (an empty entry is the parser's to refuse).
inline std::vector<std::string> split_commas(const std::string& v) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    const auto comma = v.find(',', start);
    out.push_back(v.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
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
  for (const auto& e : split_commas(v)) out.push_back(parse_path_int(text, key, e));
  return out;
}

/// "0.1,2.0" -> {(0, 1), (2, 0)}; throws naming the text and the bad entry.
inline std::vector<std::pair<int, int>> parse_skip_pairs(const std::string& text, const std::string& v,
                                                         const std::string& key = "skip") {
  std::vector<std::pair<int, int>> out;
  for (const auto& pair : split_commas(v)) {
    const auto dot = pair.find('.');
    if (dot == std::string::npos)
      throw invalid_input(path_where(text) + ": " + key + " entry '" + path_shown(pair) +
                          "' must be stage.block (e.g. 0.1)");
    out.emplace_back(parse_path_int(text, key + " stage", pair.substr(0, dot)),
                     parse_path_int(text, key + " block", pair.substr(dot + 1)));
  }
  return out;
}

/// A plain decimal ("0.5", "1", "0.0001234"): digits with at most one inner dot.
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

/// A fraction as the text form writes it: %g's shortest digits, never an exponent (the only form
/// `parse_path_fraction` reads back; lookup tables store paths as text).
inline std::string fraction_string(double v) {
  std::ostringstream o;
  o << v;  // shortest of %g with 6 significant digits: 0.5, 1, 0.375
  const std::string g = o.str();
  if (g.find('e') == std::string::npos || !std::isfinite(v)) return g;
  // %g chose an exponent (below 1e-4, or 1e6 and up): the same digits as a plain decimal.
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

inline std::string fractions_string(const std::vector<double>& v) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + fraction_string(v[i]);
  return s;
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
  std::string text() const {
    if (!whole.is_string()) malformed();
    return whole.get<std::string>();
  }
};

/// Whether block b of stage s runs under a prefix of `depths` (empty = all) and the `skip` pairs.
inline bool block_kept(const std::vector<int>& depths, const std::vector<std::pair<int, int>>& skip, std::size_t s,
                       std::size_t b) noexcept {
  if (!depths.empty() && s < depths.size() && static_cast<int>(b) >= depths[s]) return false;
  for (const auto& [ss, bb] : skip)
    if (static_cast<std::size_t>(ss) == s && static_cast<std::size_t>(bb) == b) return false;
  return true;
}

/// The number of blocks of each stage of a model's `stages` (a vector of per-stage block vectors).
template <class Stages>
std::vector<std::size_t> blocks_per_stage(const Stages& stages) {
  std::vector<std::size_t> n;
  for (const auto& blocks : stages) n.push_back(blocks.size());
  return n;
}

/// An execution's skip flags: skip[s][b] = 1 where block b of stage s does not run under `path`
/// (a family path with `block_runs(s, b)`), for stages of `blocks[s]` blocks.
template <class Path>
std::vector<std::vector<unsigned char>> block_skip_flags(const Path& path, const std::vector<std::size_t>& blocks) {
  std::vector<std::vector<unsigned char>> skip(blocks.size());
  for (std::size_t s = 0; s < blocks.size(); ++s) {
    skip[s].resize(blocks[s]);
    for (std::size_t b = 0; b < blocks[s]; ++b) skip[s][b] = path.block_runs(s, b) ? 0 : 1;
  }
  return skip;
}

/// Index into a per_block knob's list of 1, per-stage or per-block values for stage s, global block g.
inline std::size_t per_block_index(std::size_t size, std::size_t stages, std::size_t s, std::size_t g) noexcept {
  return size == 1 ? 0 : size == stages ? s : g;
}

/// Units kept of `full` by a per-block fraction knob (1 value, one per stage or one per block; empty =
/// all): round(e * full), at least 1, at most full. The block is block g (stage order) of stage s.
inline std::size_t fraction_kept(const std::vector<double>& fractions, std::size_t stages, std::size_t s,
                                 std::size_t g, std::size_t full) {
  if (fractions.empty()) return full;
  const double e = fractions[per_block_index(fractions.size(), stages, s, g)];
  return std::max<std::size_t>(1, std::min(full, static_cast<std::size_t>(std::lround(e * static_cast<double>(full)))));
}

/// A fraction knob whose every value is 1 keeps every unit: the full model's value, written as none
/// by the text and JSON forms (so "mlp=1" and "full" are one path with one name). The parsed value
/// keeps its entries, so that their count is still checked against the model.
inline bool all_ones(const std::vector<double>& v) {
  return !v.empty() && std::all_of(v.begin(), v.end(), [](double e) { return e == 1.0; });
}
template <class V>
bool at_full_value(const V& v, const V& full) {
  if constexpr (std::is_same_v<V, std::vector<double>>)
    return v == full || all_ones(v);
  else if constexpr (std::is_same_v<V, precision_plan>)
    return v.is_fp32();  // "precision=fp32" is the full model, as "mlp=1" is
  else
    return v == full;
}

/// The knob's value as text ("2,3,5,3"); empty when the knob is at the full model's value
/// (`as_given`: only when it is the default itself, so that errors show fraction lists of 1 too).
template <class Path, class Config>
std::string knob_text(const path_knob<Path, Config>& k, const Path& p, bool as_given = false) {
  static const Path full{};
  return std::visit(
      [&](auto m) -> std::string {
        if (as_given ? p.*m == full.*m : at_full_value(p.*m, full.*m)) return "";
        using V = std::decay_t<decltype(p.*m)>;
        if constexpr (std::is_same_v<V, int>)
          return std::to_string(p.*m);
        else if constexpr (std::is_same_v<V, bool>)
          return p.*m ? "1" : "0";
        else if constexpr (std::is_same_v<V, std::vector<int>>)
          return join_ints(p.*m);
        else if constexpr (std::is_same_v<V, std::vector<double>>)
          return fractions_string(p.*m);
        else if constexpr (std::is_same_v<V, precision_plan>)
          return (p.*m).to_string();
        else
          return skip_pairs_string(p.*m);
      },
      k.field);
}
}  // namespace detail

/// Parses a family's text form; throws drt::invalid_input naming the text and the bad token.
template <class Path>
Path parse_path(const std::string& text) {
  const auto& fam = Path::family();
  Path p;
  std::istringstream words(text);
  std::string first, second;
  if (words >> first && first == "full" && !(words >> second)) return p;  // to_string's name of no keys
  std::set<std::string> seen;
  for (const auto& kv : detail::split_path_text(text)) {
    const std::string& key = kv.first;  // named copies: lambdas below capture them (no structured bindings:
    const std::string& v = kv.second;   // C++17 lambdas may not capture those, and clang refuses)
    if (!seen.insert(key).second)
      throw invalid_input(detail::path_where(text) + ": key '" + detail::path_shown(key) + "' given twice");
    const auto it = std::find_if(fam.knobs.begin(), fam.knobs.end(), [&](const auto& k) { return key == k.name; });
    if (it == fam.knobs.end())
      throw invalid_input(detail::path_where(text) + ": key '" + detail::path_shown(key) + "' does not apply to " +
                          fam.name + " (keys: " + fam.keys() + ")");
    const std::string& k = key;
    std::visit(
        [&](auto m) {
          using V = std::decay_t<decltype(p.*m)>;
          if constexpr (std::is_same_v<V, int>) {
            const int n = detail::parse_path_int(text, k, v);
            if (n == 0) throw invalid_input(detail::path_where(text) + ": " + k + "=0 keeps no channels");
            p.*m = n;
          } else if constexpr (std::is_same_v<V, bool>) {
            if (v != "0" && v != "1")
              throw invalid_input(detail::path_where(text) + ": " + k + "=" + detail::path_shown(v) +
                                  " must be 0 or 1");
            p.*m = v == "1";
          } else if constexpr (std::is_same_v<V, std::vector<int>>) {
            p.*m = detail::parse_path_list(text, k, v);
          } else if constexpr (std::is_same_v<V, std::vector<double>>) {
            std::vector<double> out;
            for (const auto& e : detail::split_commas(v)) out.push_back(detail::parse_path_fraction(text, k, e));
            p.*m = std::move(out);
          } else if constexpr (std::is_same_v<V, precision_plan>) {
            p.*m = precision_plan::parse(v, detail::path_where(text));
          } else {
            p.*m = detail::parse_skip_pairs(text, v, k);
          }
        },
        it->field);
  }
  return p;
}

/// Canonical text form: the knobs that differ from the full model, in table order; "full" when none.
/// `as_given`: every knob set to other than its default, even to the full model's value (for errors).
template <class Path>
std::string path_to_string(const Path& p, bool as_given = false) {
  std::string s;
  for (const auto& k : Path::family().knobs) {
    const std::string v = detail::knob_text(k, p, as_given);
    if (!v.empty()) s += (s.empty() ? "" : " ") + std::string(k.name) + "=" + v;
  }
  return s.empty() ? "full" : s;
}

/// JSON form: an object with the knobs that differ from the full model.
template <class Path>
nlohmann::json path_to_json(const Path& p) {
  static const Path full{};
  nlohmann::json j = nlohmann::json::object();
  for (const auto& k : Path::family().knobs)
    std::visit(
        [&](auto m) {
          if (detail::at_full_value(p.*m, full.*m)) return;
          using V = std::decay_t<decltype(p.*m)>;
          if constexpr (std::is_same_v<V, std::vector<std::pair<int, int>>>) {
            auto a = nlohmann::json::array();
            for (const auto& [s, b] : p.*m) a.push_back({s, b});
            j[k.name] = std::move(a);
          } else if constexpr (std::is_same_v<V, precision_plan>) {
            j[k.name] = (p.*m).to_string();
          } else {
            j[k.name] = p.*m;
          }
        },
        k.field);
  return j;
}

/// Reads the JSON form (`path_to_json`); throws drt::invalid_input naming the key and its value.
template <class Path>
Path path_from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw invalid_input("path JSON " + detail::path_json_shown(j) + " is not an object");
  const auto& fam = Path::family();
  Path p;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const auto k = std::find_if(fam.knobs.begin(), fam.knobs.end(), [&](const auto& x) { return key == x.name; });
    if (k == fam.knobs.end())
      throw invalid_input(detail::path_json_where(key) + " does not apply to " + fam.name + " (keys: " + fam.keys() +
                          ")");
    const detail::path_json_reader r{key, *it};
    std::visit(
        [&](auto m) {
          using V = std::decay_t<decltype(p.*m)>;
          if constexpr (std::is_same_v<V, int>)
            p.*m = r.integer(*it);
          else if constexpr (std::is_same_v<V, bool>)
            p.*m = r.boolean();
          else if constexpr (std::is_same_v<V, std::vector<int>>)
            p.*m = r.integers();
          else if constexpr (std::is_same_v<V, std::vector<double>>)
            p.*m = r.numbers();
          else if constexpr (std::is_same_v<V, precision_plan>)
            p.*m = precision_plan::parse(r.text(), detail::path_json_where(key));
          else
            p.*m = r.skip_pairs();
        },
        k->field);
  }
  return p;
}

/// Sets knob `name` of `p` from numbers, as a generic sweep does: an integer or bool knob takes one
/// value (a bool: nonzero = true), an int list its values rounded, a fraction list its values as
/// given (one value of a per_block knob means every block). Skip pairs are set through the text
/// form. Throws drt::invalid_input for an unknown knob or a value count the kind cannot take; the
/// model's ranges are `validate_path`'s business.
template <class Path>
void set_path_knob(Path& p, const std::string& name, const std::vector<double>& values) {
  const auto& fam = Path::family();
  const auto k = std::find_if(fam.knobs.begin(), fam.knobs.end(), [&](const auto& x) { return name == x.name; });
  if (k == fam.knobs.end())
    throw invalid_input("path: key '" + detail::path_shown(name) + "' does not apply to " + fam.name +
                        " (keys: " + fam.keys() + ")");
  std::visit(
      [&](auto m) {
        using V = std::decay_t<decltype(p.*m)>;
        if constexpr (std::is_same_v<V, int> || std::is_same_v<V, bool>) {
          if (values.size() != 1)
            throw invalid_input("path: key '" + name + "' takes one value, got " + std::to_string(values.size()));
          if constexpr (std::is_same_v<V, int>)
            p.*m = static_cast<int>(std::lround(values[0]));
          else
            p.*m = values[0] != 0;
        } else if constexpr (std::is_same_v<V, std::vector<int>>) {
          V out;
          for (const double v : values) out.push_back(static_cast<int>(std::lround(v)));
          p.*m = std::move(out);
        } else if constexpr (std::is_same_v<V, std::vector<double>>) {
          p.*m = values;
        } else if constexpr (std::is_same_v<V, precision_plan>) {
          // one value for the whole model: 0 fp32, 1 bf16, 2 int8 (the order of drt::precision)
          if (values.size() != 1 || !(values[0] == 0 || values[0] == 1 || values[0] == 2))
            throw invalid_input("path: key '" + name + "' takes one value 0 (fp32), 1 (bf16) or 2 (int8)");
          p.*m = precision_plan{static_cast<precision>(static_cast<int>(values[0])), {}};
        } else {
          throw invalid_input("path: key '" + name + "' holds stage.block pairs: set it through the text form");
        }
      },
      k->field);
}

template <class Path>
void set_path_knob(Path& p, const std::string& name, double value) {
  set_path_knob(p, name, std::vector<double>{value});
}

/// Sets knob `name` of `dst` to its value in `src`; false when the family has no such knob.
template <class Path>
bool copy_path_knob(Path& dst, const Path& src, const std::string& name) {
  const auto& fam = Path::family();
  const auto k = std::find_if(fam.knobs.begin(), fam.knobs.end(), [&](const auto& x) { return name == x.name; });
  if (k == fam.knobs.end()) return false;
  std::visit([&](auto m) { dst.*m = src.*m; }, k->field);
  return true;
}

/// Throws drt::invalid_input naming the path and the rule it breaks for the model of config `c`:
/// per knob in table order, whether it applies, its exclusions, its entry count and every entry's
/// range (`path_knob::range`).
template <class Path, class Config>
void validate_path(const Path& p, const Config& c) {
  const auto& fam = Path::family();
  static const Path full{};
  const std::string where = "path '" + path_to_string(p, true) + "'";
  const std::vector<int> depths = fam.stage_depths(c);
  const std::size_t stages = depths.size();
  std::size_t blocks = 0;
  for (const int d : depths) blocks += static_cast<std::size_t>(std::max(d, 0));
  auto is_set = [&](const path_knob<Path, Config>& k) {
    return std::visit([&](auto m) { return !(p.*m == full.*m); }, k.field);
  };
  for (const auto& k : fam.knobs) {
    if (!is_set(k)) continue;
    const std::string key = k.name;
    if (k.not_applicable) {
      if (const char* why = k.not_applicable(c)) throw invalid_input(where + ": " + key + " does not apply: " + why);
    }
    if (k.excludes) {
      const auto other = std::find_if(fam.knobs.begin(), fam.knobs.end(),
                                      [&](const auto& x) { return std::string(x.name) == k.excludes; });
      if (other != fam.knobs.end() && is_set(*other))
        throw invalid_input(where + ": " + key + " and " + k.excludes + " both " + k.excludes_reason);
    }
    // One entry's range; `at` is "" (scalar), "stage s " or "block s.b ".
    auto check = [&](auto v, const knob_range& r, const std::string& at, std::size_t s) {
      using T = decltype(v);
      if constexpr (std::is_floating_point_v<T>) {
        if (!(v > r.min && v <= r.max))
          throw invalid_input(where + ": " + at + key + "=" + detail::fraction_string(v) + " must be a fraction in (" +
                              detail::fraction_string(r.min) + ", " + detail::fraction_string(r.max) + "]");
      } else {
        const double x = static_cast<double>(v);
        if (x >= r.min && x <= r.max) return;
        const std::string lo = std::to_string(static_cast<long long>(r.min));
        const std::string hi = std::to_string(static_cast<long long>(r.max));
        if (k.noun) {
          const std::string head = where + ": stage " + std::to_string(s) + " " + k.noun + " " + std::to_string(v);
          if (x > r.max) throw invalid_input(head + " exceeds the model's " + hi);
          if (r.min == 0) throw invalid_input(head + " is negative");
          throw invalid_input(head + " must be at least " + lo + k.below_min_note);
        }
        throw invalid_input(where + ": " + at + key + "=" + std::to_string(v) + " must be between " + lo + " and " + hi);
      }
    };
    std::visit(
        [&](auto m) {
          using V = std::decay_t<decltype(p.*m)>;
          const V& v = p.*m;
          if constexpr (std::is_same_v<V, int>) {
            check(v, k.range(c, 0, 0), "", 0);
          } else if constexpr (std::is_same_v<V, bool>) {
            // any value is valid
          } else if constexpr (std::is_same_v<V, precision_plan>) {
            const std::string names = k.regions ? k.regions : "";
            for (const auto& r : v.regions)
              if (("," + names + ",").find("," + r.first + ",") == std::string::npos)
                throw invalid_input(where + ": precision region '" + detail::path_shown(r.first) +
                                    "' is not a region of " + fam.name + " (regions: " + names + ")");
          } else if constexpr (std::is_same_v<V, std::vector<std::pair<int, int>>>) {
            for (const auto& [s, b] : v)
              if (s < 0 || static_cast<std::size_t>(s) >= stages || b < 0 || b >= depths[static_cast<std::size_t>(s)])
                throw invalid_input(where + ": skipped block " + std::to_string(s) + "." + std::to_string(b) +
                                    " does not exist (depths " + detail::join_ints(depths) + ")");
          } else if (k.layout == knob_layout::per_stage) {
            if (v.size() != stages)
              throw invalid_input(where + ": " + key + " has " + std::to_string(v.size()) + " entries, the model has " +
                                  std::to_string(stages) + " stages");
            for (std::size_t s = 0; s < stages; ++s)
              check(v[s], k.range(c, s, 0), "stage " + std::to_string(s) + " ", s);
          } else if (k.layout == knob_layout::per_block) {
            const std::size_t n = v.size();
            if (n != 1 && n != stages && n != blocks)
              throw invalid_input(where + ": " + key + " has " + std::to_string(n) +
                                  " entries, expected 1 (every block), " + std::to_string(stages) +
                                  " (one per stage) or " + std::to_string(blocks) + " (one per block)");
            std::size_t g = 0;
            for (std::size_t s = 0; s < stages; ++s)
              for (int b = 0; b < depths[s]; ++b, ++g)
                check(v[detail::per_block_index(n, stages, s, g)], k.range(c, s, static_cast<std::size_t>(b)),
                      "block " + std::to_string(s) + "." + std::to_string(b) + " ", s);
          } else {
            for (std::size_t i = 0; i < v.size(); ++i) check(v[i], k.range(c, i, 0), "", i);
          }
        },
        k.field);
  }
}

/// A family's knobs for the model of config `c`, in table order: what a generic sweep enumerates.
template <class Path, class Config>
std::vector<knob_info> path_knobs(const Config& c) {
  const auto& fam = Path::family();
  const std::vector<int> depths = fam.stage_depths(c);
  std::vector<knob_info> out;
  for (const auto& k : fam.knobs) {
    if (k.not_applicable && k.not_applicable(c)) continue;
    knob_info info;
    info.name = k.name;
    info.kind = k.kind();
    info.layout = k.layout;
    info.prunes = k.prunes;
    info.propagates = k.propagates;
    info.min_exclusive = info.kind == knob_kind::fractions;
    switch (k.layout) {
      case knob_layout::scalar:
        info.entries.push_back({-1, -1, info.kind == knob_kind::boolean     ? knob_range{0, 1, 1}
                                        : info.kind == knob_kind::precision ? knob_range{0, 2, 1}
                                                                            : k.range(c, 0, 0)});
        break;
      case knob_layout::per_stage:
        for (std::size_t s = 0; s < depths.size(); ++s)
          info.entries.push_back({static_cast<int>(s), -1, k.range(c, s, 0)});
        break;
      case knob_layout::per_block:
        for (std::size_t s = 0; s < depths.size(); ++s)
          for (int b = 0; b < depths[s]; ++b)
            info.entries.push_back({static_cast<int>(s), b, k.range(c, s, static_cast<std::size_t>(b))});
        break;
      case knob_layout::pairs:
        for (std::size_t s = 0; s < depths.size(); ++s)
          info.entries.push_back({static_cast<int>(s), -1, knob_range{0, static_cast<double>(depths[s] - 1), 1}});
        break;
    }
    for (std::size_t i = 0; i < info.entries.size(); ++i) {
      const auto& r = info.entries[i].range;
      info.min = i ? std::min(info.min, r.min) : r.min;
      info.max = i ? std::max(info.max, r.max) : r.max;
      info.step = i ? std::min(info.step, r.step) : r.step;
    }
    out.push_back(std::move(info));
  }
  return out;
}

}  // namespace drt
