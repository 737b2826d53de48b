// drt: command-line front end of the drt library.
//
//   drt run MODEL_DIR --input CASE.safetensors --output OUT.safetensors
//   drt segment [MODEL_DIR] [IMAGE] [--out mask.png] [--overlay overlay.png] [--size HxW] [--threads T]
//   drt eval MODEL_DIR --data DIR [--path ...] [--ignore-index K] [--limit N] [--json OUT]
//
// Exit codes: 0 success, 1 an error from drt (bad file, bad model, ...), 2 a bad command line.

#include <drt/core/error.hpp>
#include <drt/core/tensor.hpp>
#include <drt/io/image.hpp>
#include <drt/io/safetensors.hpp>
#include <drt/models/any_model.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cli_args.hpp"
#include "cli_inputs.hpp"
#include "cmd_accel.hpp"
#include "cmd_budget.hpp"
#include "cmd_eval.hpp"
#include "cmd_profile.hpp"
#include "cmd_sweep.hpp"

namespace {

using drt_cli::command_spec;
using drt_cli::parsed_args;
using drt_cli::usage_error;

const char* const default_model = "data/models/segformer-b0-camvid";
const char* const default_image = "data/images/0016E5_07959.png";

/// A default data path: under the source tree baked in at build time when it exists there,
/// otherwise relative to the working directory.
std::string resolve_default(const std::string& rel) {
#ifdef DRT_SOURCE_DIR
  const std::filesystem::path in_tree = std::filesystem::path(DRT_SOURCE_DIR) / rel;
  std::error_code ec;
  if (std::filesystem::exists(in_tree, ec)) return in_tree.string();
#endif
  return rel;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

/// --threads T: the OpenMP thread count for the forward pass.
void apply_threads(const std::string& command, const parsed_args& args) {
  if (!args.has("--threads")) return;
  const std::size_t t = drt_cli::parse_positive(command, "--threads", args.get("--threads"));
#ifdef _OPENMP
  omp_set_num_threads(static_cast<int>(t));
#else
  (void)t;
  std::cerr << "drt " << command << ": built without OpenMP, --threads is ignored\n";
#endif
}

int thread_count() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// ------------------------------------------------------------------------------------- run

const command_spec run_cmd{
    "run",
    "MODEL_DIR --input CASE.safetensors --output OUT.safetensors [options]",
    "Run a SegFormer model on the 'pixel_values' [N, 3, H, W] of a safetensors file and write its\n"
    "'logits' [N, K, H/4, W/4] (F32) and 'prediction' [N, H, W] (I32, bilinear upsampling + argmax).",
    {"MODEL_DIR holds config.json and model.safetensors (Hugging Face hub layout).",
     "Shapes and timings go to stderr; the input's metadata is copied to the output."},
    {{"--input", "CASE", "safetensors file with 'pixel_values' [N, 3, H, W] (normalized, float)"},
     {"--output", "OUT", "safetensors file to write"},
     {"--path", "TEXT", "dynamic execution path, e.g. \"depths=2,3,5,3 fuse_in=1024\" (default: full model)"},
     {"--threads", "T", "OpenMP threads (default: all)"},
     drt_cli::max_pixels_option,
     drt_cli::allow_nonfinite_option,
     drt_cli::no_fold_option},
    1,
    1};

int run_main(const parsed_args& args) {
  if (!args.has("--input")) throw usage_error(run_cmd.name, "missing required option '--input'");
  if (!args.has("--output")) throw usage_error(run_cmd.name, "missing required option '--output'");
  apply_threads(run_cmd.name, args);
  const std::string model_dir = args.positional.at(0);
  const std::string input = args.get("--input"), output = args.get("--output");
  const std::size_t pixel_limit = drt_cli::max_pixels(run_cmd.name, args);

  // Inputs may hold NaN (a warning below); the shape is checked before anything is allocated for it.
  const drt::safetensors_file in(input, drt::safetensors_options{true});
  const auto& entry = in.entry("pixel_values");
  if (entry.shape.size() != 4 || entry.shape[1] != 3 || entry.shape[0] == 0)
    throw drt::shape_error("safetensors '" + input + "': tensor 'pixel_values' has shape " +
                           drt::shape_str(entry.shape) + ", expected [N, 3, H, W] with N >= 1");
  const auto n = static_cast<std::size_t>(entry.shape[0]), h = static_cast<std::size_t>(entry.shape[2]),
             w = static_cast<std::size_t>(entry.shape[3]);
  drt::check_pixel_limit("safetensors '" + input + "': tensor 'pixel_values' " + drt::shape_str(entry.shape), h, w,
                         pixel_limit);
  drt::check_writable("safetensors", output);  // before the forward pass
  const drt::host_tensor px = in.read_float("pixel_values");
  drt_cli::warn_nonfinite(run_cmd.name, "input '" + input + "' tensor 'pixel_values'", px.data);
  drt::tensor4 pixel_values = drt::tensor4::from_shape({n, std::size_t{3}, h, w});
  std::copy(px.data.begin(), px.data.end(), pixel_values.begin());

  const drt::any_model any = drt::load_model(model_dir, drt_cli::weight_options(args), drt_cli::segformer_build(args));
  std::cerr << "drt run: model " << model_dir << " (" << drt::family_name(any) << ", " << thread_count()
            << " threads)\n"
            << "drt run: input " << input << " pixel_values " << drt::shape_str(px.shape) << '\n';
  std::map<std::string, drt::safetensors_record> records;
  std::vector<drt::tensor4> keep4;  // outputs must live until written
  drt::tensor2 keep2;
  drt::itensor3 prediction;
  auto shape_of = [](const auto& t) { return std::vector<std::int64_t>(t.shape().begin(), t.shape().end()); };
  auto add4 = [&](const std::string& name, drt::tensor4 t) {
    keep4.push_back(std::move(t));
    records[name] = {shape_of(keep4.back()), keep4.back().data(), nullptr};
  };
  const auto t0 = std::chrono::steady_clock::now();
  double forward_ms = 0;
  if (const auto* seg = std::get_if<drt::segformer_model>(&any)) {
    seg->check_input(h, w);
    const auto path = drt::segformer_path::parse(args.get("--path"));
    const auto exec = seg->compile(path);
    std::cerr << "drt run: path " << path.to_string() << " (" << std::fixed << std::setprecision(2)
              << drt::total_macs(seg->layers(h, w, exec, n)) / 1e9 << " GMACs)\n";
    auto out = seg->forward(pixel_values, false, exec);
    forward_ms = ms_since(t0);
    prediction = drt::upsample_argmax(out.logits, h, w);
    add4("logits", std::move(out.logits));
  } else if (const auto* up = std::get_if<drt::upernet_swin_model>(&any)) {
    const auto path = drt::upernet_path::parse(args.get("--path"));
    const auto exec = up->compile(path);
    std::cerr << "drt run: path " << path.to_string() << " (" << std::fixed << std::setprecision(2)
              << drt::total_macs(up->layers(h, w, exec, n)) / 1e9 << " GMACs)\n";
    auto out = up->forward(pixel_values, true, exec);
    forward_ms = ms_since(t0);
    prediction = drt::upsample_argmax(out.logits, h, w);  // logits are already at the input size
    add4("logits", std::move(out.logits));
    for (std::size_t i = 0; i < out.features.size(); ++i) add4("backbone_stage" + std::to_string(i), std::move(out.features[i]));
  } else {
    const auto& rn = std::get<drt::resnet_model>(any);
    const auto path = drt::resnet_path::parse(args.get("--path"));
    const auto exec = rn.compile(path);
    std::cerr << "drt run: path " << path.to_string() << '\n';
    auto out = rn.forward(pixel_values, true, exec);
    forward_ms = ms_since(t0);
    keep2 = std::move(out.logits);
    records["logits"] = {shape_of(keep2), keep2.data(), nullptr};
    for (std::size_t i = 0; i < out.hidden_states.size(); ++i)
      add4("hidden_state" + std::to_string(i), std::move(out.hidden_states[i]));
  }
  if (prediction.size() > 0) records["prediction"] = {shape_of(prediction), nullptr, prediction.data()};
  if (!keep4.empty()) drt_cli::warn_nonfinite(run_cmd.name, "output 'logits'", keep4.front());
  if (keep2.size() > 0) drt_cli::warn_nonfinite(run_cmd.name, "output 'logits'", keep2);
  drt::save_safetensors(output, records, in.metadata());
  std::cerr << std::fixed << std::setprecision(1) << "drt run: forward " << forward_ms << " ms\n"
            << "drt run: wrote " << output << ":";
  for (const auto& [name, rec] : records) std::cerr << ' ' << name << ' ' << drt::shape_str(rec.shape);
  std::cerr << '\n';
  return 0;
}

// --------------------------------------------------------------------------------- segment

const command_spec segment_cmd = drt_cli::with_budget_options(command_spec{
    "segment",
    "[MODEL_DIR] [IMAGE] [options]",
    "Segment one PNG/JPEG image: write the class map as a palette-coloured PNG and print the time\n"
    "taken and the class histogram.",
    {std::string("MODEL_DIR defaults to ") + default_model + ", IMAGE to " + default_image + ",",
     "both inside the source tree (or relative to the working directory)."},
    {{"--out", "PATH", "class map PNG to write (default segment_mask.png)"},
     {"--overlay", "PATH", "also write the photo blended with the class colours"},
     {"--alpha", "A", "overlay opacity of the class colours in [0, 1] (default 0.5)"},
     {"--size", "HxW", "resize the image to H x W before inference (e.g. 352x480)"},
     {"--path", "TEXT", "dynamic execution path, e.g. \"depths=2,3,5,3 fuse_in=1024\" (default: full model)"},
     {"--threads", "T", "OpenMP threads (default: all)"},
     drt_cli::max_pixels_option,
     drt_cli::allow_nonfinite_option,
     drt_cli::no_fold_option},
    0,
    2});

int segment_main(const parsed_args& args) {
  const std::string& cmd = segment_cmd.name;
  if (drt_cli::wants_budget(cmd, args)) return drt_cli::segment_budget_main(args, resolve_default(default_image));
  const std::string model_dir = args.positional.size() > 0 ? args.positional[0] : resolve_default(default_model);
  const std::string image_path = args.positional.size() > 1 ? args.positional[1] : resolve_default(default_image);
  const std::string mask_path = args.get("--out", "segment_mask.png");
  const std::string overlay_path = args.get("--overlay");
  const float alpha = args.has("--alpha") ? drt_cli::parse_fraction(cmd, "--alpha", args.get("--alpha")) : 0.5f;
  drt_cli::size_hw size;
  if (args.has("--size")) size = drt_cli::parse_size_limited(cmd, args);
  apply_threads(cmd, args);
  drt::check_writable("png", mask_path);  // before loading and running anything
  if (!overlay_path.empty()) drt::check_writable("png", overlay_path);

  const drt::any_model any = drt::load_model(model_dir, drt_cli::weight_options(args), drt_cli::segformer_build(args));
  if (std::holds_alternative<drt::resnet_model>(any))
    throw drt::invalid_input("drt segment: model '" + model_dir + "' is a resnet classifier, not a segmentation model");
  const drt::rgb_image original =
      drt::load_image(image_path, drt::channel_policy::convert, drt_cli::max_pixels(cmd, args));
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
  drt_cli::warn_nonfinite(cmd, "logits", logits);
  const drt::itensor3 classes = drt::upsample_argmax(logits, image.height, image.width);  // [1, H, W]

  const drt::palette pal = drt::class_palette(names.size());
  drt_cli::write_segmentation(mask_path, overlay_path, image, classes, pal, alpha);

  std::cout << "model    " << model_dir << " (" << names.size() << " classes)\n"
            << "image    " << image_path << " (" << original.height << "x" << original.width << " HxW)\n"
            << "size     " << image.height << "x" << image.width << " (HxW)"
            << (args.has("--size") ? " after resize" : "") << '\n'
            << "threads  " << thread_count() << '\n'
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

// ------------------------------------------------------------------------------------ main

void print_main_usage(std::ostream& os) {
  os << "usage: drt <command> [arguments] [options]\n\n"
        "Dynamic real-time inference of SegFormer vision transformers.\n\n"
        "commands:\n"
        "  run      run a model on the pixel_values of a safetensors file, write logits and prediction\n"
        "  segment  segment an image, write a coloured class map, print time and class histogram\n"
        "  eval     mIoU of a model (and path) on a labelled folder\n"
        "  profile  per-layer MACs and time, grouped by kind and region\n"
        "  sweep    measure many paths (latency, mIoU), keep the Pareto front in a lookup table\n"
        "  accel    map a model onto a MAGNet-style accelerator: tiling, cycles, energy, area\n"
        "  dse      paths x accelerator designs: the paper's Figs. 10 and 11\n\n"
        "'drt <command> --help' describes a command.\n";
}

int dispatch(int argc, char** argv) {
  if (argc < 2) {
    print_main_usage(std::cerr);
    return 2;
  }
  const std::string command = argv[1];
  if (command == "-h" || command == "--help" || command == "help") {
    print_main_usage(std::cout);
    return 0;
  }
  const std::map<std::string, std::pair<const command_spec*, int (*)(const parsed_args&)>> commands = {
      {"run", {&run_cmd, &run_main}},
      {"segment", {&segment_cmd, &segment_main}},
      {"eval", {&drt_cli::eval_cmd, &drt_cli::eval_main}},
      {"profile", {&drt_cli::profile_cmd, &drt_cli::profile_main}},
      {"accel", {&drt_cli::accel_cmd, &drt_cli::accel_main}},
      {"dse", {&drt_cli::dse_cmd, &drt_cli::dse_main}},
      {"sweep", {&drt_cli::sweep_cmd, &drt_cli::sweep_main}}};
  const auto it = commands.find(command);
  if (it == commands.end()) {
    std::cerr << "drt: unknown command '" << command << "' (commands: run, segment, eval, profile, sweep, accel, dse; see 'drt --help')\n";
    return 2;
  }
  const command_spec& spec = *it->second.first;
  const parsed_args args = drt_cli::parse_args(spec, argc, argv, 2);
  if (args.help) {
    drt_cli::print_usage(std::cout, spec);
    return 0;
  }
  return it->second.second(args);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return dispatch(argc, argv);
  } catch (const usage_error& e) {
    std::cerr << "drt " << e.command() << ": " << e.what() << " (see 'drt " << e.command() << " --help')\n";
    return 2;
  } catch (const drt::invalid_input& e) {  // bad file, tensor, config or argument value
    std::cerr << "drt: error: " << e.what() << '\n';
    return 1;
  } catch (const drt::io_error& e) {  // missing, unreadable or unwritable file
    std::cerr << "drt: error: " << e.what() << '\n';
    return 1;
  } catch (const std::bad_alloc&) {  // an input or model larger than this machine's memory
    std::cerr << "drt: error: out of memory (an input or model too large for this machine? --max-pixels bounds images)\n";
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {  // names the path(s) itself
    std::cerr << "drt: error: " << e.what() << '\n';
    return 1;
  } catch (const std::exception& e) {  // not expected from drt
    std::cerr << "drt: unexpected error: " << e.what() << '\n';
    return 1;
  }
}
