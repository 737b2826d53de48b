#pragma once
/// @file sweep_shard.hpp
/// Sweeps that outgrow one machine (docs/sharding.md). Accuracy is the long half of a sweep and is
/// the same on every machine, so it is split over any job runner; latency holds for one machine
/// only, so it is measured on the target, for the paths of the joined accuracy table.
///
/// - **The path set, before any budget.** `sweep_path_set` lists every path a sweep's options give,
///   in encoder groups (paths sharing one encoding) and in enumeration order: model by model, depth
///   vector by depth vector (SegFormer), head knobs within. It does not depend on the machine, the
///   time or the load, so every process of a job computes the same set and its fingerprint.
/// - **Shards of encoder groups.** Shard I/N measures the groups g with g mod N = I (`sweep_shard`):
///   every path lands in exactly one shard, an encoding is computed in one shard only, and a path's
///   accuracy comes from all the images in one process, so the joined table equals a single run's.
/// - **An accuracy table** is a drt-lut document with "content": "accuracy" (entries without
///   latency) and "sweep_set": the path set's fingerprint, the models' checkpoint fingerprints, the
///   data's fingerprint, the channel ordering and the options that decide accuracy; a part also has
///   "shard". `merge_luts` (lut.hpp) joins the parts of one sweep and refuses parts of different
///   ones; `sweep` with `phase_set::latency` measures the latency of a whole table's paths.

#include <algorithm>
#include <cinttypes>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "lut.hpp"
#include "lut_build.hpp"
#include "sweep_confirm.hpp"
#include "sweep_data.hpp"
#include "sweep_options.hpp"

namespace drt {

namespace detail {

/// FNV-1a, 64 bits: tells path sets, checkpoints and image lists apart (not a defence against forgery).
struct fnv1a64 {
  std::uint64_t h = 14695981039346656037ull;
  void bytes(const void* p, std::size_t n) {
    const auto* c = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < n; ++i) h = (h ^ c[i]) * 1099511628211ull;
  }
  /// A string and a terminator, so that ("ab", "c") and ("a", "bc") differ.
  void text(const std::string& s) { bytes(s.c_str(), s.size() + 1); }
  std::string hex() const {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%016" PRIx64, h);
    return buf;
  }
};

/// Adds a file's bytes; throws drt::io_error naming it (`what`: "checkpoint", "image", ...).
inline void fingerprint_file(fnv1a64& f, const std::string& what, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw io_error(what + " '" + path + "': cannot open file");
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    f.bytes(buf.data(), static_cast<std::size_t>(in.gcount()));
  }
  if (in.bad()) throw io_error(what + " '" + path + "': read failed");
}

}  // namespace detail

/// Paths that share one encoding: measured together, in one shard.
struct sweep_group {
  std::size_t model = 0;             ///< index into sweep_path_set::models
  std::string encoder;               ///< the encoder half, e.g. "depths=2,2,1,2"
  std::vector<std::string> paths;    ///< text form, in enumeration order
};

/// Every path a sweep's options give, before any time budget, in a fixed order (see the file comment).
struct sweep_path_set {
  std::string sweep;                ///< "segformer" (shared-decoder sweep) or "family" (generic sweep)
  std::string family;               ///< the models' family: "segformer", "upernet", "resnet"
  std::vector<std::string> models;  ///< model names, in the given order
  std::vector<sweep_group> groups;  ///< model by model, each model's groups in enumeration order

  std::size_t paths() const {
    std::size_t n = 0;
    for (const auto& g : groups) n += g.paths.size();
    return n;
  }
  /// Over the sweep kind, the models and every group's paths in order: equal fingerprints, equal sets.
  std::string fingerprint() const {
    detail::fnv1a64 f;
    f.text(sweep);
    f.text(family);
    for (const auto& m : models) f.text(m);
    for (const auto& g : groups) {
      f.text(std::to_string(g.model) + " " + g.encoder);
      for (const auto& p : g.paths) f.text(p);
    }
    return "fnv1a64:" + f.hex();
  }
  /// Global indices of the groups of `shard`, in order.
  std::vector<std::size_t> groups_of(const sweep_shard& shard) const {
    std::vector<std::size_t> out;
    for (std::size_t g = 0; g < groups.size(); ++g)
      if (shard.holds(g)) out.push_back(g);
    return out;
  }
  /// Global index of model `model`'s first group (its groups are consecutive).
  std::size_t first_group(std::size_t model) const {
    std::size_t g = 0;
    while (g < groups.size() && groups[g].model < model) ++g;
    return g;
  }
};

namespace detail {

/// The options that decide a sweep's path set and its accuracy: what an accuracy table records and
/// what a latency-only sweep takes from it.
inline nlohmann::json accuracy_options_json(const sweep_options& o, std::size_t height, std::size_t width) {
  nlohmann::json knobs = nlohmann::json::object();
  for (const auto& [name, values] : o.knob_grid) knobs[name] = values;
  return {{"ignore_index", o.ignore_index}, {"image_limit", o.image_limit}, {"height", height},
          {"width", width},                 {"depth_reduce", o.depth_reduce}, {"depths", o.depths},
          {"channel_step", o.channel_step}, {"fold_decoder", o.fold_decoder}, {"knob_grid", knobs},
          {"fidelity", o.fidelity},         {"fuse_levels", o.fuse_levels},   {"fuse_min", o.fuse_min},
          {"pred_levels", o.pred_levels},   {"pred_min", o.pred_min},         {"fuse_in", o.fuse_in},
          {"pred_in", o.pred_in}};
}

/// What an accuracy table records about its sweep ("sweep_set"): the path set, the models (names and
/// checkpoint fingerprints), the data (its images' and labels' names and bytes; the folder is recorded,
/// not compared: hosts mount it in different places), the channel ordering and the accuracy options.
inline nlohmann::json sweep_set_json(const sweep_path_set& set, const std::vector<std::string>& model_dirs,
                                     const sweep_data& data, const sweep_options& opt) {
  nlohmann::json models = nlohmann::json::array();
  for (std::size_t i = 0; i < set.models.size(); ++i) {
    fnv1a64 ck, cfg;
    fingerprint_file(ck, "checkpoint", model_dirs[i] + "/model.safetensors");
    fingerprint_file(cfg, "config", model_dirs[i] + "/config.json");
    models.push_back({{"name", set.models[i]},
                      {"dir", model_dirs[i]},
                      {"checkpoint", "fnv1a64:" + ck.hex()},
                      {"config", "fnv1a64:" + cfg.hex()}});
  }
  fnv1a64 content;
  namespace fs = std::filesystem;
  for (std::size_t i = 0; i < data.image_paths.size(); ++i) {
    content.text(fs::path(data.image_paths[i]).filename().string());
    fingerprint_file(content, "image", data.image_paths[i]);
    if (i < data.label_paths.size()) {
      content.text(fs::path(data.label_paths[i]).filename().string());
      fingerprint_file(content, "label", data.label_paths[i]);
    }
  }
  std::error_code ec;
  const auto canonical = fs::weakly_canonical(opt.data_dir, ec);
  return {{"fingerprint", set.fingerprint()},
          {"paths", set.paths()},
          {"groups", set.groups.size()},
          {"sweep", set.sweep},
          {"family", set.family},
          {"models", models},
          {"data",
           {{"path", ec ? opt.data_dir : canonical.string()},
            {"images", data.size()},
            {"labelled", data.labelled()},
            {"first", data.image_paths.empty() ? "" : fs::path(data.image_paths.front()).filename().string()},
            {"last", data.image_paths.empty() ? "" : fs::path(data.image_paths.back()).filename().string()},
            {"content", "fnv1a64:" + content.hex()}}},
          // the order of the channels that a channel prefix keeps (parts of different orders must not
          // be joined): "checkpoint", "weight" (a function of the checkpoint) or a given order's fingerprint
          {"channel_order", opt.order.method == "weight" && opt.order.groups.empty() ? std::string("weight")
                                                                                     : opt.order.fingerprint()},
          {"int8_ranges", opt.int8 ? opt.int8->to_json() : nlohmann::json()},
          {"options", accuracy_options_json(opt, data.height, data.width)}};
}

/// How the sweep builds its models (decoder graph, channel order, int8 ranges), as recorded in its
/// table for every model (engine/lut_build.hpp).
inline segformer_options sweep_build(const sweep_options& opt) {
  segformer_options b;
  b.fold_decoder = opt.fold_decoder;
  b.order = opt.order;
  b.int8 = opt.int8;
  return b;
}

/// The accuracy table a latency-only sweep reads: whole (not a shard), with its sweep_set.
inline const nlohmann::json& accuracy_sweep_set(const lookup_table& t) {
  if (!t.is_accuracy_table() || !t.info.contains("sweep_set") || !t.info["sweep_set"].is_object())
    throw invalid_input(t.source +
                        " is not an accuracy table (drt sweep --accuracy-only writes one; drt lut merge joins its shards)");
  if (t.info.contains("shard"))
    throw invalid_input(t.source + " is one shard of a sweep: join every shard with drt lut merge first");
  return t.info["sweep_set"];
}

/// `timing` with the options that decide the path set and the accuracy taken from the accuracy
/// table (latency-only sweeps), else `timing` itself.
inline sweep_options effective_options(const sweep_options& timing) {
  if (timing.phases != sweep_options::phase_set::latency || !timing.accuracy_table) return timing;
  const lookup_table& t = *timing.accuracy_table;
  const auto& set = accuracy_sweep_set(t);
  sweep_options o = timing;
  return with_json_context(t.source + ": sweep_set", [&] {
    const auto& a = set.at("options");
    o.data_dir = set.at("data").at("path").get<std::string>();
    o.ignore_index = a.at("ignore_index").get<int>();
    o.image_limit = a.at("image_limit").get<std::size_t>();
    o.height = a.at("height").get<std::size_t>();
    o.width = a.at("width").get<std::size_t>();
    o.depth_reduce = a.at("depth_reduce").get<int>();
    o.depths = a.at("depths").get<std::vector<std::vector<int>>>();
    o.channel_step = a.at("channel_step").get<std::size_t>();
    o.fold_decoder = a.at("fold_decoder").get<bool>();
    o.knob_grid = a.at("knob_grid").get<std::map<std::string, std::vector<double>>>();
    o.fidelity = a.at("fidelity").get<bool>();
    o.fuse_levels = a.at("fuse_levels").get<std::size_t>();
    o.fuse_min = a.at("fuse_min").get<double>();
    o.pred_levels = a.at("pred_levels").get<std::size_t>();
    o.pred_min = a.at("pred_min").get<double>();
    o.fuse_in = a.at("fuse_in").get<std::vector<std::size_t>>();
    o.pred_in = a.at("pred_in").get<std::vector<std::size_t>>();
    if (!t.entries.empty()) {  // the models as the accuracy was measured (one build per sweep)
      const segformer_options b = lut_build(t, t.entries.front().model, t.source);
      o.order = b.order;
      o.int8 = b.int8;
    }
    return o;
  });
}

/// A latency-only sweep's data: no images (the target machine need not have them), one input of the
/// accuracy table's size (latency does not depend on the pixel values), filled deterministically.
inline sweep_data latency_only_data(const sweep_options& opt) {
  if (opt.height == 0 || opt.width == 0)
    throw invalid_input(opt.accuracy_table->source + ": sweep_set records no inference size");
  sweep_data d;
  d.height = opt.height;
  d.width = opt.width;
  tensor4 x = tensor4::from_shape({std::size_t{1}, std::size_t{3}, opt.height, opt.width});
  std::uint32_t s = 12345;
  for (auto& v : x) {
    s = s * 1664525u + 1013904223u;
    v = float(s >> 8) / float(1u << 24) * 4.f - 2.f;
  }
  d.inputs.push_back(std::move(x));
  return d;
}

/// The accuracy of every path of `set` from a latency-only sweep's table, keyed (model, path); checks
/// that the table holds exactly this path set and that the models are its checkpoints.
inline std::map<std::pair<std::string, std::string>, lut_entry> accuracy_by_path(
    const lookup_table& t, const sweep_path_set& set, const std::vector<std::string>& model_dirs) {
  const auto& rec = accuracy_sweep_set(t);
  const std::string fp = rec.value("fingerprint", std::string());
  if (fp != set.fingerprint())
    throw invalid_input(t.source + " holds path set " + fp + " (" + std::to_string(rec.value("paths", 0)) +
                        " paths) but these models and options give " + set.fingerprint() + " (" +
                        std::to_string(set.paths()) + " paths)");
  const auto& models = rec.at("models");
  for (std::size_t i = 0; i < set.models.size(); ++i) {
    fnv1a64 ck;
    fingerprint_file(ck, "checkpoint", model_dirs[i] + "/model.safetensors");
    const std::string want = models.at(i).value("checkpoint", std::string());
    if (want != "fnv1a64:" + ck.hex())
      throw invalid_input(t.source + ": model '" + set.models[i] + "' was measured with checkpoint " + want + " but '" +
                          model_dirs[i] + "/model.safetensors' is fnv1a64:" + ck.hex());
  }
  std::map<std::pair<std::string, std::string>, lut_entry> out;
  for (const auto& e : t.entries) out[{e.model, e.path}] = e;
  for (const auto& g : set.groups)
    for (const auto& p : g.paths)
      if (!out.count({set.models[g.model], p}))
        throw invalid_input(t.source + " has no entry for " + set.models[g.model] + " '" + p + "'");
  return out;
}

/// An accuracy-only sweep's table: entries in the path set's order, the sweep_set, the shard, and
/// accuracy normalized by the reference when this shard holds it (else by `drt lut merge`).
inline void finish_accuracy_table(lookup_table& table, const sweep_path_set& set, const sweep_options& opt,
                                  const nlohmann::json& sweep_set, const nlohmann::json& dataset,
                                  const nlohmann::json& report) {
  std::map<std::pair<std::string, std::string>, std::size_t> order;
  for (const auto& g : set.groups)
    for (const auto& p : g.paths) order.emplace(std::make_pair(set.models[g.model], p), order.size());
  std::stable_sort(table.entries.begin(), table.entries.end(), [&](const lut_entry& a, const lut_entry& b) {
    return order.at({a.model, a.path}) < order.at({b.model, b.path});
  });
  for (const auto& m : set.models) record_lut_build(table, m, sweep_build(opt));
  table.info["content"] = "accuracy";
  table.info["input"] = {{"height", sweep_set["options"]["height"]}, {"width", sweep_set["options"]["width"]}};
  table.info["dataset"] = dataset;
  table.info["sweep_set"] = sweep_set;
  if (!opt.shard.whole()) {
    nlohmann::json groups = nlohmann::json::array(), sizes = nlohmann::json::array();
    for (const std::size_t g : set.groups_of(opt.shard)) {
      groups.push_back(g);
      sizes.push_back(set.groups[g].paths.size());
    }
    table.info["shard"] = {{"index", opt.shard.index}, {"count", opt.shard.count}, {"groups", groups}, {"group_paths", sizes}};
  }
  const std::size_t ref = table.reference_index(set.models.front());
  if (ref < table.entries.size() && table.entries[ref].miou > 0) {
    table.normalize(table.entries[ref].miou);
    table.info["reference"] = {{"model", table.entries[ref].model}, {"path", table.entries[ref].path},
                               {"miou", table.entries[ref].miou}};
  }
  table.info["sweep"] = report;
  table.info["sweep"].erase("pareto_paths");  // no latency, no front yet
}

/// A latency-only sweep's table says where its accuracy came from.
inline void note_accuracy_source(lookup_table& table, const lookup_table& accuracy) {
  table.info["sweep_set"] = accuracy.info["sweep_set"];
  table.info["accuracy_from"] = {{"source", accuracy.source}, {"machine", accuracy.machine.describe()}};
  if (accuracy.info.contains("merged_from")) table.info["accuracy_from"]["merged_from"] = accuracy.info["merged_from"];
}

/// The end of every sweep: each model's build recorded (`lut_build`), Pareto flags, normalization
/// and what the table holds (`finish_table`), and for a latency-only sweep where its accuracy came from.
template <class Models>
void finish_sweep(lookup_table& table, const Models& models, const sweep_options& opt, std::size_t height,
                  std::size_t width, const nlohmann::json& dataset, const nlohmann::json& report, bool latency_only) {
  for (const auto& m : models) record_lut_build(table, m.name, sweep_build(opt));
  finish_table(table, models[0].name, height, width, dataset, report);
  if (latency_only) note_accuracy_source(table, *opt.accuracy_table);
}

}  // namespace detail

}  // namespace drt
