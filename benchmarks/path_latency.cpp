// Whole-model latency of a model's paths, measured side by side: every round runs each path once, in
// turn, so that a change of machine load touches every path alike; prints each path's median and
// minimum and its median relative to the first path's. Any family (config.json's model_type).
//   path_latency MODEL_DIR IMAGE ROUNDS PATH...      ("full" = the full model)
// e.g. the issue-19 goals (docs/channel_order.md):
//   build/benchmarks/path_latency ../shared/models/segformer-b2-camvid ../shared/data/camvid/images/0016E5_07959.png
//       15 full "mlp=0.25" "depths=2,3,4,3 mlp=0.25"      (one command line)
#include <drt/core/parallel.hpp>
#include <drt/io/image.hpp>
#include <drt/models/any_model.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <type_traits>
#include <vector>

int main(int argc, char** argv) try {
  if (argc < 5) {
    std::cerr << "usage: path_latency MODEL_DIR IMAGE ROUNDS PATH...   (PATH \"full\" = the full model)\n";
    return 2;
  }
  const std::string dir = argv[1];
  const auto model = drt::load_model(dir);
  const auto image = drt::load_image(argv[2]);
  const int rounds = std::stoi(argv[3]);
  if (rounds < 1) throw drt::invalid_input("ROUNDS must be at least 1, got " + std::string(argv[3]));
  const drt::tensor4 x = drt::normalize_imagenet(image);
  std::vector<std::string> texts(argv + 4, argv + argc);
  std::vector<std::vector<double>> ms(texts.size());
  std::visit(
      [&](const auto& m) {
        using family = drt::model_family<std::decay_t<decltype(m)>>;
        std::vector<decltype(family::compile(m, family::parse("")))> plans;
        for (const auto& t : texts) {
          const auto p = family::parse(t == "full" ? "" : t);
          family::validate(m, p);
          plans.push_back(family::compile(m, p));
        }
        for (const auto& plan : plans)  // warm-up: buffers, OpenMP pool, caches
          for (int w = 0; w < 2; ++w) (void)family::logits(m, x, plan);
        for (int r = 0; r < rounds; ++r) {
          for (std::size_t i = 0; i < plans.size(); ++i) {
            const auto t0 = std::chrono::steady_clock::now();
            const auto logits = family::logits(m, x, plans[i]);
            ms[i].push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
          }
          std::fprintf(stderr, "\rpath_latency: round %d/%d", r + 1, rounds);
        }
        std::fprintf(stderr, "\n");
      },
      model);
  std::printf("%s  %zux%zu  threads %d  %d interleaved rounds\n", dir.c_str(), image.height, image.width,
              drt::max_threads(), rounds);
  std::printf("%-44s %10s %10s %8s\n", "path", "median ms", "min ms", "rel");
  double first = 0;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    auto v = ms[i];
    std::sort(v.begin(), v.end());
    const double med = v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
    if (i == 0) first = med;
    std::printf("%-44s %10.2f %10.2f %8.3f\n", ("'" + texts[i] + "'").c_str(), med, v.front(), med / first);
  }
} catch (const std::exception& e) {
  std::cerr << "path_latency: error: " << e.what() << '\n';
  return 1;
}
