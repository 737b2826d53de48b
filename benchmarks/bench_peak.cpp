// Issue 8: the machine's measured FP32 FMA peak for the SIMD width drt is built for, and drt's big
// convolution shapes as a fraction of it.
//
// - BM_fma_peak/threads:T: many independent `xsimd::fma` chains on `xsimd::batch<float>` (the default
//   architecture the compiler targets, as drt's GEMM uses: 8 lanes with AVX2+FMA, 16 with AVX-512).
//   Each thread times its own chains; the T-thread figure is the sum of the per-thread rates (as
//   ../shared/anchors/peak.cpp does). Counter "GFLOP/s" = 2 x FMAs x lanes / s.
// - BM_gemm_shape / BM_conv_shape: drt::gemm and drt::conv2d on the shapes where the big models spend
//   their time, 1 and 2 threads. Counters: GFLOP/s (2 x MACs / s), pct_of_peak (of the measured peak
//   with the same thread count), and for the 2-thread rows speedup_vs_1T (this rate / the 1-thread rate
//   of the same shape, from the row before; 1 on 1-thread rows), GFLOP_per_cpu_s (FLOPs per second of
//   process CPU time: per-core speed while running, robust to a loaded machine; includes OpenMP spin).
//
// Targets (issue 8): >= 85 % of peak with one thread; 2 threads >= 1.8 x one thread.
// Regenerate docs/results/peak.csv (one command, see docs/performance.md):
//   build/benchmarks/bench_peak --benchmark_out=docs/results/peak.csv --benchmark_out_format=csv
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstddef>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <ctime>

#include <omp.h>
#include <drt/core/simd.hpp>

#include <drt/core/parallel.hpp>
#include <drt/layers/conv2d.hpp>
#include <drt/layers/gemm.hpp>

namespace {

using simd = xsimd::batch<float>;  // the same default architecture as drt's GEMM (detail::simd)
static_assert(simd::size == drt::detail::simd_width, "bench_peak must measure the width drt's GEMM uses");

/// Independent accumulators: registers minus the two operands and a spare, so nothing spills
/// (16 vector registers with AVX2, 32 with AVX-512), and enough to cover FMA latency x ports (4 x 2).
constexpr std::size_t peak_chains = simd::size >= 16 ? 24 : 12;

/// Runs `iters` rounds of `peak_chains` independent FMAs; returns the FLOPs done.
/// acc = acc * x + y with 0 < x < 1 converges to y / (1 - x): no overflow, no denormals.
__attribute__((noinline)) double fma_chains(long iters, float xs, float ys) {
  simd acc[peak_chains];
  for (std::size_t i = 0; i < peak_chains; ++i) acc[i] = simd(static_cast<float>(i) * 0.01f);
  const simd x(xs), y(ys);
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 32
    for (std::size_t i = 0; i < peak_chains; ++i) acc[i] = xsimd::fma(acc[i], x, y);
  }
  simd s(0.f);
  for (std::size_t i = 0; i < peak_chains; ++i) s += acc[i];
  benchmark::DoNotOptimize(s);
  return double(iters) * peak_chains * simd::size * 2.0;
}

/// Seconds of CPU time used by the process (all threads, including OpenMP spin-waits).
double process_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

/// Aggregate GFLOP/s of `threads` threads each running `iters` rounds (sum of per-thread rates).
double peak_gflops(int threads, long iters) {
  double agg = 0;
#pragma omp parallel num_threads(threads) reduction(+ : agg)
  {
#pragma omp barrier
    const auto t0 = std::chrono::steady_clock::now();
    const double flops = fma_chains(iters, 0.999f, 0.001f);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    agg += flops / s / 1e9;
  }
  return agg;
}

/// The best of the peak figures measured so far per thread count (BM_fma_peak records them; a
/// shape benchmark run alone measures ~0.3 s of its own).
std::map<int, double>& peak_table() {
  static std::map<int, double> t;
  return t;
}
double measured_peak(int threads) {
  auto& t = peak_table();
  if (!t.count(threads)) {
    double best = 0;
    for (int r = 0; r < 5; ++r) best = std::max(best, peak_gflops(threads, 2'000'000));
    t[threads] = best;
  }
  return t[threads];
}

void BM_fma_peak(benchmark::State& st) {
  const int threads = static_cast<int>(st.range(0));
  const long iters = 4'000'000;  // ~20 ms per thread at ~100 GFLOP/s
  double sum = 0, best = 0;
  const double c0 = process_cpu_s();
  for (auto _ : st) {
    const double g = peak_gflops(threads, iters);
    sum += g;
    best = std::max(best, g);
  }
  const double cpu = process_cpu_s() - c0;
  auto& t = peak_table();
  t[threads] = std::max(t.count(threads) ? t[threads] : 0.0, best);
  // The same counters as the shape rows (the CSV reporter needs one set): GFLOP/s is the mean over
  // the iterations, peak_GFLOP/s the best one (what the shape rows are compared with).
  const double mean = sum / static_cast<double>(st.iterations());
  st.counters["GFLOP/s"] = mean;
  st.counters["peak_GFLOP/s"] = t[threads];
  st.counters["pct_of_peak"] = 100.0 * mean / t[threads];
  st.counters["threads"] = threads;
  st.counters["speedup_vs_1T"] = threads == 1 || !t.count(1) ? 1.0 : mean / t[1];
  st.counters["GFLOP_per_cpu_s"] =
      double(st.iterations()) * threads * (double(iters) * peak_chains * simd::size * 2.0) / cpu / 1e9;
  st.SetLabel(std::string("fma ") + xsimd::default_arch::name() + " " + std::to_string(simd::size) + " lanes x " +
              std::to_string(peak_chains) + " chains");
}
BENCHMARK(BM_fma_peak)->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

std::vector<float> random_data(std::size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

/// GFLOP/s of the 1-thread row of each shape, for the 2-thread row's speedup.
std::map<std::string, double>& one_thread_rate() {
  static std::map<std::string, double> t;
  return t;
}

/// Times `run` with `threads` OpenMP threads and sets the shape counters. The rate is taken from the
/// loop's own wall time so that pct_of_peak and speedup_vs_1T can be derived from it here.
template <class Run>
void time_shape(benchmark::State& st, const std::string& shape, double macs, int threads, Run&& run) {
  const int before = drt::max_threads();
  const double peak = measured_peak(threads);
  drt::set_threads(threads);
  run();  // warm-up: thread-local im2col buffers, first touch of the output
  const double c0 = process_cpu_s();
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : st) run();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double cpu = process_cpu_s() - c0;
  drt::set_threads(before);
  const double gflops = 2.0 * macs * static_cast<double>(st.iterations()) / secs / 1e9;
  st.counters["GFLOP/s"] = gflops;
  st.counters["peak_GFLOP/s"] = peak;
  st.counters["pct_of_peak"] = 100.0 * gflops / peak;
  st.counters["threads"] = threads;
  // FLOPs per second of CPU time the process got (all threads): on a loaded machine this is what the
  // kernel does while it runs, i.e. GFLOP/s per core; x threads = what a quiet machine would give.
  st.counters["GFLOP_per_cpu_s"] = 2.0 * macs * static_cast<double>(st.iterations()) / cpu / 1e9;
  st.SetLabel(shape);
  auto& one = one_thread_rate();
  if (threads == 1) one[shape] = gflops;
  st.counters["speedup_vs_1T"] = threads == 1 || !one.count(shape) ? 1.0 : gflops / one[shape];
}

void BM_gemm_shape(benchmark::State& st) {
  const std::size_t m = st.range(0), k = st.range(1), n = st.range(2);
  const int threads = static_cast<int>(st.range(3));
  const bool residual = st.range(4) != 0;
  const auto a = random_data(m * k, 1), w = random_data(n * k, 2), bias = random_data(n, 3);
  const auto res = random_data(residual ? m * n : 0, 4);
  const auto b = drt::packed_matrix::from_nk(w.data(), n, k, k);
  std::vector<float> c(m * n);
  const double macs = double(m) * n * k;
  // With the residual: the end of a ResNet bottleneck block, relu(A x B + bias + residual).
  drt::gemm_epilogue ep;
  if (residual) {
    ep.bias = bias.data();
    ep.act = drt::activation::relu;
    ep.residual = res.data();
    ep.ldr = n;
    ep.residual_before_act = true;
  }
  const std::string shape =
      "gemm " + std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n) + (residual ? " +residual" : "");
  time_shape(st, shape, macs, threads, [&] {
    drt::gemm(m, n, k, a.data(), k, b, c.data(), n, ep);
    benchmark::ClobberMemory();
  });
}
// SegFormer-B2 512x512 Conv2DFuse: 16384 px, 3072 -> 768 (62 % of B2's MACs), then ResNet-50 shapes.
BENCHMARK(BM_gemm_shape)
    ->ArgNames({"M", "K", "N", "threads", "residual"})
    ->Args({16384, 3072, 768, 1, 0})
    ->Args({16384, 3072, 768, 2, 0})
    // ResNet-50 640x480 1x1 convs (48 % of its time): res2 conv1 256 -> 64 and conv3 64 -> 256 at
    // 160x120, res4 conv1 1024 -> 256 at 40x30, res5 conv3 512 -> 2048 at 20x15; the conv3 rows (the
    // block ends) with the residual + ReLU epilogue, as the model runs them.
    ->Args({19200, 256, 64, 1, 0})
    ->Args({19200, 256, 64, 2, 0})
    ->Args({19200, 64, 256, 1, 1})
    ->Args({19200, 64, 256, 2, 1})
    ->Args({1200, 1024, 256, 1, 0})
    ->Args({1200, 1024, 256, 2, 0})
    ->Args({1200, 256, 1024, 1, 1})
    ->Args({1200, 256, 1024, 2, 1})
    ->Args({300, 512, 2048, 1, 1})
    ->Args({300, 512, 2048, 2, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

/// Dense KxK conv, stride 1, padding K/2, NHWC, batch 1. Args: H, W, C_in, C_out, K, threads.
void BM_conv_shape(benchmark::State& st) {
  const std::size_t h = st.range(0), w = st.range(1);
  drt::conv2d_shape s;
  s.in_channels = st.range(2);
  s.out_channels = st.range(3);
  s.kernel_h = s.kernel_w = st.range(4);
  s.pad_h = s.pad_w = s.kernel_h / 2;
  const int threads = static_cast<int>(st.range(5));
  const std::size_t tile = static_cast<std::size_t>(st.range(6));  // 0: implicit GEMM, 2 / 4: F(m x m, 3x3)
  const bool winograd = tile != 0;
  const auto wt = random_data(s.out_channels * s.in_channels * s.kernel_h * s.kernel_w, 3);
  const auto bias = random_data(s.out_channels, 4);
  // the form is chosen when the conv is built
  const drt::conv2d conv(wt.data(), bias.data(), s,
                         winograd ? drt::conv2d_options::winograd_form(tile) : drt::conv2d_options::implicit_gemm());
  const auto x = random_data(h * w * s.in_channels, 5);
  std::vector<float> y(s.out_h(h) * s.out_w(w) * s.out_channels);
  time_shape(st,
             "conv" + std::to_string(s.kernel_h) + " " + std::to_string(h) + "x" + std::to_string(w) + " " +
                 std::to_string(s.in_channels) + "->" + std::to_string(s.out_channels) +
                 (winograd ? " winograd F(" + std::to_string(tile) + "x" + std::to_string(tile) + ") (effective)"
                           : std::string(" implicit GEMM")),
             s.macs(1, h, w), threads, [&] {
               conv.run(x.data(), 1, h, w, y.data());
               benchmark::ClobberMemory();
             });
}
// UPerNet fpn_bottleneck (Swin-T 512x512: 3x3, 2048 -> 512 at 128x128, 65 % of the MACs), then the
// stride-1 3x3 convs of ResNet-50's four stages at 640x480 (res2..res5: 160x120x64 .. 20x15x512).
BENCHMARK(BM_conv_shape)
    ->ArgNames({"H", "W", "Cin", "Cout", "k", "threads", "winograd"})
    ->Args({128, 128, 2048, 512, 3, 1, 0})
    ->Args({128, 128, 2048, 512, 3, 2, 0})
    ->Args({120, 160, 64, 64, 3, 1, 0})
    ->Args({120, 160, 64, 64, 3, 2, 0})
    ->Args({60, 80, 128, 128, 3, 1, 0})
    ->Args({60, 80, 128, 128, 3, 2, 0})
    ->Args({30, 40, 256, 256, 3, 1, 0})
    ->Args({30, 40, 256, 256, 3, 2, 0})
    ->Args({15, 20, 512, 512, 3, 1, 0})
    ->Args({15, 20, 512, 512, 3, 2, 0})
    // The same convolutions as Winograd F(2x2, 3x3) (winograd = output tile), what the models run:
    // GFLOP/s and pct_of_peak are "effective" (the direct convolution's FLOPs / time), can exceed 100 %.
    ->Args({128, 128, 2048, 512, 3, 1, 2})
    ->Args({128, 128, 2048, 512, 3, 2, 2})
    ->Args({120, 160, 64, 64, 3, 1, 2})
    ->Args({120, 160, 64, 64, 3, 2, 2})
    ->Args({60, 80, 128, 128, 3, 1, 2})
    ->Args({60, 80, 128, 128, 3, 2, 2})
    ->Args({30, 40, 256, 256, 3, 1, 2})
    ->Args({30, 40, 256, 256, 3, 2, 2})
    ->Args({15, 20, 512, 512, 3, 1, 2})
    ->Args({15, 20, 512, 512, 3, 2, 2})
    // F(4x4, 3x3): a quarter of the direct MACs, about 10x the rounding error of F(2x2).
    ->Args({128, 128, 2048, 512, 3, 1, 4})
    ->Args({128, 128, 2048, 512, 3, 2, 4})
    ->Args({120, 160, 64, 64, 3, 1, 4})
    ->Args({120, 160, 64, 64, 3, 2, 4})
    ->Args({60, 80, 128, 128, 3, 1, 4})
    ->Args({60, 80, 128, 128, 3, 2, 4})
    ->Args({30, 40, 256, 256, 3, 1, 4})
    ->Args({30, 40, 256, 256, 3, 2, 4})
    ->Args({15, 20, 512, 512, 3, 1, 4})
    ->Args({15, 20, 512, 512, 3, 2, 4})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
