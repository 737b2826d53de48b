#pragma once
/// @file budget_run.hpp
/// The per-frame step of budgeted inference (`drt segment --lut`), shared by every frame source:
/// a folder of images (`--frames`, cmd_segment_budget.cpp) and a video or raw stream (`--video`,
/// cmd_segment_video.cpp). `frame_runner` hides the policy type (lut or deadline) behind one
/// interface; `budget_stats` gathers the run's summary (misses, latency mean and p99, expected mIoU,
/// paths used) and prints it the same way for both.

#include <drt/engine/executor.hpp>
#include <drt/engine/policy.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <iomanip>
#include <map>
#include <ostream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "inputs.hpp"

namespace drt_cli {

/// Calls `run` (which returns the time of one forward pass in ms) until two consecutive times agree
/// within 5 %, at most `max_runs` times; returns how many ran. A path's first runs pay for page
/// faults, thread start-up and cold caches, and on some machines several pass before its time
/// settles (docs/engine.md, "drt segment --lut").
template <class Run>
std::size_t warm_until_settled(Run&& run, std::size_t max_runs = 8) {
  double previous = -1.0;
  for (std::size_t n = 1; n <= max_runs; ++n) {
    const double t = run();
    if (previous >= 0.0 && std::abs(t - previous) <= 0.05 * previous) return n;
    previous = t;
  }
  return max_runs;
}

/// What one budgeted frame gave.
struct budget_step {
  drt::tensor4 logits;        ///< [1, K, h, w]
  drt::lut_entry entry;       ///< the table entry that ran (model, path, expected mIoU)
  drt::policy_choice choice;  ///< budget, fits flag, expected time
  double measured_ms = 0;     ///< the forward pass as timed by the executor
  bool missed = false;        ///< measured_ms > budget
  bool nonfinite = false;     ///< the caller found NaN or infinity in the logits (and warned)
};

/// One frame through the executor under a budget, whatever the policy.
class frame_runner {
public:
  virtual ~frame_runner() = default;
  virtual const char* policy_name() const = 0;
  /// Untimed and unseen by the policy: each model's cheapest candidate until its time settles
  /// (`warm_until_settled`: page faults, thread start-up, cold caches).
  virtual void warm_up(const drt::tensor4& x) = 0;
  /// Runs frame `x` under `budget_ms` (the caller checks the logits: warn_nonfinite).
  virtual budget_step step(const drt::tensor4& x, double budget_ms) = 0;
};

template <class Policy>
class policy_runner final : public frame_runner {
public:
  policy_runner(const drt::model_graph& graph, Policy policy) : ex_(graph, std::move(policy)) {}

  const char* policy_name() const override { return Policy::name(); }
  void warm_up(const drt::tensor4& x) override {
    std::set<std::string> warmed;
    for (const std::size_t c : ex_.policy().candidates()) {
      const auto& e = ex_.policy().table().entries[c];
      if (!warmed.insert(e.model).second) continue;
      const auto plan = ex_.graph().plan(e);
      warm_until_settled([&] {
        const auto t0 = std::chrono::steady_clock::now();
        ex_.graph().run(x, plan);
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      });
    }
  }
  budget_step step(const drt::tensor4& x, double budget_ms) override {
    auto r = ex_.run(x, budget_ms);
    budget_step s;
    s.logits = std::move(r.output);
    s.entry = std::move(r.entry);
    s.choice = r.choice;
    s.measured_ms = r.measured_ms;
    s.missed = r.missed;
    return s;
  }

private:
  drt::executor<drt::model_graph, Policy> ex_;
};

/// The summary of a budgeted run over many frames.
class budget_stats {
public:
  void add(const budget_step& s) {
    times_.push_back(s.measured_ms);
    miou_sum_ += s.entry.miou;
    misses_ += s.missed ? 1 : 0;
    infeasible_ += s.choice.fits ? 0 : 1;
    nonfinite_ += s.nonfinite ? 1 : 0;
    ++counts_[s.entry.model + " '" + s.entry.path + "'"];
  }
  std::size_t frames() const noexcept { return times_.size(); }
  std::size_t misses() const noexcept { return misses_; }
  std::size_t infeasible() const noexcept { return infeasible_; }
  double mean_miou() const { return times_.empty() ? 0.0 : miou_sum_ / double(times_.size()); }
  double mean_ms() const {
    double m = 0;
    for (const double t : times_) m += t;
    return times_.empty() ? 0.0 : m / double(times_.size());
  }
  double p99_ms() const {
    if (times_.empty()) return 0;
    std::vector<double> sorted = times_;
    std::sort(sorted.begin(), sorted.end());
    const std::size_t i =
        std::min(sorted.size() - 1, static_cast<std::size_t>(std::ceil(0.99 * double(sorted.size()))) - 1);
    return sorted[i];
  }
  const std::map<std::string, std::size_t>& paths() const noexcept { return counts_; }

  /// "frames N, deadline misses M (x %), ...", latency mean and p99, expected mIoU mean, the paths used.
  void print(std::ostream& os) const {
    const auto flags = os.flags();
    const auto prec = os.precision();
    const double n = double(std::max<std::size_t>(1, frames()));
    os << std::fixed << std::setprecision(1) << "frames " << frames() << ", deadline misses " << misses_ << " ("
       << 100.0 * double(misses_) / n << " %), frames where nothing fits " << infeasible_
       << (nonfinite_ ? ", frames with non-finite logits " + std::to_string(nonfinite_) : std::string())
       << "\nlatency mean " << mean_ms() << " ms, p99 " << p99_ms() << " ms, expected mIoU mean "
       << std::setprecision(4) << mean_miou() << "\npaths used:\n";
    for (const auto& [name, k] : counts_) os << "  " << std::setw(5) << k << "  " << name << '\n';
    os.flags(flags);
    os.precision(prec);
  }

private:
  std::vector<double> times_;
  double miou_sum_ = 0;
  std::size_t misses_ = 0, infeasible_ = 0, nonfinite_ = 0;
  std::map<std::string, std::size_t> counts_;
};

}  // namespace drt_cli
