// drt accel: a model (and path) on a MAGNet-style accelerator: tiling, cycles, energy, area.

#include <drt/accel/estimate.hpp>
#include <drt/accel/model_layers.hpp>
#include <drt/accel/report.hpp>
#include <drt/models/any_model.hpp>

#include <iomanip>
#include <iostream>
#include <string>

#include "accel_common.hpp"
#include "commands.hpp"
#include "inputs.hpp"

namespace drt_cli {

namespace {

/// A model for the accelerator: MODEL_DIR (any family) or --arch NAME (synthetic weights: only the
/// geometry matters), with the name reports show.
struct accel_subject {
  drt::any_model model;
  std::string name;
};

accel_subject accel_model(const std::string& cmd, const parsed_args& args) {
  if (args.positional.empty() == !args.has("--arch")) throw usage_error(cmd, "give either MODEL_DIR or --arch NAME");
  if (args.has("--arch"))
    return {drt::standard_model(args.get("--arch"), accel_classes(cmd, args), 0, segformer_build(args)),
            args.get("--arch")};
  return {drt::load_model(args.positional[0], {}, segformer_build(args, args.positional[0])), args.positional[0]};
}

/// --size, else the paper's input for the family (512x512; ResNet 480x640).
size_hw accel_size(const std::string& cmd, const parsed_args& args, const drt::any_model& m) {
  if (args.has("--size")) return parse_size(cmd, "--size", args.get("--size"));
  const auto [h, w] = drt::default_accel_input(m);
  return {h, w};
}

int accel_main(const parsed_args& args) {
  const std::string cmd = "accel";
  const std::string format = args.get("--format", "table");
  if (format != "table" && format != "csv" && format != "json")
    throw usage_error(cmd, "--format must be table, csv or json, got '" + format + "'");
  const auto subject = accel_model(cmd, args);
  const auto size = accel_size(cmd, args, subject.model);
  const drt::accelerator a = drt::find_accelerator(args.get("--accel", "D"));
  const auto pl = drt::model_path_layers(subject.model, args.get("--path"), size.height, size.width);
  const auto e = drt::estimate(a, pl.layers, accel_opts(args));
  if (format == "json") {
    auto j = drt::to_json(e);
    j["model"] = subject.name;
    j["family"] = drt::family_name(subject.model);
    j["path"] = pl.path;
    j["input"] = {{"height", size.height}, {"width", size.width}};
    std::cout << j.dump(1) << '\n';
    return 0;
  }
  if (format == "csv") {
    std::cout << drt::to_csv(e);
    return 0;
  }
  std::cout << subject.name << " (" << drt::family_name(subject.model) << "), path " << pl.path << ", " << size.height
            << "x" << size.width << " on accelerator " << a.name() << " (" << std::fixed << std::setprecision(2)
            << e.area_mm2() << " mm2)\n";
  std::cout << std::left << std::setw(42) << "layer" << std::right << std::setw(10) << "GMACs" << std::setw(13)
            << "cycles" << std::setw(8) << "util%" << std::setw(11) << "uJ"
            << "  tiling (P2S Q2S K2S C2S / K2 P2 Q2 / P1 Q1 K1 / C1 Q0)\n";
  for (const auto& l : e.layers) {
    if (l.cost.macs <= 0) continue;
    const auto& m = l.mapping;
    std::cout << std::left << std::setw(42) << l.name.substr(0, 41) << std::right << std::setprecision(3)
              << std::setw(10) << l.cost.macs / 1e9 << std::setprecision(0) << std::setw(13) << l.cost.cycles
              << std::setprecision(1) << std::setw(8) << 100 * l.cost.utilization(a) << std::setprecision(2)
              << std::setw(11) << l.cost.energy_pj() * 1e-6 << "  " << m.p2s << ' ' << m.q2s << ' ' << m.k2s << ' '
              << m.c2s << " / " << m.k2 << ' ' << m.p2 << ' ' << m.q2 << " / " << m.p1 << ' ' << m.q1 << ' ' << m.k1
              << " / " << m.c1 << ' ' << m.q0 << '\n';
  }
  std::cout << std::setprecision(3) << "total: " << e.macs / 1e9 << " GMACs, " << e.ms() << " ms at " << a.clock_ghz
            << " GHz, " << e.energy_mj() << " mJ (" << e.pj_per_mac() << " pJ/MAC), utilization "
            << std::setprecision(1) << 100 * e.utilization() << " %, area " << std::setprecision(2) << e.area_mm2()
            << " mm2\n";
  return 0;
}

}  // namespace

command add_accel_command(CLI::App& drt) {
  CLI::App* app =
      add_command(drt, "accel", "map a model onto a MAGNet-style accelerator: tiling, cycles, energy, area",
                  "Map every layer of a model (and dynamic path) onto a MAGNet-style accelerator (Listing-1\n"
                  "tiling): per-layer tiling, cycles, utilization, energy, and totals (ms, mJ, mm2).\n"
                  "Give MODEL_DIR or --arch NAME. Designs A..M are the presets of the paper's Table II (see\n"
                  "docs/accelerator.md).\n"
                  "Any family: SegFormer, Swin + UPerNet, ResNet (MODEL_DIR's config.json or --arch); --path takes\n"
                  "that family's path text (segformer: depths fuse_in pred_in ...; upernet: depths bottleneck_in\n"
                  "fpn_out fpn_in pred_in; resnet: depths mid|expand width).");
  positional_option(*app, "MODEL_DIR", "model directory (any family), or give --arch");
  value_option(*app, "--arch", "NAME",
               std::string("standard architecture instead of MODEL_DIR (") + drt::standard_architectures() + ")");
  value_option(*app, "--classes", "K", "classes for --arch (default 150; ResNet 1000)");
  value_option(*app, "--accel", "X", "accelerator preset A..M (default D)");
  add_path_option(*app);
  value_option(*app, "--size", "HxW", "input size (default 512x512; ResNet 480x640, the paper's 640 x 480)");
  flag_option(*app, "--improved", "vectorize depthwise and C=3 convs over Q / RxSxC (beyond the paper)");
  add_no_fold_option(*app);
  value_option(*app, "--format", "FMT", "table (default), csv or json");
  return {app, &accel_main};
}

}  // namespace drt_cli
