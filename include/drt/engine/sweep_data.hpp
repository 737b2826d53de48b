#pragma once
/// @file sweep_data.hpp
/// The images a sweep measures accuracy on, decoded, normalized (and resized) once: a labelled
/// folder (images/ + labels/, accuracy = mIoU) or any folder of images (accuracy = fidelity to the
/// full model, for models or data without labels).

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../eval/labelled_dataset.hpp"
#include "../io/image.hpp"
#include "sweep_options.hpp"

namespace drt {

struct sweep_data {
  std::vector<std::string> image_paths, label_paths;  ///< label_paths empty when unlabelled
  std::vector<tensor4> inputs;                         ///< [1, 3, H, W] each, all the same size
  std::vector<label_map> labels;                       ///< empty when unlabelled
  std::size_t height = 0, width = 0;                   ///< inference size
  bool labelled() const noexcept { return !labels.empty(); }
  std::size_t size() const noexcept { return inputs.size(); }
};

/// Reads `opt.data_dir`: labelled when it has images/ and labels/ (and `opt.fidelity` is off),
/// otherwise every PNG/JPEG in it (or in its images/). Throws naming the folder or the image.
inline sweep_data load_sweep_data(const sweep_options& opt) {
  namespace fs = std::filesystem;
  sweep_data d;
  std::error_code ec;
  const bool has_labels = fs::is_directory(fs::path(opt.data_dir) / "labels", ec);
  if (has_labels && !opt.fidelity) {
    for (const auto& it : list_labelled_dataset(opt.data_dir, opt.image_limit)) {
      d.image_paths.push_back(it.image_path);
      d.label_paths.push_back(it.label_path);
    }
  } else {
    const std::string dir =
        fs::is_directory(fs::path(opt.data_dir) / "images", ec) ? (fs::path(opt.data_dir) / "images").string() : opt.data_dir;
    d.image_paths = list_image_files(dir, "data");
    if (opt.image_limit && d.image_paths.size() > opt.image_limit) d.image_paths.resize(opt.image_limit);
  }
  for (std::size_t i = 0; i < d.image_paths.size(); ++i) {
    const rgb_image img = load_image(d.image_paths[i]);
    if (!d.label_paths.empty()) {
      d.labels.push_back(load_label_png(d.label_paths[i]));
      if (d.labels[i].width != img.width || d.labels[i].height != img.height)
        throw shape_error("dataset: label '" + d.label_paths[i] + "' is " + std::to_string(d.labels[i].height) + "x" +
                          std::to_string(d.labels[i].width) + " but image '" + d.image_paths[i] + "' is " +
                          std::to_string(img.height) + "x" + std::to_string(img.width) + " (HxW)");
    }
    d.inputs.push_back(normalize_imagenet(opt.height ? resize_image(img, opt.height, opt.width) : img));
    const auto& x = d.inputs.back();
    if (x.shape(2) != d.inputs[0].shape(2) || x.shape(3) != d.inputs[0].shape(3))
      throw shape_error("sweep: image '" + d.image_paths[i] + "' is " + std::to_string(x.shape(2)) + "x" +
                        std::to_string(x.shape(3)) + " but the first is " + std::to_string(d.inputs[0].shape(2)) +
                        "x" + std::to_string(d.inputs[0].shape(3)) + " (HxW); use --size");
  }
  d.height = d.inputs[0].shape(2);
  d.width = d.inputs[0].shape(3);
  return d;
}

}  // namespace drt
