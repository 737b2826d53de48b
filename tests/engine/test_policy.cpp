// Policies on synthetic LUTs: lut_policy picks the most accurate fitting entry and flags when nothing
// fits; deadline_controller on a simulated machine whose speed changes keeps misses under target.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <drt/engine/policy.hpp>

#include "test_support.hpp"

namespace {
/// Entries (latency ms, mIoU), all on the front unless given otherwise.
drt::lookup_table table_of(const std::vector<std::pair<double, double>>& lm) {
  drt::lookup_table t;
  t.machine.cpu = "sim";
  t.machine.threads = 1;
  for (std::size_t i = 0; i < lm.size(); ++i) {
    drt::lut_entry e;
    e.model = "m";
    e.path = "p" + std::to_string(i);
    e.latency_ms = lm[i].first;
    e.latency_p95_ms = lm[i].first * 1.2;
    e.miou = lm[i].second;
    e.miou_normalized = lm[i].second / 0.6;
    t.entries.push_back(e);
  }
  t.mark_pareto();
  return t;
}

const std::vector<std::pair<double, double>> ladder{{10, 0.40}, {14, 0.45}, {18, 0.50}, {22, 0.53},
                                                    {26, 0.55}, {30, 0.57}, {35, 0.59}, {40, 0.60}};

/// A machine whose speed changes over time: frame t of entry L takes L * speed(t) * lognormal noise.
struct simulated_machine {
  std::mt19937 gen{12345};
  std::normal_distribution<double> noise{0.0, 0.03};
  double speed(std::size_t t) const { return t < 400 ? 1.0 : t < 800 ? 1.5 : t < 1200 ? 1.0 : 1.25; }
  double run(double table_ms, std::size_t t) { return table_ms * speed(t) * std::exp(noise(gen)); }
};

struct run_stats {
  std::size_t frames = 0, misses = 0;
  double miou_sum = 0;
  std::vector<double> chosen_ms;  // table latency of the entry chosen per frame
  double miss_rate() const { return double(misses) / double(frames); }
  double mean_miou() const { return miou_sum / double(frames); }
};

template <class Policy, class Budget>
run_stats simulate(Policy& policy, Budget&& budget, std::size_t frames = 1600) {
  simulated_machine machine;
  run_stats s;
  for (std::size_t t = 0; t < frames; ++t) {
    const double b = budget(t);
    const auto c = policy.choose(b);
    const double ms = machine.run(policy.table().entries[c.entry].latency_ms, t);
    policy.observe(c, ms);
    ++s.frames;
    s.misses += ms > b ? 1 : 0;
    s.miou_sum += c.expected_miou;
    s.chosen_ms.push_back(policy.table().entries[c.entry].latency_ms);
  }
  return s;
}

double share(const std::vector<double>& v, std::size_t from, std::size_t to, double value) {
  std::size_t n = 0;
  for (std::size_t i = from; i < to; ++i) n += v[i] == value ? 1 : 0;
  return double(n) / double(to - from);
}
}  // namespace

TEST_SUITE("engine") {
  TEST_CASE("lut_policy: the most accurate entry that fits, the cheapest with a flag when none does") {
    // entry 3 (20 ms, 0.48) is dominated by entry 2 (18 ms, 0.50): never chosen
    const drt::lut_policy p(table_of({{10, 0.40}, {14, 0.45}, {18, 0.50}, {20, 0.48}, {30, 0.57}}));
    CHECK(p.candidates() == std::vector<std::size_t>{0, 1, 2, 4});
    auto c = p.choose(25);
    CHECK(c.entry == 2);
    CHECK(c.fits);
    CHECK(c.expected_miou == 0.50);
    CHECK(c.expected_ms == 18);
    CHECK(c.budget_ms == 25);
    CHECK(p.choose(30).entry == 4);  // a budget equal to the latency fits
    CHECK(p.choose(1000).entry == 4);
    CHECK(p.choose(10).entry == 0);
    c = p.choose(9.99);
    CHECK_FALSE(c.fits);
    CHECK(c.entry == 0);  // nothing fits: the cheapest path, flagged
    CHECK(c.expected_miou == 0.40);
    CHECK_FALSE(c.expected_miou_interval.valid());  // the table has no intervals
    // an entry's bootstrap interval comes with the estimate
    auto with_ci = table_of({{10, 0.40}, {14, 0.45}, {18, 0.50}, {20, 0.48}, {30, 0.57}});
    with_ci.entries[2].miou_ci.low = 0.47;
    with_ci.entries[2].miou_ci.high = 0.52;
    const auto ci = drt::lut_policy(with_ci).choose(25).expected_miou_interval;
    CHECK(ci.low == 0.47);
    CHECK(ci.high == 0.52);
    // on p95 (latency * 1.2) the same budget buys less
    const drt::lut_policy q(table_of({{10, 0.40}, {14, 0.45}, {18, 0.50}, {30, 0.57}}), {true, true});
    CHECK(q.choose(25).entry == 2);
    CHECK(q.choose(21).entry == 1);
    CHECK(q.choose(21).expected_ms == doctest::Approx(14 * 1.2));
  }

  TEST_CASE("static_policy: one entry whatever the budget, flagged when its latency does not fit") {
    // entry 3 (20 ms, 0.48) is off the front: a static baseline may still run it
    drt::static_policy p(table_of({{10, 0.40}, {14, 0.45}, {18, 0.50}, {20, 0.48}, {30, 0.57}}), 3);
    CHECK(p.candidates() == std::vector<std::size_t>{3});
    CHECK(std::string(drt::static_policy::name()) == "static");
    auto c = p.choose(25);
    CHECK(c.entry == 3);
    CHECK(c.fits);
    CHECK(c.budget_ms == 25);
    CHECK(c.expected_ms == 20);
    CHECK(c.expected_miou == 0.48);
    CHECK(p.choose(20).fits);  // a budget equal to the latency fits
    c = p.choose(1000);
    CHECK(c.entry == 3);  // a generous budget buys nothing better
    c = p.choose(12);
    CHECK(c.entry == 3);  // nor does a tight one switch to a cheaper entry
    CHECK_FALSE(c.fits);
    CHECK(c.expected_ms == 20);
    p.observe(c, 500);  // open loop: a slow frame changes nothing
    CHECK(p.choose(25).fits);
    CHECK(p.choose(25).expected_ms == 20);
    CHECK(p.table().entries.size() == 5);
    CHECK_THROWS_WITH_AS(p.choose(0),
                         "budget 0 ms is impossible: a frame budget must be a positive, finite number of milliseconds",
                         drt::invalid_input);
    CHECK_THROWS_WITH_AS(drt::static_policy(table_of(ladder), 8), "static_policy: entry 8 of a table of 8 entries",
                         drt::invalid_input);
  }

  TEST_CASE("budgets: impossible values and bad traces give errors naming the value") {
    const drt::lut_policy p(table_of(ladder));
    CHECK_THROWS_WITH_AS(p.choose(-5),
                         "budget -5 ms is impossible: a frame budget must be a positive, finite number of milliseconds",
                         drt::invalid_input);
    CHECK_THROWS_WITH_AS(p.choose(0),
                         "budget 0 ms is impossible: a frame budget must be a positive, finite number of milliseconds",
                         drt::invalid_input);
    CHECK_THROWS_WITH_AS(
        p.choose(NAN), "budget NaN ms is impossible: a frame budget must be a positive, finite number of milliseconds",
        drt::invalid_input);
    CHECK_THROWS_WITH_AS(
        p.choose(INFINITY),
        "budget inf ms is impossible: a frame budget must be a positive, finite number of milliseconds",
        drt::invalid_input);
    CHECK(drt::parse_budget_ms("33.3") == doctest::Approx(33.3));
    CHECK_THROWS_WITH_AS(drt::parse_budget_ms("fast", "--budget-ms"),
                         "--budget-ms 'fast' is not a number of milliseconds", drt::invalid_input);
    CHECK_THROWS_WITH_AS(
        drt::parse_budget_ms("nan", "--budget-ms"),
        "--budget-ms NaN ms is impossible: a frame budget must be a positive, finite number of milliseconds",
        drt::invalid_input);
    CHECK_THROWS_WITH_AS(
        drt::parse_budget_ms("-1", "--budget-ms"),
        "--budget-ms -1 ms is impossible: a frame budget must be a positive, finite number of milliseconds",
        drt::invalid_input);
    const auto file = (std::filesystem::temp_directory_path() / "drt_budget_trace.txt").string();
    std::ofstream(file) << "# budgets\n33\n\n40.5\n0\n";
    CHECK_THROWS_WITH_AS(
        drt::load_budget_trace(file),
        ("budget trace '" + file +
         "': line 5: budget 0 ms is impossible: a frame budget must be a positive, finite number of milliseconds")
            .c_str(),
        drt::invalid_input);
    std::ofstream(file) << "# budgets\n33\n\n40.5\n";
    CHECK(drt::load_budget_trace(file) == std::vector<double>{33, 40.5});
    CHECK_THROWS_WITH_AS(drt::load_budget_trace("/nonexistent/trace.txt"),
                         "budget trace '/nonexistent/trace.txt': cannot open file (No such file or directory)", drt::io_error);
    CHECK_THROWS_WITH_AS(drt::lut_policy(drt::lookup_table{}), "lut_policy: the lookup table has no entries",
                         drt::invalid_input);
  }

  TEST_CASE("deadline_controller: adapts to a machine that slows down and speeds up, misses under 1%") {
    const auto t = table_of(ladder);
    auto budget = [](std::size_t) { return 33.0; };
    drt::lut_policy open(t);
    drt::deadline_controller ctl(t);
    const auto o = simulate(open, budget);
    const auto c = simulate(ctl, budget);
    MESSAGE("constant 33 ms budget, speed 1 / 1.5 / 1 / 1.25: lut_policy misses "
            << 100 * o.miss_rate() << " %, mean mIoU " << o.mean_miou() << "; deadline_controller misses "
            << 100 * c.miss_rate() << " %, mean mIoU " << c.mean_miou());
    CHECK(o.miss_rate() > 0.4);  // open loop: every frame of the slow phases misses
    CHECK(c.miss_rate() < 0.01);
    CHECK(ctl.miss_rate() < 0.01);
    // It follows the machine: the 30 ms path while the machine is as measured, the 18 ms path while
    // it is 1.5x slower, back to 30 ms after the speed-up.
    CHECK(share(c.chosen_ms, 50, 400, 30) > 0.8);
    CHECK(share(c.chosen_ms, 410, 800, 18) > 0.9);
    CHECK(share(c.chosen_ms, 820, 1200, 30) > 0.8);
    CHECK(share(c.chosen_ms, 1210, 1600, 22) > 0.8);  // 22 * 1.25 = 27.5 fits, 26 * 1.25 = 32.5 is too close
    // The best static path that misses under 1% must survive the 1.5x phase: 18 ms (0.50).
    CHECK(c.mean_miou() > 0.50 + 0.02);
    // per-path estimates track the current speed
    CHECK(ctl.level() == doctest::Approx(1.25).epsilon(0.1));
    CHECK(ctl.estimate_ms(2) > 18 * 1.25 * 0.9);
  }

  TEST_CASE("deadline_controller: a budget trace (steps and a sine) on a changing machine") {
    const auto t = table_of(ladder);
    auto budget = [](std::size_t f) {
      const double steps = f % 300 < 150 ? 45.0 : 30.0;
      return steps + 8.0 * std::sin(2 * M_PI * double(f) / 97.0);
    };
    drt::deadline_controller ctl(t);
    drt::lut_policy open(t);
    const auto c = simulate(ctl, budget);
    const auto o = simulate(open, budget);
    MESSAGE("budget trace: lut_policy misses " << 100 * o.miss_rate() << " %, deadline_controller misses "
                                               << 100 * c.miss_rate() << " %, mean mIoU " << c.mean_miou());
    CHECK(c.miss_rate() < 0.01);
    CHECK(o.miss_rate() > 0.2);
    CHECK(c.mean_miou() > 0.5);
  }

  TEST_CASE("deadline_controller: a hybrid table whose models drift apart keeps a level per model") {
    // Model "small" runs as its table says; model "big" now runs 1.6x slower than its table.
    drt::lookup_table t = table_of({{10, 0.40}, {14, 0.45}, {18, 0.50}});
    for (auto& e : t.entries) e.model = "small";
    for (const auto& [ms, miou] : std::vector<std::pair<double, double>>{{22, 0.53}, {26, 0.55}, {30, 0.57}}) {
      drt::lut_entry e = t.entries[0];
      e.model = "big";
      e.path = "q" + std::to_string(int(ms));
      e.latency_ms = ms;
      e.latency_p95_ms = ms;
      e.miou = miou;
      t.entries.push_back(e);
    }
    drt::deadline_controller ctl(t);
    std::mt19937 gen(3);
    std::normal_distribution<double> noise(0.0, 0.03);
    std::size_t misses = 0, big_late = 0;
    for (std::size_t f = 0; f < 600; ++f) {
      const double budget = f % 2 ? 40.0 : 24.0;  // 24: small's 18 ms; 40: big's 22 ms (x 1.6 = 35), not its 26 or 30
      const auto c = ctl.choose(budget);
      const auto& e = t.entries[c.entry];
      const double ms = e.latency_ms * (e.model == "big" ? 1.6 : 1.0) * std::exp(noise(gen));
      ctl.observe(c, ms);
      misses += ms > budget ? 1 : 0;
      if (f >= 100 && e.model == "big") ++big_late;
    }
    MESSAGE("hybrid table, big model 1.6x slower than its table: " << misses << " misses in 600 frames");
    CHECK(misses <= 6);
    CHECK(big_late > 0);                   // "big" still used where it fits (22 x 1.6 < 33)
    CHECK(ctl.estimate_ms(3) > 22 * 1.5);  // big's estimate learned
    CHECK(ctl.estimate_ms(2) < 18 * 1.2);  // small's not inflated by big's
    CHECK(ctl.level(2) == doctest::Approx(1.0).epsilon(0.08));
    CHECK(ctl.level(3) == doctest::Approx(1.6).epsilon(0.08));
  }

  TEST_CASE("deadline_controller: after a slowdown the models not run recover with the one that is") {
    // Both models slow down 2x for frames 50..149. Under load only "small" fits; once the load is gone
    // "small"'s level falls back to 1 and "big"'s stale level must follow, so "big" is chosen again
    // within a few frames instead of never (its own level could only be corrected by running it).
    drt::lookup_table t = table_of({{10, 0.40}, {14, 0.45}, {18, 0.50}});
    for (auto& e : t.entries) e.model = "small";
    drt::lut_entry e = t.entries[0];
    e.model = "big";
    e.path = "q30";
    e.latency_ms = e.latency_p95_ms = 30;
    e.miou = 0.57;
    t.entries.push_back(e);
    drt::deadline_controller ctl(t);
    std::mt19937 gen(5);
    std::normal_distribution<double> noise(0.0, 0.02);
    const double budget = 40;
    std::size_t first_big_after_load = 0, misses = 0;
    for (std::size_t f = 0; f < 250; ++f) {
      const auto c = ctl.choose(budget);
      const auto& entry = t.entries[c.entry];
      const double slow = f >= 50 && f < 150 ? 2.0 : 1.0;
      const double ms = entry.latency_ms * slow * std::exp(noise(gen));
      ctl.observe(c, ms);
      misses += ms > budget ? 1 : 0;
      if (f >= 150 && entry.model == "big" && first_big_after_load == 0) first_big_after_load = f;
    }
    MESSAGE("stale level: big chosen again at frame " << first_big_after_load << ", " << misses << " misses");
    CHECK(first_big_after_load >= 150);
    CHECK(first_big_after_load <= 160);
    CHECK(misses <= 3);  // at most the frames that reveal the slowdown
    CHECK(ctl.level(3) == doctest::Approx(1.0).epsilon(0.08));
  }

  TEST_CASE("deadline_controller: memory_frames plans for a slowdown that came and went, and forgets it") {
    // Load (1.8x) for 25 frames out of every 50. A reactive controller misses the first loaded frame of
    // every block whose budget lies between a path's fast and slow latency; with memory it keeps the
    // slow speed in mind while the load was seen in the last 100 frames, and forgets it afterwards.
    const drt::lookup_table t = table_of(ladder);
    auto run = [&](std::size_t memory, std::size_t frames, std::size_t load_until) {
      drt::deadline_controller_options o;
      o.memory_frames = memory;
      drt::deadline_controller ctl(t, o);
      std::mt19937 gen(11);
      std::normal_distribution<double> noise(0.0, 0.02);
      std::size_t misses = 0, late_choice = 0;
      for (std::size_t f = 0; f < frames; ++f) {
        const double budget = 30;
        const auto c = ctl.choose(budget);
        const bool loaded = f < load_until && (f % 50) >= 25;
        const double ms = t.entries[c.entry].latency_ms * (loaded ? 1.8 : 1.0) * std::exp(noise(gen));
        ctl.observe(c, ms);
        misses += ms > budget ? 1 : 0;
        if (f + 1 == frames) late_choice = c.entry;
      }
      return std::make_pair(misses, late_choice);
    };
    const auto [reactive_misses, reactive_last] = run(0, 375, 375);
    const auto [cautious_misses, cautious_last] = run(100, 375, 375);
    MESSAGE("load every other 25 frames, budget 30 ms: reactive " << reactive_misses << " misses, with memory "
                                                                    << cautious_misses);
    CHECK(reactive_misses >= 5);  // about one per load onset (7 onsets)
    CHECK(cautious_misses <= 2);  // at most the onsets before the first slowdown was seen
    // The last frame (374) is unloaded. With load until frame 200 the memory has let go by then and the
    // fast level is used again; with load until the end it still plans for the slow one.
    const auto [m2, last_after_quiet] = run(100, 375, 200);
    (void)m2;
    CHECK(t.entries[last_after_quiet].latency_ms == doctest::Approx(t.entries[reactive_last].latency_ms));
    CHECK(t.entries[cautious_last].latency_ms < t.entries[reactive_last].latency_ms);
  }

  TEST_CASE("deadline_controller: infeasible budgets, bad measurements and options") {
    const auto t = table_of(ladder);
    drt::deadline_controller ctl(t);
    auto c = ctl.choose(5);
    CHECK_FALSE(c.fits);
    CHECK(c.entry == 0);
    for (int i = 0; i < 20; ++i) ctl.observe(ctl.choose(5), 10);  // misses, but nothing could fit
    CHECK(ctl.miss_rate() == 0);
    CHECK(ctl.choose(1000).entry == 7);
    CHECK_THROWS_WITH_AS(ctl.observe(c, NAN),
                         "deadline_controller: measured latency NaN ms must be a non-negative, finite number",
                         drt::invalid_input);
    CHECK_THROWS_WITH_AS(ctl.choose(-1),
                         "budget -1 ms is impossible: a frame budget must be a positive, finite number of milliseconds",
                         drt::invalid_input);
    drt::deadline_controller_options o;
    o.target_miss_rate = 0;
    CHECK_THROWS_WITH_AS(drt::deadline_controller(t, o), "deadline_controller: target miss rate 0 must be in (0, 0.5)",
                         drt::invalid_input);
  }
}
