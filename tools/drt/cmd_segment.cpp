// drt segment: one image through a model (and path), a palette-coloured class map, the time taken and
// the class histogram; with --lut, budgeted inference (cmd_segment_budget.cpp).

#include <drt/core/error.hpp>
#include <drt/io/image.hpp>
#include <drt/models/any_model.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <numeric>
#include <string>
#include <variant>
#include <vector>

#include "commands.hpp"
#include "inputs.hpp"

namespace drt_cli {

namespace {

int segment_main(const parsed_args& args) {
  const std::string cmd = "segment";
  if (wants_budget(args)) return segment_budget_main(args, resolve_default(default_image));
  const std::string model_dir = args.positional.size() > 0 ? args.positional[0] : resolve_default(default_model);
  const std::string image_path = args.positional.size() > 1 ? args.positional[1] : resolve_default(default_image);
  const std::string mask_path = args.get("--out", "segment_mask.png");
  const std::string overlay_path = args.get("--overlay");
  const float alpha = args.has("--alpha") ? parse_fraction(cmd, "--alpha", args.get("--alpha")) : 0.5f;
  size_hw size;
  if (args.has("--size")) size = parse_size_limited(cmd, args);
  apply_threads(args);
  drt::check_writable("png", mask_path);  // before loading and running anything
  if (!overlay_path.empty()) drt::check_writable("png", overlay_path);

  const drt::any_model any = drt::load_model(model_dir, weight_options(args), segformer_build(args, model_dir));
  if (std::holds_alternative<drt::resnet_model>(any))
    throw drt::invalid_input("drt segment: model '" + model_dir + "' is a resnet classifier, not a segmentation model");
  const drt::rgb_image original = drt::load_image(image_path, drt::channel_policy::convert, max_pixels(cmd, args));
  const drt::rgb_image image = args.has("--size") ? drt::resize_image(original, size.height, size.width) : original;
  const drt::tensor4 pixel_values = drt::normalize_imagenet(image);  // [1, 3, H, W]

  std::string path_text = "full";
  double gmacs = 0, forward_ms = 0;
  drt::tensor4 logits;
  std::vector<std::string> names;
  if (const auto* seg = std::get_if<drt::segformer_model>(&any)) {
    seg->check_input(image.height, image.width);
    const auto path = drt::segformer_path::parse(args.get("--path"));
    const auto exec = seg->compile(path);
    path_text = path.to_string();
    gmacs = drt::total_macs(seg->layers(image.height, image.width, exec)) / 1e9;
    const auto t0 = std::chrono::steady_clock::now();
    logits = seg->forward(pixel_values, false, exec).logits;
    forward_ms = ms_since(t0);
    names = seg->config().class_names;
  } else {
    const auto& up = std::get<drt::upernet_swin_model>(any);
    const auto path = drt::upernet_path::parse(args.get("--path"));
    const auto exec = up.compile(path);
    path_text = path.to_string();
    gmacs = drt::total_macs(up.layers(image.height, image.width, exec)) / 1e9;
    const auto t0 = std::chrono::steady_clock::now();
    logits = up.forward(pixel_values, false, exec).logits;
    forward_ms = ms_since(t0);
    names = up.config().class_names;
  }
  warn_nonfinite(cmd, "logits", logits);
  const drt::itensor3 classes = drt::upsample_argmax(logits, image.height, image.width);  // [1, H, W]

  const drt::palette pal = drt::class_palette(names.size());
  write_segmentation(mask_path, overlay_path, image, classes, pal, alpha);

  std::cout << "model    " << model_dir << " (" << names.size() << " classes)\n"
            << "image    " << image_path << " (" << original.height << "x" << original.width << " HxW)\n"
            << "size     " << image.height << "x" << image.width << " (HxW)"
            << (args.has("--size") ? " after resize" : "") << '\n'
            << "threads  " << drt::max_threads() << '\n'
            << "path     " << path_text << " (" << std::fixed << std::setprecision(2) << gmacs << " GMACs)\n"
            << std::fixed << std::setprecision(1) << "time     " << forward_ms << " ms (forward)\n"
            << "mask     " << mask_path << '\n';
  if (!overlay_path.empty()) std::cout << "overlay  " << overlay_path << '\n';

  // Class histogram, most frequent first.
  std::vector<std::size_t> count(names.size(), 0);
  for (const std::int32_t c : classes)
    if (c >= 0 && static_cast<std::size_t>(c) < count.size()) ++count[static_cast<std::size_t>(c)];
  std::vector<std::size_t> order(count.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return count[a] > count[b]; });
  std::size_t name_width = 5;
  for (const auto& nm : names) name_width = std::max(name_width, nm.size());
  const double total = static_cast<double>(classes.size());
  std::cout << "classes  (pixels, share of " << classes.size() << ")\n";
  for (const std::size_t k : order) {
    if (count[k] == 0) continue;
    std::cout << "  " << std::setw(2) << k << ' ' << std::left << std::setw(static_cast<int>(name_width)) << names[k]
              << std::right << std::setw(9) << count[k] << std::setw(7) << 100.0 * static_cast<double>(count[k]) / total
              << " %\n";
  }
  return 0;
}

}  // namespace

command add_segment_command(CLI::App& drt) {
  CLI::App* app = add_command(
      drt, "segment", "segment an image, write a coloured class map, print time and class histogram",
      std::string("Segment one PNG/JPEG image: write the class map as a palette-coloured PNG and print the time\n"
                  "taken and the class histogram.\n"
                  "MODEL_DIR defaults to ") +
          default_model + ", IMAGE to " + default_image +
          ",\n"
          "both inside the source tree (or relative to the working directory).\n"
          "With --lut, MODEL_DIR limits the table to that model (otherwise the table's models are loaded\n"
          "from their recorded directories); a single positional that is a file is the image.");
  positional_option(*app, "MODEL_DIR", "model directory (default: the bundled SegFormer-B0 CamVid model)");
  positional_option(*app, "IMAGE", "PNG or JPEG image (default: the bundled CamVid frame)");
  value_option(*app, "--out", "PATH", "class map PNG to write (default segment_mask.png)");
  value_option(*app, "--overlay", "PATH", "also write the photo blended with the class colours");
  value_option(*app, "--alpha", "A", "overlay opacity of the class colours in [0, 1] (default 0.5)");
  value_option(*app, "--size", "HxW", "resize the image to H x W before inference (e.g. 352x480)");
  add_path_option(*app, "dynamic execution path, e.g. \"depths=2,3,5,3 fuse_in=1024\" (default: full model)");
  add_threads_option(*app);
  add_max_pixels_option(*app);
  add_allow_nonfinite_option(*app);
  add_no_fold_option(*app);
  add_budget_options(*app);
  return {app, &segment_main};
}

}  // namespace drt_cli
