#pragma once
/// @file gemm.hpp
/// C[m, n] = epilogue(alpha * A[m, k] * B[k, n]) with B packed once into panels of NR columns.
/// The packed layout serves every prefix of k (reduction channels kept) and of n (output channels
/// computed) without a copy: a panel is [k][NR] contiguous, so a shorter reduction stops early and
/// fewer outputs use fewer panels. This is what lets one copy of the weights serve every dynamic path.

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "../core/buffer_pool.hpp"
#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "activation.hpp"

namespace drt {

namespace detail {
using simd = xsimd::batch<float>;  // best architecture the compiler targets
constexpr std::size_t simd_width = simd::size;
constexpr std::size_t gemm_nr = 2 * simd_width;  ///< columns per panel (two vector registers)
/// Rows per micro-tile: 2*MR accumulators + 2 B vectors + 1 broadcast must fit the register file.
constexpr std::size_t gemm_mr = simd_width >= 16 ? 12 : (simd_width == 8 ? 6 : 4);
constexpr std::size_t gemm_mc = gemm_mr * 16;  ///< rows per parallel task (A block stays in L2)
/// Reduction block: a [KC][NR] slice of a B panel (32 KB with AVX2, 64 KB with AVX-512) is reused
/// by every micro-tile of the row block from L1/L2. Measured on Zen 5 (1T, 16384x3072x768): KC 128
/// 174, 256 175, 512 186, 768 183, 1024 184 GFLOP/s.
constexpr std::size_t gemm_kc = 512;
/// Panels whose accumulators a row block keeps at once ([MC][NR] floats each): about 256 KB, so
/// they stay in L2 beside the A slice.
constexpr std::size_t gemm_group = std::max<std::size_t>(1, (std::size_t(256) << 10) / (gemm_mc * gemm_nr * sizeof(float)));
/// 64-byte aligned, pooled, and new elements left uninitialized (see core/buffer_pool.hpp):
/// activation buffers are always written before they are read.
template <class T>
using uninitialized_allocator = pool_allocator<T>;

template <class T>
using aligned_vector = std::vector<T, uninitialized_allocator<T>>;
}  // namespace detail

/// The B operand of a GEMM, packed: ceil(n / NR) panels of [k][NR] floats, zero past n.
class packed_matrix {
public:
  static constexpr std::size_t nr = detail::gemm_nr;

  packed_matrix() = default;

  /// From w[n][k] with row stride ld (PyTorch Linear/Conv weight [out, in]).
  static packed_matrix from_nk(const float* w, std::size_t n, std::size_t k, std::size_t ld) {
    packed_matrix p;
    p.assign_nk(w, n, k, ld);
    return p;
  }
  /// From b[k][n] with row stride ld.
  static packed_matrix from_kn(const float* b, std::size_t k, std::size_t n, std::size_t ld) {
    packed_matrix p;
    p.assign_kn(b, k, n, ld);
    return p;
  }

  /// Re-pack in place (reuses the buffer; used per frame for attention's K and V).
  void assign_nk(const float* w, std::size_t n, std::size_t k, std::size_t ld) {
    reshape(k, n);
    for (std::size_t p = 0; p < panels(); ++p) {
      float* dst = data_.data() + p * k_ * nr;
      const std::size_t j0 = p * nr, jn = std::min(nr, n_ - j0);
      for (std::size_t j = 0; j < jn; ++j) {
        const float* src = w + (j0 + j) * ld;
        for (std::size_t kk = 0; kk < k_; ++kk) dst[kk * nr + j] = src[kk];
      }
    }
  }
  void assign_kn(const float* b, std::size_t k, std::size_t n, std::size_t ld) {
    reshape(k, n);
    for (std::size_t p = 0; p < panels(); ++p) {
      float* dst = data_.data() + p * k_ * nr;
      const std::size_t j0 = p * nr, jn = std::min(nr, n_ - j0);
      for (std::size_t kk = 0; kk < k_; ++kk) std::memcpy(dst + kk * nr, b + kk * ld + j0, jn * sizeof(float));
    }
  }

  std::size_t k() const noexcept { return k_; }
  std::size_t n() const noexcept { return n_; }
  std::size_t panels() const noexcept { return (n_ + nr - 1) / nr; }
  const float* panel(std::size_t p) const noexcept { return data_.data() + p * k_ * nr; }
  std::size_t bytes() const noexcept { return data_.size() * sizeof(float); }

private:
  void reshape(std::size_t k, std::size_t n) {
    k_ = k;
    n_ = n;
    const std::size_t size = panels() * k_ * nr;
    if (data_.size() != size) data_.resize(size);
    std::fill(data_.begin(), data_.end(), 0.f);
  }
  std::size_t k_ = 0, n_ = 0;
  detail::aligned_vector<float> data_;
};

/// What happens to each accumulator before it is stored: out = act(alpha*acc + bias[j]) + residual.
struct gemm_epilogue {
  const float* bias = nullptr;      ///< [n] or null
  activation act = activation::none;
  const float* residual = nullptr;  ///< [m][ldr] or null; may alias C (read before written)
  std::size_t ldr = 0;
  float alpha = 1.f;
};

namespace detail {

/// One MR x NR micro-tile over the whole reduction; accumulators stay in registers.
template <std::size_t MR>
inline void gemm_micro(std::size_t k, const float* a, std::size_t lda, std::size_t rows, const float* bp,
                       float* tile, bool accumulate) noexcept {
  constexpr std::size_t W = simd_width;
  simd c0[MR], c1[MR];
  const float* ar[MR];
  for (std::size_t r = 0; r < MR; ++r) {
    c0[r] = accumulate ? simd::load_aligned(tile + r * gemm_nr) : simd(0.f);
    c1[r] = accumulate ? simd::load_aligned(tile + r * gemm_nr + W) : simd(0.f);
    ar[r] = a + (r < rows ? r : 0) * lda;  // rows past the edge recompute row 0, never stored
  }
  for (std::size_t kk = 0; kk < k; ++kk) {
    const simd b0 = simd::load_aligned(bp + kk * gemm_nr);
    const simd b1 = simd::load_aligned(bp + kk * gemm_nr + W);
    for (std::size_t r = 0; r < MR; ++r) {
      const simd av(ar[r][kk]);
      c0[r] = xsimd::fma(av, b0, c0[r]);
      c1[r] = xsimd::fma(av, b1, c1[r]);
    }
  }
  for (std::size_t r = 0; r < MR; ++r) {
    c0[r].store_aligned(tile + r * gemm_nr);
    c1[r].store_aligned(tile + r * gemm_nr + W);
  }
}

template <activation A>
inline void gemm_store(const float* tile, std::size_t rows, std::size_t cols, std::size_t j0, float* c,
                       std::size_t ldc, std::size_t i0, const gemm_epilogue& ep) noexcept {
  constexpr std::size_t W = simd_width;
  for (std::size_t r = 0; r < rows; ++r) {
    float* crow = c + (i0 + r) * ldc + j0;
    const float* res = ep.residual ? ep.residual + (i0 + r) * ep.ldr + j0 : nullptr;
    const float* t = tile + r * gemm_nr;
    std::size_t j = 0;
    if (cols == gemm_nr) {
      for (; j < gemm_nr; j += W) {
        simd v = simd::load_aligned(t + j) * simd(ep.alpha);
        if (ep.bias) v += simd::load_unaligned(ep.bias + j0 + j);
        v = activate<A>(v);
        if (res) v += simd::load_unaligned(res + j);
        v.store_unaligned(crow + j);
      }
    }
    for (; j < cols; ++j) {
      float v = t[j] * ep.alpha;
      if (ep.bias) v += ep.bias[j0 + j];
      v = activate<A>(v);
      if (res) v += res[j];
      crow[j] = v;
    }
  }
}

template <activation A>
void gemm_impl(std::size_t m, std::size_t n, std::size_t k, const float* a, std::size_t lda, const packed_matrix& b,
               float* c, std::size_t ldc, const gemm_epilogue& ep, bool allow_parallel) {
  const std::size_t panels = (n + gemm_nr - 1) / gemm_nr;
  const std::size_t mblocks = (m + gemm_mc - 1) / gemm_mc;
  const std::size_t threads = static_cast<std::size_t>(max_threads());
  // Split the columns too when there are too few row blocks to keep every thread busy.
  std::size_t pchunks = 1;
  if (allow_parallel && mblocks < 4 * threads) pchunks = std::min(panels, (4 * threads + mblocks - 1) / mblocks);
  const std::size_t ppc = (panels + pchunks - 1) / pchunks;
  pchunks = (panels + ppc - 1) / ppc;
  auto task = [&](std::size_t t) {
    // Accumulators of the row block for a group of panels, carried across reduction blocks. The
    // reduction loop sits outside the panel loop so that each [MC][KC] slice of A is read from
    // memory once per group and then served from L2 for every panel of the group (with the panel
    // loop outside, a row block of a K=3072 GEMM, 2.4 MB, was re-streamed from L3 once per panel).
    thread_local detail::aligned_vector<float> tiles;
    const std::size_t tile_floats = gemm_mc * gemm_nr;
    if (tiles.size() < tile_floats * gemm_group) tiles.resize(tile_floats * gemm_group);
    const std::size_t mb = t / pchunks, pc = t % pchunks;
    const std::size_t i0 = mb * gemm_mc, i_end = std::min(m, (mb + 1) * gemm_mc);
    const std::size_t p_end = std::min(panels, (pc + 1) * ppc);
    for (std::size_t g0 = pc * ppc; g0 < p_end; g0 += gemm_group) {
      const std::size_t g_end = std::min(p_end, g0 + gemm_group);
      for (std::size_t k0 = 0; k0 < k || k0 == 0; k0 += gemm_kc) {
        const std::size_t kc = std::min(gemm_kc, k - k0);
        for (std::size_t p = g0; p < g_end; ++p) {
          const float* bp = b.panel(p) + k0 * gemm_nr;
          float* pt = tiles.data() + (p - g0) * tile_floats;
          for (std::size_t i = i0; i < i_end; i += gemm_mr)
            gemm_micro<gemm_mr>(kc, a + i * lda + k0, lda, std::min(gemm_mr, i_end - i), bp, pt + (i - i0) * gemm_nr,
                                k0 > 0);
        }
        if (k0 + kc >= k) break;
      }
      for (std::size_t p = g0; p < g_end; ++p) {
        const std::size_t j0 = p * gemm_nr, cols = std::min(gemm_nr, n - j0);
        const float* pt = tiles.data() + (p - g0) * tile_floats;
        for (std::size_t i = i0; i < i_end; i += gemm_mr)
          gemm_store<A>(pt + (i - i0) * gemm_nr, std::min(gemm_mr, i_end - i), cols, j0, c, ldc, i, ep);
      }
    }
  };
  const std::size_t tasks = mblocks * pchunks;
  if (allow_parallel) parallel_for(tasks, task, 2.0 * static_cast<double>(m) * n * k);
  else
    for (std::size_t t = 0; t < tasks; ++t) task(t);
}

}  // namespace detail

/// C[m, n] (row stride ldc) = epilogue(A[m, k] (row stride lda) x B[:k, :n]).
/// k and n may be any prefix of the packed matrix's reduction and output sizes.
inline void gemm(std::size_t m, std::size_t n, std::size_t k, const float* a, std::size_t lda, const packed_matrix& b,
                 float* c, std::size_t ldc, const gemm_epilogue& ep = {}, bool allow_parallel = true) {
  if (k > b.k() || n > b.n())
    throw shape_error("gemm: requested k=" + std::to_string(k) + ", n=" + std::to_string(n) +
                      " exceeds the packed matrix [k=" + std::to_string(b.k()) + ", n=" + std::to_string(b.n()) + "]");
  if (m == 0 || n == 0) return;
  // A reduction of length k over a panel of length b.k(): the micro-kernel reads rows 0..k-1 only.
  switch (ep.act) {
    case activation::none: detail::gemm_impl<activation::none>(m, n, k, a, lda, b, c, ldc, ep, allow_parallel); break;
    case activation::relu: detail::gemm_impl<activation::relu>(m, n, k, a, lda, b, c, ldc, ep, allow_parallel); break;
    case activation::gelu: detail::gemm_impl<activation::gelu>(m, n, k, a, lda, b, c, ldc, ep, allow_parallel); break;
  }
}

/// Plain-loop reference: C = epilogue(A x B) with B row-major [k][n] (row stride ldb).
inline void gemm_ref(std::size_t m, std::size_t n, std::size_t k, const float* a, std::size_t lda, const float* b,
                     std::size_t ldb, float* c, std::size_t ldc, const gemm_epilogue& ep = {}) {
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      double acc = 0;
      for (std::size_t kk = 0; kk < k; ++kk) acc += static_cast<double>(a[i * lda + kk]) * b[kk * ldb + j];
      float v = static_cast<float>(acc) * ep.alpha;
      if (ep.bias) v += ep.bias[j];
      if (ep.act == activation::relu) v = activate<activation::relu>(v);
      if (ep.act == activation::gelu) v = activate<activation::gelu>(v);
      if (ep.residual) v += ep.residual[i * ep.ldr + j];
      c[i * ldc + j] = v;
    }
}

}  // namespace drt
