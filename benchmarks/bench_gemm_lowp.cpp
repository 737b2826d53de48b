// Low-precision GEMM kernels (issue 20): drt's float32 GEMM, the bf16 GEMM (layers/gemm_bf16.hpp)
// and the int8 GEMM (layers/gemm_int8.hpp) on the GEMM shapes of SegFormer-B2 at 512x512, 1 and 2
// threads, with a bias epilogue (a Linear layer). Synthetic data.
//
// BM_gemm_lowp/M/K/N/precision/threads, precision: 0 float32 (drt::gemm), 1 bf16 (A rounded per
// call), 2 int8 (A quantized per call, drt::gemm_s8), 3 int8 with A already quantized
// (drt::gemm_s8_u8: the kernel alone, as when layers chain in int8).
// Counters: GOP/s (2 x MACs / s, wall time of the timed loop), threads, vs_f32 (this rate / the
// float32 rate of the same shape and thread count, from the same run), GOP_per_cpu_s (per second of
// process CPU time: the per-core rate while running, robust to other load on the machine).
// Regenerate the table of docs/lowp_kernels.md:
//   build/benchmarks/bench_gemm_lowp --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include <drt/core/parallel.hpp>
#include <drt/layers/gemm.hpp>
#include <drt/layers/gemm_bf16.hpp>
#include <drt/layers/gemm_int8.hpp>

namespace {

std::vector<float> gaussian_data(std::size_t n, unsigned seed, float sigma) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

/// Seconds of CPU time used by the process (all threads, including OpenMP spin-waits).
double process_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

/// float32 GOP/s per (M, K, N, threads), for the vs_f32 counter of the low-precision rows.
std::map<std::tuple<long, long, long, long>, double>& f32_rate() {
  static std::map<std::tuple<long, long, long, long>, double> t;
  return t;
}

const char* precision_name(long p) {
  switch (p) {
    case 0:
      return "f32";
    case 1:
      return "bf16";
    case 2:
      return "int8";
    default:
      return "int8 (u8 A)";
  }
}

void BM_gemm_lowp(benchmark::State& st) {
  const std::size_t m = st.range(0), k = st.range(1), n = st.range(2);
  const long precision = st.range(3);
  const int threads = static_cast<int>(st.range(4));
  const auto a = gaussian_data(m * k, 1, 1.f), w = gaussian_data(n * k, 2, 0.05f), bias = gaussian_data(n, 3, 0.1f);
  std::vector<float> c(m * n);
  drt::gemm_epilogue ep;
  ep.bias = bias.data();

  drt::packed_matrix f32;
  drt::packed_matrix_bf16 bf16;
  drt::packed_matrix_s8 s8;
  drt::quant_params aq;
  std::vector<std::uint8_t> a8;
  if (precision == 0) f32 = drt::packed_matrix::from_nk(w.data(), n, k, k);
  if (precision == 1) bf16 = drt::packed_matrix_bf16::from_nk(w.data(), n, k, k);
  if (precision >= 2) {
    s8 = drt::packed_matrix_s8::from_nk(w.data(), n, k, k);
    const auto [lo, hi] = std::minmax_element(a.begin(), a.end());  // a calibrated per-tensor range
    aq = drt::quant_params_u8(*lo, *hi);
  }
  if (precision == 3) {
    a8.resize(m * k);
    drt::quantize_u8(a.data(), m * k, aq, a8.data());
  }
  auto run = [&] {
    switch (precision) {
      case 0:
        drt::gemm(m, n, k, a.data(), k, f32, c.data(), n, ep);
        break;
      case 1:
        drt::gemm_bf16(m, n, k, a.data(), k, bf16, c.data(), n, ep);
        break;
      case 2:
        drt::gemm_s8(m, n, k, a.data(), k, aq, s8, c.data(), n, ep);
        break;
      default:
        drt::gemm_s8_u8(m, n, k, a8.data(), k, aq, s8, c.data(), n, ep);
        break;
    }
    benchmark::ClobberMemory();
  };

  const int before = drt::max_threads();
  drt::set_threads(threads);
  run();  // warm-up: thread-local buffers, first touch of C
  const double c0 = process_cpu_s();
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : st) run();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double cpu = process_cpu_s() - c0;
  drt::set_threads(before);

  const double ops = 2.0 * double(m) * double(n) * double(k) * double(st.iterations());
  const double gops = ops / secs / 1e9;
  const auto key = std::make_tuple(long(m), long(k), long(n), long(threads));
  if (precision == 0) f32_rate()[key] = gops;
  st.counters["GOP/s"] = gops;
  st.counters["threads"] = threads;
  st.counters["vs_f32"] = f32_rate().count(key) ? gops / f32_rate()[key] : 0.0;
  st.counters["GOP_per_cpu_s"] = ops / cpu / 1e9;
  st.SetLabel(std::string(precision_name(precision)) + (precision == 1 && !drt::gemm_bf16_native ? " (portable)" : "") +
              (precision >= 2 && !drt::gemm_s8_native ? " (portable)" : ""));
}

/// SegFormer-B2 512x512: the Mix-FFN dense1 of each stage (tokens x C -> 4C) and the folded
/// decoder's largest GEMM (16384 px, 3072 -> 768); float32 first in each group (vs_f32).
void lowp_shapes(benchmark::internal::Benchmark* b) {
  const long shapes[][3] = {
      {16384, 64, 256}, {4096, 128, 512}, {1024, 320, 1280}, {256, 512, 2048}, {16384, 3072, 768}};
  for (const auto& s : shapes)
    for (long threads : {1, 2})
      for (long precision : {0, 1, 2, 3}) b->Args({s[0], s[1], s[2], precision, threads});
}
BENCHMARK(BM_gemm_lowp)
    ->ArgNames({"M", "K", "N", "precision", "threads"})
    ->Apply(lowp_shapes)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
