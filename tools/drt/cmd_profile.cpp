// drt profile: per-layer MACs and measured time, grouped by kind and region; size/batch sweeps.
// Every model family: SegFormer, UPerNet + Swin, ResNet (MODEL_DIR or --arch).

#include <drt/engine/profile.hpp>
#include <drt/models/any_model.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "commands.hpp"
#include "progress.hpp"
#include "inputs.hpp"

namespace drt_cli {

namespace {

int profile_main(const parsed_args& args) {
  const std::string cmd = "profile";
  if (args.positional.empty() == !args.has("--arch")) throw usage_error(cmd, "give either MODEL_DIR or --arch NAME");
  apply_threads(args);
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
    if (!args.has("--arch")) return drt::load_model(name, {}, segformer_build(args, name));
    const std::size_t classes = args.has("--classes") ? parse_positive(cmd, "--classes", args.get("--classes")) : 0;
    return drt::standard_model(name, classes, 0, segformer_build(args));
  }();
  const bool classifier = std::holds_alternative<drt::resnet_model>(model);
  std::vector<size_hw> sizes;
  for (const auto& s : split_list(args.get("--size", classifier ? "224x224" : "512x512")))
    sizes.push_back(parse_size(cmd, "--size", s));
  for (const auto& sz : sizes)
    for (const std::size_t n : batches)  // a batch of n images of H x W is n*H*W pixels of activations
      drt::check_pixel_limit(
          "--size " + std::to_string(sz.height) + "x" + std::to_string(sz.width) + " --batch " + std::to_string(n),
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
      progress_line line("drt profile");
      opt.progress = [&](std::size_t done, std::size_t total) {
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        char buf[96];
        std::snprintf(buf, sizeof buf, "run %zu/%zu (warm-up first), %.1f s", done, total, s);
        line.update(name + " " + label + ": " + buf, label, done == total);
      };
      auto r = drt::profile_model(model, opt);
      line.finish();
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

}  // namespace

command add_profile_command(CLI::App& drt) {
  CLI::App* app = add_command(
      drt, "profile", "per-layer MACs and time, grouped by kind and region",
      std::string(
          "Profile a model: per layer its kind, region, parameters, MACs and measured time (median of R runs\n"
          "after a warm-up), shares of MACs and time, totals by kind and by region (SegFormer: encoder/decoder;\n"
          "UPerNet + Swin and ResNet: backbone/head).\n"
          "Give MODEL_DIR or --arch NAME. --arch NAME builds a standard architecture with synthetic weights;\n"
          "NAME is one of\n  ") +
          drt::standard_architectures() +
          ".\n"
          "--path takes the model family's path text, e.g. segformer \"depths=2,3,5,3 fuse_in=1024\",\n"
          "  upernet \"depths=2,2,4,2 bottleneck_in=1024 pred_in=256\", resnet \"depths=2,2,3,2 expand=0.5\".\n"
          "Several sizes or batches give one table per setting and a share-vs-setting view (--svg).\n"
          "Progress goes to stderr; the report to stdout.");
  positional_option(*app, "MODEL_DIR", "model directory (any family), or give --arch");
  value_option(*app, "--arch", "NAME", "standard architecture instead of MODEL_DIR");
  value_option(*app, "--classes", "K", "classes for --arch (default 150; ResNet 1000)");
  value_option(*app, "--size", "HxW[,...]", "input sizes (default 512x512; ResNet 224x224)");
  value_option(*app, "--batch", "N[,...]", "batch sizes (default 1)");
  add_path_option(*app);
  value_option(*app, "--repeat", "R", "timed runs per setting (default 5)");
  add_threads_option(*app);
  value_option(*app, "--format", "FMT", "table (default), csv or json");
  value_option(*app, "--top", "N", "table: only the N layers that take the most time (default: all)");
  value_option(*app, "--svg", "FILE",
               "plot: MAC share vs time share by kind and region (one setting) or time share vs setting");
  add_max_pixels_option(*app);
  add_no_fold_option(*app);
  return {app, &profile_main};
}

}  // namespace drt_cli
