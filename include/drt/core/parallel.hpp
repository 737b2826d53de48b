#pragma once
/// @file parallel.hpp
/// OpenMP helpers. Kernels parallelize their outermost loop themselves unless they already run
/// inside a parallel region (then they run serially in the calling thread).

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace drt {

inline int max_threads() noexcept {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

inline int thread_index() noexcept {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

inline bool in_parallel() noexcept {
#ifdef _OPENMP
  return omp_in_parallel() != 0;
#else
  return false;
#endif
}

inline void set_threads(int n) noexcept {
#ifdef _OPENMP
  if (n > 0) omp_set_num_threads(n);
#else
  (void)n;
#endif
}

/// Calls f(i) for i in [0, n), across threads when `work` (an estimate of flops) makes it worthwhile.
/// Indices are handed out dynamically (the items of a kernel need not cost the same) but in chunks
/// once there are many: one shared-counter grab per item cost ~1 ms on a 16384-row LayerNorm, more
/// than the normalization itself. About 16 chunks per thread keep the load balanced.
/// An exception thrown by f (e.g. an int8 layer refusing a non-finite input) stops the remaining
/// chunks and is rethrown on the calling thread: an exception leaving an OpenMP region would
/// terminate the program.
template <class F>
void parallel_for(std::size_t n, F&& f, double work = 1e9) {
  const bool par = !in_parallel() && n > 1 && work > 2e5;
  const std::size_t threads = static_cast<std::size_t>(max_threads());
  const std::size_t chunk = par && n > 64 * threads ? n / (16 * threads) : 1;
  const long long chunks = static_cast<long long>((n + chunk - 1) / chunk);
  (void)par;  // unused when compiled without OpenMP
  std::exception_ptr error;
  std::atomic<bool> failed{false};
#pragma omp parallel for schedule(dynamic, 1) if (par)
  for (long long b = 0; b < chunks; ++b) {
    if (failed.load(std::memory_order_relaxed)) continue;
    try {
      const std::size_t i0 = static_cast<std::size_t>(b) * chunk, i1 = std::min(n, i0 + chunk);
      for (std::size_t i = i0; i < i1; ++i) f(i);
    } catch (...) {
#pragma omp critical(drt_parallel_for_error)
      if (!error) error = std::current_exception();
      failed.store(true, std::memory_order_relaxed);
    }
  }
  if (error) std::rethrow_exception(error);
}
}  // namespace drt
