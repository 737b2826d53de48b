// Whole-model benchmarks with synthetic weights (standard configs, 150 classes, batch 1).
// BM_segformer runs the default graph (decoder folded, docs/decoder_fold.md); BM_segformer_unfolded
// the decoder as published (--no-fold), the graph drt ran before the fold. BM_segformer_bf16 / _int8
// run the folded graph with `precision=bf16` / `precision=int8` (docs/precision.md; int8 with each
// layer call's own input range, as the synthetic weights have no calibration).
#include <benchmark/benchmark.h>

#include <random>
#include <string>

#include <drt/drt.hpp>

#include "bench_memory.hpp"

namespace {
using drt_bench::proc_status_mib;

void run_segformer(benchmark::State& st, const std::string& arch, bool fold, const char* path = "") {
  const std::size_t hw = st.range(0);
  drt::segformer_options build;
  build.fold_decoder = fold;
  const auto model = drt::segformer_model::with_random_weights(drt::standard_segformer_config(arch, 150), 0, build);
  drt::tensor4 x = drt::tensor4::from_shape({1, 3, hw, hw});
  std::mt19937 g(7);
  std::normal_distribution<float> d(0.f, 1.f);
  for (auto& v : x) v = d(g);
  // Memory: the resident set after loading (weights + runtime), the process peak, and the peak of
  // pooled activation buffers alive at once during one forward (the activations' high-water mark).
  const double loaded_mib = proc_status_mib("VmRSS:");
  auto& pool = drt::buffer_pool::instance();
  pool.reset_peak();
  const std::size_t live_before = pool.stats().live_bytes;
  const auto exec = model.compile(drt::segformer_path::parse(path));  // packs the low-precision weights once
  for (auto _ : st) {
    auto out = model.forward(x, false, exec);
    benchmark::DoNotOptimize(out.logits.data());
  }
  st.counters["threads"] = drt::max_threads();
  st.counters["rss_loaded_MiB"] = loaded_mib;
  st.counters["rss_peak_MiB"] = proc_status_mib("VmHWM:");
  st.counters["activations_peak_MiB"] = double(pool.stats().peak_live_bytes - live_before) / (1 << 20);
}
void BM_segformer(benchmark::State& st, const std::string& arch) { run_segformer(st, arch, true); }
void BM_segformer_unfolded(benchmark::State& st, const std::string& arch) { run_segformer(st, arch, false); }
void BM_segformer_bf16(benchmark::State& st, const std::string& arch) { run_segformer(st, arch, true, "precision=bf16"); }
void BM_segformer_int8(benchmark::State& st, const std::string& arch) { run_segformer(st, arch, true, "precision=int8"); }
BENCHMARK_CAPTURE(BM_segformer, b0, std::string("segformer-b0"))
    ->ArgName("HW")
    ->Arg(512)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(2.0);
BENCHMARK_CAPTURE(BM_segformer, b2, std::string("segformer-b2"))
    ->ArgName("HW")
    ->Arg(512)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(3.0);
BENCHMARK_CAPTURE(BM_segformer_unfolded, b0, std::string("segformer-b0"))
    ->ArgName("HW")
    ->Arg(512)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(2.0);
BENCHMARK_CAPTURE(BM_segformer_unfolded, b2, std::string("segformer-b2"))
    ->ArgName("HW")
    ->Arg(512)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(3.0);
BENCHMARK_CAPTURE(BM_segformer_bf16, b0, std::string("segformer-b0"))
    ->ArgName("HW")
    ->Arg(512)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(2.0);
BENCHMARK_CAPTURE(BM_segformer_bf16, b2, std::string("segformer-b2"))
    ->ArgName("HW")
    ->Arg(512)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(3.0);
BENCHMARK_CAPTURE(BM_segformer_int8, b0, std::string("segformer-b0"))
    ->ArgName("HW")
    ->Arg(512)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(2.0);
BENCHMARK_CAPTURE(BM_segformer_int8, b2, std::string("segformer-b2"))
    ->ArgName("HW")
    ->Arg(512)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(3.0);
}  // namespace

BENCHMARK_MAIN();
