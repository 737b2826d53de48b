#pragma once
/// @file any_model.hpp
/// A hub-layout model directory of any supported family, chosen by config.json's `model_type`.

#include <string>
#include <type_traits>
#include <variant>

#include "../core/error.hpp"
#include "../io/model_config.hpp"
#include "resnet.hpp"
#include "segformer.hpp"
#include "upernet_swin.hpp"
#include "family.hpp"

namespace drt {

using any_model = std::variant<segformer_model, upernet_swin_model, resnet_model>;

/// Loads DIR (config.json + model.safetensors; `options` as for safetensors_file, `segformer` how a
/// SegFormer graph is built; its channel order and int8 ranges apply to Swin + UPerNet too). Unknown model types get an error naming the
/// directory, the type and the supported ones.
inline any_model load_model(const std::string& dir, safetensors_options options = {}, segformer_options segformer = {}) {
  const std::string type = read_model_type(dir + "/config.json");
  if (type == "segformer") return segformer_model::from_dir(dir, options, segformer);
  if (type == "upernet") {
    auto m = upernet_swin_model::from_dir(dir, options, {}, segformer.order);
    if (segformer.int8)
      apply_int8_calibration(m, *segformer.int8, "int8 calibration (" + segformer.int8->source + ")");
    return m;
  }
  if (segformer.int8)
    throw invalid_input("model '" + dir + "' is a " + type +
                        " model: calibrated int8 ranges apply to SegFormer and Swin + UPerNet (a ResNet's int8 1x1 "
                        "convs quantize each call's input with its own range)");
  if (type == "resnet") return resnet_model::from_dir(dir, options);
  throw invalid_input("model '" + dir + "': model_type '" + type +
                      "' is not supported (supported: segformer, upernet with a swin backbone, resnet)");
}

/// The names every program's `--arch` accepts.
inline const char* standard_architectures() noexcept {
  return "segformer-b0, segformer-b1, segformer-b2, swin-t-upernet, swin-s-upernet, swin-b-upernet, "
         "resnet18, resnet34, resnet50, resnet101, resnet152";
}

/// A standard architecture by name, with deterministic synthetic weights (for profiling,
/// benchmarks and the accelerator model, where only the geometry matters). `classes` = 0 takes
/// the family's default (150 for the segmentation models, 1000 for ResNet).
inline any_model standard_model(const std::string& name, std::size_t classes = 0, unsigned seed = 0,
                                 segformer_options segformer = {}) {
  if (name.rfind("segformer-", 0) == 0)
    return segformer_model::with_random_weights(standard_segformer_config(name, classes ? classes : 150), seed, segformer);
  if (name.rfind("swin-", 0) == 0)
    return upernet_swin_model::with_random_weights(standard_upernet_swin_config(name, classes ? classes : 150), seed);
  if (name.rfind("resnet", 0) == 0)
    return resnet_model::with_random_weights(standard_resnet_config(name, classes ? classes : 1000), seed);
  throw invalid_input("unknown architecture '" + name + "' (known: " + standard_architectures() + ")");
}

/// "segformer", "upernet" or "resnet" (model_family<Model>::name).
inline const char* family_name(const any_model& m) noexcept {
  return std::visit([](const auto& x) { return model_family<std::decay_t<decltype(x)>>::name; }, m);
}

/// Logits [N, K, h, w] of `model` under `path_text` in its family's path language ("" or "full" = the
/// full model); the path is validated against the model first (throws drt::invalid_input naming it).
inline tensor4 run_path(const any_model& model, const tensor4& pixel_values, const std::string& path_text) {
  return std::visit(
      [&](const auto& m) {
        using family = model_family<std::decay_t<decltype(m)>>;
        const auto p = family::parse(path_text);
        family::validate(m, p);
        return family::logits(m, pixel_values, family::compile(m, p));
      },
      model);
}

}  // namespace drt
