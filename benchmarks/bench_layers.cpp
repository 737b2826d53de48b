// Layer benchmarks (synthetic data). Counter "FLOP/s" = 2 x MACs per second.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include <drt/drt.hpp>

namespace {
std::vector<float> random_data(std::size_t n, unsigned seed = 1) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

void set_flops(benchmark::State& st, double macs) {
  st.counters["FLOP/s"] =
      benchmark::Counter(2.0 * macs * static_cast<double>(st.iterations()), benchmark::Counter::kIsRate);
}

/// GEMM / 1x1 conv: pixels x in -> out. Args: M (pixels), K (in), N (out).
void BM_gemm(benchmark::State& st) {
  const std::size_t m = st.range(0), k = st.range(1), n = st.range(2);
  const auto a = random_data(m * k), w = random_data(n * k, 2);
  const auto b = drt::packed_matrix::from_nk(w.data(), n, k, k);
  std::vector<float> c(m * n);
  for (auto _ : st) {
    drt::gemm(m, n, k, a.data(), k, b, c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  set_flops(st, double(m) * n * k);
}
// SegFormer-B2 512x512 Conv2DFuse (16384 px, 3072 -> 768); B0's (1024 -> 256); a prefix path (1024 -> 256 of B2).
BENCHMARK(BM_gemm)
    ->ArgNames({"M", "K", "N"})
    ->Args({16384, 3072, 768})
    ->Args({16384, 1024, 256})
    ->Args({16384, 1024, 256})
    ->Args({4096, 512, 2048})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

/// Dense conv through im2col. Args: H=W, C_in, C_out, kernel, stride.
void BM_conv2d(benchmark::State& st) {
  drt::conv2d_shape s;
  const std::size_t hw = st.range(0);
  s.in_channels = st.range(1);
  s.out_channels = st.range(2);
  s.kernel_h = s.kernel_w = st.range(3);
  s.stride_h = s.stride_w = st.range(4);
  s.pad_h = s.pad_w = s.kernel_h == s.stride_h ? 0 : s.kernel_h / 2;
  const auto w = random_data(s.out_channels * s.in_channels * s.kernel_h * s.kernel_w);
  const auto bias = random_data(s.out_channels, 3);
  const drt::conv2d conv(w.data(), bias.data(), s);
  const auto x = random_data(hw * hw * s.in_channels, 4);
  std::vector<float> y(s.out_h(hw) * s.out_w(hw) * s.out_channels);
  for (auto _ : st) {
    conv.run(x.data(), 1, hw, hw, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  set_flops(st, s.macs(1, hw, hw));
}
// Patch embedding 1 (7x7/4, 3 -> 64 at 512), B2 stage-0 sr conv (8x8/8, 64 -> 64 at 128),
// UPerNet fpn_bottleneck-like 3x3 (512 -> 128 at 64, scaled down).
BENCHMARK(BM_conv2d)
    ->ArgNames({"HW", "Cin", "Cout", "k", "s"})
    ->Args({512, 3, 64, 7, 4})
    ->Args({128, 64, 64, 8, 8})
    ->Args({64, 512, 128, 3, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

/// Depthwise 3x3 + GELU (Mix-FFN). Args: H=W, C.
void BM_conv2d_dw3(benchmark::State& st) {
  const std::size_t hw = st.range(0), c = st.range(1);
  const auto w = random_data(c * 9), b = random_data(c, 2), x = random_data(hw * hw * c, 3);
  const drt::conv2d_dw<3> dw(w.data(), b.data(), c);
  std::vector<float> y(x.size());
  for (auto _ : st) {
    dw.run<drt::activation::gelu>(x.data(), 1, hw, hw, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  set_flops(st, double(hw) * hw * c * 9);
}
BENCHMARK(BM_conv2d_dw3)
    ->ArgNames({"HW", "C"})
    ->Args({128, 256})
    ->Args({64, 512})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

/// Mix-FFN (dense1, 3x3 depthwise + GELU, dense2, fused in bands: layers/mix_ffn.hpp) on SegFormer-B2's
/// four stage shapes at 512x512. Args: HW, C (hidden = 4C), precision (0 fp32, 1 bf16, 2 int8).
void BM_mix_ffn(benchmark::State& st) {
  const std::size_t hw = st.range(0), c = st.range(1), r = 4 * c;
  const auto p = static_cast<drt::precision>(st.range(2));
  auto w1 = random_data(r * c, 1), b1 = random_data(r, 2), dw = random_data(r * 9, 3), db = random_data(r, 4),
       w2 = random_data(c * r, 5), b2 = random_data(c, 6);
  for (auto& v : w1) v *= 0.1f;
  for (auto& v : w2) v *= 0.05f;
  const auto x = random_data(hw * hw * c, 7);
  const drt::mix_ffn ffn({w1.data(), b1.data(), dw.data(), db.data(), w2.data(), b2.data()}, c, r);
  std::vector<float> out(x.size(), 0.f);
  ffn.run(x.data(), 1, hw, hw, out.data(), 0, nullptr, p);  // packs the low-precision weights
  for (auto _ : st) {
    ffn.run(x.data(), 1, hw, hw, out.data(), 0, nullptr, p);
    benchmark::DoNotOptimize(out.data());
  }
  set_flops(st, ffn.macs(hw, hw));
}
BENCHMARK(BM_mix_ffn)
    ->ArgNames({"HW", "C", "precision"})
    ->ArgsProduct({{128}, {64}, {0, 1, 2}})
    ->ArgsProduct({{64}, {128}, {0, 1, 2}})
    ->ArgsProduct({{32}, {320}, {0, 1, 2}})
    ->ArgsProduct({{16}, {512}, {0, 1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

/// Attention core. Args: tokens, keys, heads, head_dim.
void BM_attention(benchmark::State& st) {
  const std::size_t t = st.range(0), s = st.range(1), h = st.range(2), d = st.range(3), c = h * d;
  const auto q = random_data(t * c), k = random_data(s * c, 2), v = random_data(s * c, 3);
  std::vector<float> ctx(t * c);
  for (auto _ : st) {
    drt::multi_head_attention(t, s, h, d, q.data(), c, k.data(), v.data(), c, ctx.data(), c);
    benchmark::DoNotOptimize(ctx.data());
  }
  set_flops(st, 2.0 * t * s * c);
}
// B2 stage 0 at 512x512 (16384 tokens, 256 keys, 1 head of 64); stage 2 (1024 tokens, 256 keys, 5 x 64).
BENCHMARK(BM_attention)
    ->ArgNames({"T", "S", "heads", "d"})
    ->Args({16384, 256, 1, 64})
    ->Args({1024, 256, 5, 64})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_layer_norm(benchmark::State& st) {
  const std::size_t m = st.range(0), c = st.range(1);
  const auto x = random_data(m * c), g = random_data(c, 2), b = random_data(c, 3);
  const drt::layer_norm ln(g.data(), b.data(), c, 1e-5f);
  std::vector<float> y(m * c);
  for (auto _ : st) {
    ln.run(m, x.data(), c, y.data(), c);
    benchmark::DoNotOptimize(y.data());
  }
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations() * m * c * 8));
}
BENCHMARK(BM_layer_norm)->ArgNames({"M", "C"})->Args({16384, 64})->Unit(benchmark::kMillisecond)->UseRealTime();
}  // namespace

BENCHMARK_MAIN();
