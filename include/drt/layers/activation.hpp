#pragma once
/// @file activation.hpp
/// Element-wise activations: scalar references and xsimd kernels. GELU is the exact (erf) form,
/// as transformers' ACT2FN["gelu"].

#include <cmath>
#include <cstddef>

#include "../core/simd.hpp"

namespace drt {

/// Activation applied in GEMM / conv epilogues.
enum class activation { none, relu, gelu };

inline float gelu_ref(float x) noexcept { return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f)); }

template <activation A>
inline float activate(float x) noexcept {
  if constexpr (A == activation::relu) return x > 0.f ? x : 0.f;
  else if constexpr (A == activation::gelu) return gelu_ref(x);
  else return x;
}

/// erf of a float batch: the rational approximation of Eigen (`generic_fast_erf_float`, also XLA's
/// float erf): x * P(x^2) / Q(x^2) on x clamped to [-4, 4] (where erf is +-1 in float). Max abs error
/// 3.3e-7 against std::erf over [-8, 8] (xsimd::erf: 8.7e-8), no exp and no branches: GELU runs
/// about 3x faster than with xsimd::erf (docs/precision.md, "GELU").
template <class B>
inline B erf_rational(const B& a) noexcept {
  const B x = xsimd::min(xsimd::max(a, B(-4.f)), B(4.f)), x2 = x * x;
  B p = xsimd::fma(x2, B(-2.72614225801306e-10f), B(2.77068142495902e-08f));
  p = xsimd::fma(x2, p, B(-2.10102402082508e-06f));
  p = xsimd::fma(x2, p, B(-5.69250639462346e-05f));
  p = xsimd::fma(x2, p, B(-7.34990630326855e-04f));
  p = xsimd::fma(x2, p, B(-2.95459980854025e-03f));
  p = xsimd::fma(x2, p, B(-1.60960333262415e-02f));
  B q = xsimd::fma(x2, B(-1.45660718464996e-05f), B(-2.13374055278905e-04f));
  q = xsimd::fma(x2, q, B(-1.68282697438203e-03f));
  q = xsimd::fma(x2, q, B(-7.37332916720468e-03f));
  q = xsimd::fma(x2, q, B(-1.42647390514189e-02f));
  return x * p / q;
}

template <activation A, class B>
inline B activate(const B& x) noexcept {
  if constexpr (A == activation::relu) return xsimd::max(x, B(0.f));
  else if constexpr (A == activation::gelu) return B(0.5f) * x * (B(1.0f) + erf_rational(x * B(0.70710678118654752f)));
  else return x;
}

/// In-place activation over n contiguous floats.
template <activation A>
void activate_inplace(float* x, std::size_t n) noexcept {
  using batch = xsimd::batch<float>;
  constexpr std::size_t W = batch::size;
  std::size_t i = 0;
  for (; i + W <= n; i += W) activate<A>(batch::load_unaligned(x + i)).store_unaligned(x + i);
  for (; i < n; ++i) x[i] = activate<A>(x[i]);
}

}  // namespace drt
