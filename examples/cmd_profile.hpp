#pragma once
// drt profile: per-layer MACs and measured time, grouped by kind and region; size/batch sweeps.
// Every model family: SegFormer, UPerNet + Swin, ResNet (MODEL_DIR or --arch).

#include <drt/engine/profile.hpp>
#include <drt/models/any_model.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <variant>

#include "cli_args.hpp"
#include "cli_inputs.hpp"

namespace drt_cli {

inline const command_spec profile_cmd{
    "profile",
    "MODEL_DIR|--arch NAME [--size HxW[,HxW...]] [--batch N[,N...]] [options]",
    "Profile a model: per layer its kind, region, parameters, MACs and measured time (median of R runs\n"
    "after a warm-up), shares of MACs and time, totals by kind and by region (SegFormer: encoder/decoder;\n"
    "UPerNet + Swin and ResNet: backbone/head).",
    {"--arch NAME builds a standard architecture with synthetic weights; NAME is one of",
     std::string("  ") + drt::standard_architectures() + ".",
     "--path takes the model family's path text, e.g. segformer \"depths=2,3,5,3 fuse_in=1024\",",
     "  upernet \"depths=2,2,4,2 bottleneck_in=1024 pred_in=256\", resnet \"depths=2,2,3,2 expand=0.5\".",
     "Several sizes or batches give one table per setting and a share-vs-setting view (--svg).",
     "Progress goes to stderr; the report to stdout."},
    {{"--arch", "NAME", "standard architecture instead of MODEL_DIR"},
     {"--classes", "K", "classes for --arch (default 150; ResNet 1000)"},
     {"--size", "HxW[,...]", "input sizes (default 512x512; ResNet 224x224)"},
     {"--batch", "N[,...]", "batch sizes (default 1)"},
     {"--path", "TEXT", "dynamic execution path (default: full model)"},
     {"--repeat", "R", "timed runs per setting (default 5)"},
     {"--threads", "T", "OpenMP threads (default: all)"},
     {"--format", "FMT", "table (default), csv or json"},
     {"--top", "N", "table: only the N layers that take the most time (default: all)"},
     {"--svg", "FILE", "plot: MAC share vs time share by kind and region (one setting) or time share vs setting"},
     max_pixels_option,
     no_fold_option},
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
  if (args.positional.empty() == !args.has("--arch")) throw usage_error(cmd, "give either MODEL_DIR or --arch NAME");
  if (args.has("--threads"))
    drt::set_threads(static_cast<int>(parse_positive(cmd, "--threads", args.get("--threads"))));
  const std::size_t repeat = args.has("--repeat") ? parse_positive(cmd, "--repeat", args.get("--repeat")) : 5;
  const std::size_t top = args.has("--top") ? parse_positive(cmd, "--top", args.get("--top")) : 0;
  const std::string format = args.get("--format", "table");
  if (format != "table" && format != "csv" && format != "json")
    throw usage_error(cmd, "--format must be table, csv or json, got '" + format + "'");
  std::vector<std::size_t> batches;
  for (const auto& b : split_list(args.get("--batch", "1"))) batches.push_back(parse_positive(cmd, "--batch", b));

  const std::string name = args.has("--arch") ? args.get("--arch") : args.positional[0];
  std::cerr << "drt profile: building " << name << "...\n";
  const drt::any_model model = [&] {
    if (!args.has("--arch")) return drt::load_model(name, {}, segformer_build(args));
    const std::size_t classes = args.has("--classes") ? parse_positive(cmd, "--classes", args.get("--classes")) : 0;
    return drt::standard_model(name, classes, 0, segformer_build(args));
  }();
  const bool classifier = std::holds_alternative<drt::resnet_model>(model);
  std::vector<size_hw> sizes;
  for (const auto& s : split_list(args.get("--size", classifier ? "224x224" : "512x512")))
    sizes.push_back(parse_size(cmd, "--size", s));
  for (const auto& sz : sizes)
    for (const std::size_t n : batches)  // a batch of n images of H x W is n*H*W pixels of activations
      drt::check_pixel_limit("--size " + std::to_string(sz.height) + "x" + std::to_string(sz.width) + " --batch " +
                                 std::to_string(n),
                             sz.height * n, sz.width, max_pixels(cmd, args));
  if (args.has("--svg")) drt::check_writable("svg", args.get("--svg"));

  std::vector<drt::profile_result> results;
  nlohmann::json all = nlohmann::json::array();
  for (const auto& sz : sizes)
    for (const std::size_t n : batches) {
      const std::string label =
          std::to_string(sz.height) + "x" + std::to_string(sz.width) + " batch " + std::to_string(n);
      drt::profile_options opt;
      opt.height = sz.height;
      opt.width = sz.width;
      opt.batch = n;
      opt.path = args.get("--path");
      opt.repeat = repeat;
      const auto t0 = std::chrono::steady_clock::now();
      opt.progress = [&](std::size_t done, std::size_t total) {
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::fprintf(stderr, "\rdrt profile: %s %s: run %zu/%zu (warm-up first), %.1f s   ", name.c_str(),
                     label.c_str(), done, total, s);
        if (done == total) std::fprintf(stderr, "\n");
      };
      auto r = drt::profile_model(model, opt);
      r.model = name;
      if (format == "table")
        std::cout << r.to_table(top) << '\n';
      else if (format == "csv")
        std::cout << r.to_csv(results.empty());
      else
        all.push_back(r.to_json());
      std::cout.flush();
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
          s.y.push_back(100 * results[i].time_share(g.seconds));
        }
      c.save(args.get("--svg"));
    }
    std::cerr << "drt profile: wrote " << args.get("--svg") << '\n';
  }
  return 0;
}

}  // namespace drt_cli
