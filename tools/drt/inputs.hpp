#pragma once
/// @file inputs.hpp
/// What every `drt` command does the same way with untrusted inputs: the pixel limit on images and
/// `--size`, the non-finite policy for weights (refused unless `--allow-nonfinite`), the check of
/// inputs and outputs for NaN and infinity (a warning on stderr), and outputs that land together.

#include <drt/core/tensor.hpp>
#include <drt/io/file.hpp>
#include <drt/io/image.hpp>
#include <drt/io/safetensors.hpp>
#include <drt/models/segformer.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "cli.hpp"

namespace drt_cli {

inline void add_max_pixels_option(CLI::App& app) {
  value_option(app, "--max-pixels", "N",
               "refuse images and --size larger than N pixels (default " + std::to_string(drt::default_max_pixels) +
                   " = 4096x4096)");
}
/// The channel order `--order` names: "weight", "checkpoint", or a JSON file holding a channel order
/// or a lookup table that records one (engine/lut_build.hpp: the order of its models' builds, which
/// must agree).
inline drt::channel_order channel_order_arg(const std::string& text) {
  drt::channel_order o;
  if (text == "weight" || text == "checkpoint") {
    o.method = text;
    return o;
  }
  const auto j = drt::read_json_file("channel order", text);
  if (j.is_object() && j.contains("info") && j["info"].is_object() && j["info"].contains("builds") &&
      j["info"]["builds"].is_object() && !j["info"]["builds"].empty()) {
    const std::string where = "lut '" + text + "'";
    std::optional<drt::channel_order> found;
    for (const auto& [model, b] : j["info"]["builds"].items()) {
      if (!b.is_object() || !b.contains("channel_order"))
        throw drt::invalid_input(where + ": builds of model '" + model + "' record no channel_order");
      auto mine = drt::channel_order::from_json(b["channel_order"], where + ": channel order of model '" + model + "'");
      if (found && found->to_json() != mine.to_json())
        throw drt::invalid_input(where + " records different channel orders for its models: give the order file");
      found = std::move(mine);
    }
    return *found;
  }
  return drt::channel_order::from_json(j, "channel order '" + text + "'");
}

/// Where a model directory keeps its calibrated channel order (`drt calibrate ... --out
/// MODEL_DIR/channel_order.json`): the order a command loads that model in when no --order is given.
inline const char* const model_order_file = "channel_order.json";

/// How the command builds SegFormer graphs (--no-fold, --order). `model_dir` (when the command
/// loads one model directory): without --order, the order in MODEL_DIR/channel_order.json if there
/// is one (named on stderr), else the data-free weight order.
inline drt::segformer_options segformer_build(const parsed_args& args, const std::string& model_dir = "") {
  drt::segformer_options o;
  o.fold_decoder = !args.has("--no-fold");
  std::error_code ec;
  const std::string beside = model_dir.empty() ? std::string() : model_dir + "/" + model_order_file;
  if (args.has("--order")) {
    o.order = channel_order_arg(args.get("--order"));
  } else if (!beside.empty() && std::filesystem::is_regular_file(beside, ec)) {
    o.order = channel_order_arg(beside);
    std::cerr << "drt: channel order " << o.order.fingerprint() << " from " << beside << "\n";
  }
  if (args.has("--int8-ranges")) {
    const std::string f = args.get("--int8-ranges");
    o.int8 = std::make_shared<drt::int8_calibration>(
        drt::int8_calibration::from_json(drt::read_json_file("int8 ranges", f), "int8 ranges '" + f + "'"));
  }
  return o;
}

/// What a path's precision runs on, for the program's report: empty for fp32 everywhere, else e.g.
/// "int8 (int8 AVX-512 VNNI (vpdpbusd); int8 input ranges: each call's own)".
template <class Path, class = void>
struct has_precision_knob : std::false_type {};
template <class Path>
struct has_precision_knob<Path, std::void_t<decltype(std::declval<const Path&>().precision)>> : std::true_type {};

/// Paths whose attention products have an arithmetic of their own (SegFormer's `attention` region).
template <class Path, class = void>
struct has_attention_region : std::false_type {};
template <class Path>
struct has_attention_region<Path, std::void_t<decltype(std::declval<const Path&>().attention_arithmetic())>>
    : std::true_type {};

template <class Path>
std::string precision_report(const Path& path, const parsed_args& args) {
  if constexpr (has_precision_knob<Path>::value) {
    // the attention products' arithmetic where they have a region of their own, else the layers'
    std::optional<drt::precision> products;
    if constexpr (has_attention_region<Path>::value) products = path.attention_arithmetic();
    if (path.precision.is_fp32() && products.value_or(drt::precision::fp32) == drt::precision::fp32) return "";
    // the GEMM layers in p: the whole-model value or a region other than the attention products'
    auto layers_in = [&](drt::precision p) {
      if (path.precision.all == p) return true;
      for (const auto& [region, q] : path.precision.regions)
        if (region != "attention" && q == p) return true;
      return false;
    };
    std::string kernels;
    for (const drt::precision p : {drt::precision::bf16, drt::precision::int8}) {
      const bool layers = layers_in(p);
      if (!layers && products != p) continue;
      kernels += (kernels.empty() ? "" : "; ") + drt::kernel_description(p);
      if (!layers) kernels += " for the attention products";
    }
    if (path.precision.uses(drt::precision::int8))
      kernels += args.has("--int8-ranges") ? "; int8 input ranges: calibrated, " + args.get("--int8-ranges")
                                           : std::string("; int8 input ranges: each call's own");
    return path.precision.to_string() + " (" + kernels + ")";
  } else {
    return "";
  }
}

/// The pixel limit of a command line (--max-pixels N, or drt's default).
inline std::size_t max_pixels(const std::string& command, const parsed_args& args) {
  if (!args.has("--max-pixels")) return drt::default_max_pixels;
  const std::string text = args.get("--max-pixels");
  // positive_or_zero stops at 9 digits; a limit may need more (12 digits = 10^12 pixels)
  if (text.empty() || text.size() > 12 || text.find_first_not_of("0123456789") != std::string::npos ||
      std::stoull(text) == 0)
    throw usage_error(command, "option '--max-pixels' expects a positive integer, got '" + text + "'");
  return static_cast<std::size_t>(std::stoull(text));
}

/// `--size HxW` checked against the pixel limit.
inline size_hw parse_size_limited(const std::string& command, const parsed_args& args) {
  const size_hw s = parse_size(command, "--size", args.get("--size"));
  drt::check_pixel_limit("--size " + args.get("--size"), s.height, s.width, max_pixels(command, args));
  return s;
}

/// How the command loads checkpoints.
inline drt::safetensors_options weight_options(const parsed_args& args) {
  drt::safetensors_options o;
  o.allow_nonfinite = args.has("--allow-nonfinite");
  return o;
}

/// Number of NaN or infinite values in `t` (one pass).
template <class Tensor>
std::size_t count_nonfinite(const Tensor& t) {
  return static_cast<std::size_t>(std::count_if(t.begin(), t.end(), [](float v) { return !std::isfinite(v); }));
}

/// Warn on stderr when `t` holds NaN or infinity; `what` names it ("input 'x.safetensors' pixel_values",
/// "logits of frame 3"). Returns the count.
template <class Tensor>
std::size_t warn_nonfinite(const std::string& command, const std::string& what, const Tensor& t) {
  const std::size_t n = count_nonfinite(t);
  if (n > 0)
    std::cerr << "drt " << command << ": warning: " << what << " holds " << n << " non-finite value"
              << (n > 1 ? "s" : "") << " of " << t.size() << " (NaN or infinity): the result is not meaningful\n";
  return n;
}

/// The mask PNG and, when `overlay_path` is not empty, the overlay PNG of class maps [1, H, W]:
/// both land or neither (a failed overlay write leaves no mask behind).
inline void write_segmentation(const std::string& mask_path, const std::string& overlay_path,
                               const drt::rgb_image& image, const drt::itensor3& classes, const drt::palette& pal,
                               float alpha) {
  const std::size_t h = classes.shape(1), w = classes.shape(2);
  drt::output_files out;
  out.add("png", mask_path, drt::encode_class_map_png("png '" + mask_path + "'", classes.data(), h, w, pal));
  if (!overlay_path.empty())
    out.add("png", overlay_path,
            drt::encode_overlay_png("overlay png '" + overlay_path + "'", image, classes.data(), h, w, pal, alpha));
  out.commit();
}

}  // namespace drt_cli
