#pragma once
/// @file precision.hpp
/// The arithmetic a GEMM-based layer runs in, and a path's choice of it per region of the model
/// (issue 20: precision is one more dynamic knob). Kernels: layers/gemm.hpp (fp32),
/// layers/gemm_bf16.hpp, layers/gemm_int8.hpp; numerics and measurements: docs/precision.md.

#include <algorithm>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "error.hpp"

namespace drt {

/// fp32: float weights and activations. bf16: weights and activations rounded to bfloat16, products
/// summed in fp32 (`vdpbf16ps`). int8: per-output-channel symmetric int8 weights, u8 activations with
/// a per-tensor scale and zero point (calibrated, or from each call's range), int32 sums (`vpdpbusd`).
enum class precision { fp32, bf16, int8 };

inline const char* to_string(precision p) noexcept {
  switch (p) {
    case precision::fp32: return "fp32";
    case precision::bf16: return "bf16";
    case precision::int8: return "int8";
  }
  return "?";
}

/// "fp32" (or "float32"), "bf16" (or "bfloat16"), "int8"; throws naming `where` and the value.
inline precision parse_precision(const std::string& v, const std::string& where) {
  if (v == "fp32" || v == "float32") return precision::fp32;
  if (v == "bf16" || v == "bfloat16") return precision::bf16;
  if (v == "int8") return precision::int8;
  throw invalid_input(where + ": precision '" + v + "' is not one of fp32, bf16, int8");
}

/// A path's precision: one for the whole model, or one per named region ("encoder", "decoder").
/// Text: `int8` or `encoder:int8,decoder:bf16`; a region not named runs in fp32 (or in the whole-model
/// value when `all` is set). Empty = fp32 everywhere (the full model's value).
struct precision_plan {
  precision all = precision::fp32;                          ///< regions not listed
  std::vector<std::pair<std::string, precision>> regions;  ///< in the order given, each at most once

  precision of(const std::string& region) const noexcept {
    const precision* p = named(region);
    return p ? *p : all;
  }
  /// The precision given to `region` by name, or null (the region follows `all` or its own rule).
  const precision* named(const std::string& region) const noexcept {
    for (const auto& r : regions)
      if (r.first == region) return &r.second;
    return nullptr;
  }
  /// fp32 everywhere, however written ("fp32", "encoder:fp32").
  bool is_fp32() const noexcept {
    return all == precision::fp32 &&
           std::all_of(regions.begin(), regions.end(), [](const auto& r) { return r.second == precision::fp32; });
  }
  /// Whether any region runs in `p`.
  bool uses(precision p) const noexcept {
    return all == p || std::any_of(regions.begin(), regions.end(), [&](const auto& r) { return r.second == p; });
  }

  /// Canonical text: "int8", or "encoder:int8,decoder:bf16" (regions in the order given; a whole-model
  /// value other than fp32 first, as "all:bf16", when regions are listed too).
  std::string to_string() const {
    if (regions.empty()) return drt::to_string(all);
    std::string s = all == precision::fp32 ? "" : std::string("all:") + drt::to_string(all);
    for (const auto& [r, p] : regions) s += (s.empty() ? "" : ",") + r + ":" + drt::to_string(p);
    return s;
  }
  /// Reads `to_string`'s form (also with the whole-model value first and bare: "int8,attention:fp32");
  /// throws naming `where` and the bad entry. Region names are checked
  /// against the model by the path's validation.
  static precision_plan parse(const std::string& v, const std::string& where) {
    precision_plan plan;
    if (v.find(':') == std::string::npos) {
      plan.all = parse_precision(v, where);
      return plan;
    }
    std::size_t start = 0;
    while (true) {
      const auto comma = v.find(',', start);
      const std::string e = v.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      const auto colon = e.find(':');
      if (colon == std::string::npos && !e.empty() && start == 0) {  // "int8,attention:fp32": the whole model first
        plan.all = parse_precision(e, where);
        if (comma == std::string::npos) break;
        start = comma + 1;
        continue;
      }
      if (colon == std::string::npos || colon == 0)
        throw invalid_input(where + ": precision entry '" + e + "' must be region:precision (e.g. encoder:int8)");
      const std::string region = e.substr(0, colon);
      const precision p = parse_precision(e.substr(colon + 1), where);
      if (region == "all") {
        plan.all = p;
      } else {
        for (const auto& r : plan.regions)
          if (r.first == region) throw invalid_input(where + ": precision region '" + region + "' given twice");
        plan.regions.emplace_back(region, p);
      }
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    return plan;
  }

  friend bool operator==(const precision_plan& a, const precision_plan& b) {
    return a.all == b.all && a.regions == b.regions;
  }
  friend bool operator!=(const precision_plan& a, const precision_plan& b) { return !(a == b); }
};

}  // namespace drt
