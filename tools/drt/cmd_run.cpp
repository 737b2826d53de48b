// drt run: a model on the pixel_values of a safetensors file; writes logits and prediction.

#include <drt/core/error.hpp>
#include <drt/core/tensor.hpp>
#include <drt/io/safetensors.hpp>
#include <drt/models/any_model.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "commands.hpp"
#include "inputs.hpp"

namespace drt_cli {

namespace {

int run_main(const parsed_args& args) {
  const std::string cmd = "run";
  apply_threads(args);
  const std::string model_dir = args.positional.at(0);
  const std::string input = args.get("--input"), output = args.get("--output");
  const std::size_t pixel_limit = max_pixels(cmd, args);

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
  warn_nonfinite(cmd, "input '" + input + "' tensor 'pixel_values'", px.data);
  drt::tensor4 pixel_values = drt::tensor4::from_shape({n, std::size_t{3}, h, w});
  std::copy(px.data.begin(), px.data.end(), pixel_values.begin());

  const drt::any_model any = drt::load_model(model_dir, weight_options(args), segformer_build(args, model_dir));
  std::cerr << "drt run: model " << model_dir << " (" << drt::family_name(any) << ", " << drt::max_threads()
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
    for (std::size_t i = 0; i < out.features.size(); ++i)
      add4("backbone_stage" + std::to_string(i), std::move(out.features[i]));
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
  if (!keep4.empty()) warn_nonfinite(cmd, "output 'logits'", keep4.front());
  if (keep2.size() > 0) warn_nonfinite(cmd, "output 'logits'", keep2);
  drt::save_safetensors(output, records, in.metadata());
  std::cerr << std::fixed << std::setprecision(1) << "drt run: forward " << forward_ms << " ms\n"
            << "drt run: wrote " << output << ":";
  for (const auto& [name, rec] : records) std::cerr << ' ' << name << ' ' << drt::shape_str(rec.shape);
  std::cerr << '\n';
  return 0;
}

}  // namespace

command add_run_command(CLI::App& drt) {
  CLI::App* app =
      add_command(drt, "run", "run a model on the pixel_values of a safetensors file, write logits and prediction",
                  "Run a SegFormer model on the 'pixel_values' [N, 3, H, W] of a safetensors file and write its\n"
                  "'logits' [N, K, H/4, W/4] (F32) and 'prediction' [N, H, W] (I32, bilinear upsampling + argmax).\n"
                  "MODEL_DIR holds config.json and model.safetensors (Hugging Face hub layout).\n"
                  "Shapes and timings go to stderr; the input's metadata is copied to the output.");
  positional_option(*app, "MODEL_DIR", "model directory (config.json, model.safetensors)")->required();
  value_option(*app, "--input", "CASE", "safetensors file with 'pixel_values' [N, 3, H, W] (normalized, float)")
      ->required();
  value_option(*app, "--output", "OUT", "safetensors file to write")->required();
  add_path_option(*app, "dynamic execution path, e.g. \"depths=2,3,5,3 fuse_in=1024\" (default: full model)");
  add_threads_option(*app);
  add_max_pixels_option(*app);
  add_allow_nonfinite_option(*app);
  add_no_fold_option(*app);
  return {app, &run_main};
}

}  // namespace drt_cli
