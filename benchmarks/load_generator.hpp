#pragma once
/// @file load_generator.hpp
/// A bounded background load for latency experiments (the deadline benchmark, issue 6): threads
/// that busy-spin one core each on a deterministic on/off schedule ("busy 3 s, idle 3 s, ...") and
/// stop by themselves at the end of the schedule. The generator is an RAII object: `stop()` and the
/// destructor end and join its threads promptly (within about a millisecond of a busy phase, at
/// once from an idle one), so a spinning thread never outlives it.
///
///   drt::load_generator load(drt::load_schedule::on_off(3.0, 3.0, 10));  // busy 3 s, idle 3 s, x10
///   load.start();
///   ... load.busy_now() ...              // is a busy phase on right now
///   load.stop();                         // or let it run out; the destructor joins either way
///   load.busy_fraction();                // busy seconds / elapsed seconds, as the threads saw them

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <drt/core/error.hpp>

namespace drt {

/// One phase of a load schedule: `seconds` long, spinning (`busy`) or sleeping.
struct load_phase {
  double seconds = 0;
  bool busy = false;
};

/// A sequence of busy and idle phases, played once from the generator's start.
struct load_schedule {
  std::vector<load_phase> phases;

  /// `cycles` times (busy `busy_s`, then idle `idle_s`), after an optional idle lead-in of `lead_idle_s`.
  /// Throws drt::invalid_input for negative or non-finite durations.
  static load_schedule on_off(double busy_s, double idle_s, std::size_t cycles, double lead_idle_s = 0) {
    for (const double s : {busy_s, idle_s, lead_idle_s})
      if (!(s >= 0) || !std::isfinite(s))
        throw invalid_input("load schedule: phase length " + num(s) + " s must be a non-negative, finite number");
    load_schedule out;
    if (lead_idle_s > 0) out.phases.push_back({lead_idle_s, false});
    for (std::size_t i = 0; i < cycles; ++i) {
      out.phases.push_back({busy_s, true});
      out.phases.push_back({idle_s, false});
    }
    return out;
  }

  /// Parses "idle:5,busy:3,idle:3,busy:10" (phases in seconds, `busy`/`idle` or `on`/`off`).
  /// Errors name the text and the bad phase.
  static load_schedule parse(const std::string& text) {
    load_schedule out;
    std::stringstream ss(text);
    std::string item;
    while (std::getline(ss, item, ',')) {
      const auto colon = item.find(':');
      const std::string kind = item.substr(0, colon);
      if (colon == std::string::npos || (kind != "busy" && kind != "idle" && kind != "on" && kind != "off"))
        throw invalid_input("load schedule '" + text + "': phase '" + item +
                            "' must be busy:SECONDS or idle:SECONDS (e.g. idle:5,busy:3,idle:3)");
      const std::string v = item.substr(colon + 1);
      char* end = nullptr;
      const double s = std::strtod(v.c_str(), &end);
      if (v.empty() || end != v.c_str() + v.size() || !(s >= 0) || !std::isfinite(s))
        throw invalid_input("load schedule '" + text + "': phase '" + item +
                            "' needs a non-negative number of seconds");
      out.phases.push_back({s, kind == "busy" || kind == "on"});
    }
    if (out.phases.empty()) throw invalid_input("load schedule '" + text + "': no phases");
    return out;
  }

  double total_seconds() const {
    double t = 0;
    for (const auto& p : phases) t += p.seconds;
    return t;
  }
  /// Seconds of busy phases.
  double busy_seconds() const {
    double t = 0;
    for (const auto& p : phases) t += p.busy ? p.seconds : 0;
    return t;
  }
  /// Whether the schedule is in a busy phase `t` seconds after its start (false after its end).
  bool busy_at(double t) const {
    double end = 0;
    for (const auto& p : phases) {
      end += p.seconds;
      if (t < end) return p.busy;
    }
    return false;
  }
  /// "busy 3 s / idle 3 s x 10" style summary: the phases as text.
  std::string describe() const {
    std::string s;
    for (const auto& p : phases) s += (s.empty() ? "" : ",") + std::string(p.busy ? "busy:" : "idle:") + num(p.seconds);
    return s;
  }

private:
  static std::string num(double v) {
    std::ostringstream os;
    os << v;
    return os.str();
  }
};

/// Busy-spins `threads` threads during the busy phases of a schedule and sleeps them during the idle
/// ones. Not copyable or movable (its threads refer to it); start() once.
class load_generator {
public:
  explicit load_generator(load_schedule schedule, std::size_t threads = 1)
      : schedule_(std::move(schedule)), threads_(threads) {
    if (threads_ == 0) throw invalid_input("load_generator: threads must be at least 1");
  }
  load_generator(const load_generator&) = delete;
  load_generator& operator=(const load_generator&) = delete;
  ~load_generator() { stop(); }

  /// Starts the schedule now. Throws drt::invalid_input when already started.
  void start() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (started_) throw invalid_input("load_generator: already started (a generator plays its schedule once)");
    started_ = true;
    start_ = clock::now();
    for (std::size_t i = 0; i < threads_; ++i) workers_.emplace_back([this] { work(); });
  }

  /// Ends the schedule early (if it is still playing) and joins the threads. Idempotent.
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!stop_requested_) stop_time_ = clock::now();
      stop_requested_ = true;
      stop_.store(true, std::memory_order_relaxed);
    }
    cv_.notify_all();
    for (auto& w : workers_)
      if (w.joinable()) w.join();
  }

  /// True once start() has run and until every thread has finished (schedule over or stop()).
  bool running() const { return started_ && finished_.load() < threads_; }
  /// True while a busy phase is on (as the first thread sees it).
  bool busy_now() const noexcept { return busy_.load(std::memory_order_relaxed); }
  /// Seconds since start(), up to the end of the schedule or stop(), whichever came first.
  double elapsed_seconds() const {
    if (!started_) return 0;
    std::lock_guard<std::mutex> lock(mutex_);
    const auto end = stop_requested_ ? stop_time_ : clock::now();
    return std::min(seconds(end - start_), schedule_.total_seconds());
  }
  /// Wall seconds the first thread actually spent spinning.
  double busy_seconds() const { return busy_ns_.load() * 1e-9; }
  /// busy_seconds() / elapsed_seconds() (0 before start): compare with the schedule's share of busy time.
  double busy_fraction() const {
    const double e = elapsed_seconds();
    return e > 0 ? std::min(1.0, busy_seconds() / e) : 0.0;
  }
  /// Number of spin iterations all threads did (a rough measure of the CPU they actually got).
  unsigned long long spins() const noexcept { return spins_.load(); }
  const load_schedule& schedule() const noexcept { return schedule_; }
  std::size_t threads() const noexcept { return threads_; }

private:
  using clock = std::chrono::steady_clock;
  static double seconds(clock::duration d) { return std::chrono::duration<double>(d).count(); }

  void work() {
    const bool first = [&] {
      std::lock_guard<std::mutex> lock(mutex_);
      return first_claimed_ ? false : (first_claimed_ = true);
    }();
    auto phase_end = start_;
    for (const auto& p : schedule_.phases) {
      phase_end += std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(p.seconds));
      if (stop_.load(std::memory_order_relaxed)) break;
      if (p.busy) {
        if (first) busy_.store(true, std::memory_order_relaxed);
        const auto t0 = clock::now();
        volatile double sink = 1.0;
        unsigned long long n = 0;
        // Spin: a short dependent arithmetic chain, then a look at the clock and the stop flag.
        while (!stop_.load(std::memory_order_relaxed) && clock::now() < phase_end) {
          double x = sink;
          for (int k = 0; k < 256; ++k) x = x * 0.9999999 + 1e-7;
          sink = x;
          ++n;
        }
        spins_ += n;
        if (first) {
          busy_.store(false, std::memory_order_relaxed);
          const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - t0).count();
          busy_ns_ += static_cast<unsigned long long>(std::max<long long>(0, ns));
        }
      } else {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait_until(lock, phase_end, [&] { return stop_.load(std::memory_order_relaxed); });
      }
    }
    ++finished_;
  }

  load_schedule schedule_;
  std::size_t threads_;
  std::vector<std::thread> workers_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  clock::time_point start_{}, stop_time_{};
  bool stop_requested_ = false, first_claimed_ = false;
  std::atomic<bool> started_{false}, stop_{false}, busy_{false};
  std::atomic<std::size_t> finished_{0};
  std::atomic<unsigned long long> busy_ns_{0}, spins_{0};
};

}  // namespace drt
