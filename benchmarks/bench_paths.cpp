// Issue 4 ("Speed"): does latency follow the work as a path drops it? SegFormer-B2 512x512, 150
// classes, synthetic weights, batch 1, the paper's Table III paths a..g, each compiled once.
//
// BM_table3_path/<letter>: `forward` under the compiled path (encoder, decode head, logits to NCHW).
//   Counters: GMACs: drt's propagated count of the work this path does (`total_macs(model.layers(512,
//   512, exec))` with `propagate=1`, the default: dropped Conv2DFuse inputs are never produced by the
//   decoder linears) — this is what runs; GMACs_paper: the paper's accounting (`propagate=0`), for
//   reference; macs_rel: GMACs / path a's; time_rel: this repetition's time / the median of path a's
//   repetitions (a runs first); ratio = time_rel / macs_rel (proportional: 0.9..1.15).
//   benchmarks/path_proportionality.sh recomputes time_rel from the medians (the authoritative figure).
// BM_path_switch/<policy>: the per-frame cost of the engine around the inference: a random budget,
//   policy `choose`, the lookup of the precompiled plan, the clock reads and `observe`, through
//   drt::executor on a 100-entry LUT of B2 paths whose graph skips the forward (target < 50 us).
// BM_compile_path/<letter>: `model.compile(path)` (plan time, not per frame); BM_parse_compile: text
//   form -> compiled plan, as executor construction does for each LUT entry.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <drt/core/parallel.hpp>
#include <drt/engine/executor.hpp>
#include <drt/models/segformer.hpp>

namespace {

// Paper Table III (SegFormer-B2 paths for the accelerator study); the same list as
// tests/dynamic/test_path.cpp, benchmarks/bench_accel.cpp and tools/drt/cmd_dse.cpp.
struct table3_row {
  char id;
  const char* path;
};
const table3_row table3[] = {{'a', "depths=3,4,6,3 fuse_in=3072"}, {'b', "depths=3,4,6,3 fuse_in=1920"},
                             {'c', "depths=2,4,6,3 fuse_in=1664"}, {'d', "depths=2,3,6,3 fuse_in=1408"},
                             {'e', "depths=2,3,5,3 fuse_in=1024"}, {'f', "depths=3,2,5,2 fuse_in=896"},
                             {'g', "depths=2,3,4,3 fuse_in=512"}};
constexpr std::size_t image_hw = 512;

// The paper's graph (decoder as published, --no-fold): Table III's paths cut its Conv2DFuse; on the
// folded graph fuse_in saves almost nothing (docs/decoder_fold.md).
const drt::segformer_model& b2() {
  static const auto m = drt::segformer_model::with_random_weights(drt::standard_segformer_config("segformer-b2", 150),
                                                                  0, drt::segformer_options{false});
  return m;
}

const drt::tensor4& input() {
  static const drt::tensor4 x = [] {
    drt::tensor4 t = drt::tensor4::from_shape({1, 3, image_hw, image_hw});
    std::mt19937 g(7);
    std::normal_distribution<float> d(0.f, 1.f);
    for (auto& v : t) v = d(g);
    return t;
  }();
  return x;
}

double path_macs(const drt::segformer_path& p) {
  return drt::total_macs(b2().layers(image_hw, image_hw, b2().compile(p)));
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n == 0 ? NAN : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/// Per-repetition mean seconds of path a (the reference of time_rel).
std::vector<double>& path_a_times() {
  static std::vector<double> t;
  return t;
}

void BM_table3_path(benchmark::State& st, std::size_t row) {
  const auto path = drt::segformer_path::parse(table3[row].path);
  const auto exec = b2().compile(path);
  auto paper = path;
  paper.propagate = false;
  const double macs = path_macs(path), macs_a = path_macs(drt::segformer_path::parse(table3[0].path));
  const double macs_paper = path_macs(paper);
  auto paper_a = drt::segformer_path::parse(table3[0].path);
  paper_a.propagate = false;
  const double macs_paper_a = path_macs(paper_a);
  const auto& x = input();
  {  // warm-up: first-touch of the activations and thread-local buffers
    auto out = b2().forward(x, false, exec);
    benchmark::DoNotOptimize(out.logits.data());
  }
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : st) {
    auto out = b2().forward(x, false, exec);
    benchmark::DoNotOptimize(out.logits.data());
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() /
                      static_cast<double>(st.iterations());
  if (row == 0) path_a_times().push_back(secs);
  const double macs_rel = macs / macs_a;
  st.counters["GMACs"] = macs / 1e9;
  st.counters["GMACs_paper"] = macs_paper / 1e9;
  st.counters["macs_rel"] = macs_rel;
  st.counters["macs_paper_rel"] = macs_paper / macs_paper_a;
  st.counters["GMAC/s"] = macs / secs / 1e9;
  st.counters["threads"] = drt::max_threads();
  if (!path_a_times().empty()) {
    const double time_rel = secs / median(path_a_times());
    st.counters["time_rel"] = time_rel;
    st.counters["ratio"] = time_rel / macs_rel;
  }
  st.SetLabel(std::string(1, table3[row].id) + ": " + table3[row].path);
}

// ------------------------------------------------------------------ per-frame path switching

/// Simulated time shared by the graph and the clock below.
struct sim_time {
  double now_ms = 0;
  std::mt19937 gen{5};
  std::lognormal_distribution<double> noise{0.0, 0.05};
};

/// A graph that plans exactly as drt::model_graph (real compiled executions) but whose `run`
/// skips the inference: it only reads the plan and advances a simulated clock by the entry's table
/// latency x noise, so that the closed-loop policy sees realistic frame times (and keeps switching)
/// while the benchmark measures the executor's per-frame overhead alone.
class plan_only_graph {
public:
  using input_type = int;
  using output_type = std::size_t;
  struct plan_type {
    drt::model_graph::plan_type plan;
    double latency_ms;
  };
  plan_only_graph(drt::model_graph g, sim_time* t) : g_(std::move(g)), t_(t) {}
  plan_type plan(const drt::lut_entry& e) const { return {g_.plan(e), e.latency_ms}; }
  output_type run(const input_type&, const plan_type& p) const {
    t_->now_ms += p.latency_ms * t_->noise(t_->gen);
    return p.plan.family.size() + (p.plan.run ? 1 : 0);  // read the plan as `run` would
  }

private:
  drt::model_graph g_;
  sim_time* t_;
};

/// The executor's clock: reads the real clock (its cost is part of a frame's overhead) and returns
/// the simulated time.
struct sim_clock {
  sim_time* t;
  double now_ms() const {
    benchmark::DoNotOptimize(std::chrono::steady_clock::now());
    return t->now_ms;
  }
};

/// 100 distinct B2 paths with MAC-proportional latencies and an accuracy that grows with the work, so
/// that every entry is Pareto-optimal: the policy scans all 100 every frame (the worst case).
drt::lookup_table synthetic_lut(std::size_t entries) {
  drt::lookup_table t;
  t.machine = drt::machine_info::current();
  std::mt19937 g(42);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(g); };
  std::vector<std::string> seen;
  const double full = drt::total_macs(b2().layers(image_hw, image_hw));
  while (t.entries.size() < entries) {
    drt::segformer_path p;
    p.depths = {pick(1, 3), pick(1, 4), pick(1, 6), pick(1, 3)};
    p.fuse_in = 128 * pick(2, 24);
    p.pred_in = 64 * pick(4, 12);
    const std::string text = p.to_string();
    if (std::find(seen.begin(), seen.end(), text) != seen.end()) continue;
    seen.push_back(text);
    drt::lut_entry e;
    e.model = "segformer-b2";
    e.path = text;
    e.macs = path_macs(p);
    e.latency_ms = 1265.0 * e.macs / full;  // docs/results.md: B2 512x512, 2 threads
    e.latency_p95_ms = 1.05 * e.latency_ms;
    t.entries.push_back(e);
  }
  std::sort(t.entries.begin(), t.entries.end(),
            [](const drt::lut_entry& a, const drt::lut_entry& b) { return a.latency_ms < b.latency_ms; });
  for (std::size_t i = 0; i < t.entries.size(); ++i) {
    t.entries[i].miou = 0.3 + 0.3 * double(i + 1) / double(t.entries.size());
    t.entries[i].miou_normalized = t.entries[i].miou / 0.6;
  }
  t.mark_pareto();
  return t;
}

template <class Policy>
void BM_path_switch(benchmark::State& st, Policy policy) {
  const std::size_t n = policy.table().entries.size();
  double lo = INFINITY, hi = 0;
  for (const auto& e : policy.table().entries) {
    lo = std::min(lo, e.latency_ms);
    hi = std::max(hi, e.latency_ms);
  }
  sim_time t;
  drt::executor<plan_only_graph, Policy, sim_clock> ex(plan_only_graph(drt::model_graph("segformer-b2", b2()), &t),
                                                       std::move(policy), sim_clock{&t});
  std::vector<double> budgets(4096);
  std::mt19937 g(3);
  std::uniform_real_distribution<double> d(0.9 * lo, 1.1 * hi);
  for (auto& b : budgets) b = d(g);
  std::size_t i = 0, switches = 0, misses = 0, last = n;
  for (auto _ : st) {
    const auto r = ex.run(0, budgets[i++ & 4095]);
    switches += r.choice.entry != last;
    misses += r.missed;
    last = r.choice.entry;
    benchmark::DoNotOptimize(r.output);
  }
  st.counters["lut_entries"] = static_cast<double>(n);
  st.counters["candidates"] = static_cast<double>(ex.policy().candidates().size());
  st.counters["switch_rate"] = double(switches) / double(st.iterations());
  st.counters["miss_rate"] = double(misses) / double(st.iterations());
}

void BM_compile_path(benchmark::State& st, std::size_t row) {
  const auto path = drt::segformer_path::parse(table3[row].path);
  for (auto _ : st) {
    auto e = b2().compile(path);
    benchmark::DoNotOptimize(e.skip.data());
  }
  st.SetLabel(std::string(1, table3[row].id) + ": " + table3[row].path);
}

void BM_parse_compile(benchmark::State& st) {
  const drt::model_graph graph("segformer-b2", b2());
  drt::lut_entry e;
  e.model = "segformer-b2";
  e.path = table3[4].path;
  for (auto _ : st) {
    auto p = graph.plan(e);
    benchmark::DoNotOptimize(p.run);
  }
}

const int registered = [] {
  for (std::size_t r = 0; r < std::size(table3); ++r)
    benchmark::RegisterBenchmark((std::string("BM_table3_path/") + table3[r].id).c_str(), BM_table3_path, r)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime()
        ->MinTime(1.0);
  benchmark::RegisterBenchmark("BM_path_switch/lut_policy_100", [](benchmark::State& st) {
    drt::lut_policy_options o;
    o.pareto_only = false;  // scan every entry
    BM_path_switch(st, drt::lut_policy(synthetic_lut(100), o));
  })->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("BM_path_switch/deadline_controller_100", [](benchmark::State& st) {
    BM_path_switch(st, drt::deadline_controller(synthetic_lut(100)));
  })->Unit(benchmark::kMicrosecond);
  for (std::size_t r = 0; r < std::size(table3); ++r)
    benchmark::RegisterBenchmark((std::string("BM_compile_path/") + table3[r].id).c_str(), BM_compile_path, r)
        ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("BM_parse_compile", BM_parse_compile)->Unit(benchmark::kMicrosecond);
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
