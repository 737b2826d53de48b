// Accelerator cost model: one layer's Listing-1 mapping search, a whole SegFormer-B2 path, and the
// Table III x Table II sweep (synthetic B2 geometry, no checkpoint). Counters: layers mapped per
// second and modeled MACs evaluated per second (the cost model's "FLOP rate").
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include <drt/accel/estimate.hpp>
#include <drt/dynamic/path.hpp>
#include <drt/models/segformer.hpp>

namespace {

const drt::segformer_model& b2() {  // the paper's graph (decoder as published), which Table III costs
  static const drt::segformer_model m = drt::segformer_model::with_random_weights(
      drt::standard_segformer_config("segformer-b2", 150), 0, drt::segformer_options{false});
  return m;
}

std::vector<drt::layer_info> b2_path(const char* text) {
  auto p = drt::segformer_path::parse(text);
  p.propagate = false;
  return b2().layers(512, 512, b2().compile(p));
}

const char* const table3_paths[] = {"depths=3,4,6,3 fuse_in=3072", "depths=3,4,6,3 fuse_in=1920",
                                    "depths=2,4,6,3 fuse_in=1664", "depths=2,3,6,3 fuse_in=1408",
                                    "depths=2,3,5,3 fuse_in=1024", "depths=3,2,5,2 fuse_in=896",
                                    "depths=2,3,4,3 fuse_in=512"};

// One layer's search. Arg: accelerator (0 = A .. 12 = M).
void BM_map_layer(benchmark::State& st, drt::accel_layer l) {
  const auto a = drt::table2_accelerators[static_cast<std::size_t>(st.range(0))];
  for (auto _ : st) {
    auto c = drt::map_layer(a, l);
    benchmark::DoNotOptimize(c);
  }
  st.SetItemsProcessed(st.iterations());
  st.counters["modeled_MACs"] = benchmark::Counter(l.macs() * double(st.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK_CAPTURE(BM_map_layer, conv2dfuse, drt::conv_layer(768, 3072, 128, 128, 1))->ArgName("accel")->Arg(3)->Arg(12);
BENCHMARK_CAPTURE(BM_map_layer, dwconv_stage1, drt::depthwise_layer(256, 128, 128, 3))
    ->ArgName("accel")
    ->Arg(3)
    ->Arg(12);
BENCHMARK_CAPTURE(BM_map_layer, attention_qk_stage1, drt::matmul_layer(16384, 64, 256, 1, true))
    ->ArgName("accel")
    ->Arg(3)
    ->Arg(12);

// SegFormer-B2 path a, every layer. Arg: accelerator (0 = A .. 12 = M).
void BM_estimate_b2(benchmark::State& st) {
  const auto a = drt::table2_accelerators[static_cast<std::size_t>(st.range(0))];
  const auto layers = b2_path(table3_paths[0]);
  double macs = 0;
  for (auto _ : st) {
    auto e = drt::estimate(a, layers);
    macs = e.macs;
    benchmark::DoNotOptimize(e.cycles);
  }
  st.SetItemsProcessed(st.iterations() * static_cast<std::int64_t>(layers.size()));
  st.counters["modeled_MACs"] = benchmark::Counter(macs * double(st.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_estimate_b2)->ArgName("accel")->Arg(3)->Arg(12)->Unit(benchmark::kMillisecond);

// The Fig. 10 sweep: 7 Table III paths x 13 Table II designs.
void BM_sweep_table3_x_table2(benchmark::State& st) {
  std::vector<std::vector<drt::layer_info>> paths;
  for (const char* p : table3_paths) paths.push_back(b2_path(p));
  double macs = 0;
  std::int64_t layers = 0;
  for (auto _ : st) {
    macs = 0;
    layers = 0;
    for (const auto& a : drt::table2_accelerators)
      for (const auto& p : paths) {
        const auto e = drt::estimate(a, p);
        macs += e.macs;
        layers += static_cast<std::int64_t>(p.size());
      }
    benchmark::DoNotOptimize(macs);
  }
  st.SetItemsProcessed(st.iterations() * layers);
  st.counters["modeled_MACs"] = benchmark::Counter(macs * double(st.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_sweep_table3_x_table2)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
