// ResNet whole-model benchmark with synthetic weights (standard config built from its name alone,
// ImageNet's 1000 classes, batch 1). Reports the MAC rate of the convolutions and the classifier.
#include <benchmark/benchmark.h>

#include <random>
#include <string>

#include <drt/models/resnet.hpp>

namespace {
void BM_resnet(benchmark::State& st, const std::string& arch) {
  const std::size_t w = static_cast<std::size_t>(st.range(0)), h = static_cast<std::size_t>(st.range(1));
  const auto model = drt::resnet_model::with_random_weights(drt::standard_resnet_config(arch, 1000));
  drt::tensor4 x = drt::tensor4::from_shape({1, 3, h, w});
  std::mt19937 g(7);
  std::normal_distribution<float> d(0.f, 1.f);
  for (auto& v : x) v = d(g);
  for (auto _ : st) {
    auto out = model.forward(x);
    benchmark::DoNotOptimize(out.logits.data());
  }
  st.counters["threads"] = drt::max_threads();
  st.counters["GMACs"] = model.total_macs(h, w) * 1e-9;
  st.counters["GMAC/s"] =
      benchmark::Counter(model.total_macs(h, w) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK_CAPTURE(BM_resnet, resnet50, std::string("resnet50"))
    ->ArgNames({"W", "H"})
    ->Args({640, 480})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(3.0);
}  // namespace

BENCHMARK_MAIN();
