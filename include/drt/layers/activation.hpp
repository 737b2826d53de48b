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

template <activation A, class B>
inline B activate(const B& x) noexcept {
  if constexpr (A == activation::relu) return xsimd::max(x, B(0.f));
  else if constexpr (A == activation::gelu) return B(0.5f) * x * (B(1.0f) + xsimd::erf(x * B(0.70710678118654752f)));
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
