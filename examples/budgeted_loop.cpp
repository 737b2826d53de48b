// A budgeted frame loop: the bundled SegFormer-B0 model and its lookup table (latency and mIoU of
// each measured path) under a policy that picks, frame by frame, the most accurate path expected to
// meet the frame's latency budget, and learns from each frame's measured time how fast this machine is.
//   drt_budgeted_loop [BUDGET_MS] [FRAMES]      (defaults: 40 ms, 6 frames; every other frame gets half)
#include <drt/engine/executor.hpp>
#include <drt/engine/lut.hpp>
#include <drt/engine/lut_build.hpp>
#include <drt/engine/policy.hpp>
#include <drt/io/image.hpp>
#include <drt/models/segformer.hpp>

#include <iomanip>
#include <iostream>
#include <string>

#ifndef DRT_SOURCE_DIR
#define DRT_SOURCE_DIR "."
#endif

int main(int argc, char** argv) try {
  const std::string root = DRT_SOURCE_DIR, name = "segformer-b0-camvid", dir = root + "/data/models/" + name;
  const double budget_ms = argc > 1 ? drt::parse_budget_ms(argv[1], "BUDGET_MS") : 40.0;
  const int frames = argc > 2 ? std::stoi(argv[2]) : 6;

  // The table says, per path, its latency on the machine it was measured on and its CamVid mIoU.
  const drt::lookup_table table = drt::load_lut(dir + "/lut.json");
  // build the model as the table was measured (decoder graph, channel order, int8 ranges)
  const drt::segformer_options build = drt::lut_build(table, name, "lut '" + dir + "/lut.json'");
  const auto model = drt::segformer_model::from_dir(dir, {}, build);

  // Every path the policy may choose is compiled here, once; a frame then only picks one and runs it.
  // deadline_controller rescales the table's latencies by this machine's measured speed (closed loop);
  // drt::lut_policy would trust the table as it is (open loop).
  drt::executor<drt::model_graph, drt::deadline_controller> loop(drt::model_graph(name, model),
                                                                     drt::deadline_controller(table));

  const drt::rgb_image image = drt::load_image(root + "/data/images/0016E5_07959.png");
  const drt::tensor4 x = drt::normalize_imagenet(image);  // [1, 3, H, W]
  std::cout << std::fixed << "frame  budget  path                                     mIoU  expected  measured\n";
  for (int i = 0; i < frames; ++i) {
    const double budget = i % 2 == 0 ? budget_ms : budget_ms / 2;
    // Frame 0 also pays for first-touch page faults and thread start-up; the controller sees that
    // as a slow machine and recovers over the next frames.
    const auto r = loop.run(x, budget);  // r.output: logits [1, K, H/4, W/4]
    std::cout << std::setw(5) << i << std::setprecision(1) << std::setw(8) << budget << "  " << std::left
              << std::setw(40) << r.entry.path << std::right << std::setprecision(3) << std::setw(6) << r.entry.miou
              << std::setprecision(1) << std::setw(10) << r.choice.expected_ms << std::setw(10) << r.measured_ms
              << (r.missed ? " missed" : "") << (r.choice.fits ? "" : " (nothing fits: the cheapest path)") << '\n';
  }
} catch (const std::exception& e) {
  std::cerr << "error: " << e.what() << '\n';
  return 1;
}
