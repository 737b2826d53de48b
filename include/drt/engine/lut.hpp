#pragma once
/// @file lut.hpp
/// The lookup table of the dynamic real-time engine (paper Section IV, Fig. 8): one entry per
/// measured execution path with its cost (MACs, median and p95 latency on the measuring machine)
/// and its accuracy, the Pareto-optimal entries flagged. Stored as versioned JSON (docs/engine.md
/// documents the format); loading validates every field and names the file, the entry and the value.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <set>
#include <string>
#include <utility>
#include <system_error>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../eval/bootstrap.hpp"
#include "../io/file.hpp"
#include "pareto.hpp"

namespace drt {

/// The LUT format version this drt writes and reads.
inline constexpr int lut_format_version = 1;
/// The value of the `format` field that identifies a drt LUT.
inline constexpr const char* lut_format_name = "drt-lut";

/// Where latencies were measured. Two machines are "the same" for a LUT when CPU model, vector ISA
/// (when both tables record it), logical CPU count and thread count agree (the date and load are
/// recorded for the reader, not compared). The ISA is compared because virtual machines often report
/// one model name ("AMD EPYC") for generations whose kernels differ 2x in speed (AVX2 vs AVX-512).
struct machine_info {
  std::string cpu = "unknown";       ///< CPU model name (/proc/cpuinfo "model name")
  std::string isa;                   ///< widest vector ISA of the CPU: "avx512", "avx2", "sse" ("" unknown)
  int logical_cpus = 0;              ///< std::thread::hardware_concurrency()
  int threads = 0;                   ///< OpenMP threads the latencies were measured with
  std::string date;                  ///< UTC, ISO 8601
  std::vector<double> load_average;  ///< 1, 5, 15 min load averages when measured (empty when unknown)

  /// This machine now, measuring with `threads` threads (0 = OpenMP's current maximum).
  static machine_info current(int threads = 0) {
    machine_info m;
    std::ifstream cpuinfo("/proc/cpuinfo");
    for (std::string line; std::getline(cpuinfo, line);)
      if (line.rfind("model name", 0) == 0) {
        const auto colon = line.find(':');
        if (colon != std::string::npos) {
          m.cpu = line.substr(line.find_first_not_of(" \t", colon + 1));
          break;
        }
      }
    m.isa = current_isa();
    m.logical_cpus = static_cast<int>(std::thread::hardware_concurrency());
    m.threads = threads > 0 ? threads : max_threads();
    const std::time_t now = std::time(nullptr);
    char buf[32];
    std::tm tm{};
    gmtime_r(&now, &tm);
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    m.date = buf;
    m.load_average = current_load_average();
    return m;
  }

  /// The widest vector ISA in /proc/cpuinfo's flags ("" where there is no such file).
  static std::string current_isa() {
    std::ifstream cpuinfo("/proc/cpuinfo");
    for (std::string line; std::getline(cpuinfo, line);)
      if (line.rfind("flags", 0) == 0) {
        const auto has = [&](const char* flag) { return (line + " ").find(std::string(" ") + flag + " ") != std::string::npos; };
        if (has("avx512f")) return "avx512";
        if (has("avx2") && has("fma")) return "avx2";
        return "sse";
      }
    return {};
  }

  /// The 1/5/15-minute load averages (empty where /proc/loadavg is missing).
  static std::vector<double> current_load_average() {
    std::ifstream in("/proc/loadavg");
    std::vector<double> v(3);
    if (!(in >> v[0] >> v[1] >> v[2])) return {};
    return v;
  }

  /// "AMD EPYC, 2 logical CPUs, 2 threads"
  std::string describe() const {
    return cpu + (isa.empty() ? "" : " (" + isa + ")") + ", " + std::to_string(logical_cpus) + " logical CPUs, " +
           std::to_string(threads) + " threads";
  }
  bool same_machine(const machine_info& o) const noexcept {
    return cpu == o.cpu && (isa.empty() || o.isa.empty() || isa == o.isa) && logical_cpus == o.logical_cpus &&
           threads == o.threads;
  }

  nlohmann::json to_json() const {
    nlohmann::json j{{"cpu", cpu}, {"logical_cpus", logical_cpus}, {"threads", threads}, {"date", date}};
    if (!isa.empty()) j["isa"] = isa;
    if (!load_average.empty()) j["load_average"] = load_average;
    return j;
  }
};

/// One measured path.
struct lut_entry {
  std::string model;          ///< model name: its directory's base name, e.g. "segformer-b2-camvid"
  std::string model_dir;      ///< the directory it was loaded from when measured (may not exist elsewhere)
  /// The model family (models/family.hpp: "segformer", "upernet", "resnet"), which reads `path`.
  /// JSON "family"; a table without the field was written when only SegFormer was swept.
  std::string family = "segformer";
  std::string path = "full";  ///< execution path, text form of the family's path (`segformer_path::to_string`, ...)
  double macs = 0;            ///< multiply-accumulates of one inference at the LUT's input size
  double latency_ms = 0;      ///< median latency
  double latency_p95_ms = 0;  ///< 95th-percentile latency
  std::string latency_source = "measured";  ///< "measured" (timed end to end) or "predicted" (per-layer sum)
  double predicted_latency_ms = NAN;        ///< the raw per-layer prediction, when there is one
  double measured_latency_ms = NAN;         ///< median timed end to end, when the path was timed
  double measured_latency_p95_ms = NAN;     ///< p95 timed end to end, when the path was timed
  double miou = 0;                          ///< mIoU on the labelled set
  double miou_normalized = 0;               ///< miou / the reference entry's miou
  double pixel_acc = NAN;                   ///< pixel accuracy (optional)
  /// How sure `miou` is: a bootstrap interval over the images it was measured on (eval/bootstrap.hpp;
  /// optional: labelled sweeps write it). JSON "miou_interval": {"low", "high", "level", "resamples"}.
  miou_interval miou_ci;
  /// Classification fidelity sweeps: mean KL divergence of the path's softmax from the reference's
  /// (optional; the table's info["dataset"]["accuracy"] says what `miou` measures).
  double kl_divergence = NAN;
  bool pareto = false;                      ///< on the (latency_ms, miou) Pareto front of the table
  /// SegFormer only: the graph the path was measured on, the decoder folded (segformer_options; the
  /// default graph). JSON "decoder": "folded" | "unfolded"; a SegFormer entry without the field was
  /// written before the fold existed and reads as unfolded. Other families: false, not written.
  bool decoder_folded = true;

  /// "segformer-b2-camvid 'depths=2,3,5,3 fuse_in=1024'"
  std::string label() const { return model + " '" + path + "'"; }

  nlohmann::json to_json() const {
    nlohmann::json j{{"model", model},
                     {"path", path},
                     {"macs", macs},
                     {"latency_ms", latency_ms},
                     {"latency_p95_ms", latency_p95_ms},
                     {"latency_source", latency_source},
                     {"miou", miou},
                     {"miou_normalized", miou_normalized},
                     {"pareto", pareto},
                     {"family", family}};
    if (family == "segformer") j["decoder"] = decoder_folded ? "folded" : "unfolded";
    if (!model_dir.empty()) j["model_dir"] = model_dir;
    if (std::isfinite(predicted_latency_ms)) j["predicted_latency_ms"] = predicted_latency_ms;
    if (std::isfinite(measured_latency_ms)) j["measured_latency_ms"] = measured_latency_ms;
    if (std::isfinite(measured_latency_p95_ms)) j["measured_latency_p95_ms"] = measured_latency_p95_ms;
    if (std::isfinite(pixel_acc)) j["pixel_acc"] = pixel_acc;
    if (std::isfinite(kl_divergence)) j["kl_divergence"] = kl_divergence;
    if (miou_ci.valid())
      j["miou_interval"] = {
          {"low", miou_ci.low}, {"high", miou_ci.high}, {"level", miou_ci.level}, {"resamples", miou_ci.resamples}};
    return j;
  }
};

/// A whole table: format version, machine, free-form information (data set, input size, reference
/// entry, sweep report) and the entries.
struct lookup_table {
  int version = lut_format_version;
  machine_info machine;
  nlohmann::json info = nlohmann::json::object();  ///< "input": {height, width}, "dataset", "reference", "sweep"
  std::vector<lut_entry> entries;
  std::string source = "lookup table";  ///< names the table in errors: "lut 'file.json'" when loaded from a file

  /// "lut 'file.json': entry 3 (segformer-b0-camvid 'depths=...')": where errors about entry i point.
  std::string entry_where(std::size_t i) const {
    return source + ": entry " + std::to_string(i) + (i < entries.size() ? " (" + entries[i].label() + ")" : "");
  }

  /// Indices of the entries on the (latency_ms, miou) front, cheapest first.
  std::vector<std::size_t> front() const {
    return pareto_front(
        entries, [](const lut_entry& e) { return e.latency_ms; }, [](const lut_entry& e) { return e.miou; });
  }
  /// Recomputes every entry's `pareto` flag on (latency_ms, miou).
  void mark_pareto() {
    for (auto& e : entries) e.pareto = false;
    for (const std::size_t i : front()) entries[i].pareto = true;
  }
  /// Sets `miou_normalized` = miou / reference_miou for every entry.
  void normalize(double reference_miou) {
    if (!(reference_miou > 0) || !std::isfinite(reference_miou))
      throw invalid_input("lookup table: reference mIoU " + std::to_string(reference_miou) + " must be positive");
    for (auto& e : entries) e.miou_normalized = e.miou / reference_miou;
  }
  /// An accuracy table ("content": "accuracy"): paths with their accuracy and no latency, written
  /// by an accuracy-only sweep or joined from its shards (sweep_shard.hpp); `drt sweep --latency-only`
  /// turns it into a lookup table.
  bool is_accuracy_table() const {
    return info.contains("content") && info["content"].is_string() && info["content"] == "accuracy";
  }
  /// Index of `model`'s full path, entries.size() when it has none: the entry accuracy is normalized by.
  std::size_t reference_index(const std::string& model) const {
    for (std::size_t i = 0; i < entries.size(); ++i)
      if (entries[i].model == model && entries[i].path == "full") return i;
    return entries.size();
  }
  /// The input size the latencies hold for (0 x 0 when not recorded).
  std::size_t input_height() const {
    return info.contains("input") ? info["input"].value("height", std::size_t{0}) : 0;
  }
  std::size_t input_width() const { return info.contains("input") ? info["input"].value("width", std::size_t{0}) : 0; }

  nlohmann::json to_json() const {
    nlohmann::json j;
    j["format"] = lut_format_name;
    j["version"] = version;
    j["machine"] = machine.to_json();
    for (auto it = info.begin(); it != info.end(); ++it) j[it.key()] = *it;
    j["entries"] = nlohmann::json::array();
    const bool accuracy = is_accuracy_table();
    for (const auto& e : entries) {
      nlohmann::json x = e.to_json();
      if (accuracy)  // no latency yet: no fields that would read as measured values
        for (const char* key : {"latency_ms", "latency_p95_ms", "latency_source", "pareto", "predicted_latency_ms",
                                "measured_latency_ms", "measured_latency_p95_ms"})
          x.erase(key);
      j["entries"].push_back(std::move(x));
    }
    return j;
  }
};

namespace detail {

inline std::string lut_num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

/// A JSON value as it appears in the file, for error messages.
inline std::string lut_shown(const nlohmann::json& v) {
  std::string s = v.dump();
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

inline double lut_number(const nlohmann::json& e, const char* key, const std::string& where, bool required,
                         double fallback) {
  if (!e.contains(key) || e[key].is_null()) {
    if (required) throw invalid_input(where + ": missing field '" + key + "'");
    return fallback;
  }
  if (!e[key].is_number())
    throw invalid_input(where + ": field '" + key + "' must be a number, got " + lut_shown(e[key]));
  return e[key].get<double>();
}

/// An integer field in [lo, hi] (never wrapped: 2^40 + 1 is out of range, not 1).
inline long long lut_integer(const nlohmann::json& e, const char* key, const std::string& where, bool required,
                             long long fallback, long long lo, long long hi) {
  if (!e.contains(key) || e[key].is_null()) {
    if (required) throw invalid_input(where + ": missing field '" + key + "'");
    return fallback;
  }
  const auto& v = e[key];
  if (!json_integer_in(v, lo, hi))
    throw invalid_input(where + ": field '" + key + "' must be an integer in [" + std::to_string(lo) + ", " +
                        std::to_string(hi) + "], got " + lut_shown(v));
  return v.get<long long>();
}

inline std::string lut_string(const nlohmann::json& e, const char* key, const std::string& where, bool required,
                              const std::string& fallback = "") {
  if (!e.contains(key)) {
    if (required) throw invalid_input(where + ": missing field '" + key + "'");
    return fallback;
  }
  if (!e[key].is_string())
    throw invalid_input(where + ": field '" + key + "' must be a string, got " + lut_shown(e[key]));
  return e[key].get<std::string>();
}

inline lookup_table lut_from_json_checked(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) throw invalid_input(where + ": expected a JSON object with 'version', 'machine' and 'entries'");
  if (j.contains("format") && j["format"] != lut_format_name)
    throw invalid_input(where + ": format " + lut_shown(j["format"]) + " is not a drt lookup table (\"" +
                        lut_format_name + "\")");
  if (!j.contains("version")) throw invalid_input(where + ": missing field 'version'");
  if (!j["version"].is_number_integer())
    throw invalid_input(where + ": field 'version' must be an integer, got " + lut_shown(j["version"]));
  if (j["version"] != lut_format_version)  // compared as JSON numbers: 2^40 + 1 is not 1
    throw invalid_input(where + ": version " + j["version"].dump() + " is not supported (this drt reads version " +
                        std::to_string(lut_format_version) + ")");
  lookup_table t;
  t.version = lut_format_version;
  t.source = where;
  if (!j.contains("machine") || !j["machine"].is_object())
    throw invalid_input(where + ": missing object 'machine' (cpu, logical_cpus, threads, date)");
  const auto& m = j["machine"];
  const std::string mw = where + ": machine";
  t.machine.cpu = lut_string(m, "cpu", mw, true);
  t.machine.logical_cpus = static_cast<int>(lut_integer(m, "logical_cpus", mw, false, 0, 0, 1 << 20));
  t.machine.threads = static_cast<int>(lut_integer(m, "threads", mw, true, 0, 1, 1 << 20));
  t.machine.date = lut_string(m, "date", mw, false);
  t.machine.isa = lut_string(m, "isa", mw, false);
  if (m.contains("load_average") && m["load_average"].is_array())
    for (const auto& v : m["load_average"])
      if (v.is_number()) t.machine.load_average.push_back(v.get<double>());
  if (!j.contains("entries") || !j["entries"].is_array()) throw invalid_input(where + ": missing array 'entries'");
  if (j["entries"].empty()) throw invalid_input(where + ": 'entries' is empty, expected at least one measured path");
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "format" && it.key() != "version" && it.key() != "machine" && it.key() != "entries")
      t.info[it.key()] = *it;
  if (j.contains("content") && !(j["content"].is_string() && (j["content"] == "accuracy" || j["content"] == "lut")))
    throw invalid_input(where + ": field 'content' is " + lut_shown(j["content"]) +
                        ", expected \"accuracy\" (an accuracy table) or \"lut\"");
  const bool accuracy = t.is_accuracy_table();  // entries without latency
  if (j.contains("input")) {  // the input size the latencies hold for
    const auto& in = j["input"];
    if (!in.is_object()) throw invalid_input(where + ": field 'input' must be an object {height, width}, got " + lut_shown(in));
    lut_integer(in, "height", where + ": input", false, 0, 1, 1 << 20);
    lut_integer(in, "width", where + ": input", false, 0, 1, 1 << 20);
  }
  std::size_t index = 0;
  for (const auto& e : j["entries"]) {
    const std::string ew = where + ": entry " + std::to_string(index++);
    if (!e.is_object()) throw invalid_input(ew + " is not an object");
    lut_entry x;
    x.model = lut_string(e, "model", ew, true);
    if (x.model.empty()) throw invalid_input(ew + ": field 'model' is empty");
    x.path = lut_string(e, "path", ew, true);
    const std::string xw = ew + " (" + x.label() + ")";
    x.model_dir = lut_string(e, "model_dir", xw, false);
    x.macs = lut_number(e, "macs", xw, true, 0);
    x.latency_ms = lut_number(e, "latency_ms", xw, !accuracy, 0);
    x.latency_p95_ms = lut_number(e, "latency_p95_ms", xw, !accuracy, 0);
    x.latency_source = lut_string(e, "latency_source", xw, false, "measured");
    x.predicted_latency_ms = lut_number(e, "predicted_latency_ms", xw, false, NAN);
    x.measured_latency_ms = lut_number(e, "measured_latency_ms", xw, false, NAN);
    x.measured_latency_p95_ms = lut_number(e, "measured_latency_p95_ms", xw, false, NAN);
    x.miou = lut_number(e, "miou", xw, true, 0);
    x.miou_normalized = lut_number(e, "miou_normalized", xw, !accuracy, 0);
    x.pixel_acc = lut_number(e, "pixel_acc", xw, false, NAN);
    x.kl_divergence = lut_number(e, "kl_divergence", xw, false, NAN);
    if (e.contains("miou_interval")) {
      const auto& ci = e["miou_interval"];
      const std::string cw = xw + ": miou_interval";
      if (!ci.is_object()) throw invalid_input(cw + " must be an object {low, high, level, resamples}");
      x.miou_ci.low = lut_number(ci, "low", cw, true, NAN);
      x.miou_ci.high = lut_number(ci, "high", cw, true, NAN);
      x.miou_ci.level = lut_number(ci, "level", cw, false, 0.95);
      x.miou_ci.resamples = static_cast<std::size_t>(lut_integer(ci, "resamples", cw, false, 0, 0, 1000000000));
      if (!(x.miou_ci.low >= 0 && x.miou_ci.low <= x.miou_ci.high && x.miou_ci.high <= 1))
        throw invalid_input(cw + ": low " + lut_num(x.miou_ci.low) + " and high " + lut_num(x.miou_ci.high) +
                            " must satisfy 0 <= low <= high <= 1");
      if (!(x.miou_ci.level > 0 && x.miou_ci.level < 1))
        throw invalid_input(cw + ": level " + lut_num(x.miou_ci.level) + " must be in (0, 1)");
    }
    if (!e.contains("pareto") && !accuracy) throw invalid_input(xw + ": missing field 'pareto'");
    if (e.contains("pareto") && !e["pareto"].is_boolean())
      throw invalid_input(xw + ": field 'pareto' must be true or false, got " + lut_shown(e["pareto"]));
    x.pareto = !accuracy && e["pareto"].get<bool>();
    x.family = lut_string(e, "family", xw, false, "segformer");
    if (x.family != "segformer" && x.family != "upernet" && x.family != "resnet")
      throw invalid_input(xw + ": field 'family' is " + lut_shown(e["family"]) +
                          ", expected \"segformer\", \"upernet\" or \"resnet\"");
    const std::string dec = lut_string(e, "decoder", xw, false, x.family == "segformer" ? "unfolded" : "");
    if (x.family == "segformer" && dec != "folded" && dec != "unfolded")
      throw invalid_input(xw + ": field 'decoder' is " + lut_shown(e["decoder"]) + ", expected \"folded\" or \"unfolded\"");
    x.decoder_folded = dec == "folded";
    auto positive = [&](const char* key, double v) {
      if (!(v > 0) || !std::isfinite(v))
        throw invalid_input(xw + ": " + key + " " + lut_num(v) + " must be a positive number of milliseconds");
    };
    if (accuracy) {  // what to_json writes for an accuracy table
      x.latency_ms = x.latency_p95_ms = 0;
      x.latency_source = "measured";
      x.predicted_latency_ms = x.measured_latency_ms = x.measured_latency_p95_ms = NAN;
    } else {
      positive("latency_ms", x.latency_ms);
      positive("latency_p95_ms", x.latency_p95_ms);
      if (!std::isnan(x.measured_latency_ms)) positive("measured_latency_ms", x.measured_latency_ms);
      if (!std::isnan(x.measured_latency_p95_ms)) positive("measured_latency_p95_ms", x.measured_latency_p95_ms);
    }
    if (!(x.macs >= 0) || !std::isfinite(x.macs))
      throw invalid_input(xw + ": macs " + lut_num(x.macs) + " must be a non-negative number");
    if (!(x.miou >= 0 && x.miou <= 1))
      throw invalid_input(xw + ": miou " + lut_num(x.miou) + " must be in [0, 1]");
    if (!(x.miou_normalized >= 0) || !std::isfinite(x.miou_normalized))
      throw invalid_input(xw + ": miou_normalized " + lut_num(x.miou_normalized) +
                          " must be a non-negative number");
    if (x.latency_source != "measured" && x.latency_source != "predicted")
      throw invalid_input(xw + ": latency_source '" + x.latency_source + "' must be \"measured\" or \"predicted\"");
    t.entries.push_back(std::move(x));
  }
  return t;
}

}  // namespace detail

/// Parses and validates a LUT document; `where` names it in errors (e.g. "lut 'lut.json'").
inline lookup_table lut_from_json(const nlohmann::json& j, const std::string& where) {
  return with_json_context(where, [&] { return detail::lut_from_json_checked(j, where); });
}

/// Reads and validates a lookup table or an accuracy table (`lookup_table::is_accuracy_table`).
/// Throws drt::io_error when it cannot be read, drt::invalid_input naming the file (and the entry and
/// field) when it is not a valid table.
inline lookup_table load_table(const std::string& file) {
  return lut_from_json(read_json_file("lut", file), "lut '" + file + "'");
}

/// Reads and validates a LUT file (`load_table`), refusing an accuracy table: it has no latencies.
inline lookup_table load_lut(const std::string& file) {
  lookup_table t = load_table(file);
  if (t.is_accuracy_table())
    throw invalid_input(t.source + " is an accuracy table (no latencies): measure them on this machine with "
                        "drt sweep --latency-only --accuracy " + file);
  return t;
}

/// Writes a LUT as indented JSON, atomically (io/file.hpp). Throws drt::io_error naming the file
/// when it cannot be written; a failed write leaves no file behind.
inline void save_lut(const lookup_table& t, const std::string& file) {
  write_file_atomic("lut", file, t.to_json().dump(1) + "\n");
}

/// Whether `model`'s entries in `table` were measured with the decoder folded (how to load the model
/// to run them). Throws when its entries disagree or when it has none.
inline bool lut_decoder_folded(const lookup_table& table, const std::string& model, const std::string& where) {
  int folded = -1;
  for (const auto& e : table.entries) {
    if (e.model != model) continue;
    if (folded >= 0 && folded != int(e.decoder_folded))
      throw invalid_input(where + ": the entries of model '" + model +
                          "' mix folded and unfolded decoders; a table is measured on one graph per model");
    folded = int(e.decoder_folded);
  }
  if (folded < 0) throw invalid_input(where + ": no entry uses model '" + model + "'");
  return folded == 1;
}

namespace detail {

/// The whole accuracy table of a sweep from its shards (sweep_shard.hpp; `merge_luts` calls it when a
/// table is a shard): the shards must come from one sweep (same path set, models, data, channel
/// ordering and accuracy options) and be every shard of one count exactly once. Entries come out in
/// the path set's order, as a single process writes them; accuracy is normalized by the first
/// model's full path.
inline lookup_table merge_accuracy_shards(const std::vector<lookup_table>& tables, const std::string& where) {
  const auto shard_it = std::find_if(tables.begin(), tables.end(), [](const lookup_table& t) {
    return t.is_accuracy_table() && t.info.contains("shard") && t.info.contains("sweep_set");
  });
  const lookup_table& first = *shard_it;
  for (const auto& t : tables)
    if (!(t.is_accuracy_table() && t.info.contains("shard") && t.info.contains("sweep_set")))
      throw invalid_input(where + ": " + first.source + " is a shard of an accuracy-only sweep but " + t.source +
                          " is not: shards are joined with the other shards of their sweep only");
  // what must agree, and how an error names it
  auto models_of = [](nlohmann::json set) {
    for (auto& m : set["models"]) m.erase("dir");  // the same checkpoint may sit in other folders on other hosts
    return set["models"];
  };
  auto data_of = [](nlohmann::json set) {
    set["data"].erase("path");  // compared by content: hosts mount the data in different places
    return set["data"];
  };
  auto field = [](const nlohmann::json& set, const char* key) { return set.contains(key) ? set[key] : nlohmann::json(); };
  const nlohmann::json& set0 = first.info["sweep_set"];
  auto shard_number = [&](const lookup_table& t, const char* key) {
    return static_cast<std::size_t>(lut_integer(t.info["shard"], key, t.source + ": shard", true, 0, 0, 1 << 30));
  };
  const std::size_t count = shard_number(first, "count");
  std::vector<const lookup_table*> by_index(count, nullptr);
  for (const auto& t : tables) {
    const nlohmann::json& set = t.info["sweep_set"];
    const std::pair<std::string, std::pair<nlohmann::json, nlohmann::json>> checks[] = {
        {"path set", {field(set, "fingerprint"), field(set0, "fingerprint")}},
        {"models", {models_of(set), models_of(set0)}},
        {"data", {data_of(set), data_of(set0)}},
        {"channel ordering", {field(set, "channel_order"), field(set0, "channel_order")}},
        {"int8 ranges", {field(set, "int8_ranges"), field(set0, "int8_ranges")}},
        {"accuracy options", {field(set, "options"), field(set0, "options")}}};
    for (const auto& [what, v] : checks)
      if (v.first != v.second)
        throw invalid_input(where + ": " + t.source + " and " + first.source + " are not parts of one sweep: they differ in " +
                            what + " (" + lut_shown(v.first) + " vs " + lut_shown(v.second) + ")");
    const std::size_t n = shard_number(t, "count"), i = shard_number(t, "index");
    const std::string name = "shard " + std::to_string(i) + "/" + std::to_string(n);
    if (n != count)
      throw invalid_input(where + ": " + t.source + " is " + name + " but " + first.source + " is one of " +
                          std::to_string(count) + " shards");
    if (i >= n) throw invalid_input(where + ": " + t.source + " is " + name + ": the index must be below the count");
    if (by_index[i]) throw invalid_input(where + ": " + name + " is given twice (" + by_index[i]->source + " and " + t.source + ")");
    by_index[i] = &t;
  }
  std::string missing;
  for (std::size_t i = 0; i < count; ++i)
    if (!by_index[i]) missing += (missing.empty() ? "" : ", ") + std::to_string(i) + "/" + std::to_string(count);
  if (!missing.empty())
    throw invalid_input(where + ": shard" + (missing.find(',') == std::string::npos ? " " + missing + " is" : "s " + missing + " are") +
                        " missing");
  // each shard's entries are its groups' paths in order; the groups interleave back by index
  const std::size_t groups = static_cast<std::size_t>(lut_integer(set0, "groups", first.source + ": sweep_set", true, 0, 0, 1LL << 40));
  std::vector<std::vector<const lut_entry*>> slices(groups);
  for (const lookup_table* t : by_index) {
    const auto& sh = t->info["shard"];
    const std::size_t index = shard_number(*t, "index");
    std::size_t expected = 0;
    for (std::size_t g = index; g < groups; g += count) ++expected;
    if (!sh.contains("groups") || !sh["groups"].is_array() || !sh.contains("group_paths") ||
        !sh["group_paths"].is_array() || sh["groups"].size() != expected || sh["group_paths"].size() != expected)
      throw invalid_input(where + ": " + t->source + ": shard " + std::to_string(index) + "/" + std::to_string(count) +
                          " must list its " + std::to_string(expected) + " groups and their path counts");
    std::size_t next = 0;
    for (std::size_t k = 0; k < expected; ++k) {
      const std::size_t g = index + k * count;
      if (sh["groups"][k] != g)
        throw invalid_input(where + ": " + t->source + ": group " + lut_shown(sh["groups"][k]) + " is not group " +
                            std::to_string(g) + " of shard " + std::to_string(index) + "/" + std::to_string(count));
    }
    for (std::size_t k = 0; k < expected; ++k) {
      const auto& np = sh["group_paths"][k];
      if (!json_integer_in(np, 1, 1LL << 30) || next + np.get<std::size_t>() > t->entries.size())
        throw invalid_input(where + ": " + t->source + ": its groups' path counts do not add up to its " +
                            std::to_string(t->entries.size()) + " entries");
      for (std::size_t e = 0; e < np.get<std::size_t>(); ++e) slices[index + k * count].push_back(&t->entries[next++]);
    }
    if (next != t->entries.size())
      throw invalid_input(where + ": " + t->source + ": its groups' path counts do not add up to its " +
                          std::to_string(t->entries.size()) + " entries");
  }
  lookup_table out;
  out.machine = first.machine;
  out.info = first.info;
  for (const char* key : {"shard", "sweep", "reference"}) out.info.erase(key);
  out.source = where;
  for (const auto& s : slices)
    for (const lut_entry* e : s) out.entries.push_back(*e);
  if (out.entries.size() != set0.value("paths", std::size_t{0}))
    throw invalid_input(where + ": the shards hold " + std::to_string(out.entries.size()) + " paths but the sweep has " +
                        std::to_string(set0.value("paths", std::size_t{0})));
  const std::string ref_model = set0["models"].empty() ? std::string() : set0["models"][0].value("name", std::string());
  std::size_t ref = out.reference_index(ref_model);
  if (ref == out.entries.size()) ref = 0;  // as a single run: the first path when the full one is not swept
  out.normalize(out.entries[ref].miou);
  out.info["reference"] = {{"model", out.entries[ref].model}, {"path", out.entries[ref].path}, {"miou", out.entries[ref].miou}};
  nlohmann::json parts = nlohmann::json::array();
  for (const lookup_table* t : by_index) {
    nlohmann::json p{{"source", t->source}, {"shard", t->info["shard"]["index"]}, {"machine", t->machine.describe()},
                     {"entries", t->entries.size()}};
    if (t->info.contains("sweep") && t->info["sweep"].contains("wall_s")) p["wall_s"] = t->info["sweep"]["wall_s"];
    parts.push_back(p);
  }
  out.info["merged_from"] = parts;
  return out;
}

}  // namespace detail

/// One table of the entries of `tables` (a hybrid of several models or families, swept apart): they
/// must hold for the same input size and accuracy measure (dataset path and metric); a model may
/// appear in one table only. Accuracy is renormalized by the first table's reference entry and the
/// Pareto flags recomputed; the machine is the first table's. `where` names the result in errors.
/// Shards of one accuracy-only sweep are joined into its whole accuracy table instead
/// (`detail::merge_accuracy_shards`).
inline lookup_table merge_luts(const std::vector<lookup_table>& tables, const std::string& where = "merged lut") {
  if (tables.empty()) throw invalid_input(where + ": no tables to merge");
  for (const auto& t : tables)
    if (t.info.contains("shard")) return detail::merge_accuracy_shards(tables, where);
  const lookup_table& first = tables.front();
  for (const auto& t : tables)
    if (t.is_accuracy_table())
      throw invalid_input(where + ": " + t.source + " is an accuracy table: measure its latency with drt sweep "
                          "--latency-only before joining it with other lookup tables");
  lookup_table out;
  out.machine = first.machine;
  out.info = first.info;
  out.info.erase("sweep");
  out.source = where;
  auto dataset_key = [](const lookup_table& t) {
    if (!t.info.contains("dataset")) return std::string("(none)");
    const auto& d = t.info["dataset"];
    std::string path = d.value("path", std::string("?"));
    std::error_code ec;
    const auto canonical = std::filesystem::weakly_canonical(path, ec);  // one folder however it was spelt
    if (!ec) path = canonical.string();
    return path + " (" + std::to_string(d.value("images", 0)) + " images) [" +
           d.value("accuracy", std::string("miou")) + "]";
  };
  nlohmann::json parts = nlohmann::json::array();
  std::set<std::string> models;
  for (const auto& t : tables) {
    if (t.input_height() != first.input_height() || t.input_width() != first.input_width())
      throw invalid_input(where + ": " + t.source + " holds for input " + std::to_string(t.input_height()) + "x" +
                          std::to_string(t.input_width()) + " but " + first.source + " for " +
                          std::to_string(first.input_height()) + "x" + std::to_string(first.input_width()));
    if (dataset_key(t) != dataset_key(first))
      throw invalid_input(where + ": " + t.source + " measured accuracy on " + dataset_key(t) + " but " + first.source +
                          " on " + dataset_key(first));
    std::set<std::string> here;
    for (const auto& e : t.entries) here.insert(e.model);
    for (const auto& m : here)
      if (!models.insert(m).second)
        throw invalid_input(where + ": model '" + m + "' is in more than one table (" + t.source + ")");
    for (const auto& e : t.entries) out.entries.push_back(e);
    if (&t != &first && t.info.contains("builds") && t.info["builds"].is_object())
      for (const auto& [m, b] : t.info["builds"].items()) out.info["builds"][m] = b;  // engine/lut_build.hpp
    parts.push_back({{"source", t.source}, {"machine", t.machine.describe()}, {"entries", t.entries.size()}});
  }
  if (!first.info.contains("reference")) throw invalid_input(where + ": " + first.source + " names no reference entry");
  const double ref = first.info["reference"].value("miou", 0.0);
  out.normalize(ref);
  out.mark_pareto();
  out.info["merged_from"] = parts;
  return out;
}

/// The warning to print when a LUT's latencies were measured on another machine; empty when the
/// machines match. `where` names the LUT ("lut 'lut.json'").
inline std::string machine_mismatch(const machine_info& measured, const machine_info& here, const std::string& where) {
  if (measured.same_machine(here)) return {};
  return where + " was measured on another machine (" + measured.describe() + (measured.date.empty() ? "" : ", ") +
         measured.date + "); this one is " + here.describe() + ": its latencies may not hold here";
}

}  // namespace drt
