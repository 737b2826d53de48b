// drt calibrate: an importance order of a model's prunable channel groups from calibration images
// (dynamic/channel_order.hpp), written as JSON for `--order FILE` of every command that takes a path;
// with --int8 METHOD, the int8 input ranges of the GEMM layers instead (dynamic/int8_calibration.hpp),
// for `--int8-ranges FILE`.

#include <drt/dynamic/channel_order.hpp>
#include <drt/io/file.hpp>
#include <drt/io/image.hpp>
#include <drt/models/any_model.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "commands.hpp"
#include "inputs.hpp"
#include "progress.hpp"

namespace drt_cli {

namespace {

int calibrate_main(const parsed_args& args) {
  const std::string cmd = "calibrate";
  apply_threads(args);
  const std::string model_dir = args.positional.at(0), calib = args.get("--calib"), out = args.get("--out");
  drt::check_writable("channel order", out);
  if (args.has("--mlp-order") && args.get("--mlp-order") != "calibrated" && args.get("--mlp-order") != "weight")
    throw usage_error(cmd, "--mlp-order is 'calibrated' or 'weight', not '" + args.get("--mlp-order") + "'");
  const std::size_t limit = args.has("--limit") ? parse_positive(cmd, "--limit", args.get("--limit")) : 0;
  const std::size_t pixel_limit = max_pixels(cmd, args);
  // The images: DIR/images/ when DIR is a labelled folder, else DIR itself.
  std::error_code ec;
  const std::string folder = std::filesystem::is_directory(calib + "/images", ec) ? calib + "/images" : calib;
  auto files = drt::list_image_files(folder, "calibration images");
  if (limit && files.size() > limit) files.resize(limit);
  auto run_images = [&](const auto& model, const char* title) {
    progress_line line(title);
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < files.size(); ++i) {
      drt::rgb_image img = drt::load_image(files[i], drt::channel_policy::convert, pixel_limit);
      if (args.has("--size")) {
        const size_hw s = parse_size_limited(cmd, args);
        img = drt::resize_image(img, s.height, s.width);
      }
      (void)drt::run_path(model, drt::normalize_imagenet(img), "");
      char buf[96];
      std::snprintf(buf, sizeof buf, "%zu/%zu images, %.1f s", i + 1, files.size(),
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      line.update(buf, {}, i + 1 == files.size());
    }
    line.finish();
  };
  if (args.has("--int8")) {
    const drt::range_method method = drt::parse_range_method(args.get("--int8"));
    drt::segformer_options build = segformer_build(args);
    build.int8.reset();  // measured in fp32, without ranges
    drt::any_model any = drt::load_model(model_dir, weight_options(args), build);
    const std::string source = "drt calibrate --int8 " + args.get("--int8") + " on " + std::to_string(files.size()) +
                               " images of '" + calib + "'";
    const drt::any_model& view = any;
    const auto ranges = std::visit(
        [&](auto& m) -> drt::int8_calibration {
          if constexpr (std::is_same_v<std::decay_t<decltype(m)>, drt::resnet_model>)
            throw drt::invalid_input("model '" + model_dir + "' is a " + drt::family_name(view) +
                                     " model: int8 ranges are calibrated for SegFormer and Swin + UPerNet only (a "
                                     "ResNet's int8 1x1 convs quantize each call's input with its own range; "
                                     "docs/precision.md)");
          else
            return drt::calibrate_int8(m, [&] { run_images(view, "drt calibrate --int8"); }, method, source);
        },
        any);
    nlohmann::json j = ranges.to_json();
    j["model"] = model_dir;
    const std::string text = j.dump() + "\n";
    drt::output_files files_out;
    files_out.add("int8 ranges", out, text.data(), text.size());
    files_out.commit();
    std::cout << "model        " << model_dir << "\ncalibration  " << files.size() << " images of " << calib
              << "\nmethod       " << drt::to_string(method) << "\nlayers       " << ranges.ranges.size()
              << " GEMM layers\nwrote        " << out << "\n";
    return 0;
  }
  // Statistics are gathered on the checkpoint's order; the order found is then a permutation of it.
  drt::segformer_options build = segformer_build(args);
  build.order = drt::channel_order{};
  const drt::any_model any = drt::load_model(model_dir, weight_options(args), build);
  const auto groups = std::visit(
      [](const auto& m) { return drt::model_family<std::decay_t<decltype(m)>>::channel_groups(m); }, any);
  if (groups.empty())
    throw drt::invalid_input("model '" + model_dir + "' is a " + drt::family_name(any) +
                             " model: its family has no importance-ordered channel groups yet (drt calibrate orders "
                             "SegFormer's Mix-FFN and Swin's MLP hidden units)");
  const auto layers = std::visit(
      [](const auto& m) { return drt::model_family<std::decay_t<decltype(m)>>::group_layers(m); }, any);
  const auto stats = drt::collect_unit_statistics(
      layers, [&] { run_images(any, "drt calibrate"); }, drt::refit_group_names(groups));
  const std::string source = "drt calibrate on " + std::to_string(files.size()) + " images of '" + calib + "'";
  const drt::safetensors_file checkpoint(model_dir + "/model.safetensors", weight_options(args));
  auto order = drt::calibrated_order(drt::safetensors_source(checkpoint), groups, stats, source);
  // Mean compensation is measured to cost accuracy on CamVid (docs/channel_order.md): opt-in.
  if (!args.has("--compensate")) order.means.clear();
  if (args.has("--mlp-order") && args.get("--mlp-order") == "weight") {
    // the MLP groups in the data-free weight order, the refit groups as calibrated
    const auto weight = drt::weight_order(drt::safetensors_source(checkpoint), groups);
    for (const auto& [name, p] : weight.groups) order.groups[name] = p;
    order.means.clear();
    order.method = "weight+calibrated";
  }
  if (args.has("--no-refit"))  // the classifier's inputs stay in checkpoint order, pred_in unrefit
    for (const auto& name : drt::refit_group_names(groups)) {
      order.groups.erase(name);
      order.moments.erase(name);
    }
  const bool heads = std::any_of(groups.begin(), groups.end(), [&](const drt::channel_group& g) {
    return drt::group_unit_size(g) > 1 && order.groups.count(g.name);  // units of several channels: heads
  });
  nlohmann::json j = order.to_json();
  j["fingerprint"] = order.fingerprint();
  j["model"] = model_dir;
  const std::string text = j.dump() + "\n";
  drt::output_files files_out;
  files_out.add("channel order", out, text.data(), text.size());
  files_out.commit();
  std::cout << "model        " << model_dir << "\ncalibration  " << files.size() << " images of " << calib
            << "\ngroups       " << order.groups.size() << " (MLP hidden units" << (heads ? ", attention heads" : "")
            << (order.moments.empty() ? "" : "; the classifier's inputs, with their moments for the pred_in refit")
            << ")\norder        "
            << order.fingerprint() << "\nwrote        " << out << "\n";
  return 0;
}

}  // namespace

command add_calibrate_command(CLI::App& drt) {
  CLI::App* app = add_command(
      drt, "calibrate", "importance order of the prunable channels, from calibration images",
      "Run calibration images through the model, rank every MLP's hidden units (SegFormer's Mix-FFN,\n"
      "Swin's MLP) by their activation RMS times the norm of their output-layer column (SegFormer's\n"
      "attention heads by their weight norms, measured better), rank the\n"
      "classifier's inputs greedily by the output error of a least-squares refit and store their\n"
      "moments, and write the order as JSON. Every command that takes a path reads it with --order\n"
      "FILE; `mlp=` and `heads=` prefixes then keep the most important units and `pred_in=` prefixes get a refit\n"
      "classifier (docs/channel_order.md). Calibrate on images the accuracy is not measured on.");
  positional_option(*app, "MODEL_DIR", "SegFormer or Swin + UPerNet model directory (config.json, model.safetensors)")
      ->required();
  value_option(*app, "--calib", "DIR", "calibration images (a folder of PNG/JPEG, or a labelled folder's images/)")
      ->required();
  value_option(*app, "--out", "FILE", "where to write the order (JSON), or the int8 ranges with --int8")->required();
  value_option(*app, "--int8", "METHOD",
               "write the int8 input ranges of the GEMM layers (SegFormer, Swin + UPerNet) instead of a channel order: "
               "minmax, percentile "
               "(99.99 %) or mse (docs/precision.md); read back with --int8-ranges FILE");
  value_option(*app, "--limit", "N", "use only the first N images (sorted by name)");
  value_option(*app, "--size", "HxW", "resize the images to H x W first (default: as stored)");
  flag_option(*app, "--compensate",
              "also store the units' mean activations: a path that drops units adds their expected contribution to "
              "dense2's bias (measured to cost accuracy on CamVid; see docs/channel_order.md)");
  value_option(*app, "--mlp-order", "ORDER",
               "calibrated (default: activation RMS x output-column norm) or weight (the data-free order, with the "
               "classifier's inputs still calibrated and refit)");
  flag_option(*app, "--no-refit",
              "leave the classifier's inputs in checkpoint order, without the moments a pred_in path refits the "
              "classifier from (docs/channel_order.md)");
  add_threads_option(*app);
  add_max_pixels_option(*app);
  add_allow_nonfinite_option(*app);
  add_no_fold_option(*app);
  return {app, &calibrate_main};
}

}  // namespace drt_cli
