// drt lut merge: one lookup table from tables swept apart (e.g. SegFormer and Swin + UPerNet), with
// the Pareto front over all of them.

#include <drt/engine/front_plot.hpp>
#include <drt/engine/lut.hpp>

#include <iomanip>
#include <iostream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "inputs.hpp"

namespace drt_cli {

namespace {

int lut_main(const parsed_args& args) {
  const std::string cmd = "lut";
  const std::string action = args.positional.at(0);
  if (action != "merge") throw usage_error(cmd, "unknown action '" + action + "' (actions: merge)");
  const std::vector<std::string> files(args.positional.begin() + 1, args.positional.end());
  if (files.size() < 2) throw usage_error(cmd, "merge needs at least two tables");
  drt::check_writable("lut", args.get("--out"));
  if (args.has("--svg")) drt::check_writable("svg", args.get("--svg"));
  std::vector<drt::lookup_table> tables;
  for (const auto& f : files) tables.push_back(drt::load_lut(f));
  const auto merged = drt::merge_luts(tables, "drt lut merge");
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
      drt, "lut", "merge lookup tables swept apart into one (hybrid of families)",
      "drt lut merge A.json B.json ... --out OUT.json [--svg PLOT.svg]\n"
      "Join tables measured apart (models of different families, e.g. SegFormer and Swin + UPerNet) into one\n"
      "table whose Pareto front spans them all. The tables must hold for the same input size and the same\n"
      "accuracy measure (dataset path and metric); a model may appear in one table only. Accuracy is\n"
      "renormalized by the first table's reference entry. Latencies are kept as measured: merge tables\n"
      "measured on one machine.");
  positional_option(*app, "ACTION", "merge")->required();
  positional_option(*app, "LUT", "tables to merge (2 to 64)")
      ->expected(1, 64)
      ->allow_extra_args(true)  // CLI11 2.3: without it an option with no bound variable takes one value
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->required();
  value_option(*app, "--out", "LUT", "merged table to write (JSON, required)")->required();
  value_option(*app, "--svg", "PATH", "also plot every path and the front");
  value_option(*app, "--title", "TEXT", "plot title");
  return {app, &lut_main};
}

}  // namespace drt_cli
