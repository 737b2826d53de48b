// mIoU bookkeeping on hand-computed cases, dataset listing errors, and the vendored CamVid pair.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <variant>

#include <drt/eval/evaluate.hpp>
#include <drt/models/any_model.hpp>

#include "test_support.hpp"

using namespace drt_test;
namespace fs = std::filesystem;

TEST_SUITE("eval") {
TEST_CASE("confusion matrix: IoU, mIoU, pixel accuracy by hand") {
  // labels:      0 0 1 1 2 9(ignored)
  // predictions: 0 1 1 1 0 2
  const std::uint8_t label[] = {0, 0, 1, 1, 2, 9};
  const std::int32_t pred[] = {0, 1, 1, 1, 0, 2};
  drt::confusion_matrix cm(3, 9);
  cm.add(label, pred, 6, "hand");
  const auto iou = cm.iou();
  CHECK(iou[0] == doctest::Approx(1.0 / 3));  // tp 1, fn 1 (0->1), fp 1 (2->0)
  CHECK(iou[1] == doctest::Approx(2.0 / 3));  // tp 2, fp 1
  CHECK(iou[2] == doctest::Approx(0.0));      // tp 0, fn 1
  CHECK(cm.miou() == doctest::Approx(1.0 / 3));
  CHECK(cm.pixel_accuracy() == doctest::Approx(3.0 / 5));
  const auto j = cm.to_json({"a", "b", "c"});
  CHECK(j["per_class_iou"]["b"].get<double>() == doctest::Approx(2.0 / 3));
  CHECK(j["confusion_matrix"][0][1].get<int>() == 1);
  const std::uint8_t bad[] = {5};
  CHECK_THROWS_WITH_AS(cm.add(bad, pred, 1, "x.png"),
                       "labels 'x.png': class index 5 at pixel 0 is outside 0..2 (ignore index 9)", drt::invalid_input);
}

TEST_CASE("labelled dataset: listing and errors") {
  const auto dir = fs::temp_directory_path() / "drt_dataset_test";
  fs::remove_all(dir);
  CHECK_THROWS_WITH_AS(drt::list_labelled_dataset(dir.string()),
                       ("dataset '" + dir.string() + "': expected folders images/ and labels/").c_str(), drt::io_error);
  fs::create_directories(dir / "images");
  fs::create_directories(dir / "labels");
  std::ofstream(dir / "images" / "a.png") << "x";
  CHECK_THROWS_WITH_AS(drt::list_labelled_dataset(dir.string()),
                       ("dataset '" + dir.string() + "': image 'a.png' has no label '" + (dir / "labels" / "a.png").string() + "'").c_str(),
                       drt::io_error);
  const auto items = drt::list_labelled_dataset(source_dir() + "/data");
  REQUIRE(items.size() == 2);
  CHECK(items[0].stem == "0016E5_07959");
}

TEST_CASE("evaluate: vendored B0-CamVid on the two vendored frames") {
  const auto model = drt::segformer_model::from_dir(source_dir() + "/data/models/segformer-b0-camvid");
  const auto items = drt::list_labelled_dataset(source_dir() + "/data");
  const auto cm = drt::evaluate_segmentation([&](const drt::tensor4& x) { return model.forward(x).logits; },
                                             model.config().num_classes(), items, 11);
  // A trained model on its own domain: far above chance (1/11) on both frames.
  CHECK(cm.pixel_accuracy() > 0.8);
  CHECK(cm.miou() > 0.3);
  std::uint64_t counted = 0;
  for (std::size_t l = 0; l < 11; ++l)
    for (std::size_t p = 0; p < 11; ++p) counted += cm.total().at(l, p);
  CHECK(counted > 2 * 480 * 360 * 9 / 10);  // void pixels are few
  CHECK(counted < 2 * 480 * 360);
}
}

#ifndef DRT_SANITIZED_BUILD  // 101 images per model: minutes under ASan
TEST_SUITE("eval") {
TEST_CASE("CamVid val mIoU reproduces the model cards (B0 0.5209, B1 0.5783, B2 0.6120, Swin-UPerNet 0.6592, +-0.002)") {
  const std::string data = shared_dir() + "/data/camvid";
  if (!require_file(data + "/README.md")) return;
  const auto items = drt::list_labelled_dataset(data);
  REQUIRE(items.size() == 101);
  const std::pair<const char*, double> cards[] = {{"segformer-b0-camvid", 0.5209},
                                                  {"segformer-b1-camvid", 0.5783},
                                                  {"segformer-b2-camvid", 0.6120},
                                                  {"upernet-swin64-camvid", 0.6592}};
  for (const auto& [name, miou] : cards) {
    const auto model = drt::load_model(shared_dir() + "/models/" + name);  // any family, as drt eval
    const std::size_t classes = std::visit([](const auto& m) { return m.config().num_classes(); }, model);
    const auto cm = drt::evaluate_segmentation([&](const drt::tensor4& x) { return drt::run_path(model, x, "full"); },
                                               classes, items, 11);
    CAPTURE(name);
    if (std::getenv("DRT_TEST_VERBOSE")) MESSAGE(std::string(name) << ": mIoU " << cm.miou() << ", pixel acc " << cm.pixel_accuracy());
    CHECK(std::abs(cm.miou() - miou) <= 0.002);
  }
}
}
#endif
