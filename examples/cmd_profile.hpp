#pragma once
// drt profile: per-layer MACs and measured time, grouped by kind and region; size/batch sweeps.

#include <drt/engine/profile.hpp>
#include <drt/models/any_model.hpp>

#include <fstream>
#include <iostream>
#include <random>

#include "cli_args.hpp"

namespace drt_cli {

inline const command_spec profile_cmd{
    "profile",
    "MODEL_DIR|--arch NAME --size HxW[,HxW...] [options]",
    "Profile a model: per layer its kind, parameters, MACs and measured time (median of R runs after\n"
    "a warm-up), shares of MACs and time, totals by kind and by region (encoder/decoder).",
    {"--arch builds a standard architecture with synthetic weights: segformer-b0, segformer-b1, segformer-b2.",
     "Several sizes or batches give one table per setting and a share-vs-setting view (--svg)."},
    {{"--arch", "NAME", "standard architecture instead of MODEL_DIR"},
     {"--classes", "K", "classes for --arch (default 150)"},
     {"--size", "HxW[,...]", "input sizes (default 512x512)"},
     {"--batch", "N[,...]", "batch sizes (default 1)"},
     {"--path", "TEXT", "dynamic execution path (default: full model)"},
     {"--repeat", "R", "timed runs per setting (default 5)"},
     {"--threads", "T", "OpenMP threads (default: all)"},
     {"--format", "FMT", "table (default), csv or json"},
     {"--svg", "FILE", "plot: MAC share vs time share by kind (one setting) or time share vs setting"}},
    0,
    1};

inline std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    const auto comma = s.find(',', start);
    out.push_back(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

inline int profile_main(const parsed_args& args) {
  const std::string& cmd = profile_cmd.name;
  if (args.positional.empty() == !args.has("--arch"))
    throw usage_error(cmd, "give either MODEL_DIR or --arch NAME");
  if (args.has("--threads")) drt::set_threads(static_cast<int>(parse_positive(cmd, "--threads", args.get("--threads"))));
  const std::size_t repeat = args.has("--repeat") ? parse_positive(cmd, "--repeat", args.get("--repeat")) : 5;
  const std::string format = args.get("--format", "table");
  if (format != "table" && format != "csv" && format != "json")
    throw usage_error(cmd, "--format must be table, csv or json, got '" + format + "'");
  std::vector<size_hw> sizes;
  for (const auto& s : split_list(args.get("--size", "512x512"))) sizes.push_back(parse_size(cmd, "--size", s));
  std::vector<std::size_t> batches;
  for (const auto& b : split_list(args.get("--batch", "1"))) batches.push_back(parse_positive(cmd, "--batch", b));

  const std::string name = args.has("--arch") ? args.get("--arch") : args.positional[0];
  std::cerr << "drt profile: building " << name << "...\n";
  const drt::segformer_model model = [&] {
    if (!args.has("--arch")) {
      auto any = drt::load_model(name);
      if (auto* seg = std::get_if<drt::segformer_model>(&any)) return std::move(*seg);
      throw drt::invalid_input("drt profile: model '" + name + "' is a " + drt::family_name(any) +
                               " model; profiling supports segformer models in this version");
    }
    const std::size_t classes = args.has("--classes") ? parse_positive(cmd, "--classes", args.get("--classes")) : 150;
    return drt::segformer_model::with_random_weights(drt::standard_segformer_config(name, classes));
  }();
  const auto path = drt::segformer_path::parse(args.get("--path"));
  const auto exec = model.compile(path);

  std::vector<drt::profile_result> results;
  nlohmann::json all = nlohmann::json::array();
  for (const auto& sz : sizes)
    for (const std::size_t n : batches) {
      model.check_input(sz.height, sz.width);
      drt::tensor4 x = drt::tensor4::from_shape({n, std::size_t{3}, sz.height, sz.width});
      std::mt19937 gen(1);
      std::normal_distribution<float> nd;
      for (auto& v : x) v = nd(gen);
      const std::string label = std::to_string(sz.height) + "x" + std::to_string(sz.width) + " batch " + std::to_string(n);
      auto r = drt::profile_layers(
          model.layers(sz.height, sz.width, exec, n), [&] { (void)model.forward(x, false, exec); }, repeat, 1,
          [&](std::size_t done, std::size_t total) {
            std::fprintf(stderr, "\rdrt profile: %s: run %zu/%zu   ", label.c_str(), done, total);
            if (done == total) std::fprintf(stderr, "\n");
          });
      r.model = name;
      r.path = path.to_string();
      r.height = sz.height;
      r.width = sz.width;
      r.batch = n;
      if (format == "table") std::cout << r.to_table() << '\n';
      else if (format == "csv") std::cout << (results.empty() ? r.to_csv() : r.to_csv().substr(r.to_csv().find('\n') + 1));
      else all.push_back(r.to_json());
      results.push_back(std::move(r));
    }
  if (format == "json") std::cout << (all.size() == 1 ? all[0] : all).dump(1) << '\n';
  if (args.has("--svg")) {
    if (results.size() == 1) {
      results[0].to_chart().save(args.get("--svg"));
    } else {  // Figs. 1 / 5: how each kind's share of the time moves with the setting
      drt::xy_chart c;
      c.title = name + ": share of time by layer kind";
      c.x_label = "setting";
      c.y_label = "% of time";
      for (std::size_t i = 0; i < results.size(); ++i) c.x_tick_labels.push_back(results[i].setting());
      std::map<std::string, std::size_t> series;
      for (std::size_t i = 0; i < results.size(); ++i)
        for (const auto& g : results[i].by_kind()) {
          if (!series.count(g.name)) {
            series[g.name] = c.series.size();
            c.series.push_back({g.name, {}, {}});
          }
          auto& s = c.series[series[g.name]];
          s.x.push_back(double(i));
          s.y.push_back(100 * g.seconds / results[i].total_seconds);
        }
      c.save(args.get("--svg"));
    }
    std::cerr << "drt profile: wrote " << args.get("--svg") << '\n';
  }
  return 0;
}

}  // namespace drt_cli
