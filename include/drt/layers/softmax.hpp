#pragma once
/// @file softmax.hpp
/// Row softmax (numerically stable: subtract the row max).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "../core/simd.hpp"  // also <immintrin.h>

namespace drt {

namespace detail {
/// The largest of n floats (vectorized).
inline float row_max(const float* x, std::size_t n) noexcept {
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
  return mx;
}
}  // namespace detail

/// In place over one row of n floats.
inline void softmax_row(float* x, std::size_t n) noexcept {
  using simd = xsimd::batch<float>;
  constexpr std::size_t W = simd::size;
  const float mx = detail::row_max(x, n);
  std::size_t j = 0;
  simd s(0.f);
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

/// The numerators of a row softmax as u8 codes, for an int8 product with V: code_j =
/// round(255 * exp(x_j - max_j x)), so the largest is 255 and the row's own scale is kept whatever
/// its spread (a probability p_j is code_j / sum). Returns the sum of the codes (>= 255): the
/// softmax-weighted sum of V rows is (codes . V) / sum. Exponentials below 1/510 of the largest
/// round to zero: the keys they weigh contribute under 0.2 % each.
inline std::uint32_t softmax_row_u8(const float* x, std::size_t n, std::uint8_t* out) noexcept {
  using simd = xsimd::batch<float>;
  constexpr std::size_t W = simd::size;
  const float mx = detail::row_max(x, n);
  std::size_t j = 0;
  std::uint32_t sum = 0;
#if defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__AVX512BW__) && defined(__AVX512VL__)
  if constexpr (W == 16) {
    // A code needs 255 exp(t) to well within 0.5, not a float-exact exp: exp(t) = 2^y, y = t log2(e),
    // split as 2^floor(y) (`vscalefps`, exact) times 2^f on f = y - floor(y) in [0, 1) (`vreduceps`)
    // by a degree-4 polynomial interpolating 2^f at the Chebyshev nodes (max relative error 3.5e-6:
    // a code within 1e-3 of 255 exp(t); the split of Cephes' exp2f, the scaling of AVX-512 exp
    // kernels such as oneDNN's). Twice as few instructions as xsimd::exp (accurate to 1 ulp, with its
    // range checks); y is clamped at -24, where every code is 0. The last n % 16 keys go through a
    // masked load (-inf: code 0) and a masked store.
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f), m = _mm512_set1_ps(mx), floor_y = _mm512_set1_ps(-24.f);
    const __m512 p0 = _mm512_set1_ps(255.f * 1.00000349f), p1 = _mm512_set1_ps(255.f * 0.692972922f),
                 p2 = _mm512_set1_ps(255.f * 0.241604357f), p3 = _mm512_set1_ps(255.f * 0.0517449978f),
                 p4 = _mm512_set1_ps(255.f * 0.0136703095f);
    auto codes = [&](__m512 v) {
      const __m512 y = _mm512_max_ps(_mm512_mul_ps(_mm512_sub_ps(v, m), log2e), floor_y);
      const __m512 f = _mm512_reduce_ps(y, _MM_FROUND_TO_NEG_INF);  // y - floor(y)
      __m512 p = _mm512_fmadd_ps(p4, f, p3);
      p = _mm512_fmadd_ps(p, f, p2);
      p = _mm512_fmadd_ps(p, f, p1);
      p = _mm512_fmadd_ps(p, f, p0);
      return _mm512_cvtps_epi32(_mm512_scalef_ps(p, y));  // round to nearest
    };
    __m512i acc = _mm512_setzero_si512();
    for (; j + W <= n; j += W) {
      const __m512i c = codes(_mm512_loadu_ps(x + j));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + j), _mm512_cvtepi32_epi8(c));
      acc = _mm512_add_epi32(acc, c);
    }
    if (j < n) {
      const __mmask16 k = static_cast<__mmask16>((1u << (n - j)) - 1);
      const __m512i c = codes(_mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, x + j));
      _mm_mask_storeu_epi8(out + j, k, _mm512_cvtepi32_epi8(c));
      acc = _mm512_add_epi32(acc, c);
    }
    return static_cast<std::uint32_t>(_mm512_reduce_add_epi32(acc));
  }
#endif
  alignas(64) std::int32_t codes[W];
  for (; j + W <= n; j += W) {
    xsimd::nearbyint_as_int(xsimd::exp(simd::load_unaligned(x + j) - simd(mx)) * simd(255.f)).store_aligned(codes);
    for (std::size_t t = 0; t < W; ++t) {
      out[j + t] = static_cast<std::uint8_t>(codes[t]);
      sum += static_cast<std::uint32_t>(codes[t]);
    }
  }
  for (; j < n; ++j) {
    const auto c = static_cast<std::uint8_t>(std::nearbyint(std::exp(x[j] - mx) * 255.f));
    out[j] = c;
    sum += c;
  }
  return sum;
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
