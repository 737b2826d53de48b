#pragma once
/// @file policy.hpp
/// Per-frame path selection (paper Section IV): given a latency budget, pick the most accurate
/// lookup-table entry expected to meet it.
///
/// A policy is any type with
///   policy_choice choose(double budget_ms) const;       // which entry to run for this frame
///   void observe(const policy_choice&, double measured_ms);  // what the frame actually took
///   const lookup_table& table() const;  const std::vector<std::size_t>& candidates() const;
/// - `lut_policy` is open loop: it trusts the table's latencies.
/// - `deadline_controller` is closed loop: it rescales the table by the machine's current speed,
///   learned from every frame's measured latency, and keeps a safety margin sized so that the
///   deadline miss rate stays under a target.
/// - `static_policy` runs one entry whatever the budget: the static baseline of the benchmarks.

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <deque>
#include <utility>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../io/file.hpp"
#include "lut.hpp"

namespace drt {

namespace detail {
inline std::string budget_num(double v) {
  if (std::isnan(v)) return "NaN";
  std::ostringstream os;
  os << v;
  return os.str();
}
}  // namespace detail

/// Returns `ms` when it is a usable per-frame budget (finite and > 0); otherwise throws
/// drt::invalid_input: "budget -5 ms is impossible: a frame budget must be a positive, finite
/// number of milliseconds". `what` names the value (e.g. "budget trace 'b.txt': line 3: budget").
inline double check_budget_ms(double ms, const std::string& what = "budget") {
  if (!(ms > 0) || !std::isfinite(ms))
    throw invalid_input(what + " " + detail::budget_num(ms) +
                        " ms is impossible: a frame budget must be a positive, finite number of milliseconds");
  return ms;
}

/// Parses a budget given as text ("33.3"); throws naming the text when it is not a number or not a
/// usable budget.
inline double parse_budget_ms(const std::string& text, const std::string& what = "budget") {
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || errno == ERANGE)
    throw invalid_input(what + " '" + text + "' is not a number of milliseconds");
  return check_budget_ms(v, what);
}

/// A budget trace: one budget in milliseconds per line, applied to frame i as line i % lines.
/// Blank lines and lines starting with '#' are skipped. Errors name the file and the line.
inline std::vector<double> load_budget_trace(const std::string& file) {
  const std::vector<char> bytes = read_file("budget trace", file, std::size_t{64} << 20);
  std::istringstream in(std::string(bytes.begin(), bytes.end()));
  std::vector<double> out;
  std::string line;
  for (std::size_t no = 1; std::getline(in, line); ++no) {
    const auto b = line.find_first_not_of(" \t\r"), e = line.find_last_not_of(" \t\r");
    if (b == std::string::npos || line[b] == '#') continue;
    out.push_back(parse_budget_ms(line.substr(b, e - b + 1),
                                  "budget trace '" + file + "': line " + std::to_string(no) + ": budget"));
  }
  if (out.empty()) throw invalid_input("budget trace '" + file + "': no budgets (one number of milliseconds per line)");
  return out;
}

/// What a policy decided for one frame.
struct policy_choice {
  std::size_t entry = 0;     ///< index into the policy's table().entries
  bool fits = true;          ///< false: no entry is expected to meet the budget; `entry` is the cheapest
  double budget_ms = 0;      ///< the budget it was chosen for
  double expected_ms = 0;    ///< the latency the policy expects (its current estimate, without margin)
  double expected_miou = 0;  ///< the table's accuracy estimate for the entry
  /// How sure that estimate is: the entry's bootstrap interval over its images (invalid when the
  /// table has none, e.g. fidelity sweeps and tables written before intervals existed).
  miou_interval expected_miou_interval;
};

namespace detail {
/// Scan `candidates` for the most accurate entry whose cost fits; the cheapest when none does.
template <class Cost>
policy_choice choose_fitting(const lookup_table& t, const std::vector<std::size_t>& candidates, double budget_ms,
                             Cost&& cost) {
  policy_choice c;
  c.budget_ms = budget_ms;
  bool found = false;
  double best_miou = -1, best_cost = INFINITY;
  for (const std::size_t i : candidates) {
    const double ci = cost(i);
    if (ci > budget_ms) continue;
    const double m = t.entries[i].miou;
    if (!found || m > best_miou || (m == best_miou && ci < best_cost)) {
      found = true;
      c.entry = i;
      best_miou = m;
      best_cost = ci;
    }
  }
  if (!found) {
    c.fits = false;
    for (const std::size_t i : candidates)
      if (cost(i) < best_cost) {
        best_cost = cost(i);
        c.entry = i;
      }
  }
  c.expected_miou = t.entries[c.entry].miou;
  c.expected_miou_interval = t.entries[c.entry].miou_ci;
  return c;
}

inline std::vector<std::size_t> policy_candidates(const lookup_table& t, bool pareto_only, bool use_p95,
                                                  const char* who) {
  if (t.entries.empty()) throw invalid_input(std::string(who) + ": the lookup table has no entries");
  std::vector<std::size_t> c;
  if (pareto_only) {
    c = pareto_front(
        t.entries, [&](const lut_entry& e) { return use_p95 ? e.latency_p95_ms : e.latency_ms; },
        [](const lut_entry& e) { return e.miou; });
  } else {
    for (std::size_t i = 0; i < t.entries.size(); ++i) c.push_back(i);
    std::stable_sort(c.begin(), c.end(),
                     [&](std::size_t a, std::size_t b) { return t.entries[a].latency_ms < t.entries[b].latency_ms; });
  }
  for (const std::size_t i : c)
    if (!(t.entries[i].latency_ms > 0) || !std::isfinite(t.entries[i].latency_ms))
      throw invalid_input(std::string(who) + ": entry " + std::to_string(i) + " (" + t.entries[i].label() +
                          ") has latency " + budget_num(t.entries[i].latency_ms) + " ms, expected a positive number");
  return c;
}

/// Inverse of the standard normal CDF by bisection on erfc (called once per controller).
inline double normal_quantile(double p) {
  double lo = -10, hi = 10;
  for (int i = 0; i < 100; ++i) {
    const double mid = 0.5 * (lo + hi);
    (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

inline double median_of(std::vector<double> v) {
  if (v.empty()) return NAN;
  const auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
  std::nth_element(v.begin(), mid, v.end());
  if (v.size() % 2) return *mid;
  const double hi = *mid;
  return 0.5 * (hi + *std::max_element(v.begin(), mid));
}
}  // namespace detail

struct lut_policy_options {
  bool pareto_only = true;  ///< choose among the Pareto-optimal entries only (the others never win)
  bool use_p95 = false;     ///< compare the budget with latency_p95_ms instead of the median latency_ms
};

/// Open loop: the most accurate entry whose table latency fits the budget; when none fits, the
/// cheapest entry with `fits == false`.
class lut_policy {
public:
  explicit lut_policy(lookup_table table, lut_policy_options options = {})
      : table_(std::move(table)),
        options_(options),
        candidates_(detail::policy_candidates(table_, options.pareto_only, options.use_p95, "lut_policy")) {}

  policy_choice choose(double budget_ms) const {
    check_budget_ms(budget_ms);
    auto c = detail::choose_fitting(table_, candidates_, budget_ms, [&](std::size_t i) { return cost(i); });
    c.expected_ms = cost(c.entry);
    return c;
  }
  /// Open loop: measurements are ignored.
  void observe(const policy_choice&, double) noexcept {}

  const lookup_table& table() const noexcept { return table_; }
  /// Entries it may choose, cheapest first.
  const std::vector<std::size_t>& candidates() const noexcept { return candidates_; }
  static const char* name() noexcept { return "lut"; }

private:
  double cost(std::size_t i) const {
    return options_.use_p95 ? table_.entries[i].latency_p95_ms : table_.entries[i].latency_ms;
  }
  lookup_table table_;
  lut_policy_options options_;
  std::vector<std::size_t> candidates_;
};

/// Always the same entry, whatever the budget: the static baseline the adaptive policies are compared
/// with (a fixed model and path). `fits` says whether the entry's table latency fits the budget.
class static_policy {
public:
  /// Throws drt::invalid_input when `entry` is not an index of `table`.
  static_policy(lookup_table table, std::size_t entry) : table_(std::move(table)), candidates_{entry} {
    if (entry >= table_.entries.size())
      throw invalid_input("static_policy: entry " + std::to_string(entry) + " of a table of " +
                          std::to_string(table_.entries.size()) + " entries");
  }

  policy_choice choose(double budget_ms) const {
    check_budget_ms(budget_ms);
    policy_choice c;
    c.entry = candidates_[0];
    c.budget_ms = budget_ms;
    c.expected_ms = table_.entries[c.entry].latency_ms;
    c.fits = c.expected_ms <= budget_ms;
    c.expected_miou = table_.entries[c.entry].miou;
    c.expected_miou_interval = table_.entries[c.entry].miou_ci;
    return c;
  }
  /// Open loop: measurements are ignored.
  void observe(const policy_choice&, double) noexcept {}

  const lookup_table& table() const noexcept { return table_; }
  /// The one entry it runs.
  const std::vector<std::size_t>& candidates() const noexcept { return candidates_; }
  static const char* name() noexcept { return "static"; }

private:
  lookup_table table_;
  std::vector<std::size_t> candidates_;
};

struct deadline_controller_options {
  double target_miss_rate = 0.01;  ///< misses per frame to stay under (frames where something fits)
  std::size_t level_frames = 5;    ///< the speed level is the median of this many recent ratios
  std::size_t noise_window = 100;  ///< frames of residuals that size the margin
  std::size_t warmup_frames = 10;  ///< frames before the residuals are trusted (margin = initial_margin)
  double initial_margin = 1.2;     ///< margin while warming up
  double feedback_step = 0.25;     ///< z-score added to the margin per miss (taken back slowly on hits)
  /// Caution against load that comes back: when > 0, the choice assumes the machine may at any frame
  /// become as slow (relative to now) as it was at its slowest in the last `memory_frames` frames. A
  /// reactive controller otherwise misses the first frame of every slowdown whose budget lies between
  /// the path's fast and slow latency; with load switching on every few seconds those frames alone
  /// exceed a 1% target. 0 (default) plans for the current speed only.
  std::size_t memory_frames = 0;
};

/// Closed loop. For entry i with table latency L_i its current estimate is L_i * s, where the
/// machine's speed level s (kept per model of the table, since a busier or quieter machine does not
/// slow every model alike; a model not run yet takes the median of the others') is the median of the
/// last `level_frames` ratios r = measured / L_i of that model's frames (when the level of the model
/// being run moves, the other models' levels move by the same factor until they run again); a
/// frame that exceeds its estimate with margin (a surprise: the machine slowed down, or a hiccup)
/// restarts that history from its own ratio, so a slowdown is followed at the next frame and a
/// speed-up within a few frames. A frame's residual e = r / s says how far it was from its estimate;
/// the margin is m = exp(median(log e) + (z + b) * sigma), with sigma a robust (MAD) spread of log e
/// over `noise_window` frames, z the normal quantile of 1 - target, and b a feedback term that grows
/// on every miss and shrinks on every hit with equilibrium at half the target miss rate, so tails
/// heavier than normal are covered too. The choice is the most accurate entry with L_i * s * m <=
/// budget; when none fits, the cheapest with `fits == false`.
class deadline_controller {
public:
  explicit deadline_controller(lookup_table table, deadline_controller_options options = {})
      : table_(std::move(table)),
        options_(options),
        candidates_(detail::policy_candidates(table_, true, false, "deadline_controller")) {
    const auto& o = options_;
    if (!(o.target_miss_rate > 0 && o.target_miss_rate < 0.5))
      throw invalid_input("deadline_controller: target miss rate " + detail::budget_num(o.target_miss_rate) +
                          " must be in (0, 0.5)");
    if (o.level_frames == 0 || o.noise_window < 10)
      throw invalid_input("deadline_controller: level_frames must be >= 1 and noise_window >= 10 (got " +
                          std::to_string(o.level_frames) + " and " + std::to_string(o.noise_window) + ")");
    if (!(o.initial_margin >= 1) || !(o.feedback_step >= 0))
      throw invalid_input("deadline_controller: initial_margin must be >= 1 and feedback_step >= 0");
    z0_ = detail::normal_quantile(1.0 - o.target_miss_rate);
  }

  policy_choice choose(double budget_ms) const {
    check_budget_ms(budget_ms);
    const double m = margin();
    const double caution = caution_factor();
    auto c = detail::choose_fitting(table_, candidates_, budget_ms, [&](std::size_t i) {
      return table_.entries[i].latency_ms * level(i) * caution * m;
    });
    c.expected_ms = table_.entries[c.entry].latency_ms * level(c.entry);
    return c;
  }

  /// Feeds back what the frame chosen by `c` took. Throws when `measured_ms` is negative or not finite.
  void observe(const policy_choice& c, double measured_ms) {
    if (!(measured_ms >= 0) || !std::isfinite(measured_ms))
      throw invalid_input("deadline_controller: measured latency " + detail::budget_num(measured_ms) +
                          " ms must be a non-negative, finite number");
    if (c.entry >= table_.entries.size())
      throw invalid_input("deadline_controller: choice names entry " + std::to_string(c.entry) + " of a table of " +
                          std::to_string(table_.entries.size()));
    const double r = std::max(measured_ms, 1e-9) / table_.entries[c.entry].latency_ms;
    const double before = level(c.entry);
    const bool surprise = r > before * margin();
    if (frames_ > 0) push(log_residuals_, std::log(r / before), options_.noise_window);
    const std::string& model = table_.entries[c.entry].model;
    const bool seen = models_.count(model) != 0;
    auto& st = models_[model];
    const double old_level = st.level;
    if (surprise) st.ratios.clear();  // a new regime (or a hiccup): start the level from this frame
    push(st.ratios, r, options_.level_frames);
    st.level = detail::median_of(std::vector<double>(st.ratios.begin(), st.ratios.end()));
    // The models not run now keep levels measured under the load of their last frames. Move them
    // by the same factor (their ratios too), so that after the machine speeds up again a larger
    // model is trusted at once instead of waiting for a frame of its own that would never be chosen.
    if (seen && old_level > 0 && st.level != old_level) {
      const double factor = st.level / old_level;
      for (auto& [name, other] : models_) {
        if (name == model) continue;
        other.level *= factor;
        for (auto& x : other.ratios) x *= factor;
      }
    }
    last_model_ = table_.entries[c.entry].model;
    if (options_.memory_frames > 0) {
      // Remember a level once it is confirmed by a few frames (a single hiccup is not a slowdown);
      // a level of 0 keeps the window counting frames.
      const bool confirmed = st.ratios.size() >= std::min<std::size_t>(3, options_.level_frames);
      push(recent_levels_, {model, confirmed ? st.level : 0.0}, options_.memory_frames);
    }
    ++frames_;
    if (c.fits) {  // misses of infeasible frames say nothing about the margin
      ++fitting_;
      const bool miss = measured_ms > c.budget_ms;
      misses_ += miss ? 1 : 0;
      const double p = options_.target_miss_rate / 2;
      feedback_ += miss ? options_.feedback_step : -options_.feedback_step * p / (1 - p);
      feedback_ = std::max(feedback_, -z0_ / 2);
    }
  }

  /// The speed level of the model run last, relative to the table (1 = as measured, 2 = twice as slow).
  double level() const { return models_.empty() ? 1.0 : models_.at(last_model_).level; }
  /// The speed level that applies to entry i (its model's, or the median of the models seen).
  double level(std::size_t i) const {
    const auto it = models_.find(table_.entries.at(i).model);
    if (it != models_.end()) return it->second.level;
    if (models_.empty()) return 1.0;
    std::vector<double> v;
    for (const auto& [name, st] : models_) v.push_back(st.level);
    return detail::median_of(v);
  }
  /// How much slower than now the machine was at its slowest in the last `memory_frames` frames
  /// (>= 1; 1 when the option is off): the largest ratio of a recorded level to that model's level now.
  double caution_factor() const {
    double f = 1.0;
    for (const auto& [name, lvl] : recent_levels_) {
      const auto it = models_.find(name);
      if (it != models_.end() && it->second.level > 0) f = std::max(f, lvl / it->second.level);
    }
    return f;
  }
  /// The multiplicative safety margin on top of the speed level.
  double margin() const {
    if (frames_ < options_.warmup_frames || log_residuals_.size() < 5) return options_.initial_margin;
    std::vector<double> v(log_residuals_.begin(), log_residuals_.end());
    const double mu = detail::median_of(v);
    for (auto& x : v) x = std::abs(x - mu);
    const double sigma = 1.4826 * detail::median_of(v);
    return std::max(1.0, std::exp(mu + (z0_ + feedback_) * sigma));
  }
  /// Current latency estimate of entry i including the margin.
  double estimate_ms(std::size_t i) const { return table_.entries.at(i).latency_ms * level(i) * margin(); }
  /// Misses per fitting frame observed so far.
  double miss_rate() const { return fitting_ ? double(misses_) / double(fitting_) : 0.0; }
  std::size_t frames() const noexcept { return frames_; }

  const lookup_table& table() const noexcept { return table_; }
  const std::vector<std::size_t>& candidates() const noexcept { return candidates_; }
  static const char* name() noexcept { return "deadline"; }

private:
  template <class T>
  static void push(std::deque<T>& q, T v, std::size_t cap) {
    q.push_back(v);
    while (q.size() > cap) q.pop_front();
  }

  lookup_table table_;
  deadline_controller_options options_;
  std::vector<std::size_t> candidates_;
  double z0_ = 2.326;
  double feedback_ = 0;
  struct model_state {
    std::deque<double> ratios;
    double level = 1.0;
  };
  std::map<std::string, model_state> models_;
  std::string last_model_;
  std::deque<double> log_residuals_;
  std::deque<std::pair<std::string, double>> recent_levels_;  ///< (model, its level) of recent frames
  std::size_t frames_ = 0, fitting_ = 0, misses_ = 0;
};

}  // namespace drt
