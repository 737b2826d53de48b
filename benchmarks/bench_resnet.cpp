// ResNet whole-model benchmark with synthetic weights (standard config built from its name alone,
// ImageNet's 1000 classes, batch 1). Reports the MAC rate of the convolutions and the classifier.
#include <benchmark/benchmark.h>

#include <random>
#include <string>

#include <drt/models/resnet.hpp>

#include "bench_memory.hpp"

namespace {
void BM_resnet(benchmark::State& st, const std::string& arch, bool winograd, const std::string& path = "") {
  const std::size_t w = static_cast<std::size_t>(st.range(0)), h = static_cast<std::size_t>(st.range(1));
  // The 3x3 convs' form (Winograd or implicit GEMM) is chosen when the model is built; the resident
  // memory the weights add is measured across the load.
  const double rss_before = drt_bench::trimmed_rss_mib();
  drt::conv2d_options convs;
  convs.winograd = winograd;
  const auto model = drt::resnet_model::with_random_weights(drt::standard_resnet_config(arch, 1000), 0, convs);
  const double weights_mib = drt_bench::trimmed_rss_mib() - rss_before;
  drt::tensor4 x = drt::tensor4::from_shape({1, 3, h, w});
  std::mt19937 g(7);
  std::normal_distribution<float> d(0.f, 1.f);
  for (auto& v : x) v = d(g);
  const auto exec = model.compile(drt::resnet_path::parse(path));  // packs the path's precision once
  for (auto _ : st) {
    auto out = model.forward(x, false, exec);
    benchmark::DoNotOptimize(out.logits.data());
  }
  st.counters["threads"] = drt::max_threads();
  st.counters["rss_weights_MiB"] = weights_mib;
  st.counters["GMACs"] = model.total_macs(h, w) * 1e-9;
  st.counters["GMAC/s"] =
      benchmark::Counter(model.total_macs(h, w) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK_CAPTURE(BM_resnet, resnet50, std::string("resnet50"), true)
    ->ArgNames({"W", "H"})
    ->Args({640, 480})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(3.0);
// The same model with its stride-1 3x3 convs as implicit GEMMs (built with conv2d_options::winograd = false).
BENCHMARK_CAPTURE(BM_resnet, resnet50_implicit_gemm, std::string("resnet50"), false)
    ->ArgNames({"W", "H"})
    ->Args({640, 480})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(3.0);
// The stages' 1x1 convs in bf16 / int8 (path knob precision; the 3x3 convs stay Winograd fp32).
BENCHMARK_CAPTURE(BM_resnet, resnet50_bf16, std::string("resnet50"), true, std::string("precision=bf16"))
    ->ArgNames({"W", "H"})
    ->Args({640, 480})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(3.0);
BENCHMARK_CAPTURE(BM_resnet, resnet50_int8, std::string("resnet50"), true, std::string("precision=int8"))
    ->ArgNames({"W", "H"})
    ->Args({640, 480})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(3.0);
}  // namespace

BENCHMARK_MAIN();
