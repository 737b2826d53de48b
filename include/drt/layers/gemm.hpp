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

#include "../core/simd.hpp"

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

/// What happens to each accumulator before it is stored: out = act(alpha*acc + bias[j]) + residual,
/// or act(alpha*acc + bias[j] + residual) with residual_before_act (the end of a ResNet block).
struct gemm_epilogue {
  const float* bias = nullptr;      ///< [n] or null
  activation act = activation::none;
  const float* residual = nullptr;  ///< [m][ldr] or null; may alias C (read before written)
  std::size_t ldr = 0;
  float alpha = 1.f;
  bool residual_before_act = false;  ///< add the residual before the activation instead of after
};

/// One run of a GEMM's reduction: k consecutive reduction rows of the packed B starting at b_row,
/// read from each A row at a_offset floats from its start. A plain GEMM is one segment {0, 0, k}; a
/// channel selection that is not one prefix of the reduction, or a convolution's kernel taps, are
/// several (see conv2d.hpp and winograd.hpp; tests/dynamic/gemm_segmented.hpp checks it over the tile edges).
struct gemm_segment {
  std::size_t a_offset = 0;  ///< floats from the start of each A row
  std::size_t b_row = 0;     ///< first reduction row of the packed B
  std::size_t k = 0;         ///< run length (0: the segment is empty)
};

namespace detail {

/// Read in place of A rows that fall on a convolution's zero padding (never written).
inline constexpr float zero_row[gemm_kc] = {};

/// Where a micro-tile's last reduction block goes when it covers a whole panel: C itself, with the
/// epilogue applied in registers (no round trip through the tile buffer).
struct micro_out {
  float* c;                ///< C at (first row of the tile, first column of the panel)
  std::size_t ldc, rows;   ///< rows < MR at the bottom edge
  const float* bias;       ///< at the panel's first column, or null
  const float* residual;   ///< at (first row, first column), or null
  std::size_t ldr;
  float alpha;
  bool residual_first;     ///< residual added before the activation
};

/// Software prefetch of the cache line holding p into L2 (write: about to be stored). The hardware
/// prefetchers follow streams, not the scattered 128-byte row pieces of C a micro-tile writes.
/// L2, not L1: a micro-tile's B slice and A rows fill L1.
inline void prefetch_line(const void* p, bool write = false) noexcept {
#if defined(__GNUC__)
  if (write)
    __builtin_prefetch(p, 1, 2);
  else
    __builtin_prefetch(p, 0, 2);
#else
  (void)p;
  (void)write;
#endif
}

/// Prefetch the lines of `rows` rows x NR floats of C (for writing) and of the residual.
inline void prefetch_tile_out(float* c, std::size_t ldc, std::size_t rows, const float* residual,
                              std::size_t ldr) noexcept {
  constexpr std::size_t line = 64 / sizeof(float);
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t j = 0; j < gemm_nr; j += line) prefetch_line(c + r * ldc + j, true);
    prefetch_line(c + r * ldc + gemm_nr - 1, true);
    if (residual) {
      for (std::size_t j = 0; j < gemm_nr; j += line) prefetch_line(residual + r * ldr + j);
      prefetch_line(residual + r * ldr + gemm_nr - 1);
    }
  }
}

/// One MR x NR micro-tile over `k` reduction steps: ar[r] points at the k floats of A row r, bp at
/// a [k][NR] slice of a B panel. Starts from zero or from `tile`; ends in `tile`, or in C through the
/// epilogue when `out` is given. The accumulators stay in registers throughout.
/// With `out`, the C rows (and residual rows) of the epilogue are prefetched on entry, so that their
/// misses overlap the reduction instead of stalling the stores (ResNet block end 64 -> 256 + residual
/// at 160x120, 1T: 49 -> 56 % of peak; 1x1 256 -> 64: 79 -> 84 %). Tried and lost: prefetching the
/// next tile's A rows too (Conv2DFuse 85 -> 79 %: the hardware prefetchers already stream them), and
/// prefetching C one tile ahead instead of on entry (no gain).
template <std::size_t MR, activation A>
inline void gemm_micro(std::size_t k, const float* const* ar, const float* bp, float* tile, bool accumulate,
                       const micro_out* out) noexcept {
  constexpr std::size_t W = simd_width;
  simd c0[MR], c1[MR];
  const float* a[MR];
  for (std::size_t r = 0; r < MR; ++r) a[r] = ar[r];
  if (out) prefetch_tile_out(out->c, out->ldc, out->rows, out->residual, out->ldr);
  if (accumulate) {
    for (std::size_t r = 0; r < MR; ++r) {
      c0[r] = simd::load_aligned(tile + r * gemm_nr);
      c1[r] = simd::load_aligned(tile + r * gemm_nr + W);
    }
  } else {
    for (std::size_t r = 0; r < MR; ++r) c0[r] = c1[r] = simd(0.f);
  }
  for (std::size_t kk = 0; kk < k; ++kk) {
    const simd b0 = simd::load_aligned(bp + kk * gemm_nr);
    const simd b1 = simd::load_aligned(bp + kk * gemm_nr + W);
    for (std::size_t r = 0; r < MR; ++r) {
      const simd av(a[r][kk]);
      c0[r] = xsimd::fma(av, b0, c0[r]);
      c1[r] = xsimd::fma(av, b1, c1[r]);
    }
  }
  if (!out) {
    for (std::size_t r = 0; r < MR; ++r) {
      c0[r].store_aligned(tile + r * gemm_nr);
      c1[r].store_aligned(tile + r * gemm_nr + W);
    }
    return;
  }
  const simd alpha(out->alpha);
  const simd bias0 = out->bias ? simd::load_unaligned(out->bias) : simd(0.f);
  const simd bias1 = out->bias ? simd::load_unaligned(out->bias + W) : simd(0.f);
  for (std::size_t r = 0; r < MR; ++r) {
    if (r >= out->rows) break;
    simd v0 = xsimd::fma(c0[r], alpha, bias0), v1 = xsimd::fma(c1[r], alpha, bias1);
    if (out->residual && out->residual_first) {
      v0 += simd::load_unaligned(out->residual + r * out->ldr);
      v1 += simd::load_unaligned(out->residual + r * out->ldr + W);
    }
    v0 = activate<A>(v0);
    v1 = activate<A>(v1);
    if (out->residual && !out->residual_first) {
      v0 += simd::load_unaligned(out->residual + r * out->ldr);
      v1 += simd::load_unaligned(out->residual + r * out->ldr + W);
    }
    v0.store_unaligned(out->c + r * out->ldc);
    v1.store_unaligned(out->c + r * out->ldc + W);
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
        if (res && ep.residual_before_act) v += simd::load_unaligned(res + j);
        v = activate<A>(v);
        if (res && !ep.residual_before_act) v += simd::load_unaligned(res + j);
        v.store_unaligned(crow + j);
      }
    }
    for (; j < cols; ++j) {
      float v = t[j] * ep.alpha;
      if (ep.bias) v += ep.bias[j0 + j];
      if (res && ep.residual_before_act) v += res[j];
      v = activate<A>(v);
      if (res && !ep.residual_before_act) v += res[j];
      crow[j] = v;
    }
  }
}

/// A rows at a uniform stride: row i of segment s starts at a + i*lda + s.a_offset. The row source of
/// a plain or segmented GEMM (a convolution's is `conv_rows` in conv2d.hpp).
/// Row source interface used by `gemm_run`: segments(), segment(s), and block(i0, rows) returning an
/// object whose rows_at(s, k0, out) sets out[r] (r < rows) to where row i0 + r's floats of segment s
/// start, from reduction offset k0 of the segment.
struct strided_rows {
  const float* a;
  std::size_t lda;
  const gemm_segment* segs;
  std::size_t nseg;

  struct block_rows {
    const float* a;
    std::size_t lda, rows;
    const gemm_segment* segs;
    void rows_at(std::size_t s, std::size_t k0, const float** out) const noexcept {
      const float* p = a + segs[s].a_offset + k0;
      for (std::size_t r = 0; r < rows; ++r) out[r] = p + r * lda;
    }
  };
  std::size_t segments() const noexcept { return nseg; }
  gemm_segment segment(std::size_t s) const noexcept { return segs[s]; }
  block_rows block(std::size_t i0, std::size_t rows) const noexcept { return {a + i0 * lda, lda, rows, segs}; }
};

/// How a GEMM's work is cut into tasks: blocks of `mc` rows x chunks of `per_chunk` panels; the
/// columns are split too when there are too few row blocks to keep every thread busy. Task t is row
/// block t / chunks, chunk t % chunks (every GEMM precision uses the same split).
struct gemm_tasks {
  std::size_t mblocks, chunks = 1, per_chunk;
  gemm_tasks(std::size_t m, std::size_t mc, std::size_t panels, bool allow_parallel) : mblocks((m + mc - 1) / mc) {
    const std::size_t threads = static_cast<std::size_t>(max_threads());
    if (allow_parallel && mblocks < 4 * threads) chunks = std::min(panels, (4 * threads + mblocks - 1) / mblocks);
    per_chunk = (panels + chunks - 1) / chunks;
    chunks = (panels + per_chunk - 1) / per_chunk;
  }
  std::size_t count() const noexcept { return mblocks * chunks; }
};

/// C[m, :n] = epilogue(sum over the source's segments of A_s x B_s). Work is split into tasks of
/// (a block of MC rows) x (a range of panels), the panels too when there are few row blocks.
/// Per task, loop order: groups of panels whose accumulators ([MC][NR] each, ~256 KB together) stay
/// in L2; inside, the reduction blocks (KC rows of one segment); inside, the panels of the group,
/// then the micro-tiles. So each [MC][KC] block of A is fetched from memory once per group and
/// served from L2 to every panel of the group (with the panel loop outside, a K = 3072 row block,
/// 2.4 MB, was re-streamed from L3 once per panel), and a [KC][NR] slice of a panel is reused by all
/// MC / MR micro-tiles. The last reduction block of a full-width panel writes C through the epilogue
/// straight from registers.
template <activation A, class Source>
void gemm_run(std::size_t m, std::size_t n, const Source& src, const packed_matrix& b, float* c, std::size_t ldc,
              const gemm_epilogue& ep, bool allow_parallel) {
  constexpr std::size_t NR = gemm_nr, MR = gemm_mr, MC = gemm_mc;
  const std::size_t panels = (n + NR - 1) / NR;
  const gemm_tasks tasks(m, MC, panels, allow_parallel);
  const std::size_t pchunks = tasks.chunks, ppc = tasks.per_chunk;
  const std::size_t nseg = src.segments();
  std::size_t last = nseg;  // the last non-empty segment
  double reduction = 0;
  for (std::size_t s = 0; s < nseg; ++s) {
    const std::size_t k = src.segment(s).k;
    if (k > 0) last = s;
    reduction += static_cast<double>(k);
  }
  auto task = [&](std::size_t t) {
    thread_local aligned_vector<float> tiles;
    thread_local std::vector<const float*> rows_ptr;
    constexpr std::size_t tile_floats = MC * NR;
    if (tiles.size() < tile_floats * gemm_group) tiles.resize(tile_floats * gemm_group);
    if (rows_ptr.size() < MC) rows_ptr.resize(MC);
    const std::size_t mb = t / pchunks, pc = t % pchunks;
    const std::size_t i0 = mb * MC, rows = std::min(MC, m - i0);
    const std::size_t p_end = std::min(panels, (pc + 1) * ppc);
    const auto blk = src.block(i0, rows);
    for (std::size_t g0 = pc * ppc; g0 < p_end; g0 += gemm_group) {
      const std::size_t g_end = std::min(p_end, g0 + gemm_group);
      bool started = false;
      for (std::size_t s = 0; s <= last && last < nseg; ++s) {
        const gemm_segment seg = src.segment(s);
        for (std::size_t k0 = 0; k0 < seg.k; k0 += gemm_kc) {
          const std::size_t kc = std::min(gemm_kc, seg.k - k0);
          const bool final = s == last && k0 + kc == seg.k;
          blk.rows_at(s, k0, rows_ptr.data());
          for (std::size_t p = g0; p < g_end; ++p) {
            const float* bp = b.panel(p) + (seg.b_row + k0) * NR;
            const std::size_t j0 = p * NR;
            const bool direct = final && j0 + NR <= n;
            float* pt = tiles.data() + (p - g0) * tile_floats;
            for (std::size_t i = 0; i < rows; i += MR) {
              const std::size_t rr = std::min(MR, rows - i);
              const float* ar[MR];
              for (std::size_t r = 0; r < MR; ++r) ar[r] = rows_ptr[i + (r < rr ? r : 0)];  // edge: recompute, never stored
              if (direct) {
                const micro_out o{c + (i0 + i) * ldc + j0,
                                  ldc,
                                  rr,
                                  ep.bias ? ep.bias + j0 : nullptr,
                                  ep.residual ? ep.residual + (i0 + i) * ep.ldr + j0 : nullptr,
                                  ep.ldr,
                                  ep.alpha,
                                  ep.residual_before_act};
                gemm_micro<MR, A>(kc, ar, bp, pt + i * NR, started, &o);
              } else {
                gemm_micro<MR, A>(kc, ar, bp, pt + i * NR, started, nullptr);
              }
            }
          }
          started = true;
        }
      }
      // What the micro-tiles did not write to C: a partial last panel, or an empty reduction.
      for (std::size_t p = g0; p < g_end; ++p) {
        const std::size_t j0 = p * NR, cols = std::min(NR, n - j0);
        if (started && cols == NR) continue;
        float* pt = tiles.data() + (p - g0) * tile_floats;
        if (!started) std::fill(pt, pt + rows * NR, 0.f);
        for (std::size_t i = 0; i < rows; i += MR) gemm_store<A>(pt + i * NR, std::min(MR, rows - i), cols, j0, c, ldc, i0 + i, ep);
      }
    }
  };
  if (allow_parallel)
    parallel_for(tasks.count(), task, 2.0 * static_cast<double>(m) * static_cast<double>(n) * reduction);
  else
    for (std::size_t t = 0; t < tasks.count(); ++t) task(t);
}

/// gemm_run with the activation as a run-time value.
template <class Source>
void gemm_dispatch(std::size_t m, std::size_t n, const Source& src, const packed_matrix& b, float* c, std::size_t ldc,
                   const gemm_epilogue& ep, bool allow_parallel) {
  switch (ep.act) {
    case activation::none: gemm_run<activation::none>(m, n, src, b, c, ldc, ep, allow_parallel); break;
    case activation::relu: gemm_run<activation::relu>(m, n, src, b, c, ldc, ep, allow_parallel); break;
    case activation::gelu: gemm_run<activation::gelu>(m, n, src, b, c, ldc, ep, allow_parallel); break;
  }
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
  const gemm_segment whole{0, 0, k};
  detail::gemm_dispatch(m, n, detail::strided_rows{a, lda, &whole, 1}, b, c, ldc, ep, allow_parallel);
}

/// C_c[rows, :n] = epilogue(A[rows, :k_c] x B[:k_c, :n]) for every checkpoint k_c of `ks` (ascending,
/// at most b.k()), in one pass over the reduction: the outputs of every reduction prefix for the cost
/// of the longest (the sweep reads every channel prefix of a layer this way). `dst(c)` is C_c's first
/// row (row stride ldc); `tiles` holds [rows][NR] floats; rows at most gemm_mc; serial (the caller
/// spreads row blocks over threads). Each output accumulates from zero in reduction order with the
/// same micro-kernel as `gemm` (blocks only store and reload the accumulators), so C_c equals
/// `gemm(rows, n, k_c, ...)` with the same epilogue bit for bit.
template <activation A, class Dst>
void gemm_checkpoints(std::size_t rows, const float* a, std::size_t lda, const packed_matrix& b, std::size_t n,
                      const std::vector<std::size_t>& ks, const gemm_epilogue& ep, float* tiles, Dst&& dst,
                      std::size_t ldc) {
  constexpr std::size_t MR = detail::gemm_mr, NR = detail::gemm_nr, KC = detail::gemm_kc;
  if (!ks.empty() && (ks.back() > b.k() || n > b.n()))
    throw shape_error("gemm_checkpoints: requested k=" + std::to_string(ks.back()) + ", n=" + std::to_string(n) +
                      " exceeds the packed matrix [k=" + std::to_string(b.k()) + ", n=" + std::to_string(b.n()) + "]");
  for (std::size_t p = 0; p * NR < n; ++p) {
    const std::size_t j0 = p * NR, cols = std::min(NR, n - j0);
    const float* bp = b.panel(p);
    std::size_t ka = 0;
    for (std::size_t c = 0; c < ks.size();) {
      const std::size_t kb = std::min((ka / KC + 1) * KC, ks[c]);  // next block edge or checkpoint
      for (std::size_t i = 0; i < rows; i += MR) {
        const std::size_t rr = std::min(MR, rows - i);
        const float* ar[MR];
        for (std::size_t r = 0; r < MR; ++r) ar[r] = a + (i + (r < rr ? r : 0)) * lda + ka;  // edge rows: never stored
        detail::gemm_micro<MR, A>(kb - ka, ar, bp + ka * NR, tiles + i * NR, ka > 0, nullptr);
      }
      if (kb == ks[c]) {
        for (std::size_t i = 0; i < rows; i += MR)
          detail::gemm_store<A>(tiles + i * NR, std::min(MR, rows - i), cols, j0, dst(c), ldc, i, ep);
        ++c;
      }
      ka = kb;
    }
  }
}

/// The epilogue of output (i, j) after alpha, in plain scalar steps: bias, then residual and
/// activation in the order `ep` says (the references of every GEMM precision share it).
inline float gemm_epilogue_ref(float v, const gemm_epilogue& ep, std::size_t i, std::size_t j) {
  if (ep.bias) v += ep.bias[j];
  if (ep.residual && ep.residual_before_act) v += ep.residual[i * ep.ldr + j];
  if (ep.act == activation::relu) v = activate<activation::relu>(v);
  if (ep.act == activation::gelu) v = activate<activation::gelu>(v);
  if (ep.residual && !ep.residual_before_act) v += ep.residual[i * ep.ldr + j];
  return v;
}

/// Plain-loop reference: C = epilogue(A x B) with B row-major [k][n] (row stride ldb).
inline void gemm_ref(std::size_t m, std::size_t n, std::size_t k, const float* a, std::size_t lda, const float* b,
                     std::size_t ldb, float* c, std::size_t ldc, const gemm_epilogue& ep = {}) {
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      double acc = 0;
      for (std::size_t kk = 0; kk < k; ++kk) acc += static_cast<double>(a[i * lda + kk]) * b[kk * ldb + j];
      c[i * ldc + j] = gemm_epilogue_ref(static_cast<float>(acc) * ep.alpha, ep, i, j);
    }
}

}  // namespace drt
