#pragma once
/// @file evaluate.hpp
/// mIoU of a model (and path) on a labelled folder, as the model cards compute it: images
/// normalized like SegformerImageProcessor, logits upsampled bilinearly (align_corners=False) to
/// the label size, argmax, one confusion matrix over the set.

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "../io/image.hpp"
#include "../layers/resize.hpp"
#include "labelled_dataset.hpp"
#include "bootstrap.hpp"
#include "segmentation_metrics.hpp"

namespace drt {

/// Called after each image with (done, total, seconds so far).
using progress_fn = std::function<void(std::size_t, std::size_t, double)>;

/// Evaluates `run(pixel_values [1,3,H,W]) -> logits [1,K,h,w]` over `items`; images and labels
/// above `max_pixels` are refused (io/image.hpp). The result is the set's confusion matrix with each
/// image's counts (for the bootstrap interval of the mIoU, eval/bootstrap.hpp).
template <class Run>
confusion_by_image evaluate_segmentation(Run&& run, std::size_t classes, const std::vector<labelled_item>& items,
                                       int ignore_index, const progress_fn& progress = {},
                                       std::size_t max_pixels = default_max_pixels) {
  confusion_by_image cm(classes, ignore_index);
  const auto t0 = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < items.size(); ++i) {
    const auto& it = items[i];
    const rgb_image image = load_image(it.image_path, channel_policy::convert, max_pixels);
    const label_map label = load_label_png(it.label_path, max_pixels);
    if (label.width != image.width || label.height != image.height)
      throw shape_error("dataset: label '" + it.label_path + "' is " + std::to_string(label.height) + "x" +
                        std::to_string(label.width) + " but image '" + it.image_path + "' is " +
                        std::to_string(image.height) + "x" + std::to_string(image.width) + " (HxW)");
    const tensor4 logits = run(normalize_imagenet(image));
    if (logits.shape(1) != classes)
      throw shape_error("evaluate: the model gives " + std::to_string(logits.shape(1)) + " classes, expected " +
                        std::to_string(classes));
    const itensor3 pred = upsample_argmax(logits, label.height, label.width);
    cm.add(i, label.labels.data(), pred.data(), label.labels.size(), it.label_path);
    if (progress)
      progress(i + 1, items.size(), std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return cm;
}

}  // namespace drt
