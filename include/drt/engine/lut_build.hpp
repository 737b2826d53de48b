#pragma once
/// @file lut_build.hpp
/// How a lookup table's models were built when it was measured, recorded with the table so that the
/// table is only used with that build. Per model, `info["builds"][model]`:
///   {"channel_order": the order an `mlp=` prefix keeps (dynamic/channel_order.hpp: "weight" is
///    the request, recomputed from the weights at load; a calibrated order carries its permutations),
///    "int8_ranges": the calibrated int8 input ranges (dynamic/int8_calibration.hpp), or null when
///    each int8 layer call used its own range}.
/// The decoder graph (folded or not) is each entry's own field (`lut_decoder_folded`). A table
/// written before the record (or a model it does not name) was measured with the defaults: the
/// weight order and each call's own ranges, which is what `lut_build` then returns.

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "../models/segformer.hpp"
#include "lut.hpp"

namespace drt {

/// The record of one model's build (see the file comment).
inline nlohmann::json lut_build_json(const segformer_options& b) {
  return {{"channel_order", b.order.to_json()}, {"int8_ranges", b.int8 ? b.int8->to_json() : nlohmann::json()}};
}

/// Records in `table` how `model` was built for it.
inline void record_lut_build(lookup_table& table, const std::string& model, const segformer_options& b) {
  table.info["builds"][model] = lut_build_json(b);
}

/// How to load `model` for `table`: its decoder graph, channel order and int8 ranges as measured.
/// Throws naming `where` when the record is malformed or no entry uses the model.
inline segformer_options lut_build(const lookup_table& table, const std::string& model, const std::string& where) {
  segformer_options b;
  b.fold_decoder = lut_decoder_folded(table, model, where);
  if (!table.info.contains("builds") || !table.info["builds"].is_object() || !table.info["builds"].contains(model))
    return b;
  const nlohmann::json& r = table.info["builds"][model];
  const std::string at = where + ": builds of model '" + model + "'";
  if (!r.is_object()) throw invalid_input(at + " is not an object");
  if (r.contains("channel_order")) b.order = channel_order::from_json(r["channel_order"], at + ": channel_order");
  if (r.contains("int8_ranges") && !r["int8_ranges"].is_null())
    b.int8 = std::make_shared<int8_calibration>(int8_calibration::from_json(r["int8_ranges"], at + ": int8_ranges"));
  return b;
}

}  // namespace drt
