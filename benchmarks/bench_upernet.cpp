// Whole-model benchmark: Swin-T + UPerNet with synthetic weights (standard config, 150 classes,
// batch 1, 512x512), logits upsampled to the input size as transformers returns them. The
// FLOP-rate counter counts 2 x the model's multiply-accumulates (convs, linears, attention matmuls).
#include <benchmark/benchmark.h>

#include <random>
#include <string>

#include <drt/core/parallel.hpp>
#include <drt/models/upernet_swin.hpp>

#include "bench_memory.hpp"

namespace {
void BM_upernet_swin(benchmark::State& st, const std::string& arch, bool winograd) {
  const std::size_t hw = static_cast<std::size_t>(st.range(0));
  // The 3x3 convs' form (Winograd or implicit GEMM) is chosen when the model is built; the resident
  // memory the weights add is measured across the load.
  const double rss_before = drt_bench::trimmed_rss_mib();
  drt::conv2d_options convs;
  convs.winograd = winograd;
  const auto model =
      drt::upernet_swin_model::with_random_weights(drt::standard_upernet_swin_config(arch, 150), 0, convs);
  const double weights_mib = drt_bench::trimmed_rss_mib() - rss_before;
  drt::tensor4 x = drt::tensor4::from_shape({1, 3, hw, hw});
  std::mt19937 g(7);
  std::normal_distribution<float> d(0.f, 1.f);
  for (auto& v : x) v = d(g);
  for (auto _ : st) {
    auto out = model.forward(x);
    benchmark::DoNotOptimize(out.logits.data());
  }
  st.counters["threads"] = drt::max_threads();
  st.counters["rss_weights_MiB"] = weights_mib;
  st.counters["GMAC"] = model.macs(hw, hw) * 1e-9;
  st.counters["FLOP/s"] = benchmark::Counter(2.0 * model.macs(hw, hw), benchmark::Counter::kIsIterationInvariantRate,
                                             benchmark::Counter::kIs1000);
}
BENCHMARK_CAPTURE(BM_upernet_swin, swin_t, std::string("swin-t-upernet"), true)
    ->ArgName("HW")
    ->Arg(512)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(5.0);
// The same model with its 3x3 convs as implicit GEMMs (built with conv2d_options::winograd = false).
BENCHMARK_CAPTURE(BM_upernet_swin, swin_t_implicit_gemm, std::string("swin-t-upernet"), false)
    ->ArgName("HW")
    ->Arg(512)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(5.0);
}  // namespace

BENCHMARK_MAIN();
