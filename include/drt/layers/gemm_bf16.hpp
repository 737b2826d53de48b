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
    data_.resize(panels() * groups() * nr * group);
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

/// Portable bf16 micro-kernel (any target): bf16 widened to float, fp32 FMA accumulation in an
/// array; always ends in `tile`.
struct bf16_kernel_generic {
  using a_type = std::uint16_t;
  using b_type = std::uint16_t;
  using acc_type = float;
  static constexpr std::size_t mr = 4, group = 2, kc = 512;
  static constexpr bool direct = false;

  template <activation A>
  static void micro(std::size_t k, const std::uint16_t* const* ar, const std::uint16_t* bp, float* tile,
                    bool accumulate, const lowp_out* out) noexcept {
    constexpr std::size_t NR = gemm_nr;
    (void)out;
    float acc[mr][NR];
    for (std::size_t r = 0; r < mr; ++r)
      for (std::size_t j = 0; j < NR; ++j) acc[r][j] = accumulate ? tile[r * NR + j] : 0.f;
    const std::size_t pairs = (k + 1) / 2;
    for (std::size_t g = 0; g < pairs; ++g) {
      const std::uint16_t* b = bp + g * NR * 2;
      const bool second = 2 * g + 1 < k;
      for (std::size_t r = 0; r < mr; ++r) {
        const float a0 = from_bf16(ar[r][2 * g]), a1 = second ? from_bf16(ar[r][2 * g + 1]) : 0.f;
        for (std::size_t j = 0; j < NR; ++j) {
          acc[r][j] = std::fma(a0, from_bf16(b[2 * j]), acc[r][j]);
          acc[r][j] = std::fma(a1, from_bf16(b[2 * j + 1]), acc[r][j]);
        }
      }
    }
    for (std::size_t r = 0; r < mr; ++r)
      for (std::size_t j = 0; j < NR; ++j) tile[r * NR + j] = acc[r][j];
  }
  static void dequantize(const float* tile, std::size_t rows, std::size_t j0, const lowp_columns& cols,
                         float* out) noexcept {
    bf16_dequantize(tile, rows, j0, cols, out);
  }
};

#if defined(__AVX512BF16__) && defined(__AVX512BW__)
/// AVX-512 BF16 micro-kernel: 12 rows x 32 columns, 24 fp32 zmm accumulators; per pair of
/// reduction elements, 2 panel loads, 12 broadcasts and 24 `vdpbf16ps`. Row loops unrolled
/// explicitly, as in the int8 kernel (registers at -O2 too).
struct bf16_kernel_avx512 {
  using a_type = std::uint16_t;
  using b_type = std::uint16_t;
  using acc_type = float;
  static constexpr std::size_t mr = 12, group = 2;
  /// Reduction block: a [KC/2][32][2] panel slice is 32 KB (L1), the [MC][KC] bf16 rows 192 KB (L2).
  static constexpr std::size_t kc = 512;
  static constexpr bool direct = true;
  static_assert(gemm_nr == 32 && simd_width == 16, "the BF16 kernel assumes 16-float vectors");

  static __m512bh as_bh(__m512i v) noexcept {
    __m512bh r;
    std::memcpy(&r, &v, sizeof r);
    return r;
  }

  template <activation A>
  static void micro(std::size_t k, const std::uint16_t* const* ar, const std::uint16_t* bp, float* tile,
                    bool accumulate, const lowp_out* out) noexcept {
    constexpr std::size_t NR = gemm_nr;
    __m512 c0[mr], c1[mr];
    const std::uint16_t* a[mr];
#pragma GCC unroll 16
    for (std::size_t r = 0; r < mr; ++r) a[r] = ar[r];
    if (out) lowp_prefetch(*out);
    if (accumulate) {
#pragma GCC unroll 16
      for (std::size_t r = 0; r < mr; ++r) {
        c0[r] = _mm512_load_ps(tile + r * NR);
        c1[r] = _mm512_load_ps(tile + r * NR + 16);
      }
    } else {
#pragma GCC unroll 16
      for (std::size_t r = 0; r < mr; ++r) c0[r] = c1[r] = _mm512_setzero_ps();
    }
    const std::size_t pairs = k / 2, rem = k % 2;
    for (std::size_t g = 0; g < pairs; ++g) {
      const __m512bh b0 = as_bh(_mm512_load_si512(bp + g * NR * 2));
      const __m512bh b1 = as_bh(_mm512_load_si512(bp + g * NR * 2 + 32));
#pragma GCC unroll 16
      for (std::size_t r = 0; r < mr; ++r) {
        const __m512bh av = as_bh(_mm512_set1_epi32(static_cast<int>(load_u32(a[r] + 2 * g))));
        c0[r] = _mm512_dpbf16_ps(c0[r], av, b0);
        c1[r] = _mm512_dpbf16_ps(c1[r], av, b1);
      }
    }
    if (rem) {
      const __m512bh b0 = as_bh(_mm512_load_si512(bp + pairs * NR * 2));
      const __m512bh b1 = as_bh(_mm512_load_si512(bp + pairs * NR * 2 + 32));
#pragma GCC unroll 16
      for (std::size_t r = 0; r < mr; ++r) {
        const __m512bh av = as_bh(_mm512_set1_epi32(static_cast<int>(load_u32_partial(a[r] + 2 * pairs, 2))));
        c0[r] = _mm512_dpbf16_ps(c0[r], av, b0);
        c1[r] = _mm512_dpbf16_ps(c1[r], av, b1);
      }
    }
    if (!out) {
#pragma GCC unroll 16
      for (std::size_t r = 0; r < mr; ++r) {
        _mm512_store_ps(tile + r * NR, c0[r]);
        _mm512_store_ps(tile + r * NR + 16, c1[r]);
      }
      return;
    }
    const simd alpha(out->alpha);
    const simd bias0 = out->bias ? simd::load_unaligned(out->bias) : simd(0.f);
    const simd bias1 = out->bias ? simd::load_unaligned(out->bias + 16) : simd(0.f);
#pragma GCC unroll 16
    for (std::size_t r = 0; r < mr; ++r) {
      if (r >= out->rows) break;
      lowp_store_row<A>(simd(c0[r]) * alpha, simd(c1[r]) * alpha, bias0, bias1, *out, r);
    }
  }
  static void dequantize(const float* tile, std::size_t rows, std::size_t j0, const lowp_columns& cols,
                         float* out) noexcept {
    bf16_dequantize(tile, rows, j0, cols, out);
  }
};
using bf16_kernel = bf16_kernel_avx512;
#else
using bf16_kernel = bf16_kernel_generic;
#endif

/// A rows given as floats, rounded to bf16 block by block into `buf` (row stride a multiple of 32;
/// the row-source interface of `lowp_run`, see s8_rows_float).
struct bf16_rows_float {
  const float* a;
  std::size_t lda;
  std::pair<const std::uint16_t*, std::size_t> prepare(std::size_t i0, std::size_t rows, std::size_t k0, std::size_t kc,
                                                       std::size_t k, aligned_vector<std::uint16_t>& buf) const {
    const std::size_t ld = std::max<std::size_t>(32, (k + 31) / 32 * 32);
    if (buf.size() < rows * ld) buf.resize(rows * ld);
    for (std::size_t r = 0; r < rows; ++r) to_bf16(a + (i0 + r) * lda + k0, kc, buf.data() + r * ld + k0);
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

/// Whether `gemm_bf16` runs the AVX-512 BF16 kernel (else the portable one: correct, slower).
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
  detail::gemm_bf16_with<detail::bf16_kernel>(m, n, k, a, lda, b, c, ldc, ep, allow_parallel);
}

}  // namespace drt
