#pragma once
/// @file gemm_int8.hpp
/// int8 GEMM: C[m, n] = epilogue(dequantize(A_u8[m, k] x W_s8[k, n])), u8 x s8 products summed
/// exactly in int32 (AVX-512 VNNI `vpdpbusd` where the compiler targets it, a portable kernel
/// otherwise).
///
/// Weights: symmetric int8 per output channel, scale_j = max|w_j| / 127, packed once into panels of
/// NR output columns, each panel [ceil(k/4)][NR][4] int8 (the `vpdpbusd` layout: four consecutive
/// reduction elements of one column form one 32-bit lane), zero past k and past n. Like the float32
/// `packed_matrix`, any reduction prefix k' and any output prefix n' is served without a copy: a
/// shorter reduction stops at group ceil(k'/4) and the kernel treats the activations past k' in the
/// last group as zero (it never reads them); fewer outputs use fewer panels.
///
/// Activations: one per-tensor asymmetric u8 quantization (`quant_params`: scale, zero point zp),
/// applied per call to float rows inside each row block (`gemm_s8`), or given already quantized
/// (`gemm_s8_u8`). With q_a = round(a / scale_a) + zp:
///   acc_ij  = sum_{kk < k'} q_a[i][kk] * w_q[j][kk]                      (int32, exact)
///   d_ij    = float(acc_ij - zp * colsum_j) * s_j,  colsum_j = sum_{kk < k'} w_q[j][kk],
///             s_j = (alpha * scale_a) * scale_w[j]                        (float)
///   C_ij    = d_ij + bias[j], then residual / activation as `gemm_epilogue` says;
///   or, for a following int8 layer, u8 C_ij = quantize_u8(that, cq) (`gemm_s8_requant`).
/// The zero-point correction zp * colsum_j is the only term that depends on the prefix k': the
/// column sums over the whole reduction are kept with the panels; a shorter prefix recomputes its
/// own per call (k' * n' byte adds, with `vpdpbusd` against a vector of ones: about 1 / m of the
/// GEMM, and no per-prefix table to store).
/// |acc| <= 255 * 127 * k, so k is limited to `packed_matrix_s8::max_k` (int32 never overflows).
///
/// The loop nest (row blocks x panel groups x reduction blocks x panels x micro-tiles, tasks over
/// threads, epilogue from registers on full panels) is `detail::lowp_run`, shared with the bf16
/// GEMM of gemm_bf16.hpp; the float epilogue of partial panels is gemm.hpp's `gemm_store`.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/amx.hpp"
#include "../core/value_range.hpp"
#include "gemm.hpp"

namespace drt {

/// Per-tensor asymmetric u8 quantization of activations: q = clamp(round(x / scale) + zero_point, 0, 255),
/// x ~ scale * (q - zero_point).
struct quant_params {
  float scale = 1.f;
  std::int32_t zero_point = 0;  ///< in [0, 255]
};

/// The u8 parameters that cover [lo, hi] (widened to contain 0, so that 0 is exact):
/// scale = (hi - lo) / 255, zero_point = round(-lo / scale). A range of zero width gives {1, 0}.
namespace detail {
/// A float as iostreams print it (`0.5`, `-1e+30`, `nan`), for error messages.
inline std::string float_str(float v) {
  std::ostringstream os;
  os << v;
  return os.str();
}
}  // namespace detail

inline quant_params quant_params_u8(float lo, float hi) {
  if (!std::isfinite(lo) || !std::isfinite(hi) || lo > hi)
    throw invalid_input("quant_params_u8: range [" + detail::float_str(lo) + ", " + detail::float_str(hi) +
                        "] must be finite with lo <= hi");
  lo = std::min(lo, 0.f);
  hi = std::max(hi, 0.f);
  if (!(hi > lo)) return {1.f, 0};
  quant_params q;
  q.scale = (hi - lo) / 255.f;
  const float zp = std::nearbyint(-lo / q.scale);
  q.zero_point = static_cast<std::int32_t>(std::min(255.f, std::max(0.f, zp)));
  return q;
}

namespace detail {
/// x * inv_scale clamped to [-256, 256] (NaN -> -256), in the order of the vector code
/// (`max_ps` then `min_ps`), so that rounding it cannot overflow and the clamp to [0, 255] after
/// adding the zero point is unchanged.
inline float quant_clamp(float t) noexcept {
  t = t > -256.f ? t : -256.f;
  return t < 256.f ? t : 256.f;
}
inline std::uint8_t quantize_u8_inv(float x, float inv_scale, std::int32_t zp) noexcept {
  const long v = std::lrint(quant_clamp(x * inv_scale)) + zp;  // round half to even
  return static_cast<std::uint8_t>(std::min(255L, std::max(0L, v)));
}
}  // namespace detail

/// One value: clamp(round_half_even(x * (1 / scale)) + zero_point, 0, 255).
inline std::uint8_t quantize_u8(float x, const quant_params& q) noexcept {
  return detail::quantize_u8_inv(x, 1.f / q.scale, q.zero_point);
}

/// n contiguous floats to u8, exactly as the scalar `quantize_u8` (vectorized with AVX-512).
inline void quantize_u8(const float* x, std::size_t n, const quant_params& q, std::uint8_t* out) noexcept {
  const float inv = 1.f / q.scale;
  std::size_t i = 0;
#if defined(__AVX512F__)
  const __m512 vinv = _mm512_set1_ps(inv), lo = _mm512_set1_ps(-256.f), hi = _mm512_set1_ps(256.f);
  const __m512i zp = _mm512_set1_epi32(q.zero_point), zero = _mm512_setzero_si512();
  for (const std::size_t nv = n / 16 * 16; i < nv; i += 16) {
    __m512 t = _mm512_mul_ps(_mm512_loadu_ps(x + i), vinv);
    t = _mm512_min_ps(_mm512_max_ps(t, lo), hi);
    // cvtps_epi32 rounds as MXCSR says: to nearest even by default, as std::lrint.
    const __m512i v = _mm512_max_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(t), zp), zero);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm512_cvtusepi32_epi8(v));  // saturates at 255
  }
#endif
  for (; i < n; ++i) out[i] = detail::quantize_u8_inv(x[i], inv, q.zero_point);
}

inline float dequantize_u8(std::uint8_t v, const quant_params& q) noexcept {
  return q.scale * static_cast<float>(static_cast<std::int32_t>(v) - q.zero_point);
}

/// Symmetric int8: clamp(round_half_even(x / scale), -127, 127) (never -128).
inline std::int8_t quantize_s8(float x, float scale) noexcept {
  const float t = detail::quant_clamp(x / scale);
  const long v = std::lrint(t);
  return static_cast<std::int8_t>(std::min(127L, std::max(-127L, v)));
}

/// n contiguous floats to symmetric int8 with one scale, exactly as the scalar `quantize_s8`
/// (vectorized with AVX-512: the same division, clamp and rounding).
inline void quantize_s8(const float* x, std::size_t n, float scale, std::int8_t* out) noexcept {
  std::size_t i = 0;
#if defined(__AVX512F__)
  const __m512 vs = _mm512_set1_ps(scale), lo = _mm512_set1_ps(-256.f), hi = _mm512_set1_ps(256.f);
  const __m512i qlo = _mm512_set1_epi32(-127), qhi = _mm512_set1_epi32(127);
  for (const std::size_t nv = n / 16 * 16; i < nv; i += 16) {
    __m512 t = _mm512_div_ps(_mm512_loadu_ps(x + i), vs);
    t = _mm512_min_ps(_mm512_max_ps(t, lo), hi);
    const __m512i v = _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(t), qlo), qhi);  // lrint: nearest even
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm512_cvtsepi32_epi8(v));
  }
#endif
  for (; i < n; ++i) out[i] = quantize_s8(x[i], scale);
}

/// The B operand of an int8 GEMM: ceil(n / NR) panels of [ceil(k/4)][NR][4] int8, zero past k and n,
/// with one float scale per output column.
class packed_matrix_s8 {
public:
  static constexpr std::size_t nr = detail::gemm_nr;  ///< output columns per panel
  static constexpr std::size_t group = 4;             ///< reduction elements per 32-bit lane
  /// Zero group rows after the last panel: a 16-row AMX tile load at a reduction's last step never
  /// leaves the allocation.
  static constexpr std::size_t tail_rows = 16;
  /// Largest reduction: 255 * 127 * max_k < 2^31, so the int32 accumulators cannot overflow.
  static constexpr std::size_t max_k = 65536;

  packed_matrix_s8() = default;

  /// From float w[n][k] with row stride ld (PyTorch [out, in]), quantized per output channel:
  /// scale_j = max_kk |w[j][kk]| / 127 (1 for an all-zero row), w_q = quantize_s8(w, scale_j).
  static packed_matrix_s8 from_nk(const float* w, std::size_t n, std::size_t k, std::size_t ld) {
    std::vector<float> scales(n);
    for (std::size_t j = 0; j < n; ++j) {
      const float* row = w + j * ld;
      const auto [lo, hi] = detail::value_range(row, 1, k, k);  // vectorized; NaN if any is not finite
      if (!std::isfinite(lo) || !std::isfinite(hi)) {
        std::size_t kk = 0;
        while (kk < k && std::isfinite(row[kk])) ++kk;
        throw invalid_input("packed_matrix_s8: weight [" + std::to_string(j) + ", " + std::to_string(kk) + "] of [" +
                            std::to_string(n) + ", " + std::to_string(k) + "] is not finite");
      }
      const float amax = k ? std::max(-lo, hi) : 0.f;
      scales[j] = amax > 0.f ? amax / 127.f : 1.f;
    }
    packed_matrix_s8 p = allocate(scales.data(), n, k);
    std::vector<std::int8_t> q(k);
    for (std::size_t j = 0; j < n; ++j) {
      quantize_s8(w + j * ld, k, scales[j], q.data());
      p.set_row(j, q.data());
    }
    return p;
  }

  /// From float b[k][n] with row stride ld (B as it multiplies, e.g. the values of attention),
  /// quantized per output column as from_nk does.
  static packed_matrix_s8 from_kn(const float* b, std::size_t k, std::size_t n, std::size_t ld) {
    std::vector<float> t(n * k);
    for (std::size_t kk = 0; kk < k; ++kk)
      for (std::size_t j = 0; j < n; ++j) t[j * k + kk] = b[kk * ld + j];
    return from_nk(t.data(), n, k, k);
  }

  /// From int8 q[n][k] (row stride ld) already quantized, with scales[n] (> 0).
  static packed_matrix_s8 from_nk_quantized(const std::int8_t* q, const float* scales, std::size_t n, std::size_t k,
                                            std::size_t ld) {
    for (std::size_t j = 0; j < n; ++j)
      if (!(scales[j] > 0.f) || !std::isfinite(scales[j]))
        throw invalid_input("packed_matrix_s8: scale of output " + std::to_string(j) + " is " +
                            detail::float_str(scales[j]) + ", expected a finite value > 0");
    packed_matrix_s8 p = allocate(scales, n, k);
    for (std::size_t j = 0; j < n; ++j) p.set_row(j, q + j * ld);
    return p;
  }

  std::size_t k() const noexcept { return k_; }
  std::size_t n() const noexcept { return n_; }
  std::size_t panels() const noexcept { return (n_ + nr - 1) / nr; }
  std::size_t groups() const noexcept { return (k_ + group - 1) / group; }
  /// Panel p: [groups()][NR][4] int8.
  const std::int8_t* panel(std::size_t p) const noexcept { return data_.data() + p * groups() * nr * group; }
  /// [n] per-output-channel scales.
  const float* scales() const noexcept { return scales_.data(); }
  /// [panels() * NR] sums of each column's quantized weights over the whole reduction (zero past n):
  /// the zero-point correction of a call with k = k() (a shorter prefix sums its own).
  const std::int32_t* column_sums() const noexcept { return colsum_.data(); }
  /// The quantized weight of output j, reduction index kk (reads the packed layout).
  std::int8_t at(std::size_t j, std::size_t kk) const noexcept {
    return panel(j / nr)[((kk / group) * nr + j % nr) * group + kk % group];
  }
  std::size_t bytes() const noexcept {
    return data_.size() + scales_.size() * sizeof(float) + colsum_.size() * sizeof(std::int32_t);
  }

private:
  /// Zeroed panels (and the zero rows after them) for n x k weights with these scales.
  static packed_matrix_s8 allocate(const float* scales, std::size_t n, std::size_t k) {
    if (k > max_k)
      throw shape_error("packed_matrix_s8: k=" + std::to_string(k) + " exceeds " + std::to_string(max_k) +
                        " (the int32 accumulators could overflow)");
    packed_matrix_s8 p;
    p.k_ = k;
    p.n_ = n;
    p.data_.resize(p.panels() * p.groups() * nr * group + tail_rows * nr * group);
    std::fill(p.data_.begin(), p.data_.end(), std::int8_t(0));
    p.scales_.assign(scales, scales + n);
    p.colsum_.assign(p.panels() * nr, 0);
    return p;
  }
  /// Output column j's k quantized weights into its panel (4-byte groups), and their sum.
  void set_row(std::size_t j, const std::int8_t* q) noexcept {
    std::int8_t* dst = data_.data() + (j / nr) * groups() * nr * group + (j % nr) * group;
    std::int32_t sum = 0;
    const std::size_t full = k_ / group * group;
    for (std::size_t kk = 0; kk < full; kk += group) std::memcpy(dst + (kk / group) * nr * group, q + kk, group);
    for (std::size_t kk = full; kk < k_; ++kk) dst[(kk / group) * nr * group + kk % group] = q[kk];
    for (std::size_t kk = 0; kk < k_; ++kk) sum += q[kk];
    colsum_[j] = sum;
  }

  std::size_t k_ = 0, n_ = 0;
  detail::aligned_vector<std::int8_t> data_;
  std::vector<float> scales_;
  std::vector<std::int32_t> colsum_;
};

namespace detail {

/// Per-column data of one low-precision GEMM call, [panels * NR] each (zero past n).
struct lowp_columns {
  const std::int32_t* corr = nullptr;  ///< int8: zp * colsum_j, subtracted from the accumulator
  const float* scale = nullptr;        ///< int8: alpha * scale_a * scale_w[j]
  float alpha = 1.f;                   ///< bf16: the epilogue's alpha
};

/// The output of a low-precision GEMM call: float C, or u8 C requantized with q (for a next int8 layer).
struct lowp_dest {
  float* c = nullptr;          ///< [m][ldc] floats, or null
  std::uint8_t* c8 = nullptr;  ///< [m][ldc] u8 = quantize_u8(epilogue output, q), or null
  std::size_t ldc = 0;
  quant_params q;
};

/// Where a micro-tile's last reduction block goes when it covers a whole panel: C itself, through
/// the epilogue in registers (the low-precision counterpart of gemm.hpp's `micro_out`).
struct lowp_out {
  float* c;               ///< C at (first row of the tile, first column of the panel), or null with c8
  std::uint8_t* c8;       ///< the same for a u8 output (requantized with out_q), or null
  std::size_t ldc, rows;  ///< rows < MR at the bottom edge
  const float* bias;      ///< at the panel's first column, or null
  const float* residual;  ///< at (first row, first column), or null
  std::size_t ldr;
  const std::int32_t* corr;  ///< lowp_columns at the panel's first column (null for bf16)
  const float* scale;
  float alpha;
  bool residual_first;  ///< residual added before the activation
  quant_params out_q;   ///< u8 output: its quantization
};

/// Prefetch the C rows (and residual rows) a direct epilogue is about to write (see gemm.hpp).
inline void lowp_prefetch(const lowp_out& o) noexcept {
  if (o.c) {
    prefetch_tile_out(o.c, o.ldc, o.rows, o.residual, o.ldr);
    return;
  }
  constexpr std::size_t line = 64 / sizeof(float);
  for (std::size_t r = 0; r < o.rows; ++r) {
    prefetch_line(o.c8 + r * o.ldc, true);
    prefetch_line(o.c8 + r * o.ldc + gemm_nr - 1, true);
    if (o.residual) {
      for (std::size_t j = 0; j < gemm_nr; j += line) prefetch_line(o.residual + r * o.ldr + j);
      prefetch_line(o.residual + r * o.ldr + gemm_nr - 1);
    }
  }
}

/// Bias, residual and activation of one row of a panel (two SIMD vectors = NR columns) and the store;
/// the same steps, in the same order, as `gemm_store` (bias is zero when absent).
template <activation A>
inline void lowp_store_row(simd v0, simd v1, const simd& bias0, const simd& bias1, const lowp_out& o,
                           std::size_t r) noexcept {
  constexpr std::size_t W = simd_width;
  v0 += bias0;
  v1 += bias1;
  const float* res = o.residual ? o.residual + r * o.ldr : nullptr;
  if (res && o.residual_first) {
    v0 += simd::load_unaligned(res);
    v1 += simd::load_unaligned(res + W);
  }
  v0 = activate<A>(v0);
  v1 = activate<A>(v1);
  if (res && !o.residual_first) {
    v0 += simd::load_unaligned(res);
    v1 += simd::load_unaligned(res + W);
  }
  if (o.c8) {
    alignas(64) float t[2 * W];
    v0.store_aligned(t);
    v1.store_aligned(t + W);
    quantize_u8(t, 2 * W, o.out_q, o.c8 + r * o.ldc);
    return;
  }
  v0.store_unaligned(o.c + r * o.ldc);
  v1.store_unaligned(o.c + r * o.ldc + W);
}

inline std::uint32_t load_u32(const void* p) noexcept {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
/// The first `bytes` (< 4) bytes at p, the others zero: a reduction prefix that ends inside a
/// group reads only its own activations.
inline std::uint32_t load_u32_partial(const void* p, std::size_t bytes) noexcept {
  std::uint32_t v = 0;
  std::memcpy(&v, p, bytes);
  return v;
}

/// The micro-kernels of the low-precision GEMMs are one template each over the element arithmetic
/// `Dot` (what is fixed when the code is compiled: operand and accumulator types, the group of
/// reduction elements that share a 32-bit lane, the dot instruction and the dequantization):
///   a_type, b_type, acc_type, group, kc;  mac(acc, a, b): one product added (portable kernel);
///   dequantize(tile, rows, j0, cols, out): accumulators to floats before the bias;
///   with AVX-512: vec, zero(), load(p), store(p, v), dot(acc, a4, b) (one `group` of products per
///   32-bit lane), and columns(lowp_out): a panel's dequantization, to_float(acc, half).
/// int8 (`s8_dot`) and bf16 (`bf16_dot`, gemm_bf16.hpp) instantiate them.

/// Portable micro-kernel (any target): accumulators in an array the compiler may vectorize; always
/// ends in `tile` (no direct epilogue). Products past k in the last group are never formed, so the
/// activations there are never read.
template <class Dot>
struct lowp_kernel_generic {
  using a_type = typename Dot::a_type;
  using b_type = typename Dot::b_type;
  using acc_type = typename Dot::acc_type;
  static constexpr std::size_t mr = 4, group = Dot::group, kc = Dot::kc;
  static constexpr bool direct = false;
  static constexpr bool needs_amx = false;  ///< runs only where `amx_usable()`

  static void begin() noexcept {}
  static void end() noexcept {}
  template <activation A>
  static void micro(std::size_t k, const a_type* a, std::size_t lda, std::size_t rows, bool, const b_type* bp,
                    acc_type* tile, bool accumulate, const lowp_out*) noexcept {
    constexpr std::size_t NR = gemm_nr, G = group;
    const a_type* ar[mr];
    for (std::size_t r = 0; r < mr; ++r) ar[r] = a + (r < rows ? r : 0) * lda;  // edge rows: never stored
    acc_type acc[mr][NR];
    for (std::size_t r = 0; r < mr; ++r)
      for (std::size_t j = 0; j < NR; ++j) acc[r][j] = accumulate ? tile[r * NR + j] : acc_type(0);
    const std::size_t groups = (k + G - 1) / G;
    for (std::size_t g = 0; g < groups; ++g) {
      const b_type* b = bp + g * NR * G;
      const std::size_t valid = std::min<std::size_t>(G, k - G * g);
      for (std::size_t r = 0; r < mr; ++r)
        for (std::size_t e = 0; e < valid; ++e) {
          const a_type a = ar[r][G * g + e];
          for (std::size_t j = 0; j < NR; ++j) acc[r][j] = Dot::mac(acc[r][j], a, b[G * j + e]);
        }
    }
    for (std::size_t r = 0; r < mr; ++r)
      for (std::size_t j = 0; j < NR; ++j) tile[r * NR + j] = acc[r][j];
  }
  static void dequantize(const acc_type* tile, std::size_t rows, std::size_t j0, const lowp_columns& cols,
                         float* out) noexcept {
    Dot::dequantize(tile, rows, j0, cols, out);
  }
};

#if defined(__AVX512F__)
/// AVX-512 micro-kernel: 12 rows x 32 columns, 24 zmm accumulators; per group of reduction
/// elements (4 bytes of each operand), 2 panel loads, 12 broadcasts and 24 `Dot::dot`. The row
/// loops are unrolled explicitly (`#pragma GCC unroll`): the accumulator arrays must become
/// registers at -O2 too (GCC unrolls them by itself only at -O3).
template <class Dot>
struct lowp_kernel_avx512 {
  using a_type = typename Dot::a_type;
  using b_type = typename Dot::b_type;
  using acc_type = typename Dot::acc_type;
  static constexpr std::size_t mr = 12, group = Dot::group, kc = Dot::kc;
  static constexpr bool direct = true;
  static constexpr bool needs_amx = false;
  static_assert(gemm_nr == 32 && simd_width == 16, "the AVX-512 kernels assume 16-float vectors");
  static_assert(sizeof(a_type) * group == 4 && sizeof(b_type) * group == 4, "one group fills a 32-bit lane");

  static void begin() noexcept {}
  static void end() noexcept {}
  template <activation A>
  static void micro(std::size_t k, const a_type* arows, std::size_t lda, std::size_t rows, bool, const b_type* bp,
                    acc_type* tile, bool accumulate, const lowp_out* out) noexcept {
    using vec = typename Dot::vec;
    constexpr std::size_t NR = gemm_nr, G = group, half = NR * G / 2;
    vec c0[mr], c1[mr];
    const a_type* a[mr];
#pragma GCC unroll 16
    for (std::size_t r = 0; r < mr; ++r) a[r] = arows + (r < rows ? r : 0) * lda;  // edge rows: never stored
    if (out) lowp_prefetch(*out);
    if (accumulate) {
#pragma GCC unroll 16
      for (std::size_t r = 0; r < mr; ++r) {
        c0[r] = Dot::load(tile + r * NR);
        c1[r] = Dot::load(tile + r * NR + 16);
      }
    } else {
#pragma GCC unroll 16
      for (std::size_t r = 0; r < mr; ++r) c0[r] = c1[r] = Dot::zero();
    }
    const std::size_t groups = k / G, rem = k % G;
    for (std::size_t g = 0; g < groups; ++g) {
      const __m512i b0 = _mm512_load_si512(bp + g * NR * G);
      const __m512i b1 = _mm512_load_si512(bp + g * NR * G + half);
#pragma GCC unroll 16
      for (std::size_t r = 0; r < mr; ++r) {
        const __m512i av = _mm512_set1_epi32(static_cast<int>(load_u32(a[r] + G * g)));
        c0[r] = Dot::dot(c0[r], av, b0);
        c1[r] = Dot::dot(c1[r], av, b1);
      }
    }
    if (rem) {
      const __m512i b0 = _mm512_load_si512(bp + groups * NR * G);
      const __m512i b1 = _mm512_load_si512(bp + groups * NR * G + half);
#pragma GCC unroll 16
      for (std::size_t r = 0; r < mr; ++r) {
        const __m512i av =
            _mm512_set1_epi32(static_cast<int>(load_u32_partial(a[r] + G * groups, rem * sizeof(a_type))));
        c0[r] = Dot::dot(c0[r], av, b0);
        c1[r] = Dot::dot(c1[r], av, b1);
      }
    }
    if (!out) {
#pragma GCC unroll 16
      for (std::size_t r = 0; r < mr; ++r) {
        Dot::store(tile + r * NR, c0[r]);
        Dot::store(tile + r * NR + 16, c1[r]);
      }
      return;
    }
    const typename Dot::columns cols(*out);
    const simd bias0 = out->bias ? simd::load_unaligned(out->bias) : simd(0.f);
    const simd bias1 = out->bias ? simd::load_unaligned(out->bias + 16) : simd(0.f);
#pragma GCC unroll 16
    for (std::size_t r = 0; r < mr; ++r) {
      if (r >= out->rows) break;
      lowp_store_row<A>(cols.to_float(c0[r], 0), cols.to_float(c1[r], 1), bias0, bias1, *out, r);
    }
  }
  static void dequantize(const acc_type* tile, std::size_t rows, std::size_t j0, const lowp_columns& cols,
                         float* out) noexcept {
    Dot::dequantize(tile, rows, j0, cols, out);
  }
};
#endif

#if DRT_HAVE_AMX
/// AMX micro-kernel: 32 rows x 32 columns in the four accumulator tiles (tiles 0-3: rows 0-15 /
/// 16-31 x columns 0-15 / 16-31, amx.hpp's configuration). Per 64 bytes of reduction (`step`
/// elements): two A tiles of 16 rows read in place with the rows' stride, two B tiles (the panel's
/// two halves of 16 columns: 16 group rows of 64 bytes, stride 128 — the [groups][NR][group] layout
/// of the AVX-512 kernels, unchanged, so every prefix property holds) and four `Dot::tile_dot`.
/// Edges, never reading outside A's rows or the panel: with 16 < rows < 32 the second A tile starts
/// at row rows - 16 (the rows both tiles hold are computed twice, identically, and stored twice).
/// From a `zero_padded` row source (the converted float rows) the last step and a block of fewer
/// than 16 rows are read in place (zeros past k, spare rows after the last, zero group rows after
/// the last panel); from rows read in place (u8 A) fewer than 16 rows are copied into a zero-padded
/// block, and a reduction that ends inside a step takes that step's A bytes (zero past k) and panel
/// rows (zero past the last group) from zero-padded copies. The accumulators are stored to the tile
/// buffer (`tile`, [MR][NR]) and, with `out`, go through the epilogue from there.
template <class Dot>
struct lowp_kernel_amx {
  using a_type = typename Dot::a_type;
  using b_type = typename Dot::b_type;
  using acc_type = typename Dot::acc_type;
  static constexpr std::size_t mr = 32, group = Dot::group, kc = Dot::kc;
  static constexpr bool direct = true;
  static constexpr bool needs_amx = true;
  static constexpr std::size_t step = 64 / sizeof(a_type);  ///< reduction elements per A tile row
  static_assert(gemm_nr == 32 && simd_width == 16, "the AMX kernels assume 16-float vectors");
  static_assert(sizeof(acc_type) == 4 && sizeof(b_type) * group == 4, "one group fills a 32-bit lane");

  static void begin() noexcept { amx_begin(); }
  static void end() noexcept { amx_end(); }

  template <activation A>
  static void micro(std::size_t k, const a_type* a, std::size_t lda, std::size_t rows, bool padded,
                    const b_type* bp, acc_type* tile, bool accumulate, const lowp_out* out) noexcept {
    constexpr std::size_t NR = gemm_nr, G = group;
    constexpr std::size_t c_stride = NR * sizeof(acc_type);  // tile buffer row: 128 bytes
    constexpr std::size_t b_stride = NR * G * sizeof(b_type);  // one group row of a panel: 128 bytes
    constexpr std::size_t b_step = (step / G) * NR * G;        // panel elements per step
    const bool two = rows > 16;
    const a_type* a0 = a;  // rows 0-15
    std::size_t ld0 = lda;
    if (rows < 16 && !padded) {
      thread_local aligned_vector<a_type> pad;
      ld0 = (k + step - 1) / step * step;
      pad.assign(16 * ld0, a_type(0));
      for (std::size_t r = 0; r < rows; ++r) std::memcpy(pad.data() + r * ld0, a + r * lda, k * sizeof(a_type));
      a0 = pad.data();
    }
    if (out) lowp_prefetch(*out);  // C's lines arrive while the tiles compute
    const std::size_t r1 = two ? rows - 16 : 0;  // first row of the second A tile (and of C tiles 2-3)
    const a_type* a1 = a + r1 * lda;
    acc_type* t1 = tile + r1 * NR;
    if (accumulate) {
      _tile_loadd(0, tile, c_stride);
      _tile_loadd(1, tile + 16, c_stride);
      if (two) {
        _tile_loadd(2, t1, c_stride);
        _tile_loadd(3, t1 + 16, c_stride);
      }
    } else {
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
    }
    // One 64-byte step of the reduction: 16 group rows of the panel at b, 16 A rows at x0 (and, with
    // two, at x1), strides in bytes.
    auto one_step = [&](const b_type* b, const a_type* x0, std::size_t s0, const a_type* x1, std::size_t s1) {
      _tile_loadd(6, b, b_stride);
      _tile_loadd(7, b + 16 * G, b_stride);
      _tile_loadd(4, x0, s0);
      Dot::template tile_dot<0>();
      Dot::template tile_dot<1>();
      if (two) {
        _tile_loadd(5, x1, s1);
        Dot::template tile_dot<2>();
        Dot::template tile_dot<3>();
      }
    };
    const std::size_t steps = k / step, rem = k % step, s0 = ld0 * sizeof(a_type), s1 = lda * sizeof(a_type);
    for (std::size_t s = 0; s < steps; ++s) one_step(bp + s * b_step, a0 + s * step, s0, a1 + s * step, s1);
    if (rem && padded) {  // A is zero past k in place, the panel is followed by zero rows
      one_step(bp + steps * b_step, a0 + steps * step, s0, a1 + steps * step, s1);
    } else if (rem) {
      alignas(64) a_type at[32 * step] = {};
      alignas(64) b_type bt[16 * NR * G] = {};
      std::memcpy(bt, bp + steps * b_step, (rem + G - 1) / G * NR * G * sizeof(b_type));
      for (std::size_t r = 0; r < 16; ++r) {
        std::memcpy(at + r * step, a0 + r * ld0 + steps * step, rem * sizeof(a_type));
        if (two) std::memcpy(at + (16 + r) * step, a1 + r * lda + steps * step, rem * sizeof(a_type));
      }
      one_step(bt, at, 64, at + 16 * step, 64);
    }
    _tile_stored(0, tile, c_stride);
    _tile_stored(1, tile + 16, c_stride);
    if (two) {
      _tile_stored(2, t1, c_stride);
      _tile_stored(3, t1 + 16, c_stride);
    }
    if (!out) return;
    const typename Dot::columns cols(*out);
    const simd bias0 = out->bias ? simd::load_unaligned(out->bias) : simd(0.f);
    const simd bias1 = out->bias ? simd::load_unaligned(out->bias + 16) : simd(0.f);
    for (std::size_t r = 0; r < out->rows; ++r)
      lowp_store_row<A>(cols.to_float(Dot::load(tile + r * NR), 0), cols.to_float(Dot::load(tile + r * NR + 16), 1),
                        bias0, bias1, *out, r);
  }
  static void dequantize(const acc_type* tile, std::size_t rows, std::size_t j0, const lowp_columns& cols,
                         float* out) noexcept {
    Dot::dequantize(tile, rows, j0, cols, out);
  }
};
#endif

/// int8 accumulators of rows x NR (row stride NR) to the float values before bias:
/// float(acc - corr_j) * scale_j.
inline void s8_dequantize(const std::int32_t* tile, std::size_t rows, std::size_t j0, const lowp_columns& cols,
                          float* out) noexcept {
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t j = 0; j < gemm_nr; ++j)
      out[r * gemm_nr + j] = static_cast<float>(tile[r * gemm_nr + j] - cols.corr[j0 + j]) * cols.scale[j0 + j];
}

/// colsum_j = sum_{kk < k} w_q[j][kk] for the columns of the first `panels` panels, plain loops.
inline void s8_column_sums_generic(const packed_matrix_s8& b, std::size_t k, std::size_t panels,
                                   std::int32_t* out) noexcept {
  constexpr std::size_t NR = gemm_nr;
  for (std::size_t p = 0; p < panels; ++p) {
    const std::int8_t* bp = b.panel(p);
    for (std::size_t j = 0; j < NR; ++j) {
      std::int32_t s = 0;
      for (std::size_t kk = 0; kk < k; ++kk) s += bp[((kk / 4) * NR + j) * 4 + kk % 4];
      out[p * NR + j] = s;
    }
  }
}

/// The int8 arithmetic: u8 activations x s8 weights, exact int32 sums (`vpdpbusd` with VNNI).
struct s8_dot {
  using a_type = std::uint8_t;
  using b_type = std::int8_t;
  using acc_type = std::int32_t;
  /// Reduction block: a [KC/4][32][4] panel slice is 32 KB (L1), the [MC][KC] u8 rows 192 KB (L2).
  static constexpr std::size_t group = 4, kc = 1024;
  static std::int32_t mac(std::int32_t acc, std::uint8_t a, std::int8_t b) noexcept {
    return acc + std::int32_t(a) * std::int32_t(b);
  }
  static void dequantize(const std::int32_t* tile, std::size_t rows, std::size_t j0, const lowp_columns& cols,
                         float* out) noexcept {
    s8_dequantize(tile, rows, j0, cols, out);
  }
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
  using vec = __m512i;
  static vec zero() noexcept { return _mm512_setzero_si512(); }
  static vec load(const std::int32_t* p) noexcept { return _mm512_load_si512(p); }
  static void store(std::int32_t* p, vec v) noexcept { _mm512_store_si512(p, v); }
  static vec dot(vec acc, __m512i a, __m512i b) noexcept { return _mm512_dpbusd_epi32(acc, a, b); }
#if DRT_HAVE_AMX
  /// Accumulator tile I (0-3) += A tile 4 + I / 2 x B tile 6 + I % 2 (the tile numbers must be
  /// literals: the intrinsic pastes them into the instruction).
  template <int I>
  static void tile_dot() noexcept {
    if constexpr (I == 0) _tile_dpbusd(0, 4, 6);
    if constexpr (I == 1) _tile_dpbusd(1, 4, 7);
    if constexpr (I == 2) _tile_dpbusd(2, 5, 6);
    if constexpr (I == 3) _tile_dpbusd(3, 5, 7);
  }
#endif
  /// float(acc - zp * colsum_j) * s_j for one panel.
  struct columns {
    __m512i corr[2];
    simd scale[2];
    explicit columns(const lowp_out& o) noexcept
        : corr{_mm512_loadu_si512(o.corr), _mm512_loadu_si512(o.corr + 16)},
          scale{simd::load_unaligned(o.scale), simd::load_unaligned(o.scale + 16)} {}
    simd to_float(vec acc, std::size_t half) const noexcept {
      return simd(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc, corr[half]))) * scale[half];
    }
  };
#endif
};

/// Portable int8 micro-kernel (any target; several times slower than VNNI).
struct s8_kernel_generic : lowp_kernel_generic<s8_dot> {
  static void column_sums(const packed_matrix_s8& b, std::size_t k, std::size_t panels, std::int32_t* out) noexcept {
    s8_column_sums_generic(b, k, panels, out);
  }
};

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
/// AVX-512 VNNI micro-kernel (`vpdpbusd`: 4 u8 x s8 products per int32 lane).
struct s8_kernel_vnni : lowp_kernel_avx512<s8_dot> {
  /// Column sums with `vpdpbusd` against ones (0x01 bytes; the tail group masked to the prefix).
  static void column_sums(const packed_matrix_s8& b, std::size_t k, std::size_t panels, std::int32_t* out) noexcept {
    constexpr std::size_t NR = gemm_nr;
    const std::size_t groups = k / 4, rem = k % 4;
    const __m512i ones = _mm512_set1_epi32(0x01010101);
    const __m512i tail = _mm512_set1_epi32(static_cast<int>(rem ? 0x01010101u >> (8 * (4 - rem)) : 0u));
    for (std::size_t p = 0; p < panels; ++p) {
      const std::int8_t* bp = b.panel(p);
      __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
      for (std::size_t g = 0; g < groups; ++g) {
        s0 = _mm512_dpbusd_epi32(s0, ones, _mm512_load_si512(bp + g * NR * 4));
        s1 = _mm512_dpbusd_epi32(s1, ones, _mm512_load_si512(bp + g * NR * 4 + 64));
      }
      if (rem) {
        s0 = _mm512_dpbusd_epi32(s0, tail, _mm512_load_si512(bp + groups * NR * 4));
        s1 = _mm512_dpbusd_epi32(s1, tail, _mm512_load_si512(bp + groups * NR * 4 + 64));
      }
      _mm512_storeu_si512(out + p * NR, s0);
      _mm512_storeu_si512(out + p * NR + 16, s1);
    }
  }
};
using s8_kernel = s8_kernel_vnni;
#if DRT_HAVE_AMX
/// AMX micro-kernel (`tdpbusd`: a 16 x 16 x 64 block of u8 x s8 products per instruction).
struct s8_kernel_amx : lowp_kernel_amx<s8_dot> {
  static void column_sums(const packed_matrix_s8& b, std::size_t k, std::size_t panels, std::int32_t* out) noexcept {
    s8_kernel_vnni::column_sums(b, k, panels, out);
  }
};
#endif
#else
using s8_kernel = s8_kernel_generic;
#endif

/// Row sources of `lowp_run`: prepare(i0, rows, k0, kc, k, buf) makes the reduction columns
/// [k0, k0 + kc) of rows i0..i0+rows-1 (of a reduction of length k) ready in the kernel's type and
/// returns where the rows start (column 0) and their stride. Called once per reduction block, in
/// order, k0 = 0 first. `zero_padded`: the rows hold zeros from k to the stride (a multiple of 64
/// bytes) and 16 more rows are readable after the last (their values unused), so the AMX kernel
/// reads a reduction's last step and a short row block in place.

/// Grows a conversion buffer to rows + 16 rows of ld elements (the 16 spare rows zeroed when new).
template <class T>
void lowp_reserve_rows(aligned_vector<T>& buf, std::size_t rows, std::size_t ld) {
  const std::size_t need = (rows + 16) * ld, old = buf.size();
  if (old >= need) return;
  buf.resize(need);
  std::fill(buf.begin() + static_cast<std::ptrdiff_t>(old), buf.end(), T(0));
}
/// A rows given as floats, quantized to u8 block by block into `buf` (row stride a multiple of 64).
struct s8_rows_float {
  const float* a;
  std::size_t lda;
  quant_params q;
  static constexpr bool zero_padded = true;
  static constexpr bool converts = true;  ///< convert_row / row_stride: see lowp_run
  static std::size_t row_stride(std::size_t k) noexcept { return std::max<std::size_t>(64, (k + 63) / 64 * 64); }
  /// Row i whole, zero-padded to row_stride(k).
  void convert_row(std::size_t i, std::size_t k, std::uint8_t* dst) const noexcept {
    quantize_u8(a + i * lda, k, q, dst);
    std::fill(dst + k, dst + row_stride(k), std::uint8_t(0));
  }
  std::pair<const std::uint8_t*, std::size_t> prepare(std::size_t i0, std::size_t rows, std::size_t k0, std::size_t kc,
                                                      std::size_t k, aligned_vector<std::uint8_t>& buf) const {
    const std::size_t ld = row_stride(k);
    lowp_reserve_rows(buf, rows, ld);
    for (std::size_t r = 0; r < rows; ++r) {
      std::uint8_t* row = buf.data() + r * ld;
      quantize_u8(a + (i0 + r) * lda + k0, kc, q, row + k0);
      if (k0 + kc == k) std::fill(row + k, row + ld, std::uint8_t(0));
    }
    return {buf.data(), ld};
  }
};
/// Rows a converting source made ready for the whole of A at once (lowp_run): read in place, zero
/// past k to the stride and 16 zero rows after the last, as `prepare`'s buffers.
template <class T>
struct lowp_rows_ready {
  const T* a;
  std::size_t ld;
  static constexpr bool zero_padded = true;
  static constexpr bool converts = false;
  std::pair<const T*, std::size_t> prepare(std::size_t i0, std::size_t, std::size_t, std::size_t, std::size_t,
                                           aligned_vector<T>&) const noexcept {
    return {a + i0 * ld, ld};
  }
};
/// A rows already quantized to u8 (read in place: nothing is known past k or past the last row).
struct s8_rows_u8 {
  static constexpr bool zero_padded = false;
  static constexpr bool converts = false;
  const std::uint8_t* a;
  std::size_t lda;
  std::pair<const std::uint8_t*, std::size_t> prepare(std::size_t i0, std::size_t, std::size_t, std::size_t,
                                                      std::size_t, aligned_vector<std::uint8_t>&) const noexcept {
    return {a + i0 * lda, lda};
  }
};

/// C[m, :n] = epilogue(dequantize(A[:, :k] x B[:k, :n])) for a low-precision Kernel (int8 or bf16):
/// the loop nest of gemm.hpp's `gemm_run`. Tasks are (a block of MC rows) x (a range of panels),
/// the panels split too when there are few row blocks. In a task, for each group of panels whose
/// accumulators (~256 KB) stay in L2, for each reduction block of KC, for each panel of the group,
/// the micro-tiles run. The first group converts the [MC][KC] block of A it is about to use
/// (`src.prepare`: quantize to u8, round to bf16, or nothing) into a thread-local [MC][k] buffer
/// that the other groups reuse. The last reduction block of a full panel goes to C through the epilogue from registers
/// (Kernel::direct); partial panels and an empty reduction go through `Kernel::dequantize` and
/// `gemm_store` (with alpha already applied: the column data carry it).
/// With few row blocks the panels are split into chunks, and each chunk's task converts the same
/// rows of A again (a spatial reduction's 256 rows of 2048 in four chunks: four quantizations of A
/// for one GEMM). Where those repeats add up to 512 K elements or more, a converting source converts
/// all of A once, in parallel, first; below that the extra parallel pass and the rows a thread reads
/// from the other's cache cost more than they save (`drt profile`, B2 int8: the spatial reductions
/// and patch embeddings of stages 2-4 gain, the projections of stage 3 lose). Same codes either way.
template <class Kernel, activation A, class Source, class Packed>
void lowp_run(std::size_t m, std::size_t n, std::size_t k, const Source& src, const Packed& b, const lowp_dest& dst,
              const gemm_epilogue& ep, const lowp_columns& cols, bool allow_parallel) {
  using a_type = typename Kernel::a_type;
  using b_type = typename Kernel::b_type;
  using acc_type = typename Kernel::acc_type;
  constexpr std::size_t NR = gemm_nr, MR = Kernel::mr, MC = MR * 16, KC = Kernel::kc;
  static_assert(KC % Kernel::group == 0, "a reduction block must end on a group boundary");
  constexpr std::size_t group_panels =
      std::max<std::size_t>(1, (std::size_t(256) << 10) / (MC * NR * sizeof(acc_type)));
  const std::size_t panels = (n + NR - 1) / NR;
  const gemm_tasks tasks(m, MC, panels, allow_parallel);
  const std::size_t pchunks = tasks.chunks, ppc = tasks.per_chunk;
  if constexpr (Source::converts) {
    if (pchunks > 1 && k > 0 && (pchunks - 1) * m * k >= (std::size_t(1) << 19)) {
      const std::size_t ld = Source::row_stride(k);
      // The calling thread's buffer (kept between calls: a fresh allocation of megabytes each call
      // pays page faults, and its release moves the heap's limits for the callers' buffers too).
      thread_local aligned_vector<a_type> whole;
      if (whole.size() < (m + 16) * ld) whole.resize((m + 16) * ld);
      std::fill(whole.begin() + static_cast<std::ptrdiff_t>(m * ld), whole.begin() + static_cast<std::ptrdiff_t>((m + 16) * ld),
                a_type(0));  // the spare rows
      a_type* const rows = whole.data();  // the workers see the caller's buffer through this pointer
      parallel_for(m, [&](std::size_t i) { src.convert_row(i, k, rows + i * ld); }, 4.0 * double(m) * double(k));
      lowp_run<Kernel, A>(m, n, k, lowp_rows_ready<a_type>{rows, ld}, b, dst, ep, cols, allow_parallel);
      return;
    }
  }
  gemm_epilogue ep1 = ep;
  ep1.alpha = 1.f;  // applied by Kernel::dequantize
  const std::size_t ldc = dst.ldc;
  auto task = [&](std::size_t t) {
    thread_local aligned_vector<acc_type> tiles;
    thread_local aligned_vector<float> ftile;
    thread_local aligned_vector<a_type> abuf;
    constexpr std::size_t tile_elems = MC * NR;
    if (tiles.size() < tile_elems * group_panels) tiles.resize(tile_elems * group_panels);
    if (ftile.size() < tile_elems) ftile.resize(tile_elems);
    const std::size_t mb = t / pchunks, pc = t % pchunks;
    const std::size_t i0 = mb * MC, rows = std::min(MC, m - i0);
    const std::size_t p_end = std::min(panels, (pc + 1) * ppc);
    Kernel::begin();
    const a_type* ab = nullptr;
    std::size_t ld = 0;
    for (std::size_t g0 = pc * ppc; g0 < p_end; g0 += group_panels) {
      const std::size_t g_end = std::min(p_end, g0 + group_panels);
      for (std::size_t k0 = 0; k0 < k; k0 += KC) {
        const std::size_t kc = std::min(KC, k - k0);
        const bool final = k0 + kc == k;
        if (g0 == pc * ppc) {  // the first group converts the A block, one reduction block at a time
          const std::pair<const a_type*, std::size_t> blk = src.prepare(i0, rows, k0, kc, k, abuf);
          ab = blk.first;
          ld = blk.second;
        }
        for (std::size_t p = g0; p < g_end; ++p) {
          const b_type* bp = b.panel(p) + k0 * NR;  // group k0 / G of [G][NR][G]-element groups
          const std::size_t j0 = p * NR;
          const bool direct = Kernel::direct && final && j0 + NR <= n;
          acc_type* pt = tiles.data() + (p - g0) * tile_elems;
          for (std::size_t i = 0; i < rows; i += MR) {
            const std::size_t rr = std::min(MR, rows - i);
            const a_type* ar = ab + i * ld + k0;
            if (direct) {
              const lowp_out o{dst.c ? dst.c + (i0 + i) * ldc + j0 : nullptr,
                               dst.c8 ? dst.c8 + (i0 + i) * ldc + j0 : nullptr,
                               ldc,
                               rr,
                               ep.bias ? ep.bias + j0 : nullptr,
                               ep.residual ? ep.residual + (i0 + i) * ep.ldr + j0 : nullptr,
                               ep.ldr,
                               cols.corr ? cols.corr + j0 : nullptr,
                               cols.scale ? cols.scale + j0 : nullptr,
                               cols.alpha,
                               ep.residual_before_act,
                               dst.q};
              Kernel::template micro<A>(kc, ar, ld, rr, Source::zero_padded, bp, pt + i * NR, k0 > 0, &o);
            } else {
              Kernel::template micro<A>(kc, ar, ld, rr, Source::zero_padded, bp, pt + i * NR, k0 > 0, nullptr);
            }
          }
        }
      }
      // What the micro-tiles did not write to C: a partial last panel, every panel without a direct
      // epilogue, or an empty reduction (the epilogue of zero).
      for (std::size_t p = g0; p < g_end; ++p) {
        const std::size_t j0 = p * NR, ncols = std::min(NR, n - j0);
        if (Kernel::direct && k > 0 && ncols == NR) continue;
        acc_type* pt = tiles.data() + (p - g0) * tile_elems;
        if (k == 0) std::fill(pt, pt + rows * NR, acc_type(0));
        Kernel::dequantize(pt, rows, j0, cols, ftile.data());
        if (dst.c) {
          gemm_store<A>(ftile.data(), rows, ncols, j0, dst.c, ldc, i0, ep1);
        } else {  // the epilogue in place in the tile ([rows][NR] from column j0), then requantized
          gemm_epilogue e = ep1;
          e.bias = ep.bias ? ep.bias + j0 : nullptr;
          e.residual = ep.residual ? ep.residual + i0 * ep.ldr + j0 : nullptr;
          gemm_store<A>(ftile.data(), rows, ncols, 0, ftile.data(), NR, 0, e);
          for (std::size_t r = 0; r < rows; ++r)
            quantize_u8(ftile.data() + r * NR, ncols, dst.q, dst.c8 + (i0 + r) * ldc + j0);
        }
      }
    }
    Kernel::end();
  };
  if (allow_parallel)
    parallel_for(tasks.count(), task, 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k));
  else
    for (std::size_t t = 0; t < tasks.count(); ++t) task(t);
}

/// lowp_run with the activation as a run-time value.
template <class Kernel, class Source, class Packed>
void lowp_dispatch(std::size_t m, std::size_t n, std::size_t k, const Source& src, const Packed& b,
                   const lowp_dest& dst, const gemm_epilogue& ep, const lowp_columns& cols, bool allow_parallel) {
  switch (ep.act) {
    case activation::none:
      lowp_run<Kernel, activation::none>(m, n, k, src, b, dst, ep, cols, allow_parallel);
      break;
    case activation::relu:
      lowp_run<Kernel, activation::relu>(m, n, k, src, b, dst, ep, cols, allow_parallel);
      break;
    case activation::gelu:
      lowp_run<Kernel, activation::gelu>(m, n, k, src, b, dst, ep, cols, allow_parallel);
      break;
  }
}

inline void check_quant_params(const char* what, const char* name, const quant_params& q) {
  if (!(q.scale > 0.f) || !std::isfinite(q.scale) || q.zero_point < 0 || q.zero_point > 255)
    throw invalid_input(std::string(what) + ": " + name + " quantization {scale=" + float_str(q.scale) +
                        ", zero_point=" + std::to_string(q.zero_point) +
                        "} needs a finite scale > 0 and a zero point in [0, 255]");
}

inline void check_s8_call(const char* what, std::size_t k, std::size_t n, const quant_params& aq,
                          const packed_matrix_s8& b) {
  if (k > b.k() || n > b.n())
    throw shape_error(std::string(what) + ": requested k=" + std::to_string(k) + ", n=" + std::to_string(n) +
                      " exceeds the packed matrix [k=" + std::to_string(b.k()) + ", n=" + std::to_string(b.n()) + "]");
  check_quant_params(what, "activation", aq);
}

/// The int8 GEMM on any row source with a given Kernel (tests run the portable kernel this way
/// on machines that have VNNI). The per-call column data (zero-point correction, scales) live in
/// thread-local buffers of the calling thread.
template <class Kernel, class Source>
void gemm_s8_with(std::size_t m, std::size_t n, std::size_t k, const Source& src, const quant_params& aq,
                  const packed_matrix_s8& b, const lowp_dest& dst, const gemm_epilogue& ep, bool allow_parallel) {
  if (m == 0 || n == 0) return;
  constexpr std::size_t NR = gemm_nr;
  const std::size_t panels = (n + NR - 1) / NR;
  thread_local aligned_vector<std::int32_t> corr;
  thread_local aligned_vector<float> scale;
  if (corr.size() < panels * NR) corr.resize(panels * NR);
  if (scale.size() < panels * NR) scale.resize(panels * NR);
  if (k == b.k())
    std::copy(b.column_sums(), b.column_sums() + panels * NR, corr.data());
  else
    Kernel::column_sums(b, k, panels, corr.data());
  const float s = ep.alpha * aq.scale;
  for (std::size_t j = 0; j < panels * NR; ++j) {
    corr[j] *= aq.zero_point;
    scale[j] = j < n ? s * b.scales()[j] : 0.f;
  }
  lowp_columns cols;
  cols.corr = corr.data();
  cols.scale = scale.data();
  lowp_dispatch<Kernel>(m, n, k, src, b, dst, ep, cols, allow_parallel);
}

template <class Kernel>
struct kernel_tag {
  using type = Kernel;
};

/// Calls f(kernel_tag<K>{}) with the int8 kernel this process runs for a reduction of k: AMX where
/// `amx_usable()` and k fills at least one 64-byte tile row, else the compiled-in one (VNNI or
/// portable). Below 64 both are bound by writing C and VNNI's epilogue from registers is faster
/// (16384 x 32 x 256, 2 threads: 0.73 ms VNNI, 0.92 AMX; docs/lowp_kernels.md).
template <class F>
void with_s8_kernel(std::size_t k, F&& f) {
#if DRT_HAVE_AMX
  if (k >= 64 && amx_usable()) return f(kernel_tag<s8_kernel_amx>{});
#else
  (void)k;
#endif
  f(kernel_tag<s8_kernel>{});
}

}  // namespace detail

/// Whether `gemm_s8` runs a native kernel, AVX-512 VNNI or AMX (else the portable one: correct,
/// several times slower).
inline constexpr bool gemm_s8_native = !std::is_same_v<detail::s8_kernel, detail::s8_kernel_generic>;

/// C[m, n] (row stride ldc) = epilogue(A[m, k] (floats, row stride lda, quantized per call to u8
/// with `aq`) x B[:k, :n]), the int8 numerics of the file comment. k and n may be any prefix of the
/// packed matrix's reduction and output sizes; only the first k floats of each A row are read.
inline void gemm_s8(std::size_t m, std::size_t n, std::size_t k, const float* a, std::size_t lda,
                    const quant_params& aq, const packed_matrix_s8& b, float* c, std::size_t ldc,
                    const gemm_epilogue& ep = {}, bool allow_parallel = true) {
  detail::check_s8_call("gemm_s8", k, n, aq, b);
  detail::with_s8_kernel(k, [&](auto kernel) {
    detail::gemm_s8_with<typename decltype(kernel)::type>(m, n, k, detail::s8_rows_float{a, lda, aq}, aq, b, {c, nullptr, ldc, {}}, ep, allow_parallel);
  });
}

/// As gemm_s8 with A already quantized: u8 A[m, k] (row stride lda) of parameters `aq`. Only the
/// first k bytes of each row are read (the bytes after a prefix k < lda may hold anything).
inline void gemm_s8_u8(std::size_t m, std::size_t n, std::size_t k, const std::uint8_t* a, std::size_t lda,
                       const quant_params& aq, const packed_matrix_s8& b, float* c, std::size_t ldc,
                       const gemm_epilogue& ep = {}, bool allow_parallel = true) {
  detail::check_s8_call("gemm_s8_u8", k, n, aq, b);
  detail::with_s8_kernel(k, [&](auto kernel) {
    detail::gemm_s8_with<typename decltype(kernel)::type>(m, n, k, detail::s8_rows_u8{a, lda}, aq, b, {c, nullptr, ldc, {}}, ep, allow_parallel);
  });
}

/// As gemm_s8, with the output requantized for a following int8 layer: u8 C[m, n] (row stride ldc)
/// = quantize_u8(epilogue output, cq). The epilogue (and a float residual) runs in float first.
inline void gemm_s8_requant(std::size_t m, std::size_t n, std::size_t k, const float* a, std::size_t lda,
                            const quant_params& aq, const packed_matrix_s8& b, std::uint8_t* c, std::size_t ldc,
                            const quant_params& cq, const gemm_epilogue& ep = {}, bool allow_parallel = true) {
  detail::check_s8_call("gemm_s8_requant", k, n, aq, b);
  detail::check_quant_params("gemm_s8_requant", "output", cq);
  detail::with_s8_kernel(k, [&](auto kernel) {
    detail::gemm_s8_with<typename decltype(kernel)::type>(m, n, k, detail::s8_rows_float{a, lda, aq}, aq, b, {nullptr, c, ldc, cq}, ep, allow_parallel);
  });
}

/// As gemm_s8_u8 (u8 A), with the output requantized as gemm_s8_requant does: u8 in, u8 out.
inline void gemm_s8_u8_requant(std::size_t m, std::size_t n, std::size_t k, const std::uint8_t* a, std::size_t lda,
                               const quant_params& aq, const packed_matrix_s8& b, std::uint8_t* c, std::size_t ldc,
                               const quant_params& cq, const gemm_epilogue& ep = {}, bool allow_parallel = true) {
  detail::check_s8_call("gemm_s8_u8_requant", k, n, aq, b);
  detail::check_quant_params("gemm_s8_u8_requant", "output", cq);
  detail::with_s8_kernel(k, [&](auto kernel) {
    detail::gemm_s8_with<typename decltype(kernel)::type>(m, n, k, detail::s8_rows_u8{a, lda}, aq, b, {nullptr, c, ldc, cq}, ep, allow_parallel);
  });
}

/// Plain-loop reference of the int8 numerics: u8 A[m][k] (row stride lda, parameters aq), int8
/// w[n][k] (row stride ldw) with w_scale[n]; the integer sum is exact (int64), then the same float
/// steps as the kernels: float(sum (q_a - zp) * w_q) * ((alpha * scale_a) * w_scale_j) + bias, ...
inline void gemm_s8_ref(std::size_t m, std::size_t n, std::size_t k, const std::uint8_t* a, std::size_t lda,
                        const quant_params& aq, const std::int8_t* w, std::size_t ldw, const float* w_scale, float* c,
                        std::size_t ldc, const gemm_epilogue& ep = {}) {
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      std::int64_t acc = 0;
      for (std::size_t kk = 0; kk < k; ++kk)
        acc += (static_cast<std::int64_t>(a[i * lda + kk]) - aq.zero_point) * w[j * ldw + kk];
      const float s = (ep.alpha * aq.scale) * w_scale[j];
      c[i * ldc + j] = gemm_epilogue_ref(static_cast<float>(static_cast<std::int32_t>(acc)) * s, ep, i, j);
    }
}

}  // namespace drt
