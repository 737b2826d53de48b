// drt lut merge: one lookup table from tables swept apart (e.g. SegFormer and Swin + UPerNet), with
// the Pareto front over all of them; or one accuracy table from the shards of an accuracy-only sweep.
// drt lut compare: whether two tables hold the same paths with the same accuracy and cost, entry for
// entry (a sharded sweep against a single run).

#include <drt/engine/front_plot.hpp>
#include <drt/engine/lut.hpp>

#include <cmath>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "inputs.hpp"

namespace drt_cli {

namespace {

/// Same value, both absent (NaN) counting as equal.
bool same_number(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

/// drt lut compare A B: exit 0 when every entry's model, path, MACs and accuracy agree exactly, in
/// order; else the first difference and exit 1.
int compare_main(const std::vector<std::string>& files) {
  const auto a = drt::load_table(files[0]), b = drt::load_table(files[1]);
  auto differ = [&](const std::string& what) {
    std::cout << "differ     " << what << '\n';
    return 1;
  };
  if (a.entries.size() != b.entries.size())
    return differ(a.source + " has " + std::to_string(a.entries.size()) + " entries, " + b.source + " " +
                  std::to_string(b.entries.size()));
  for (std::size_t i = 0; i < a.entries.size(); ++i) {
    const auto &x = a.entries[i], &y = b.entries[i];
    const std::string at = "entry " + std::to_string(i) + " (" + x.label() + ")";
    if (x.model != y.model || x.path != y.path) return differ(at + " is " + y.label() + " in " + b.source);
    if (!same_number(x.macs, y.macs)) return differ(at + ": macs " + drt::detail::lut_num(x.macs) + " vs " + drt::detail::lut_num(y.macs));
    if (!same_number(x.miou, y.miou) || !same_number(x.pixel_acc, y.pixel_acc) ||
        !same_number(x.kl_divergence, y.kl_divergence) || !same_number(x.miou_normalized, y.miou_normalized)) {
      std::ostringstream o;
      o << std::setprecision(17) << at << ": accuracy " << x.miou << " (pixel " << x.pixel_acc << ", normalized "
        << x.miou_normalized << ") vs " << y.miou << " (pixel " << y.pixel_acc << ", normalized " << y.miou_normalized
        << ")";
      return differ(o.str());
    }
  }
  std::cout << "equal      " << a.entries.size() << " entries (model, path, MACs, accuracy), in the same order\n";
  return 0;
}

int lut_main(const parsed_args& args) {
  const std::string cmd = "lut";
  const std::string action = args.positional.at(0);
  if (action != "merge" && action != "compare")
    throw usage_error(cmd, "unknown action '" + action + "' (actions: merge, compare)");
  const std::vector<std::string> files(args.positional.begin() + 1, args.positional.end());
  if (action == "compare") {
    if (files.size() != 2) throw usage_error(cmd, "compare needs two tables");
    return compare_main(files);
  }
  if (!args.has("--out")) throw usage_error(cmd, "merge needs '--out'");
  drt::check_writable("lut", args.get("--out"));
  if (args.has("--svg")) drt::check_writable("svg", args.get("--svg"));
  std::vector<drt::lookup_table> tables;
  for (const auto& f : files) tables.push_back(drt::load_table(f));
  // one shard alone is a merge with shards missing, which the merge names
  if (files.size() < 2 && !tables.front().info.contains("shard"))
    throw usage_error(cmd, "merge needs at least two tables");
  const auto merged = drt::merge_luts(tables, "drt lut merge");
  if (merged.is_accuracy_table()) {  // shards of one accuracy-only sweep: no latency, no front yet
    if (args.has("--svg")) throw usage_error(cmd, "option '--svg': an accuracy table has no latencies to plot");
    drt::save_lut(merged, args.get("--out"));
    std::cout << "entries    " << merged.entries.size() << " paths from " << files.size()
              << " shards (accuracy table; path set " << merged.info["sweep_set"].value("fingerprint", "") << ")\n"
              << "accuracy   " << args.get("--out") << "\nnext       drt sweep MODEL_DIR... --latency-only --accuracy "
              << args.get("--out") << " --out LUT.json  (on the target machine)\n";
    return 0;
  }
  drt::output_files outputs;
  outputs.add("lut", args.get("--out"), merged.to_json().dump(1) + "\n");
  if (args.has("--svg"))
    outputs.add("svg", args.get("--svg"), drt::front_chart(merged, args.get("--title")).to_svg());
  outputs.commit();
  std::cout << "entries    " << merged.entries.size() << " from " << files.size() << " tables, "
            << merged.front().size() << " on the front\nlut        " << args.get("--out") << '\n';
  if (args.has("--svg")) std::cout << "plot       " << args.get("--svg") << '\n';
  std::cout << "\nPareto front:\n"
            << std::left << std::setw(24) << "model" << std::setw(44) << "path" << std::right << std::setw(10)
            << "median" << std::setw(8) << "acc" << std::setw(7) << "norm" << '\n';
  for (const std::size_t i : merged.front()) {
    const auto& e = merged.entries[i];
    std::cout << std::left << std::setw(24) << e.model << std::setw(44) << e.path << std::right << std::fixed
              << std::setprecision(1) << std::setw(10) << e.latency_ms << std::setprecision(4) << std::setw(8) << e.miou
              << std::setprecision(3) << std::setw(7) << e.miou_normalized << '\n';
  }
  return 0;
}

}  // namespace

command add_lut_command(CLI::App& drt) {
  CLI::App* app = add_command(
      drt, "lut", "merge lookup tables swept apart into one (hybrid of families, or accuracy shards); compare two",
      "drt lut merge A.json B.json ... --out OUT.json [--svg PLOT.svg]\n"
      "drt lut compare A.json B.json\n"
      "Join tables measured apart (models of different families, e.g. SegFormer and Swin + UPerNet) into one\n"
      "table whose Pareto front spans them all. The tables must hold for the same input size and the same\n"
      "accuracy measure (dataset path and metric); a model may appear in one table only. Accuracy is\n"
      "renormalized by the first table's reference entry. Latencies are kept as measured: merge tables\n"
      "measured on one machine.\n"
      "Shards of one accuracy-only sweep (drt sweep --accuracy-only --shard I/N) are joined into its whole\n"
      "accuracy table instead: they must share the path set, models, data, channel ordering and accuracy\n"
      "options, and every shard 0..N-1 must be given once (docs/sharding.md).\n"
      "compare: exit 0 when both tables hold the same paths in the same order with the same MACs and\n"
      "accuracy (e.g. merged shards against a single run), else print the first difference and exit 1.");
  positional_option(*app, "ACTION", "merge or compare")->required();
  positional_option(*app, "LUT", "tables to merge (2 to 64)")
      ->expected(1, 64)
      ->allow_extra_args(true)  // CLI11 2.3: without it an option with no bound variable takes one value
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->required();
  value_option(*app, "--out", "LUT", "merged table to write (JSON, required by merge)");
  value_option(*app, "--svg", "PATH", "also plot every path and the front");
  value_option(*app, "--title", "TEXT", "plot title");
  return {app, &lut_main};
}

}  // namespace drt_cli
