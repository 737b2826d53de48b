// The shortest drt program: load a model directory, segment one image, print the top classes.
//   drt_minimal [MODEL_DIR] [IMAGE]
#include <drt/io/image.hpp>
#include <drt/models/segformer.hpp>

#include <algorithm>
#include <iomanip>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

#ifndef DRT_SOURCE_DIR
#define DRT_SOURCE_DIR "."
#endif

int main(int argc, char** argv) try {
  const std::string root = DRT_SOURCE_DIR;
  const auto model = drt::segformer_model::from_dir(argc > 1 ? argv[1] : root + "/data/models/segformer-b0-camvid");
  const drt::rgb_image image = drt::load_image(argc > 2 ? argv[2] : root + "/data/images/0016E5_07959.png");

  const drt::tensor4 logits = model.forward(drt::normalize_imagenet(image)).logits;       // [1, K, H/4, W/4]
  const drt::itensor3 classes = drt::upsample_argmax(logits, image.height, image.width);  // [1, H, W]

  const auto& names = model.config().class_names;
  std::vector<std::size_t> count(names.size(), 0), order(names.size());
  for (const auto c : classes) ++count[static_cast<std::size_t>(c)];
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](auto a, auto b) { return count[a] > count[b]; });
  for (std::size_t i = 0; i < std::min<std::size_t>(5, order.size()); ++i)
    std::cout << names[order[i]] << ": " << std::fixed << std::setprecision(1)
              << 100.0 * count[order[i]] / classes.size() << " %\n";
} catch (const std::exception& e) {
  std::cerr << "error: " << e.what() << '\n';
  return 1;
}
