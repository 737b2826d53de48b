#pragma once
/// @file gemm_segmented.hpp (tests)
/// C[m, :n] = act(bias + sum over segments s of A_s x B_s): a GEMM whose reduction is a union of runs
/// of one packed B. This is how a dynamic path keeps a channel selection that is not one prefix of a
/// layer's reduction without copying weights:
/// - a KxK convolution whose input keeps a prefix of its channels: one segment per kernel tap (the
///   kept channels of a tap are a contiguous run of the (ky, kx, ic) reduction conv2d packs);
/// - a convolution over a concatenation that keeps a prefix of every slice (UPerNet's fpn_bottleneck
///   under `fpn_out`): one segment per (tap, slice).
/// Segment s reads, for output row i, the k_s floats at a + i*lda + a_offset_s (a_offset may include
/// whole-row shifts: a 3x3 conv's taps on a padded map) and B's reduction rows [b_row_s, b_row_s + k_s).
/// The reduction is exactly sum_s k_s: dropped channels cost nothing.
///
/// It runs on drt::gemm's kernel (`detail::gemm_run` with a strided row source), so a masked path
/// computes at the speed of a dense GEMM of the same size.
/// `gemm_segmented_ref` is the plain-loop reference.
///
/// Test-only: the library runs segmented reductions through conv2d_gemm (conv_segment) and the
/// Winograd runner, which feeds detail::gemm_dispatch the same detail::strided_rows source; this thin
/// wrapper exercises that mechanism directly over the GEMM tile edges (test_gemm_segmented.cpp).

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include <drt/core/simd.hpp>

#include <drt/core/error.hpp>
#include <drt/core/parallel.hpp>
#include <drt/layers/activation.hpp>
#include <drt/layers/gemm.hpp>

namespace drt_test {

using drt::activation;
using drt::gemm_segment;
using drt::packed_matrix;
using drt::shape_error;

/// Appends `s` to `segs`, merged into the last segment when it continues it in both A and B (a kept
/// selection that happens to be contiguous then runs as one long reduction).
inline void append_segment(std::vector<gemm_segment>& segs, const gemm_segment& s) {
  if (s.k == 0) return;
  if (!segs.empty() && segs.back().a_offset + segs.back().k == s.a_offset &&
      segs.back().b_row + segs.back().k == s.b_row)
    segs.back().k += s.k;
  else
    segs.push_back(s);
}

/// C[m, :n] (row stride ldc) = act(bias + sum_s A_s x B_s); see the file comment. bias: [n] or null.
/// Throws drt::shape_error when a segment leaves B or n exceeds it.
inline void gemm_segmented(std::size_t m, std::size_t n, const float* a, std::size_t lda,
                           const std::vector<gemm_segment>& segs, const packed_matrix& b, float* c, std::size_t ldc,
                           const float* bias = nullptr, activation act = activation::none, bool allow_parallel = true) {
  for (const auto& s : segs)
    if (s.b_row + s.k > b.k())
      throw shape_error("gemm_segmented: segment rows [" + std::to_string(s.b_row) + ", " +
                        std::to_string(s.b_row + s.k) + ") exceed the packed matrix's k=" + std::to_string(b.k()));
  if (n > b.n())
    throw shape_error("gemm_segmented: n=" + std::to_string(n) +
                      " exceeds the packed matrix's n=" + std::to_string(b.n()));
  if (m == 0 || n == 0) return;
  drt::gemm_epilogue ep;
  ep.bias = bias;
  ep.act = act;
  drt::detail::gemm_dispatch(m, n, drt::detail::strided_rows{a, lda, segs.data(), segs.size()}, b, c, ldc, ep, allow_parallel);
}

/// Plain-loop reference with B row-major [k_total][ldb] (double accumulation).
inline void gemm_segmented_ref(std::size_t m, std::size_t n, const float* a, std::size_t lda,
                               const std::vector<gemm_segment>& segs, const float* b, std::size_t ldb, float* c,
                               std::size_t ldc, const float* bias = nullptr, activation act = activation::none) {
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      double acc = bias ? bias[j] : 0.0;
      for (const auto& s : segs)
        for (std::size_t kk = 0; kk < s.k; ++kk)
          acc += double(a[i * lda + s.a_offset + kk]) * b[(s.b_row + kk) * ldb + j];
      float v = static_cast<float>(acc);
      if (act == activation::relu) v = drt::activate<activation::relu>(v);
      if (act == activation::gelu) v = drt::activate<activation::gelu>(v);
      c[i * ldc + j] = v;
    }
}

}  // namespace drt_test
