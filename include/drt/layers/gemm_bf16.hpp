#pragma once
/// @file gemm_bf16.hpp
/// bfloat16 GEMM: C[m, n] = epilogue(alpha * bf16(A)[m, k] x bf16(B)[k, n]) with fp32 accumulation
/// (AVX-512 BF16 `vdpbf16ps` where the compiler targets it, a portable kernel otherwise).
///
/// Weights are rounded to bf16 (nearest even) once and packed into panels of NR output columns, each
/// panel [ceil(k/2)][NR][2] bf16 (the `vdpbf16ps` layout: two consecutive reduction elements of one
/// column form one 32-bit lane), zero past k and n. Any reduction prefix k' and output prefix n' is
/// served without a copy, as with the float32 `packed_matrix`: for an odd k' the kernel reads only
/// the first element of the last pair of each A row and treats the second as zero.
/// A is rounded to bf16 per call, per row block, into a thread-local buffer. Products of two bf16
/// are exact in fp32; the sums are rounded to fp32 as an FMA chain would round them.
/// The epilogue: alpha * acc + bias[j], then residual / activation as `gemm_epilogue` says.
///
/// The loop nest is `detail::lowp_run` of gemm_int8.hpp (shared with the int8 GEMM).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>

#include "gemm_int8.hpp"

namespace drt {

/// float -> bf16, round to nearest even, as `vcvtneps2bf16`: denormals become signed zeros, NaN
/// stays a (quiet) NaN.
inline std::uint16_t to_bf16(float x) noexcept {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7f800000u) == 0) return static_cast<std::uint16_t>((u >> 16) & 0x8000u);           // zero or denormal
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

inline float from_bf16(std::uint16_t h) noexcept {
  const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

/// n contiguous floats to bf16, exactly as the scalar `to_bf16` (vectorized with AVX-512 BF16).
inline void to_bf16(const float* x, std::size_t n, std::uint16_t* out) noexcept {
  std::size_t i = 0;
#if defined(__AVX512BF16__) && defined(__AVX512BW__)
  for (const std::size_t nv = n / 16 * 16; i < nv; i += 16) {
    const __m256bh v = _mm512_cvtneps_pbh(_mm512_loadu_ps(x + i));
    __m256i bits;
    std::memcpy(&bits, &v, sizeof bits);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), bits);
  }
#endif
  for (; i < n; ++i) out[i] = to_bf16(x[i]);
}

/// The B operand of a bf16 GEMM: ceil(n / NR) panels of [ceil(k/2)][NR][2] bf16, zero past k and n.
class packed_matrix_bf16 {
public:
  static constexpr std::size_t nr = detail::gemm_nr;  ///< output columns per panel
  static constexpr std::size_t group = 2;             ///< reduction elements per 32-bit lane
  /// Zero group rows after the last panel (as packed_matrix_s8: AMX's last-step tile load).
  static constexpr std::size_t tail_rows = 16;

  packed_matrix_bf16() = default;

  /// From float w[n][k] with row stride ld (PyTorch [out, in]), rounded to bf16.
  static packed_matrix_bf16 from_nk(const float* w, std::size_t n, std::size_t k, std::size_t ld) {
    packed_matrix_bf16 p;
    p.reshape(k, n);
    for (std::size_t j = 0; j < n; ++j)
      for (std::size_t kk = 0; kk < k; ++kk) p.element(j, kk) = to_bf16(w[j * ld + kk]);
    return p;
  }
  /// From float b[k][n] with row stride ld, rounded to bf16.
  static packed_matrix_bf16 from_kn(const float* b, std::size_t k, std::size_t n, std::size_t ld) {
    packed_matrix_bf16 p;
    p.reshape(k, n);
    for (std::size_t kk = 0; kk < k; ++kk)
      for (std::size_t j = 0; j < n; ++j) p.element(j, kk) = to_bf16(b[kk * ld + j]);
    return p;
  }

  std::size_t k() const noexcept { return k_; }
  std::size_t n() const noexcept { return n_; }
  std::size_t panels() const noexcept { return (n_ + nr - 1) / nr; }
  std::size_t groups() const noexcept { return (k_ + group - 1) / group; }
  /// Panel p: [groups()][NR][2] bf16.
  const std::uint16_t* panel(std::size_t p) const noexcept { return data_.data() + p * groups() * nr * group; }
  /// The bf16 weight of output j, reduction index kk (reads the packed layout).
  std::uint16_t at(std::size_t j, std::size_t kk) const noexcept {
    return panel(j / nr)[((kk / group) * nr + j % nr) * group + kk % group];
  }
  std::size_t bytes() const noexcept { return data_.size() * sizeof(std::uint16_t); }

private:
  void reshape(std::size_t k, std::size_t n) {
    k_ = k;
    n_ = n;
    data_.resize(panels() * groups() * nr * group + tail_rows * nr * group);
    std::fill(data_.begin(), data_.end(), std::uint16_t(0));
  }
  std::uint16_t& element(std::size_t j, std::size_t kk) noexcept {
    return data_[(j / nr) * groups() * nr * group + ((kk / group) * nr + j % nr) * group + kk % group];
  }
  std::size_t k_ = 0, n_ = 0;
  detail::aligned_vector<std::uint16_t> data_;
};

namespace detail {

/// fp32 accumulators of rows x NR (row stride NR) to alpha * acc.
inline void bf16_dequantize(const float* tile, std::size_t rows, std::size_t, const lowp_columns& cols,
                            float* out) noexcept {
  for (std::size_t i = 0; i < rows * gemm_nr; ++i) out[i] = tile[i] * cols.alpha;
}

/// The bf16 arithmetic: bf16 x bf16 products (exact in fp32) summed in fp32 (`vdpbf16ps` with
/// AVX-512 BF16; the portable kernel's FMA chain rounds each sum the same way).
struct bf16_dot {
  using a_type = std::uint16_t;
  using b_type = std::uint16_t;
  using acc_type = float;
  /// Reduction block: a [KC/2][32][2] panel slice is 32 KB (L1), the [MC][KC] bf16 rows 192 KB (L2).
  static constexpr std::size_t group = 2, kc = 512;
  static float mac(float acc, std::uint16_t a, std::uint16_t b) noexcept {
    return std::fma(from_bf16(a), from_bf16(b), acc);
  }
  static void dequantize(const float* tile, std::size_t rows, std::size_t j0, const lowp_columns& cols,
                         float* out) noexcept {
    bf16_dequantize(tile, rows, j0, cols, out);
  }
#if defined(__AVX512BF16__) && defined(__AVX512BW__)
  using vec = __m512;
  static vec zero() noexcept { return _mm512_setzero_ps(); }
  static vec load(const float* p) noexcept { return _mm512_load_ps(p); }
  static void store(float* p, vec v) noexcept { _mm512_store_ps(p, v); }
  static __m512bh as_bh(__m512i v) noexcept {
    __m512bh r;
    std::memcpy(&r, &v, sizeof r);
    return r;
  }
  static vec dot(vec acc, __m512i a, __m512i b) noexcept { return _mm512_dpbf16_ps(acc, as_bh(a), as_bh(b)); }
#if DRT_HAVE_AMX
  /// Accumulator tile I (0-3) += A tile 4 + I / 2 x B tile 6 + I % 2 (the tile numbers must be
  /// literals: the intrinsic pastes them into the instruction).
  template <int I>
  static void tile_dot() noexcept {
    if constexpr (I == 0) _tile_dpbf16ps(0, 4, 6);
    if constexpr (I == 1) _tile_dpbf16ps(1, 4, 7);
    if constexpr (I == 2) _tile_dpbf16ps(2, 5, 6);
    if constexpr (I == 3) _tile_dpbf16ps(3, 5, 7);
  }
#endif
  /// alpha * acc for one panel.
  struct columns {
    simd alpha;
    explicit columns(const lowp_out& o) noexcept : alpha(o.alpha) {}
    simd to_float(vec acc, std::size_t) const noexcept { return simd(acc) * alpha; }
  };
#endif
};

/// Portable bf16 micro-kernel (any target; slower than fp32).
using bf16_kernel_generic = lowp_kernel_generic<bf16_dot>;
#if defined(__AVX512BF16__) && defined(__AVX512BW__)
/// AVX-512 BF16 micro-kernel (`vdpbf16ps`: 2 bf16 products per fp32 lane).
using bf16_kernel = lowp_kernel_avx512<bf16_dot>;
#if DRT_HAVE_AMX
/// AMX micro-kernel (`tdpbf16ps`: a 16 x 16 x 32 block of bf16 products, fp32 sums, per instruction).
using bf16_kernel_amx = lowp_kernel_amx<bf16_dot>;
#endif
#else
using bf16_kernel = bf16_kernel_generic;
#endif

/// A rows given as floats, rounded to bf16 block by block into `buf` (row stride a multiple of 32;
/// the row-source interface of `lowp_run`, see s8_rows_float).
struct bf16_rows_float {
  const float* a;
  std::size_t lda;
  static constexpr bool zero_padded = true;
  static constexpr bool converts = true;  ///< convert_row / row_stride: see lowp_run
  static std::size_t row_stride(std::size_t k) noexcept { return std::max<std::size_t>(32, (k + 31) / 32 * 32); }
  /// Row i whole, zero-padded to row_stride(k).
  void convert_row(std::size_t i, std::size_t k, std::uint16_t* dst) const noexcept {
    to_bf16(a + i * lda, k, dst);
    std::fill(dst + k, dst + row_stride(k), std::uint16_t(0));
  }
  std::pair<const std::uint16_t*, std::size_t> prepare(std::size_t i0, std::size_t rows, std::size_t k0, std::size_t kc,
                                                       std::size_t k, aligned_vector<std::uint16_t>& buf) const {
    const std::size_t ld = row_stride(k);
    lowp_reserve_rows(buf, rows, ld);
    for (std::size_t r = 0; r < rows; ++r) {
      std::uint16_t* row = buf.data() + r * ld;
      to_bf16(a + (i0 + r) * lda + k0, kc, row + k0);
      if (k0 + kc == k) std::fill(row + k, row + ld, std::uint16_t(0));
    }
    return {buf.data(), ld};
  }
};

/// The bf16 GEMM with a given Kernel (tests run the portable kernel this way on any machine).
template <class Kernel>
void gemm_bf16_with(std::size_t m, std::size_t n, std::size_t k, const float* a, std::size_t lda,
                    const packed_matrix_bf16& b, float* c, std::size_t ldc, const gemm_epilogue& ep,
                    bool allow_parallel) {
  if (m == 0 || n == 0) return;
  lowp_columns cols;
  cols.alpha = ep.alpha;
  lowp_dispatch<Kernel>(m, n, k, bf16_rows_float{a, lda}, b, lowp_dest{c, nullptr, ldc, {}}, ep, cols, allow_parallel);
}

}  // namespace detail

/// Whether `gemm_bf16` runs a native kernel, AVX-512 BF16 or AMX (else the portable one: correct, slower).
inline constexpr bool gemm_bf16_native = !std::is_same_v<detail::bf16_kernel, detail::bf16_kernel_generic>;

/// C[m, n] (row stride ldc) = epilogue(bf16(A[m, k]) (row stride lda) x B[:k, :n]), fp32 accumulation.
/// k and n may be any prefix of the packed matrix's reduction and output sizes; only the first k
/// floats of each A row are read.
inline void gemm_bf16(std::size_t m, std::size_t n, std::size_t k, const float* a, std::size_t lda,
                      const packed_matrix_bf16& b, float* c, std::size_t ldc, const gemm_epilogue& ep = {},
                      bool allow_parallel = true) {
  if (k > b.k() || n > b.n())
    throw shape_error("gemm_bf16: requested k=" + std::to_string(k) + ", n=" + std::to_string(n) +
                      " exceeds the packed matrix [k=" + std::to_string(b.k()) + ", n=" + std::to_string(b.n()) + "]");
#if DRT_HAVE_AMX
  // AMX from k = 16 (16384 x k x 256, 2 threads: k = 16 0.82 ms AMX, 1.02 AVX-512 BF16; k = 8 0.88
  // and 0.78: below, both are bound by writing C and AVX-512's epilogue from registers is faster).
  if (k >= 16 && amx_usable())
    return detail::gemm_bf16_with<detail::bf16_kernel_amx>(m, n, k, a, lda, b, c, ldc, ep, allow_parallel);
#endif
  detail::gemm_bf16_with<detail::bf16_kernel>(m, n, k, a, lda, b, c, ldc, ep, allow_parallel);
}

}  // namespace drt
