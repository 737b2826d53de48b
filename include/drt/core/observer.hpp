#pragma once
/// @file observer.hpp
/// Activation statistics without touching the kernels: while an `observing_session` is active on the
/// calling thread, every `linear` reports the inputs it reads, keyed by its address (so a Mix-FFN's
/// hidden units are dense2's report). Calibration ranks channels by them (dynamic/channel_order.hpp)
/// and chooses int8 input ranges from them (dynamic/int8_calibration.hpp). With no session the cost is one thread-local load and a branch, as for the
/// profiler (core/profiler.hpp).

#include <cstddef>

#include "parallel.hpp"

namespace drt {

/// Receives the activations of one layer call: `rows` rows of `channels` floats, row stride `ld`.
/// `layer` identifies the reporting layer object (its address).
class activation_observer {
public:
  virtual ~activation_observer() = default;
  virtual void observe(const void* layer, const float* x, std::size_t rows, std::size_t channels, std::size_t ld) = 0;
};

namespace detail {
inline activation_observer*& thread_observer() noexcept {
  thread_local activation_observer* o = nullptr;
  return o;
}
}  // namespace detail

/// Makes `o` receive the activations reported on this thread until destroyed. The session runs the
/// layers on this one thread (OpenMP's thread count is 1 while it lives): a layer that splits its
/// work into parts across threads (the fused Mix-FFN) then reports every part here.
class observing_session {
public:
  explicit observing_session(activation_observer& o) : prev_(detail::thread_observer()), threads_(max_threads()) {
    detail::thread_observer() = &o;
    set_threads(1);
  }
  ~observing_session() {
    detail::thread_observer() = prev_;
    set_threads(threads_);
  }
  observing_session(const observing_session&) = delete;
  observing_session& operator=(const observing_session&) = delete;

private:
  activation_observer* prev_;
  int threads_;
};

/// Called by layers: reports to the thread's observer, if any.
inline void observe_activations(const void* layer, const float* x, std::size_t rows, std::size_t channels,
                                std::size_t ld) {
  if (auto* o = detail::thread_observer()) o->observe(layer, x, rows, channels, ld);
}

}  // namespace drt
