#pragma once
/// @file value_range.hpp
/// The [min, max] of floats, with non-finite detection: an int8 input's range when none is
/// calibrated (layers/gemm_int8.hpp). `range_accumulator` is the running form, for producers that
/// range their outputs as they write them (LayerNorm, the Mix-FFN's depthwise conv) instead of a
/// pass of their own over them; `value_range` the pass.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <utility>
#include <vector>

#include "parallel.hpp"
#include "simd.hpp"

namespace drt {
namespace detail {

/// A running [min, max] of floats. min / max drop NaNs, so the sum of value * 0 (NaN where any
/// value is NaN or infinite) tells them apart; result() is {NaN, NaN} then, {+inf, -inf} when empty.
/// min and max are exact, so accumulators merged in any order give the same range.
struct range_accumulator {
  using simd = xsimd::batch<float>;
  simd lo = simd(std::numeric_limits<float>::infinity()), hi = simd(-std::numeric_limits<float>::infinity()),
       bad = simd(0.f);
  float l = std::numeric_limits<float>::infinity(), h = -std::numeric_limits<float>::infinity(), nonfinite = 0.f;

  void add(const simd& v) noexcept {
    lo = xsimd::min(lo, v);
    hi = xsimd::max(hi, v);
    bad = bad + v * 0.f;
  }
  void add(float v) noexcept {
    l = std::min(l, v);
    h = std::max(h, v);
    nonfinite = nonfinite + v * 0.f;
  }
  std::pair<float, float> result() const noexcept {
    constexpr std::size_t W = simd::size;
    alignas(64) float z[W], a[W], b[W];  // xsimd 8.1 has no horizontal min / max
    bad.store_aligned(z);
    lo.store_aligned(a);
    hi.store_aligned(b);
    float nf = nonfinite, rl = l, rh = h;
    for (std::size_t i = 0; i < W; ++i) nf += z[i], rl = std::min(rl, a[i]), rh = std::max(rh, b[i]);
    if (!std::isfinite(nf)) return {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::quiet_NaN()};
    return {rl, rh};
  }
};

/// Two ranges from range_accumulator::result() as one (NaN, NaN if either is).
inline std::pair<float, float> merge_ranges(std::pair<float, float> a, std::pair<float, float> b) noexcept {
  if (std::isnan(a.first)) return a;
  if (std::isnan(b.first)) return b;
  return {std::min(a.first, b.first), std::max(a.second, b.second)};
}

/// value_range of one thread.
inline std::pair<float, float> value_range_serial(const float* x, std::size_t rows, std::size_t cols, std::size_t ld) {
  using simd = range_accumulator::simd;
  constexpr std::size_t W = simd::size;
  if (rows == 0 || cols == 0) return {0.f, 0.f};
  range_accumulator acc;
  for (std::size_t r = 0; r < rows; ++r) {
    const float* row = x + r * ld;
    std::size_t c = 0;
    for (; c + W <= cols; c += W) acc.add(simd::load_unaligned(row + c));
    for (; c < cols; ++c) acc.add(row[c]);
  }
  return acc.result();
}

/// The [min, max] of rows x cols floats (row stride ld): an int8 input's range when none is calibrated.
/// NaN, NaN when any value is not finite (one vectorized pass). Outside a parallel region a large
/// input is split over the threads by rows (min and max are exact, so the result is the same): run
/// by one thread, the range of a layer's whole input left the others waiting.
inline std::pair<float, float> value_range(const float* x, std::size_t rows, std::size_t cols, std::size_t ld) {
  constexpr std::size_t min_chunk = std::size_t(1) << 15;  // floats per task: a few microseconds
  const std::size_t threads = in_parallel() ? 1 : static_cast<std::size_t>(std::max(1, max_threads()));
  const std::size_t want = std::min(rows, std::min(4 * threads, rows * cols / min_chunk));
  if (threads == 1 || want < 2) return value_range_serial(x, rows, cols, ld);
  const std::size_t per = (rows + want - 1) / want, tasks = (rows + per - 1) / per;
  std::vector<std::pair<float, float>> parts(tasks);
  parallel_for(tasks, [&](std::size_t t) {
    const std::size_t r0 = t * per;
    parts[t] = value_range_serial(x + r0 * ld, std::min(per, rows - r0), cols, ld);
  }, 1e9);
  std::pair<float, float> r = parts[0];
  for (const auto& p : parts) r = merge_ranges(r, p);
  return r;
}
}  // namespace detail
}  // namespace drt
