#pragma once
/// @file gemm_segmented.hpp
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
/// Loop order: per task (a block of MC rows x a range of panels), reduction blocks of `kc` rows outside,
/// panels inside: the A block (MC x kc) stays cached while every panel uses it, a [kc][NR] slice of a
/// panel stays in L1 while every micro-tile of the row block uses it, and the accumulators of the
/// task ([panels][MC][NR]) live in L2 across all segments. (A conv's taps read shifted bands of rows
/// of A: keeping every tap's A in cache for each panel, as one GEMM per panel would need, does not
/// fit.) `gemm_segmented_ref` is the plain-loop reference.

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../layers/activation.hpp"
#include "../layers/gemm.hpp"

namespace drt {

/// One run of a segmented reduction (see the file comment).
struct gemm_segment {
  std::size_t a_offset = 0;  ///< floats from the start of each A row
  std::size_t b_row = 0;     ///< first reduction row of the packed B
  std::size_t k = 0;         ///< run length (0: the segment is empty)
};

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

namespace detail {
namespace segmented {
using simd = xsimd::batch<float>;
constexpr std::size_t w = simd::size;
constexpr std::size_t nr = packed_matrix::nr;
static_assert(nr == 2 * w, "packed_matrix panels are two vector registers wide");
/// Rows per micro-tile: 2*MR accumulators + 2 B vectors + 1 broadcast fit the register file.
constexpr std::size_t mr = w >= 16 ? 12 : (w == 8 ? 6 : 4);
constexpr std::size_t mc = mr * 16;  ///< rows per task
constexpr std::size_t kc = 256;      ///< reduction rows of B per block

/// tile[MR][NR] (+)= A[rows, k] x B[k, NR]; rows past `rows` recompute row 0 and are never stored.
template <std::size_t MR>
inline void micro(std::size_t k, const float* a, std::size_t lda, std::size_t rows, const float* bp, float* tile,
                  bool accumulate) noexcept {
  simd c0[MR], c1[MR];
  const float* ar[MR];
  for (std::size_t r = 0; r < MR; ++r) {
    c0[r] = accumulate ? simd::load_aligned(tile + r * nr) : simd(0.f);
    c1[r] = accumulate ? simd::load_aligned(tile + r * nr + w) : simd(0.f);
    ar[r] = a + (r < rows ? r : 0) * lda;
  }
  for (std::size_t kk = 0; kk < k; ++kk) {
    const simd b0 = simd::load_aligned(bp + kk * nr);
    const simd b1 = simd::load_aligned(bp + kk * nr + w);
    for (std::size_t r = 0; r < MR; ++r) {
      const simd av(ar[r][kk]);
      c0[r] = xsimd::fma(av, b0, c0[r]);
      c1[r] = xsimd::fma(av, b1, c1[r]);
    }
  }
  for (std::size_t r = 0; r < MR; ++r) {
    c0[r].store_aligned(tile + r * nr);
    c1[r].store_aligned(tile + r * nr + w);
  }
}

template <activation A>
inline void store(const float* tile, std::size_t rows, std::size_t cols, std::size_t j0, float* c, std::size_t ldc,
                  const float* bias) noexcept {
  for (std::size_t r = 0; r < rows; ++r) {
    float* crow = c + r * ldc + j0;
    const float* t = tile + r * nr;
    std::size_t j = 0;
    if (cols == nr)
      for (; j < nr; j += w) {
        simd v = simd::load_aligned(t + j);
        if (bias) v += simd::load_unaligned(bias + j0 + j);
        activate<A>(v).store_unaligned(crow + j);
      }
    for (; j < cols; ++j) crow[j] = activate<A>(t[j] + (bias ? bias[j0 + j] : 0.f));
  }
}

template <activation A>
void run(std::size_t m, std::size_t n, const float* a, std::size_t lda, const gemm_segment* segs, std::size_t nseg,
         const packed_matrix& b, float* c, std::size_t ldc, const float* bias, bool allow_parallel) {
  const std::size_t panels = (n + nr - 1) / nr, mblocks = (m + mc - 1) / mc;
  const std::size_t threads = static_cast<std::size_t>(max_threads());
  std::size_t pchunks = 1;  // split the columns too when there are too few row blocks for the threads
  if (allow_parallel && mblocks < 4 * threads) pchunks = std::min(panels, (4 * threads + mblocks - 1) / mblocks);
  const std::size_t ppc = (panels + pchunks - 1) / pchunks;
  pchunks = (panels + ppc - 1) / ppc;
  double red = 0;
  for (std::size_t s = 0; s < nseg; ++s) red += double(segs[s].k);
  auto task = [&](std::size_t t) {
    // Accumulators of the row block for every panel of the task, [panel][MC][NR], in L2: each
    // reduction block of A (MC rows x KC) is read once and used for every panel while it is cached.
    thread_local aligned_vector<float> acc;
    const std::size_t mb = t / pchunks, pc = t % pchunks;
    const std::size_t i0 = mb * mc, rows = std::min(mc, m - i0);
    const std::size_t p0 = pc * ppc, p_end = std::min(panels, p0 + ppc);
    if (acc.size() < (p_end - p0) * mc * nr) acc.resize((p_end - p0) * mc * nr);
    bool started = false;
    for (std::size_t s = 0; s < nseg; ++s)
      for (std::size_t k0 = 0; k0 < segs[s].k; k0 += kc) {
        const std::size_t k = std::min(kc, segs[s].k - k0);
        const float* as = a + i0 * lda + segs[s].a_offset + k0;
        for (std::size_t p = p0; p < p_end; ++p) {
          const float* bp = b.panel(p) + (segs[s].b_row + k0) * nr;
          float* tiles = acc.data() + (p - p0) * mc * nr;
          for (std::size_t i = 0; i < rows; i += mr)
            micro<mr>(k, as + i * lda, lda, std::min(mr, rows - i), bp, tiles + i * nr, started);
        }
        started = true;
      }
    for (std::size_t p = p0; p < p_end; ++p) {
      float* tiles = acc.data() + (p - p0) * mc * nr;
      if (!started) std::fill(tiles, tiles + rows * nr, 0.f);
      const std::size_t j0 = p * nr, cols = std::min(nr, n - j0);
      for (std::size_t i = 0; i < rows; i += mr)
        store<A>(tiles + i * nr, std::min(mr, rows - i), cols, j0, c + (i0 + i) * ldc, ldc, bias);
    }
  };
  const std::size_t tasks = mblocks * pchunks;
  if (allow_parallel)
    parallel_for(tasks, task, 2.0 * double(m) * double(n) * red);
  else
    for (std::size_t t = 0; t < tasks; ++t) task(t);
}
}  // namespace segmented
}  // namespace detail

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
  namespace ds = detail::segmented;
  switch (act) {
    case activation::none:
      ds::run<activation::none>(m, n, a, lda, segs.data(), segs.size(), b, c, ldc, bias, allow_parallel);
      break;
    case activation::relu:
      ds::run<activation::relu>(m, n, a, lda, segs.data(), segs.size(), b, c, ldc, bias, allow_parallel);
      break;
    case activation::gelu:
      ds::run<activation::gelu>(m, n, a, lda, segs.data(), segs.size(), b, c, ldc, bias, allow_parallel);
      break;
  }
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
      if (act == activation::relu) v = activate<activation::relu>(v);
      if (act == activation::gelu) v = activate<activation::gelu>(v);
      c[i * ldc + j] = v;
    }
}

}  // namespace drt
