// drt eval: mIoU of a segmentation model of any family (and dynamic path) on a labelled folder.

#include <drt/eval/evaluate.hpp>
#include <drt/models/any_model.hpp>
#include <drt/models/family.hpp>

#include <chrono>
#include <cstdio>
#include <iomanip>
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

int eval_main(const parsed_args& args) {
  const std::string cmd = "eval";
  apply_threads(args);
  const std::string model_dir = args.positional.at(0), data = args.get("--data");
  const int ignore =
      args.has("--ignore-index") ? parse_label_index(cmd, "--ignore-index", args.get("--ignore-index")) : 255;
  if (args.has("--json")) drt::check_writable("json", args.get("--json"));  // before minutes of evaluation
  const std::size_t limit = args.has("--limit") ? parse_positive(cmd, "--limit", args.get("--limit")) : 0;
  const std::size_t pixel_limit = max_pixels(cmd, args);
  const drt::any_model any = drt::load_model(model_dir, weight_options(args), segformer_build(args, model_dir));
  const auto items = drt::list_labelled_dataset(data, limit);
  progress_line line("drt eval");
  auto progress = [&](std::size_t done, std::size_t total, double seconds) {
    const double eta = done ? seconds / double(done) * double(total - done) : 0.0;
    char buf[96];
    std::snprintf(buf, sizeof buf, "%zu/%zu images, %.1f s, ETA %.0f s", done, total, seconds, eta);
    line.update(buf, {}, done == total);
  };
  std::vector<std::string> names;
  std::string path_text, precision;
  const drt::confusion_by_image cm = std::visit(
      [&](const auto& model) -> drt::confusion_by_image {
        using family = drt::model_family<std::decay_t<decltype(model)>>;
        if constexpr (family::output != drt::output_kind::segmentation) {
          throw drt::invalid_input("model '" + model_dir + "' is a " + family::name +
                                   " classifier: drt eval measures segmentation mIoU (for a classifier's paths use "
                                   "drt sweep, which measures fidelity to the full model)");
        } else {
        const auto path = family::parse(args.get("--path"));
        family::validate(model, path);
        const auto exec = family::compile(model, path);
        names = model.config().class_names;
        path_text = path.to_string();
        precision = precision_report(path, args);
        return drt::evaluate_segmentation([&](const drt::tensor4& x) { return family::logits(model, x, exec); },
                                          names.size(), items, ignore, progress, pixel_limit);
        }
      },
      any);
  line.finish();
  const drt::miou_interval ci = cm.interval();
  auto j = cm.total().to_json(names);
  if (ci.valid())
    j["mIoU_interval"] = {{"low", ci.low}, {"high", ci.high}, {"level", ci.level}, {"resamples", ci.resamples},
                          {"method", "percentile bootstrap over the images"}};
  j["model"] = model_dir;
  j["family"] = drt::family_name(any);
  j["path"] = path_text;
  if (!precision.empty()) j["precision"] = precision;
  j["data"] = data;
  j["images"] = items.size();
  std::cout << "model      " << model_dir << " (" << drt::family_name(any) << ")\npath       " << path_text
            << (precision.empty() ? "" : "\nprecision  " + precision) << "\nimages     " << items.size()
            << " (" << data << ")\n"
            << std::fixed << std::setprecision(4) << "mIoU       " << cm.miou();
  if (ci.valid())
    std::cout << " (" << std::setprecision(0) << 100 * ci.level << std::setprecision(4) << " % interval " << ci.low
              << " - " << ci.high << ", bootstrap over the images)";
  std::cout << "\npixel acc  " << cm.pixel_accuracy() << "\nper class IoU:\n";
  const auto ious = cm.total().iou();
  for (std::size_t c = 0; c < ious.size(); ++c)
    std::cout << "  " << std::setw(2) << c << ' ' << std::left << std::setw(14) << names[c] << std::right << ' '
              << (ious[c] == ious[c] ? ious[c] : 0.0) << '\n';
  if (args.has("--json")) {
    drt::write_file_atomic("json", args.get("--json"), j.dump(1) + "\n");
    std::cout << "json       " << args.get("--json") << '\n';
  }
  return 0;
}

}  // namespace

command add_eval_command(CLI::App& drt) {
  CLI::App* app =
      add_command(drt, "eval", "mIoU of a model (and path) on a labelled folder",
                  "Measure mIoU, pixel accuracy and per-class IoU on a labelled folder (images/ + labels/ with\n"
                  "matching stems): logits upsampled to the label size (bilinear, align_corners=False), one\n"
                  "confusion matrix over the set.\n"
                  "Labels are 8-bit PNGs with one class index per pixel; --ignore-index pixels are not counted.");
  positional_option(*app, "MODEL_DIR", "model directory (config.json, model.safetensors): SegFormer or Swin + UPerNet")->required();
  value_option(*app, "--data", "DIR", "labelled folder with images/ and labels/")->required();
  add_path_option(*app);
  value_option(*app, "--ignore-index", "K", "label value to ignore (default 255; CamVid: 11)");
  value_option(*app, "--limit", "N", "evaluate only the first N images (sorted by name)");
  value_option(*app, "--json", "OUT", "write mIoU, pixel accuracy, per-class IoU and the confusion matrix as JSON");
  add_threads_option(*app);
  add_max_pixels_option(*app);
  add_allow_nonfinite_option(*app);
  add_no_fold_option(*app);
  return {app, &eval_main};
}

}  // namespace drt_cli
