#pragma once
// drt accel: a model (and path) on a MAGNet-style accelerator; drt dse: paths x designs (Figs. 10, 11).

#include <drt/accel/dse.hpp>
#include <drt/accel/estimate.hpp>
#include <drt/accel/report.hpp>
#include <drt/models/any_model.hpp>

#include <fstream>
#include <iomanip>
#include <iostream>

#include "cli_args.hpp"

namespace drt_cli {

/// The SegFormer model named by MODEL_DIR or --arch (synthetic weights: only the geometry matters).
inline drt::segformer_model accel_model(const std::string& cmd, const parsed_args& args) {
  if (args.positional.empty() == !args.has("--arch")) throw usage_error(cmd, "give either MODEL_DIR or --arch NAME");
  if (args.has("--arch")) {
    const std::size_t classes = args.has("--classes") ? parse_positive(cmd, "--classes", args.get("--classes")) : 150;
    return drt::segformer_model::with_random_weights(drt::standard_segformer_config(args.get("--arch"), classes));
  }
  auto any = drt::load_model(args.positional[0]);
  if (auto* seg = std::get_if<drt::segformer_model>(&any)) return std::move(*seg);
  throw drt::invalid_input("drt " + cmd + ": model '" + args.positional[0] + "' is a " + drt::family_name(any) +
                           " model; this version maps segformer models (Swin + UPerNet: see docs/accelerator.md)");
}

inline drt::accel_options accel_opts(const parsed_args& args) {
  drt::accel_options o;
  if (args.has("--improved")) o.low_channel = drt::low_channel_mapping::improved;
  return o;
}

inline const command_spec accel_cmd{
    "accel",
    "MODEL_DIR|--arch NAME --accel X [options]",
    "Map every layer of a model (and dynamic path) onto a MAGNet-style accelerator (Listing-1\n"
    "tiling): per-layer tiling, cycles, utilization, energy, and totals (ms, mJ, mm2).",
    {"Designs A..M are the presets of the paper's Table II (see docs/accelerator.md)."},
    {{"--arch", "NAME", "standard architecture instead of MODEL_DIR (segformer-b0/b1/b2)"},
     {"--classes", "K", "classes for --arch (default 150)"},
     {"--accel", "X", "accelerator preset A..M (default D)"},
     {"--path", "TEXT", "dynamic execution path (default: full model)"},
     {"--size", "HxW", "input size (default 512x512)"},
     {"--improved", "", "vectorize depthwise and C=3 convs over Q / RxSxC (beyond the paper)"},
     {"--format", "FMT", "table (default) or json"}},
    0,
    1};

inline int accel_main(const parsed_args& args) {
  const std::string& cmd = accel_cmd.name;
  const std::string format = args.get("--format", "table");
  if (format != "table" && format != "json") throw usage_error(cmd, "--format must be table or json, got '" + format + "'");
  const auto model = accel_model(cmd, args);
  const auto size = parse_size(cmd, "--size", args.get("--size", "512x512"));
  const auto path = drt::segformer_path::parse(args.get("--path"));
  const auto layers = model.layers(size.height, size.width, model.compile(path));
  const drt::accelerator a = drt::find_accelerator(args.get("--accel", "D"));
  const auto e = drt::estimate(a, layers, accel_opts(args));
  if (format == "json") {
    auto j = drt::to_json(e);
    j["accelerator"]["area_mm2"] = e.area_mm2();
    j["path"] = path.to_string();
    std::cout << j.dump(1) << '\n';
    return 0;
  }
  std::cout << "accelerator " << a.name() << " (" << std::fixed << std::setprecision(2) << e.area_mm2() << " mm2), path "
            << path.to_string() << ", " << size.height << "x" << size.width << "\n";
  std::cout << std::left << std::setw(42) << "layer" << std::right << std::setw(10) << "GMACs" << std::setw(13)
            << "cycles" << std::setw(8) << "util%" << std::setw(11) << "uJ" << "  tiling (P2S Q2S K2S C2S / K2 P2 Q2 / P1 Q1 K1 / C1 Q0)\n";
  for (const auto& l : e.layers) {
    if (l.cost.macs <= 0) continue;
    const auto& m = l.mapping;
    std::cout << std::left << std::setw(42) << l.name.substr(0, 41) << std::right << std::setprecision(3) << std::setw(10)
              << l.cost.macs / 1e9 << std::setprecision(0) << std::setw(13) << l.cost.cycles << std::setprecision(1)
              << std::setw(8) << 100 * l.cost.utilization(a) << std::setprecision(2) << std::setw(11)
              << l.cost.energy_pj() * 1e-6 << "  " << m.p2s << ' ' << m.q2s << ' ' << m.k2s << ' ' << m.c2s << " / " << m.k2
              << ' ' << m.p2 << ' ' << m.q2 << " / " << m.p1 << ' ' << m.q1 << ' ' << m.k1 << " / " << m.c1 << ' ' << m.q0
              << '\n';
  }
  std::cout << std::setprecision(3) << "total: " << e.macs / 1e9 << " GMACs, " << e.ms() << " ms at "
            << a.clock_ghz << " GHz, " << e.energy_mj() << " mJ (" << e.pj_per_mac() << " pJ/MAC), utilization "
            << std::setprecision(1) << 100 * e.utilization() << " %, area " << std::setprecision(2) << e.area_mm2()
            << " mm2\n";
  return 0;
}

inline const command_spec dse_cmd{
    "dse",
    "--arch NAME [options]",
    "Design-space exploration: every path on every accelerator design. Writes the Fig. 10 view\n"
    "(time vs normalized accuracy per design) and the Fig. 11 view (throughput/mm2 vs energy/MAC,\n"
    "Pareto-optimal designs marked) as CSV and SVG.",
    {"--paths a..g are the paper's Table III paths (SegFormer-B2, normalized ADE20K mIoU)."},
    {{"--arch", "NAME", "standard architecture (default segformer-b2)"},
     {"--classes", "K", "classes (default 150)"},
     {"--paths", "LIST", "a..g (default) or a subset like a,c,e"},
     {"--accels", "LIST", "designs, e.g. A..M (default) or C,D,G"},
     {"--size", "HxW", "input size (default 512x512)"},
     {"--improved", "", "improved low-channel mapping"},
     {"--csv", "FILE", "write all points"},
     {"--svg", "PREFIX", "write PREFIX_fig10.svg and PREFIX_fig11.svg"}},
    0,
    0};

inline std::vector<std::string> expand_letters(const std::string& cmd, const std::string& opt, const std::string& s,
                                               char lo, char hi) {
  std::vector<std::string> out;
  if (s.size() == 4 && s[1] == '.' && s[2] == '.') {
    if (s[0] < lo || s[3] > hi || s[0] > s[3]) throw usage_error(cmd, opt + " range '" + s + "' is outside " + lo + ".." + hi);
    for (char c = s[0]; c <= s[3]; ++c) out.emplace_back(1, c);
    return out;
  }
  std::size_t start = 0;
  while (start <= s.size()) {
    const auto comma = s.find(',', start);
    const std::string t = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (t.size() != 1 || t[0] < lo || t[0] > hi) throw usage_error(cmd, opt + " entry '" + t + "' is not one of " + lo + ".." + hi);
    out.push_back(t);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

inline int dse_main(const parsed_args& args) {
  const std::string& cmd = dse_cmd.name;
  // Table III of the paper: SegFormer-B2 paths and their normalized mIoU.
  struct table3_path { char id; const char* path; double accuracy; };
  static const table3_path table3[] = {{'a', "depths=3,4,6,3 fuse_in=3072", 1.00}, {'b', "depths=3,4,6,3 fuse_in=1920", 0.98},
                                       {'c', "depths=2,4,6,3 fuse_in=1664", 0.96}, {'d', "depths=2,3,6,3 fuse_in=1408", 0.92},
                                       {'e', "depths=2,3,5,3 fuse_in=1024", 0.82}, {'f', "depths=3,2,5,2 fuse_in=896", 0.72},
                                       {'g', "depths=2,3,4,3 fuse_in=512", 0.63}};
  const std::string arch = args.get("--arch", "segformer-b2");
  const std::size_t classes = args.has("--classes") ? parse_positive(cmd, "--classes", args.get("--classes")) : 150;
  const auto size = parse_size(cmd, "--size", args.get("--size", "512x512"));
  const auto paths = expand_letters(cmd, "--paths", args.get("--paths", "a..g"), 'a', 'g');
  const auto accels = expand_letters(cmd, "--accels", args.get("--accels", "A..M"), 'A', 'M');
  std::cerr << "drt dse: building " << arch << "...\n";
  const auto model = drt::segformer_model::with_random_weights(drt::standard_segformer_config(arch, classes));
  std::vector<drt::dse_point> pts;
  for (const auto& p : paths) {
    const auto& t = table3[p[0] - 'a'];
    const auto layers = model.layers(size.height, size.width, model.compile(drt::segformer_path::parse(t.path)));
    for (const auto& x : accels) pts.push_back(drt::make_dse_point(drt::find_accelerator(x), std::string(1, t.id), layers, t.accuracy, accel_opts(args)));
    std::cerr << "\rdrt dse: path " << p << " done   " << std::flush;
  }
  std::cerr << '\n';
  drt::mark_pareto(pts);
  std::cout << drt::dse_csv(pts);
  if (args.has("--csv")) {
    std::ofstream out(args.get("--csv"));
    if (!out) throw drt::io_error("csv '" + args.get("--csv") + "': cannot open for writing");
    out << drt::dse_csv(pts);
  }
  if (args.has("--svg")) {
    const std::string prefix = args.get("--svg");
    for (const auto& [suffix, body] : {std::pair<std::string, std::string>{"_fig10.svg", drt::dse_fig10_svg(pts, arch + ": time vs normalized accuracy")},
                                       {"_fig11.svg", drt::dse_fig11_svg(pts, arch + ": throughput/mm2 vs energy/MAC")}}) {
      std::ofstream out(prefix + suffix);
      if (!out) throw drt::io_error("svg '" + prefix + suffix + "': cannot open for writing");
      out << body;
      std::cerr << "drt dse: wrote " << prefix + suffix << '\n';
    }
  }
  return 0;
}

}  // namespace drt_cli
