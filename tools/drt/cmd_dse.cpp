// drt dse: paths x accelerator designs: the paper's Figs. 10 and 11 and the per-design path fronts.

#include <drt/accel/dse.hpp>
#include <drt/accel/estimate.hpp>
#include <drt/accel/model_layers.hpp>
#include <drt/engine/lut.hpp>
#include <drt/models/any_model.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "accel_common.hpp"
#include "commands.hpp"
#include "inputs.hpp"

namespace drt_cli {

namespace {

std::vector<std::string> expand_letters(const std::string& cmd, const std::string& opt, const std::string& s, char lo,
                                        char hi) {
  std::vector<std::string> out;
  if (s.size() == 4 && s[1] == '.' && s[2] == '.') {
    if (s[0] < lo || s[3] > hi || s[0] > s[3])
      throw usage_error(cmd, opt + " range '" + s + "' is outside " + lo + ".." + hi);
    for (char c = s[0]; c <= s[3]; ++c) out.emplace_back(1, c);
    return out;
  }
  std::size_t start = 0;
  while (start <= s.size()) {
    const auto comma = s.find(',', start);
    const std::string t = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (t.size() != 1 || t[0] < lo || t[0] > hi)
      throw usage_error(cmd, opt + " entry '" + t + "' is not one of " + lo + ".." + hi);
    out.push_back(t);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

/// "a..g", "a", "a,c,e": Table III letters (and nothing else).
bool is_letter_list(const std::string& s) {
  if (s.size() == 4 && s[1] == '.' && s[2] == '.') return std::islower(static_cast<unsigned char>(s[0])) != 0;
  for (std::size_t i = 0; i < s.size(); ++i)
    if (i % 2 == 0 ? !std::islower(static_cast<unsigned char>(s[i])) : s[i] != ',') return false;
  return !s.empty() && s.size() % 2 == 1;
}
std::string trimmed(const std::string& t) {
  const auto a = t.find_first_not_of(" \t\r"), b = t.find_last_not_of(" \t\r");
  return a == std::string::npos ? std::string() : t.substr(a, b - a + 1);
}

/// One path to cost: its text, the model it runs on, and its accuracy (NaN when unknown).
struct dse_path {
  std::string label, text, model;
  double accuracy = NAN, miou = NAN, cpu_ms = NAN;
  bool cpu_pareto = false;
};

int dse_main(const parsed_args& args) {
  const std::string cmd = "dse";
  // Table III of the paper: SegFormer-B2 paths and their normalized mIoU.
  struct table3_path {
    char id;
    const char* path;
    double accuracy;
  };
  static const table3_path table3[] = {
      {'a', "depths=3,4,6,3 fuse_in=3072", 1.00}, {'b', "depths=3,4,6,3 fuse_in=1920", 0.98},
      {'c', "depths=2,4,6,3 fuse_in=1664", 0.96}, {'d', "depths=2,3,6,3 fuse_in=1408", 0.92},
      {'e', "depths=2,3,5,3 fuse_in=1024", 0.82}, {'f', "depths=3,2,5,2 fuse_in=896", 0.72},
      {'g', "depths=2,3,4,3 fuse_in=512", 0.63}};
  const std::string arch = args.get("--arch", "segformer-b2");
  const std::size_t classes = accel_classes(cmd, args);
  const std::string paths_arg = args.get("--paths", arch == "segformer-b2" ? "a..g" : "full");
  const auto accels = expand_letters(cmd, "--accels", args.get("--accels", "A..M"), 'A', 'M');

  std::map<std::string, drt::any_model> models;  // by name
  auto model_named = [&](const std::string& name, const std::string& dir,
                         drt::segformer_options build) -> const drt::any_model& {
    auto it = models.find(name);
    if (it != models.end()) return it->second;
    std::cerr << "drt dse: building " << name << "...\n";
    return models
        .emplace(name, dir.empty() ? drt::standard_model(name, classes, 0, build) : drt::load_model(dir, {}, build))
        .first->second;
  };

  std::vector<dse_path> paths;
  std::optional<size_hw> size;
  if (args.has("--size")) size = parse_size(cmd, "--size", args.get("--size"));
  bool lut_mode = false, accuracy_known = true;
  std::string what = arch;
  const bool is_file = std::filesystem::is_regular_file(paths_arg);
  if (is_letter_list(paths_arg) && !is_file) {
    if (arch != "segformer-b2")
      throw usage_error(cmd, "--paths " + paths_arg + ": the a..g names are Table III's SegFormer-B2 paths; for " +
                                 arch + " give path texts separated by ';', a file with one per line, or a LUT");
    for (const auto& p : expand_letters(cmd, "--paths", paths_arg, 'a', 'g')) {
      const auto& t = table3[p[0] - 'a'];
      paths.push_back({std::string(1, t.id), t.path, arch, t.accuracy});
    }
  } else if (is_file && paths_arg.size() > 5 && paths_arg.compare(paths_arg.size() - 5, 5, ".json") == 0) {
    lut_mode = true;
    const drt::lookup_table lut = drt::load_lut(paths_arg);
    if (!size && lut.input_height() > 0) size = size_hw{lut.input_height(), lut.input_width()};
    std::vector<std::string> names;
    for (std::size_t i = 0; i < lut.entries.size(); ++i) {
      const auto& e = lut.entries[i];
      std::string model = e.model;
      if (args.has("--arch")) {
        model = arch;
      } else if (e.model_dir.empty() || !std::filesystem::is_regular_file(e.model_dir + "/config.json")) {
        throw drt::invalid_input(
            lut.entry_where(i) + ": model_dir '" + e.model_dir +
            "' has no config.json here; give --arch NAME to cost its paths on a standard architecture");
      }
      drt::segformer_options build;  // the graph the entry was measured on
      build.fold_decoder = e.decoder_folded;
      model_named(model, args.has("--arch") ? std::string() : e.model_dir, build);
      if (std::find(names.begin(), names.end(), model) == names.end()) names.push_back(model);
      const bool norm = e.miou_normalized > 0;
      paths.push_back({e.path, e.path, model, norm ? e.miou_normalized : e.miou, e.miou, e.latency_ms, e.pareto});
    }
    what = "lut " + std::filesystem::path(paths_arg).filename().string();
  } else {
    std::vector<std::string> texts;
    if (is_file) {
      const std::vector<char> bytes = drt::read_file("paths file", paths_arg, std::size_t{64} << 20);
      std::istringstream in(std::string(bytes.begin(), bytes.end()));
      for (std::string line; std::getline(in, line);)
        if (const auto t = trimmed(line); !t.empty() && t[0] != '#') texts.push_back(t);
    } else {
      std::size_t start = 0;
      while (start <= paths_arg.size()) {
        const auto semi = paths_arg.find(';', start);
        const auto t = trimmed(paths_arg.substr(start, semi == std::string::npos ? std::string::npos : semi - start));
        if (!t.empty()) texts.push_back(t);
        if (semi == std::string::npos) break;
        start = semi + 1;
      }
    }
    if (texts.empty()) throw usage_error(cmd, "--paths '" + paths_arg + "' names no path");
    accuracy_known = false;
    for (std::size_t i = 0; i < texts.size(); ++i) paths.push_back({texts[i], texts[i], arch});
  }

  // Layer lists (and MACs) of every path.
  std::vector<std::vector<drt::layer_info>> layers;
  double full_macs = 0;
  for (auto& p : paths) {
    const auto& m = model_named(p.model, {}, segformer_build(args));
    const size_hw s = size ? *size : [&] {
      const auto [h, w] = drt::default_accel_input(m);
      return size_hw{h, w};
    }();
    auto pl = drt::model_path_layers(m, p.text, s.height, s.width);
    if (!lut_mode && p.label == p.text) p.label = pl.path;
    layers.push_back(std::move(pl.layers));
    if (!accuracy_known && full_macs == 0)
      full_macs = drt::total_macs(drt::model_path_layers(m, "full", s.height, s.width).layers);
  }
  if (!accuracy_known) {
    std::cerr << "drt dse: the paths' accuracy is unknown: the Fig. 10 view plots normalized MACs (MACs / the full "
                 "model's) in its place, and no path front is computed\n";
    for (std::size_t i = 0; i < paths.size(); ++i) paths[i].accuracy = drt::total_macs(layers[i]) / full_macs;
  }

  std::vector<drt::dse_point> pts;
  for (const auto& x : accels) {
    const drt::accelerator a = drt::find_accelerator(x);
    for (std::size_t i = 0; i < paths.size(); ++i) {
      auto pt = drt::make_dse_point(a, paths[i].label, layers[i], paths[i].accuracy, accel_opts(args));
      pt.k0 = a.k0;
      pt.model = lut_mode ? paths[i].model : std::string();
      pt.miou = paths[i].miou;
      pt.cpu_latency_ms = paths[i].cpu_ms;
      pt.cpu_pareto = paths[i].cpu_pareto;
      pts.push_back(std::move(pt));
    }
    std::cerr << "\rdrt dse: design " << x << " done   " << std::flush;
  }
  std::cerr << '\n';
  drt::mark_pareto(pts);
  if (accuracy_known) drt::mark_path_fronts(pts);
  const std::string front_accel =
      args.get("--front-accel", std::find(accels.begin(), accels.end(), "D") != accels.end() ? "D" : accels.front());
  if (std::find(accels.begin(), accels.end(), front_accel) == accels.end())
    throw usage_error(cmd, "--front-accel " + front_accel + " is not among --accels");
  for (const auto& x : accels) {
    if (!accuracy_known) break;  // a front on (cost, MACs) says nothing: every path would be on it
    std::size_t nc = 0, ne = 0, cpu = 0, cpu_kept = 0;
    for (const auto& p : pts)
      if (p.accel == x) {
        nc += p.cycles_front, ne += p.energy_front, cpu += p.cpu_pareto;
        cpu_kept += p.cpu_pareto && p.cycles_front;
      }
    std::cerr << "drt dse: " << x << ": " << nc << " of " << paths.size() << " paths on the (cycles, accuracy) front, "
              << ne << " on the (energy, accuracy) front";
    if (lut_mode) std::cerr << "; " << cpu_kept << " of the " << cpu << " CPU-front paths on the cycles front";
    std::cerr << '\n';
  }
  std::cout << drt::dse_csv(pts);
  drt::output_files outputs;  // every file lands, or none
  std::vector<std::string> written;
  auto write = [&](const std::string& file, const std::string& body, const char* kind) {
    outputs.add(kind, file, body);
    written.push_back(file);
  };
  if (args.has("--csv")) write(args.get("--csv"), drt::dse_csv(pts), "csv");
  if (args.has("--front-csv")) write(args.get("--front-csv"), drt::path_front_csv(pts), "csv");
  if (args.has("--svg")) {
    const std::string prefix = args.get("--svg");
    const std::string ylabel = !accuracy_known ? "normalized MACs (accuracy unknown)"
                               : lut_mode      ? "normalized mIoU"
                                               : "normalized accuracy";
    if (!lut_mode) {
      write(prefix + "_fig10.svg", drt::dse_fig10_svg(pts, what + ": time vs " + ylabel, ylabel), "svg");
      write(prefix + "_fig11.svg", drt::dse_fig11_svg(pts, what + ": throughput/mm2 vs energy/MAC"), "svg");
    }
    if (accuracy_known) {
      write(prefix + "_front_cycles.svg",
            drt::dse_path_front_svg(pts, front_accel, false, what + ": paths on " + front_accel + ", time", ylabel),
            "svg");
      write(prefix + "_front_energy.svg",
            drt::dse_path_front_svg(pts, front_accel, true, what + ": paths on " + front_accel + ", energy", ylabel),
            "svg");
    }
  }
  outputs.commit();
  for (const auto& f : written) std::cerr << "drt dse: wrote " << f << '\n';
  return 0;
}

}  // namespace

command add_dse_command(CLI::App& drt) {
  CLI::App* app =
      add_command(drt, "dse", "paths x accelerator designs: the paper's Figs. 10 and 11",
                  "Design-space exploration: every path on every accelerator design. Writes the Fig. 10 view\n"
                  "(time vs normalized accuracy per design), the Fig. 11 view (throughput/mm2 vs energy/MAC,\n"
                  "Pareto-optimal designs marked) and, per design, the Pareto-optimal paths on (accelerator\n"
                  "cycles, accuracy) and (accelerator energy, accuracy), as CSV and SVG.\n"
                  "--paths: a..g (or a subset like a,c,e) are the paper's Table III paths (SegFormer-B2, normalized\n"
                  "ADE20K mIoU; the default for segformer-b2); a drt LUT (FILE.json: its entries' paths, models and\n"
                  "mIoU, at its input size); a file with one path text per line; or path texts separated by ';'\n"
                  "(the default for other archs: full). Without accuracies the Fig. 10 view plots normalized MACs\n"
                  "and no path front is computed.");
  value_option(*app, "--arch", "NAME", "standard architecture (default segformer-b2; a LUT: its entries' model_dir)");
  value_option(*app, "--classes", "K", "classes (default 150; ResNet 1000)");
  value_option(*app, "--paths", "LIST", "a..g | a,c,e | LUT.json | FILE | \"TEXT;TEXT;...\"");
  value_option(*app, "--accels", "LIST", "designs, e.g. A..M (default) or C,D,G");
  value_option(*app, "--size", "HxW", "input size (default: a LUT's, else 512x512; ResNet 480x640)");
  flag_option(*app, "--improved", "improved low-channel mapping");
  flag_option(*app, "--no-fold",
              "SegFormer: cost the decoder as published (the paper's Conv2DFuse; a LUT: as its entries say)");
  value_option(*app, "--csv", "FILE", "write all points (the design view)");
  value_option(*app, "--front-csv", "FILE", "write all points with the path fronts they are on");
  value_option(*app, "--front-accel", "X", "design of the path-front SVGs (default D, else the first of --accels)");
  value_option(*app, "--svg", "PREFIX",
               "write PREFIX_fig10.svg, PREFIX_fig11.svg (not for a LUT) and, with accuracies, "
               "PREFIX_front_cycles.svg, PREFIX_front_energy.svg");
  return {app, &dse_main};
}

}  // namespace drt_cli
