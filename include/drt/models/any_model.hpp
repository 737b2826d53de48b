#pragma once
/// @file any_model.hpp
/// A hub-layout model directory of any supported family, chosen by config.json's `model_type`.

#include <string>
#include <variant>

#include "../core/error.hpp"
#include "../io/model_config.hpp"
#include "resnet.hpp"
#include "segformer.hpp"
#include "upernet_swin.hpp"

namespace drt {

using any_model = std::variant<segformer_model, upernet_swin_model, resnet_model>;

/// Loads DIR (config.json + model.safetensors). Unknown model types get an error naming the
/// directory, the type and the supported ones.
inline any_model load_model(const std::string& dir) {
  const std::string type = read_model_type(dir + "/config.json");
  if (type == "segformer") return segformer_model::from_dir(dir);
  if (type == "upernet") return upernet_swin_model::from_dir(dir);
  if (type == "resnet") return resnet_model::from_dir(dir);
  throw invalid_input("model '" + dir + "': model_type '" + type +
                      "' is not supported (supported: segformer, upernet with a swin backbone, resnet)");
}

/// "segformer", "upernet" or "resnet".
inline const char* family_name(const any_model& m) noexcept {
  return m.index() == 0 ? "segformer" : m.index() == 1 ? "upernet" : "resnet";
}

}  // namespace drt
