#pragma once
/// @file softmax.hpp
/// Row softmax (numerically stable: subtract the row max).

#include <cmath>
#include <cstddef>

#include "../core/simd.hpp"

namespace drt {

/// In place over one row of n floats.
inline void softmax_row(float* x, std::size_t n) noexcept {
  using simd = xsimd::batch<float>;
  constexpr std::size_t W = simd::size;
  float mx = -INFINITY;
  std::size_t j = 0;
  if (n >= W) {
    simd m = simd::load_unaligned(x);
    for (j = W; j + W <= n; j += W) m = xsimd::max(m, simd::load_unaligned(x + j));
    alignas(64) float tmp[W];
    m.store_aligned(tmp);
    for (std::size_t t = 0; t < W; ++t) mx = std::max(mx, tmp[t]);
  }
  for (; j < n; ++j) mx = std::max(mx, x[j]);
  simd s(0.f);
  j = 0;
  for (; j + W <= n; j += W) {
    const simd e = xsimd::exp(simd::load_unaligned(x + j) - simd(mx));
    e.store_unaligned(x + j);
    s += e;
  }
  float sum = xsimd::hadd(s);
  for (; j < n; ++j) {
    x[j] = std::exp(x[j] - mx);
    sum += x[j];
  }
  const float inv = 1.0f / sum;
  j = 0;
  for (; j + W <= n; j += W) (simd::load_unaligned(x + j) * simd(inv)).store_unaligned(x + j);
  for (; j < n; ++j) x[j] *= inv;
}

/// Plain-loop reference, out of place.
inline void softmax_ref(const float* x, float* y, std::size_t n) {
  double mx = x[0];
  for (std::size_t j = 1; j < n; ++j) mx = std::max<double>(mx, x[j]);
  double sum = 0;
  for (std::size_t j = 0; j < n; ++j) sum += std::exp(x[j] - mx);
  for (std::size_t j = 0; j < n; ++j) y[j] = static_cast<float>(std::exp(x[j] - mx) / sum);
}

}  // namespace drt
