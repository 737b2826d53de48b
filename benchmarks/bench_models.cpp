// Whole-model benchmarks with synthetic weights (standard configs, 150 classes, batch 1).
#include <benchmark/benchmark.h>

#include <random>
#include <string>

#include <drt/drt.hpp>

namespace {
void BM_segformer(benchmark::State& st, const std::string& arch) {
  const std::size_t hw = st.range(0);
  const auto model = drt::segformer_model::with_random_weights(drt::standard_segformer_config(arch, 150));
  drt::tensor4 x = drt::tensor4::from_shape({1, 3, hw, hw});
  std::mt19937 g(7);
  std::normal_distribution<float> d(0.f, 1.f);
  for (auto& v : x) v = d(g);
  for (auto _ : st) {
    auto out = model.forward(x);
    benchmark::DoNotOptimize(out.logits.data());
  }
  st.counters["threads"] = drt::max_threads();
}
BENCHMARK_CAPTURE(BM_segformer, b0, std::string("segformer-b0"))->ArgName("HW")->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK_CAPTURE(BM_segformer, b2, std::string("segformer-b2"))->ArgName("HW")->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(3.0);
}  // namespace

BENCHMARK_MAIN();
