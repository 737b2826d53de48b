// drt sweep: measure many execution paths of models of one family (latency on this machine; mIoU on a
// labelled set, or fidelity to the full model on any images), keep the Pareto front, write the lookup
// table (JSON) and a plot (SVG).

#include <drt/engine/front_plot.hpp>
#include <drt/engine/sweep.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "inputs.hpp"
#include "progress.hpp"

namespace drt_cli {

namespace {

double parse_positive_number(const std::string& cmd, const std::string& option, const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || !(v > 0) || !std::isfinite(v))
    throw usage_error(cmd, "option '" + option + "' expects a positive number, got '" + text + "'");
  return v;
}

/// "a,b,c" -> positive integers.
std::vector<std::size_t> parse_size_list(const std::string& cmd, const std::string& option, const std::string& text) {
  std::vector<std::size_t> out;
  std::stringstream in(text);
  for (std::string part; std::getline(in, part, ',');) {
    const std::size_t v = detail::positive_or_zero(part);
    if (v == 0)
      throw usage_error(cmd,
                        "option '" + option + "' expects positive integers separated by commas, got '" + text + "'");
    out.push_back(v);
  }
  if (out.empty()) throw usage_error(cmd, "option '" + option + "' expects at least one number");
  return out;
}

/// 0.0532 -> "5.3".
std::string percent(double fraction) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(1) << 100 * fraction;
  return o.str();
}

/// "bottleneck_in=1024,768 pred_in=256,128" -> knob -> values.
std::map<std::string, std::vector<double>> parse_knobs(const std::string& cmd, const std::string& text) {
  std::map<std::string, std::vector<double>> out;
  std::stringstream in(text);
  for (std::string tok; in >> tok;) {
    const auto eq = tok.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == tok.size())
      throw usage_error(cmd, "option '--knobs' expects NAME=V1,V2,... items, got '" + tok + "'");
    std::vector<double> values;
    std::stringstream vin(tok.substr(eq + 1));
    const bool precision = tok.substr(0, eq) == "precision";  // values fp32, bf16, int8 (numbered 0, 1, 2)
    for (std::string v; std::getline(vin, v, ',');)
      values.push_back(precision ? static_cast<double>(static_cast<int>(drt::parse_precision(v, "option '--knobs'")))
                                 : parse_positive_number(cmd, "--knobs", v));
    if (!out.emplace(tok.substr(0, eq), values).second)
      throw usage_error(cmd, "option '--knobs' names '" + tok.substr(0, eq) + "' twice");
  }
  if (out.empty()) throw usage_error(cmd, "option '--knobs' expects at least one NAME=V1,V2,... item");
  return out;
}

/// The split of a sweep over machines (docs/sharding.md): which options go with which phase.
void set_phases(const std::string& cmd, const parsed_args& args, drt::sweep_options& o) {
  const bool accuracy = args.has("--accuracy-only"), latency = args.has("--latency-only");
  if (accuracy && latency)
    throw usage_error(cmd, "options '--accuracy-only' and '--latency-only' exclude each other (a plain sweep does both)");
  if (args.has("--shard") && !accuracy) throw usage_error(cmd, "option '--shard' needs '--accuracy-only'");
  if (args.has("--accuracy") && !latency) throw usage_error(cmd, "option '--accuracy' needs '--latency-only'");
  if (!latency && !args.has("--data")) throw usage_error(cmd, "option '--data' is required");
  if (accuracy) {
    o.phases = drt::sweep_options::phase_set::accuracy;
    // the path set is fixed before the sweep starts: nothing may cut it short
    for (const char* opt : {"--budget-minutes", "--max-paths", "--svg", "--measured-in-table"})
      if (args.has(opt))
        throw usage_error(cmd, std::string("option '") + opt + "' does not apply to '--accuracy-only' (every path of " +
                                   "the set or of its shard is measured; latency comes later, with '--latency-only')");
    if (args.has("--shard")) {
      try {
        o.shard = drt::sweep_shard::parse(args.get("--shard"));
      } catch (const drt::invalid_input& e) {
        throw usage_error(cmd, std::string("option '--shard': ") + e.what());
      }
    }
  }
  if (latency) {
    if (!args.has("--accuracy")) throw usage_error(cmd, "option '--latency-only' needs '--accuracy TABLE'");
    // what decides the path set and the accuracy is the accuracy table's
    for (const char* opt : {"--data", "--ignore-index", "--limit", "--size", "--depth-reduce", "--depths",
                            "--channel-step", "--fuse-levels", "--pred-levels", "--fuse-in", "--pred-in", "--no-fold",
                            "--knobs", "--fidelity", "--max-paths", "--order", "--int8-ranges"})
      if (args.has(opt))
        throw usage_error(cmd, std::string("option '") + opt + "' does not apply to '--latency-only': the paths and " +
                                   "their accuracy are the accuracy table's");
    o.phases = drt::sweep_options::phase_set::latency;
    o.accuracy_table = std::make_shared<const drt::lookup_table>(drt::load_table(args.get("--accuracy")));
    drt::detail::accuracy_sweep_set(*o.accuracy_table);  // refuse a LUT or a lone shard before any measuring
  }
}

/// What an accuracy-only sweep prints: the table is the result, there is no front yet.
int print_accuracy_table(const drt::sweep_result& result, const drt::sweep_options& o, const std::string& out) {
  const auto& t = result.table;
  const auto& set = t.info["sweep_set"];
  const auto& r = result.report;
  std::cout << std::fixed << std::setprecision(1) << "paths      " << t.entries.size() << " of "
            << set["paths"].get<std::size_t>() << " (shard " << o.shard.to_string() << " of "
            << set["groups"].get<std::size_t>() << " encoder groups)\n"
            << "wall time  " << r["wall_s"].get<double>() << " s (accuracy " << r["phases_s"]["accuracy"].get<double>()
            << " s), " << t.info["dataset"].value("images", 0) << " images, " << t.machine.describe() << '\n'
            << "path set   " << set["fingerprint"].get<std::string>() << '\n'
            << "accuracy   " << out << '\n';
  if (!o.shard.whole())
    std::cout << "next       drt lut merge (every shard's table) --out ACCURACY.json, then on the target machine:\n"
                 "           drt sweep MODEL_DIR... --latency-only --accuracy ACCURACY.json --out LUT.json\n";
  return 0;
}

int sweep_main(const parsed_args& args) {
  const std::string cmd = "sweep";
  drt::sweep_options o;
  set_phases(cmd, args, o);
  o.data_dir = args.get("--data");
  if (args.has("--ignore-index")) {
    o.ignore_index = parse_label_index(cmd, "--ignore-index", args.get("--ignore-index"));
  }
  auto count = [&](const char* opt, std::size_t& field) {
    if (args.has(opt)) field = parse_positive(cmd, opt, args.get(opt));
  };
  count("--limit", o.image_limit);
  count("--max-paths", o.max_paths);
  count("--channel-step", o.channel_step);
  count("--fuse-levels", o.fuse_levels);
  count("--pred-levels", o.pred_levels);
  count("--repeats", o.repeats);
  count("--decoder-repeats", o.decoder_repeats);
  count("--confirm", o.confirm);
  if (args.has("--size")) {
    const auto s = parse_size_limited(cmd, args);
    o.height = s.height;
    o.width = s.width;
  }
  if (args.has("--budget-minutes"))
    o.budget_minutes = parse_positive_number(cmd, "--budget-minutes", args.get("--budget-minutes"));
  if (args.has("--depth-reduce")) {
    const std::string v = args.get("--depth-reduce");
    o.depth_reduce = v == "0" ? 0 : static_cast<int>(parse_positive(cmd, "--depth-reduce", v));
  }
  if (args.has("--depths")) {
    std::stringstream in(args.get("--depths"));
    for (std::string part; std::getline(in, part, ';');) {
      std::vector<int> d;
      std::stringstream pin(part);
      for (std::string x; std::getline(pin, x, ',');) {
        const std::size_t v = x == "0" ? 0 : detail::positive_or_zero(x);
        if (v == 0 && x != "0")
          throw usage_error(cmd, "option '--depths' expects depth vectors like \"3,4,6,3;2,3,5,3\", got '" +
                                     args.get("--depths") + "'");
        d.push_back(static_cast<int>(v));
      }
      o.depths.push_back(d);
    }
  }
  o.fold_decoder = !args.has("--no-fold");
  if (args.has("--int8-ranges") && args.positional.size() > 1)
    throw usage_error(cmd, "option '--int8-ranges' calibrates one model's layers: sweep the models apart (each with "
                           "its own ranges) and join the tables with 'drt lut merge'");
  // one model: the order beside it, as every command loads that model with
  const drt::segformer_options build = segformer_build(args, args.positional.size() == 1 ? args.positional[0] : "");
  o.order = build.order;  // --order: the channel order mlp= prefixes keep
  o.int8 = build.int8;    // --int8-ranges: the model's calibrated int8 ranges (recorded in the table)
  if (args.has("--fuse-in")) o.fuse_in = parse_size_list(cmd, "--fuse-in", args.get("--fuse-in"));
  if (args.has("--pred-in")) o.pred_in = parse_size_list(cmd, "--pred-in", args.get("--pred-in"));
  if (args.has("--threads")) o.threads = static_cast<int>(parse_positive(cmd, "--threads", args.get("--threads")));
  o.measured_in_table = args.has("--measured-in-table");
  o.fidelity = args.has("--fidelity");
  if (args.has("--knobs")) o.knob_grid = parse_knobs(cmd, args.get("--knobs"));

  // Refuse an unwritable output now, not after the measuring.
  drt::check_writable("lut", args.get("--out"));
  if (args.has("--svg")) drt::check_writable("svg", args.get("--svg"));

  if (o.phases == drt::sweep_options::phase_set::all)
    std::cerr << "drt sweep: " << args.positional.size() << " model(s), budget " << o.budget_minutes << " min\n";
  else if (o.phases == drt::sweep_options::phase_set::accuracy)
    std::cerr << "drt sweep: " << args.positional.size() << " model(s), accuracy only, shard " << o.shard.to_string()
              << '\n';
  else
    std::cerr << "drt sweep: " << args.positional.size() << " model(s), latency only, for the paths of "
              << args.get("--accuracy") << '\n';
  progress_line line("drt sweep");
  const auto result = drt::sweep(
      args.positional, o,
      [&](const drt::sweep_progress& p) {
        char buf[128];
        std::snprintf(buf, sizeof buf, ": %zu/%zu | %zu paths | %.0f s, ETA %.0f s", p.done, p.total, p.paths,
                      p.elapsed_s, p.eta_s);
        line.update(p.phase + " " + std::to_string(p.step) + "/" + std::to_string(p.steps) + " " + p.what + buf,
                    p.phase + std::to_string(p.step), p.done == p.total);
      },
      [&](const std::string& s) { line.note(s); });
  line.finish();
  if (o.phases == drt::sweep_options::phase_set::accuracy) {
    drt::save_lut(result.table, args.get("--out"));
    return print_accuracy_table(result, o, args.get("--out"));
  }
  const auto& t = result.table;
  drt::output_files outputs;  // the table and its plot land together or not at all
  outputs.add("lut", args.get("--out"), t.to_json().dump(1) + "\n");
  if (args.has("--svg")) outputs.add("svg", args.get("--svg"), drt::front_chart(t, args.get("--title")).to_svg());
  outputs.commit();

  const auto& r = result.report;
  const auto& lat = r["latency"];
  std::cout << std::fixed << std::setprecision(1) << "paths      " << t.entries.size() << " ("
            << r["pareto_paths"].get<int>() << " on the front), "
            << (r.contains("encoder_paths") ? r["encoder_paths"].size() : r["encoder_groups"].size())
            << " encoder paths, stopped: " << r["stopped_by"].get<std::string>() << '\n'
            << "wall time  " << r["wall_s"].get<double>() << " s (latency " << r["phases_s"]["latency"].get<double>()
            << " s, accuracy " << r["phases_s"]["accuracy"].get<double>() << " s, confirmation "
            << r["phases_s"]["confirm"].get<double>() << " s)\n"
            << "machine    " << t.machine.describe() << ", load " << std::setprecision(2)
            << (r["load_average_start"].empty() ? 0.0 : r["load_average_start"][0].get<double>()) << " -> "
            << (r["load_average_end"].empty() ? 0.0 : r["load_average_end"][0].get<double>()) << '\n';
  if (lat["median"].contains("median_abs_relative_error"))
    std::cout << std::setprecision(1) << "prediction " << lat["sample"].size()
              << " paths timed end to end: median |error| "
              << 100 * lat["median"]["median_abs_relative_error"].get<double>() << " %, max "
              << 100 * lat["median"]["max_abs_relative_error"].get<double>() << " %"
              << (lat["median_calibrated"].contains("median_abs_relative_error")
                      ? "; calibrated by the full path: median " +
                            percent(lat["median_calibrated"]["median_abs_relative_error"].get<double>()) + " %, max " +
                            percent(lat["median_calibrated"]["max_abs_relative_error"].get<double>()) + " %"
                      : std::string())
              << " (p95: median "
              << 100 * lat["p95"]["median_abs_relative_error"].get<double>() << " %, max "
              << 100 * lat["p95"]["max_abs_relative_error"].get<double>() << " %)\n";
  std::cout << "lut        " << args.get("--out") << '\n';
  if (args.has("--svg")) std::cout << "plot       " << args.get("--svg") << '\n';
  std::cout << "\nPareto front (ms; 'timed' = measured end to end in the confirmation sample):\n"
            << std::left << std::setw(22) << "model" << std::setw(44) << "path" << std::right << std::setw(8) << "GMACs"
            << std::setw(10) << "median" << std::setw(10) << "p95" << std::setw(10) << "timed" << std::setw(8)
            << (t.info["dataset"].value("accuracy", std::string("miou")) == "miou" ? "mIoU" : "agree")
            << std::setw(7) << "norm" << '\n';
  for (const std::size_t i : t.front()) {
    const auto& e = t.entries[i];
    std::cout << std::left << std::setw(22) << e.model << std::setw(44) << e.path << std::right << std::setprecision(2)
              << std::setw(8) << e.macs / 1e9 << std::setprecision(1) << std::setw(10) << e.latency_ms << std::setw(10)
              << e.latency_p95_ms << std::setw(10);
    if (std::isfinite(e.measured_latency_ms))
      std::cout << e.measured_latency_ms;
    else
      std::cout << "-";
    std::cout << std::setprecision(4) << std::setw(8) << e.miou << std::setprecision(3) << std::setw(7)
              << e.miou_normalized << '\n';
  }
  return 0;
}

}  // namespace

command add_sweep_command(CLI::App& drt) {
  CLI::App* app =
      add_command(drt, "sweep", "measure many paths (latency, accuracy), keep the Pareto front in a lookup table",
                  "Enumerate execution paths of models of one family (SegFormer, Swin + UPerNet, ResNet): depth\n"
                  "combinations near the full model crossed with a grid of the family's channel knobs. Measure each\n"
                  "path's latency on this machine (median and p95) and its accuracy, and write a lookup table with\n"
                  "the Pareto-optimal paths flagged. Accuracy: mIoU when --data has images/ and labels/; otherwise\n"
                  "(or with --fidelity) agreement with the first model's full path on any images (argmax pixel\n"
                  "agreement; classifiers: top-1 agreement, with the KL divergence).\n"
                  "Several models give one hybrid table: the policies may switch models as well as paths. Tables of\n"
                  "different families are swept apart and joined with 'drt lut merge'.\n"
                  "The first MODEL_DIR's full path is the reference for normalized accuracy and time.\n"
                  "Latency: per-layer times of the full path (SegFormer: and of each decoder configuration) predict\n"
                  "every path; a sample (the Pareto front first) is timed end to end and the agreement is reported.\n"
                  "Accuracy: one encoding per image and encoder path serves every head path of the grid.\n"
                  "Encoder paths run in order of promise while the --budget-minutes estimate allows.\n"
                  "A sweep too long for one machine: --accuracy-only --shard I/N on any job runner, 'drt lut merge',\n"
                  "then --latency-only --accuracy TABLE on the target machine (docs/sharding.md).\n"
                  "Progress and ETA on stderr; the front on stdout. docs/engine.md describes the LUT format.");
  positional_option(*app, "MODEL_DIR", "model directories of one family (1 to 64)")
      ->expected(1, 64)
      ->allow_extra_args(true)  // CLI11 2.3: without it an option with no bound variable takes one value
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->required();
  value_option(*app, "--data", "DIR",
               "labelled folder with images/ and labels/, or any folder of images (required but with --latency-only)");
  value_option(*app, "--out", "LUT", "lookup table to write (JSON, required)")->required();
  value_option(*app, "--svg", "PATH", "also plot every path and the front (normalized latency vs normalized mIoU)");
  value_option(*app, "--ignore-index", "K", "label value to ignore (default 255; CamVid: 11)");
  value_option(*app, "--limit", "N", "use only the first N images (sorted by name)");
  value_option(*app, "--size", "HxW", "resize the images to H x W for inference (mIoU stays at label size)");
  value_option(*app, "--budget-minutes", "M", "time budget of the whole sweep (default 20)");
  value_option(*app, "--max-paths", "N", "stop scheduling encoder paths once N paths are measured");
  value_option(*app, "--depth-reduce", "R", "per-stage depths from D-R to D (default 1: 16 combinations)");
  value_option(*app, "--depths", "LIST", "explicit depth vectors, e.g. \"3,4,6,3;2,3,5,3\" (overrides --depth-reduce)");
  value_option(*app, "--channel-step", "C", "decoder channel counts are multiples of C (default 32)");
  value_option(*app, "--fuse-levels", "N", "with --no-fold: Conv2DFuse input levels, full down to 1/6 (default 17)");
  value_option(*app, "--pred-levels", "N", "Conv2DPred input levels, full down to 1/4 (default 6)");
  value_option(*app, "--fuse-in", "LIST",
               "explicit Conv2DFuse input counts, e.g. 1024,2048,3072 (default folded: D, 2D, ..., S*D)");
  add_no_fold_option(*app);
  value_option(*app, "--pred-in", "LIST", "explicit Conv2DPred input counts, e.g. 384,768");
  value_option(*app, "--knobs", "GRID",
               "values of the family's knobs to cross with the depths, e.g. \"bottleneck_in=1024,512 pred_in=256,128\"\n"
               "(UPerNet: bottleneck_in, fpn_out, fpn_in, pred_in; ResNet: expand, mid; SegFormer: fuse_in, pred_in,\n"
               "linear0_in, mlp, precision=fp32,bf16,int8; default: the family's grid)");
  flag_option(*app, "--fidelity", "accuracy = agreement with the first model's full path, even when --data has labels");
  value_option(*app, "--repeats", "N", "timed runs of the full path and of each confirmed path (default 7)");
  value_option(*app, "--decoder-repeats", "N", "timed runs of each decoder configuration (default 3)");
  value_option(*app, "--confirm", "N", "paths timed end to end to confirm the prediction (default 8)");
  flag_option(*app, "--measured-in-table",
              "timed paths carry their measured latency (default: every path its calibrated prediction)");
  value_option(*app, "--title", "TEXT", "plot title");
  flag_option(*app, "--accuracy-only",
              "measure accuracy only, of every path of the set (no time budget), and write an accuracy table");
  value_option(*app, "--shard", "I/N",
               "with --accuracy-only: measure shard I of N (0 <= I < N) of the path set's encoder groups;\n"
               "join the N tables with 'drt lut merge' (docs/sharding.md)");
  flag_option(*app, "--latency-only",
              "measure latency on this machine for the paths of --accuracy TABLE and write the lookup table");
  value_option(*app, "--accuracy", "TABLE",
               "with --latency-only: the accuracy table (from --accuracy-only, or merged shards); the paths,\n"
               "the data and the accuracy options are its own");
  add_threads_option(*app);
  add_max_pixels_option(*app);
  return {app, &sweep_main};
}

}  // namespace drt_cli
