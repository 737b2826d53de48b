#pragma once
/// @file profiler.hpp
/// Per-layer wall-clock timing without touching the kernels: while a `profiling_session` is active
/// on the calling thread, every `profile_scope` adds its duration under "<prefix><name>". With no
/// session the cost of a scope is one thread-local load and a branch. Scopes are opened by model
/// code on the calling thread (kernels parallelize inside them), so a scope's time is the layer's
/// wall time on all threads.

#include <algorithm>
#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace drt {

/// Collects per-layer times over repeated runs.
class layer_profiler {
public:
  /// Adds `seconds` to `name` in the current run.
  void add(const std::string& name, double seconds) {
    auto it = current_.find(name);
    if (it == current_.end()) {
      if (!samples_.count(name)) order_.push_back(name);  // listed once across runs
      current_.emplace(name, seconds);
    } else {
      it->second += seconds;
    }
  }
  /// Closes a run: its per-layer sums become one sample each.
  void end_run() {
    for (const auto& [name, s] : current_) samples_[name].push_back(s);
    current_.clear();
    ++runs_;
  }
  std::size_t runs() const noexcept { return runs_; }
  /// Median over runs of a layer's time in seconds (0 when never seen).
  double median(const std::string& name) const {
    auto it = samples_.find(name);
    if (it == samples_.end() || it->second.empty()) return 0.0;
    auto v = it->second;
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    return v[v.size() / 2];
  }
  /// Layer names in the order first seen.
  const std::vector<std::string>& names() const noexcept { return order_; }
  void clear() {
    current_.clear();
    samples_.clear();
    order_.clear();
    runs_ = 0;
  }

private:
  std::map<std::string, double> current_;
  std::map<std::string, std::vector<double>> samples_;
  std::vector<std::string> order_;
  std::size_t runs_ = 0;
};

namespace detail {
struct profile_state {
  layer_profiler* profiler = nullptr;
  std::string prefix;
};
inline profile_state& thread_profile_state() noexcept {
  thread_local profile_state state;
  return state;
}
}  // namespace detail

/// Makes `p` receive the scopes opened on this thread until destroyed.
class profiling_session {
public:
  explicit profiling_session(layer_profiler& p) : prev_(detail::thread_profile_state().profiler) {
    detail::thread_profile_state().profiler = &p;
  }
  ~profiling_session() { detail::thread_profile_state().profiler = prev_; }
  profiling_session(const profiling_session&) = delete;
  profiling_session& operator=(const profiling_session&) = delete;

private:
  layer_profiler* prev_;
};

/// Times the enclosing block as "<prefix><name>" when a session is active.
class profile_scope {
public:
  explicit profile_scope(const char* name) noexcept : name_(name) {
    if (detail::thread_profile_state().profiler) t0_ = std::chrono::steady_clock::now();
  }
  ~profile_scope() {
    auto& st = detail::thread_profile_state();
    if (!st.profiler) return;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    st.profiler->add(st.prefix + name_, s);
  }
  profile_scope(const profile_scope&) = delete;
  profile_scope& operator=(const profile_scope&) = delete;

private:
  const char* name_;
  std::chrono::steady_clock::time_point t0_{};
};

/// Sets the name prefix (e.g. "Stage1 Block2 ") for the scopes opened while it lives.
class profile_prefix {
public:
  explicit profile_prefix(const std::string& prefix) {
    auto& st = detail::thread_profile_state();
    if (!st.profiler) return;
    active_ = true;
    prev_ = st.prefix;
    st.prefix = prefix;
  }
  ~profile_prefix() {
    if (active_) detail::thread_profile_state().prefix = prev_;
  }
  profile_prefix(const profile_prefix&) = delete;
  profile_prefix& operator=(const profile_prefix&) = delete;

private:
  bool active_ = false;
  std::string prev_;
};

/// True while a profiling session is active on this thread (to skip building prefix strings).
inline bool profiling_active() noexcept { return detail::thread_profile_state().profiler != nullptr; }

}  // namespace drt
