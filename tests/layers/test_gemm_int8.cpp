// int8 GEMM (layers/gemm_int8.hpp): the quantization helpers (rounding half to even, saturation at
// 0..255 and +-127, zero point, per-channel scales, the packed layout and its zero padding); the
// GEMM against gemm_s8_ref, which sums the integers exactly (int64) and applies the same float
// steps, on odd shapes, across the micro-tile (MR), row-block (MC), panel (NR) and reduction-block
// (KC) edges, in parallel (few row blocks: A quantized whole first, lowp_run) and serially (block by
// block), and on every (k, n) prefix of one packed matrix; the epilogues; the requantized u8
// output (gemm_s8_requant); the shape errors.
// Both kernels run: the one the compiler targets (VNNI on AVX-512) and the portable one.
// Tolerances: without bias / activation / residual the output must equal the reference bit for bit
// (the integer sum is exact and the float steps are the same); with them, |out - ref| <= 1e-6 *
// max|ref| (contraction of multiply-add, vector erf), and a requantized output at most 1 apart on
// <= 1 % of the outputs; against the float32 product on Gaussian data, relative L2 error < 2 %
// (8-bit activations and weights; 1.0-1.2 % measured).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include <drt/layers/gemm_int8.hpp>
#include <drt/layers/linear.hpp>

#include "test_support.hpp"

using namespace drt_test;

namespace {

constexpr std::size_t s8_nr = drt::packed_matrix_s8::nr;
#if DRT_HAVE_AMX
#define DRT_TEST_S8_KERNELS drt::detail::s8_kernel, drt::detail::s8_kernel_generic, drt::detail::s8_kernel_amx
#else
#define DRT_TEST_S8_KERNELS drt::detail::s8_kernel, drt::detail::s8_kernel_generic
#endif
constexpr float s8_sentinel = 12345.f;

std::vector<float> s8_gaussian(std::size_t n, unsigned seed, float sigma = 1.f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

drt::quant_params s8_range_params(const std::vector<float>& x) {
  const auto [lo, hi] = std::minmax_element(x.begin(), x.end());
  return drt::quant_params_u8(*lo, *hi);
}

/// The quantized weights of a packed matrix as int8 [n][k] (read through `at`, itself tested).
std::vector<std::int8_t> s8_unpack(const drt::packed_matrix_s8& b) {
  std::vector<std::int8_t> w(b.n() * b.k());
  for (std::size_t j = 0; j < b.n(); ++j)
    for (std::size_t kk = 0; kk < b.k(); ++kk) w[j * b.k() + kk] = b.at(j, kk);
  return w;
}

std::string s8_dims(std::size_t m, std::size_t n, std::size_t k) {
  return "m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k);
}

/// Runs the int8 GEMM with Kernel (detail::gemm_s8_with: each kernel directly, whichever the public
/// functions pick in this process). With `a8` the u8 rows are given (gemm_s8_u8), else the float rows `a` are quantized.
template <class Kernel>
void s8_run(std::size_t m, std::size_t n, std::size_t k, const float* a, const std::uint8_t* a8, std::size_t lda,
            const drt::quant_params& aq, const drt::packed_matrix_s8& b, float* c, std::size_t ldc,
            const drt::gemm_epilogue& ep = {}, bool par = true) {
  if (a8)
    drt::detail::gemm_s8_with<Kernel>(m, n, k, drt::detail::s8_rows_u8{a8, lda}, aq, b, {c, nullptr, ldc, {}}, ep, par);
  else
    drt::detail::gemm_s8_with<Kernel>(m, n, k, drt::detail::s8_rows_float{a, lda, aq}, aq, b, {c, nullptr, ldc, {}}, ep,
                                      par);
}

/// A problem: float A [m][K] (Gaussian), float W [N][K] packed to int8, A quantized with the scalar
/// helper (the reference's input).
struct s8_problem {
  std::size_t m, K, N;
  std::vector<float> a, w;
  drt::quant_params aq;
  drt::packed_matrix_s8 b;
  std::vector<std::uint8_t> a8;
  std::vector<std::int8_t> wq;

  s8_problem(std::size_t m_, std::size_t K_, std::size_t N_, unsigned seed)
      : m(m_),
        K(K_),
        N(N_),
        a(s8_gaussian(m_ * K_, seed)),
        w(s8_gaussian(N_ * K_, seed + 1, 0.1f)),
        aq(s8_range_params(a)),
        b(drt::packed_matrix_s8::from_nk(w.data(), N_, K_, K_)),
        a8(m_ * K_),
        wq(s8_unpack(b)) {
    for (std::size_t i = 0; i < a.size(); ++i) a8[i] = drt::quantize_u8(a[i], aq);
  }
  std::vector<float> ref(std::size_t n, std::size_t k, const drt::gemm_epilogue& ep = {}) const {
    std::vector<float> c(m * n);
    drt::gemm_s8_ref(m, n, k, a8.data(), K, aq, wq.data(), K, b.scales(), c.data(), n, ep);
    return c;
  }
};

/// C[m][n] of a prefix (k, n) through Kernel, from the float or the u8 rows, into a strided C whose
/// padding columns must stay untouched; returns the m x n block.
template <class Kernel>
std::vector<float> s8_out(const s8_problem& p, std::size_t n, std::size_t k, bool u8_rows,
                          const drt::gemm_epilogue& ep = {}, bool par = true) {
  const std::size_t ldc = n + 3;
  std::vector<float> c(p.m * ldc, s8_sentinel), out(p.m * n);
  s8_run<Kernel>(p.m, n, k, p.a.data(), u8_rows ? p.a8.data() : nullptr, p.K, p.aq, p.b, c.data(), ldc, ep, par);
  std::size_t touched = 0;
  for (std::size_t i = 0; i < p.m; ++i) {
    for (std::size_t j = 0; j < n; ++j) out[i * n + j] = c[i * ldc + j];
    for (std::size_t j = n; j < ldc; ++j) touched += c[i * ldc + j] != s8_sentinel;
  }
  CHECK(touched == 0);
  return out;
}

/// The first n columns of an m x N row-major block (a column prefix of a reference: columns are independent).
std::vector<float> s8_cols(const std::vector<float>& full, std::size_t m, std::size_t N, std::size_t n) {
  std::vector<float> out(m * n);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) out[i * n + j] = full[i * N + j];
  return out;
}

/// Number of elements that differ from the reference (bit-exact comparison; -0 == +0).
std::size_t s8_mismatches(const std::vector<float>& out, const std::vector<float>& ref) {
  std::size_t bad = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) bad += !(out[i] == ref[i]);
  return bad;
}

}  // namespace

TEST_SUITE("layers") {
  TEST_CASE("quantize_u8: round half to even, zero point, saturation at 0 and 255") {
    const drt::quant_params q{0.5f, 10};
    CHECK(drt::quantize_u8(0.f, q) == 10);
    CHECK(drt::quantize_u8(1.25f, q) == 12);    // 2.5 -> 2
    CHECK(drt::quantize_u8(1.75f, q) == 14);    // 3.5 -> 4
    CHECK(drt::quantize_u8(-1.25f, q) == 8);    // -2.5 -> -2
    CHECK(drt::quantize_u8(-1.75f, q) == 6);    // -3.5 -> -4
    CHECK(drt::quantize_u8(1.3f, q) == 13);     // 2.6 -> 3
    CHECK(drt::quantize_u8(-5.f, q) == 0);      // -10 + 10
    CHECK(drt::quantize_u8(-5.5f, q) == 0);     // -11 + 10 saturates
    CHECK(drt::quantize_u8(122.5f, q) == 255);  // 245 + 10
    CHECK(drt::quantize_u8(123.f, q) == 255);   // 246 + 10 saturates
    CHECK(drt::quantize_u8(1e30f, q) == 255);
    CHECK(drt::quantize_u8(-1e30f, q) == 0);
    CHECK(drt::quantize_u8(std::numeric_limits<float>::infinity(), q) == 255);
    CHECK(drt::dequantize_u8(14, q) == 2.f);

    // The vector row helper equals the scalar one, ties and saturation included, for every length
    // around the vector width.
    std::vector<float> x = random_vector(1000, 5, -80.f, 80.f);
    for (std::size_t i = 0; i < x.size(); i += 3) x[i] = (std::floor(x[i] * 2.f) + 0.5f) * 0.5f;  // ties
    x[7] = 1e30f;
    x[8] = -1e30f;
    x[9] = std::numeric_limits<float>::infinity();
    for (const drt::quant_params p : {q, drt::quant_params{0.37f, 0}, drt::quant_params{1.f / 3.f, 255}})
      for (std::size_t n : {std::size_t(1), std::size_t(15), std::size_t(16), std::size_t(17), std::size_t(1000)}) {
        std::vector<std::uint8_t> v(n);
        drt::quantize_u8(x.data(), n, p, v.data());
        std::size_t bad = 0;
        for (std::size_t i = 0; i < n; ++i) bad += v[i] != drt::quantize_u8(x[i], p);
        CHECK_MESSAGE(bad == 0, "n=" << n << " scale=" << p.scale << " zp=" << p.zero_point);
      }
  }

  TEST_CASE("quant_params_u8: the range is widened to contain 0, and 0 is exact") {
    const auto q = drt::quant_params_u8(-1.f, 3.f);
    CHECK(q.scale == doctest::Approx(4.0 / 255).epsilon(1e-6));
    CHECK(q.zero_point == 64);  // round(63.75)
    CHECK(drt::dequantize_u8(drt::quantize_u8(0.f, q), q) == 0.f);
    CHECK(drt::quantize_u8(-1.f, q) == 0);
    CHECK(drt::quantize_u8(3.f, q) == 255);
    const auto pos = drt::quant_params_u8(0.5f, 2.f);  // lo widened to 0
    CHECK(pos.zero_point == 0);
    CHECK(pos.scale == doctest::Approx(2.0 / 255).epsilon(1e-6));
    const auto neg = drt::quant_params_u8(-3.f, -1.f);  // hi widened to 0
    CHECK(neg.zero_point == 255);
    CHECK(drt::quantize_u8(-3.f, neg) == 0);
    const auto zero = drt::quant_params_u8(0.f, 0.f);
    CHECK(zero.scale == 1.f);
    CHECK(zero.zero_point == 0);
    CHECK_THROWS_WITH_AS(drt::quant_params_u8(2.f, 1.f), "quant_params_u8: range [2, 1] must be finite with lo <= hi",
                         drt::invalid_input);
    CHECK_THROWS_AS(drt::quant_params_u8(0.f, std::numeric_limits<float>::quiet_NaN()), drt::invalid_input);
  }

  TEST_CASE("quantize_s8: symmetric, round half to even, saturation at +-127 (never -128)") {
    CHECK(drt::quantize_s8(2.5f, 1.f) == 2);
    CHECK(drt::quantize_s8(3.5f, 1.f) == 4);
    CHECK(drt::quantize_s8(-2.5f, 1.f) == -2);
    CHECK(drt::quantize_s8(-3.5f, 1.f) == -4);
    CHECK(drt::quantize_s8(0.26f, 0.1f) == 3);
    CHECK(drt::quantize_s8(127.4f, 1.f) == 127);
    CHECK(drt::quantize_s8(200.f, 1.f) == 127);
    CHECK(drt::quantize_s8(-127.6f, 1.f) == -127);
    CHECK(drt::quantize_s8(-1e30f, 1.f) == -127);
    // The row form (vectorized) gives the scalar's bytes: ties, saturation, huge values, a tail.
    std::vector<float> x{2.5f, 3.5f, -2.5f, -3.5f, 0.26f, 127.4f, 200.f, -127.6f, -1e30f, 1e30f, 0.f, -0.f, 126.5f,
                         -126.5f, 0.05f, -0.05f, 1.f, 7.25f, -64.5f};
    const auto g = s8_gaussian(37, 77, 50.f);
    x.insert(x.end(), g.begin(), g.end());
    for (float scale : {1.f, 0.1f, 0.37f}) {
      std::vector<std::int8_t> row(x.size());
      drt::quantize_s8(x.data(), x.size(), scale, row.data());
      for (std::size_t i = 0; i < x.size(); ++i)
        CHECK_MESSAGE(row[i] == drt::quantize_s8(x[i], scale), "x=" << x[i] << " scale=" << scale);
    }
  }

  TEST_CASE("packed_matrix_s8: per-output-channel scales, values, panel layout and zero padding") {
    const std::size_t n = 2 * s8_nr + 3, k = 4 * 5 + 3, ld = k + 2;
    auto w = random_vector(n * ld, 31, -2.f, 2.f);
    for (std::size_t kk = 0; kk < k; ++kk) w[3 * ld + kk] = 0.f;  // an all-zero output channel
    w[5 * ld + 7] = -7.f;                                         // a channel whose largest |w| is negative
    const auto b = drt::packed_matrix_s8::from_nk(w.data(), n, k, ld);
    REQUIRE(b.n() == n);
    REQUIRE(b.k() == k);
    CHECK(b.panels() == 3);
    CHECK(b.groups() == 6);
    std::size_t bad = 0;
    for (std::size_t j = 0; j < n; ++j) {
      float amax = 0.f;
      for (std::size_t kk = 0; kk < k; ++kk) amax = std::max(amax, std::abs(w[j * ld + kk]));
      const float scale = amax > 0.f ? amax / 127.f : 1.f;
      CHECK(b.scales()[j] == scale);
      int peak = 0;
      for (std::size_t kk = 0; kk < k; ++kk) {
        bad += b.at(j, kk) != drt::quantize_s8(w[j * ld + kk], scale);
        peak = std::max(peak, std::abs(int(b.at(j, kk))));
      }
      CHECK(peak == (j == 3 ? 0 : 127));  // the largest weight maps to +-127
    }
    CHECK(bad == 0);
    CHECK(b.at(5, 7) == -127);
    // Padding: reduction indices k..4*groups-1 of every column and the columns n..3*NR-1 are zero.
    std::size_t nonzero = 0;
    for (std::size_t p = 0; p < b.panels(); ++p)
      for (std::size_t g = 0; g < b.groups(); ++g)
        for (std::size_t j = 0; j < s8_nr; ++j)
          for (std::size_t e = 0; e < 4; ++e)
            if (p * s8_nr + j >= n || 4 * g + e >= k) nonzero += b.panel(p)[(g * s8_nr + j) * 4 + e] != 0;
    CHECK(nonzero == 0);

    const std::vector<float> bad_w{1.f, std::numeric_limits<float>::infinity()};
    CHECK_THROWS_WITH_AS(drt::packed_matrix_s8::from_nk(bad_w.data(), 1, 2, 2),
                         "packed_matrix_s8: weight [0, 1] of [1, 2] is not finite", drt::invalid_input);
    const std::vector<std::int8_t> q(drt::packed_matrix_s8::max_k + 1, 1);
    const float one = 1.f, zero = 0.f;
    CHECK_THROWS_WITH_AS(drt::packed_matrix_s8::from_nk_quantized(q.data(), &zero, 1, 3, 3),
                         "packed_matrix_s8: scale of output 0 is 0, expected a finite value > 0", drt::invalid_input);
    CHECK_THROWS_WITH_AS(drt::packed_matrix_s8::from_nk_quantized(q.data(), &one, 1, q.size(), q.size()),
                         "packed_matrix_s8: k=65537 exceeds 65536 (the int32 accumulators could overflow)",
                         drt::shape_error);
    CHECK_NOTHROW(drt::packed_matrix_s8::from_nk_quantized(q.data(), &one, 1, q.size() - 1, q.size()));
    const std::vector<float> wide(q.size(), 0.5f);  // the float form refuses it too
    CHECK_THROWS_WITH_AS(drt::packed_matrix_s8::from_nk(wide.data(), 1, wide.size(), wide.size()),
                         "packed_matrix_s8: k=65537 exceeds 65536 (the int32 accumulators could overflow)",
                         drt::shape_error);
  }

  TEST_CASE_TEMPLATE("gemm_s8 equals the exact integer reference bit for bit on odd shapes and tile edges", Kernel,
                     DRT_TEST_S8_KERNELS) {
    if (!kernel_runs_here<Kernel>()) return;
    struct dims {
      std::size_t m, k, n;
    };
    const std::vector<dims> shapes{{1, 1, 1},
                                   {7, 13, 17},
                                   {33, 100, 45},
                                   {130, 257, 33},
                                   {Kernel::mr - 1, 3, s8_nr - 1},
                                   {Kernel::mr, 4, s8_nr},
                                   {Kernel::mr + 1, 5, s8_nr + 1},
                                   {16 * Kernel::mr + 1, 2 * Kernel::kc + 7, 70},
                                   {2 * 16 * Kernel::mr - 1, Kernel::kc, 3 * s8_nr},
                                   {5, Kernel::kc + 1, 11 * s8_nr + 9},  // 12 panels: more than one group of panels
                                   // AMX's edges: 16-row A tiles, 64-byte reduction steps
                                   {15, 64, 32},
                                   {16, 65, 33},
                                   {17, 63, 31},
                                   {48, 129, 64}};
    unsigned seed = 500;
    for (const dims d : shapes) {
      const s8_problem p(d.m, d.k, d.n, seed += 2);
      const auto ref = p.ref(d.n, d.k);
      for (bool u8_rows : {false, true})
        for (bool par : {true, false}) {
          const auto out = s8_out<Kernel>(p, d.n, d.k, u8_rows, {}, par);
          CHECK_MESSAGE(s8_mismatches(out, ref) == 0,
                        s8_dims(d.m, d.n, d.k) << (u8_rows ? " u8 rows" : " float rows") << (par ? " parallel" : ""));
        }
    }
  }

  TEST_CASE_TEMPLATE("gemm_s8 on every (k, n) prefix of one packed matrix equals the reference on that prefix", Kernel,
                     DRT_TEST_S8_KERNELS) {
    if (!kernel_runs_here<Kernel>()) return;
    // The A rows hold K real values: a prefix k must read only its first k (the last group of 4 is
    // partly outside the prefix for k % 4 != 0). The quantized rows of a longer prefix stay in the
    // thread's buffer, so stale bytes past k are there too.
    SUBCASE("every k in 0..K and every n in 1..N") {
      const std::size_t m = Kernel::mr + 1, K = 37, N = 2 * s8_nr + 5;
      const s8_problem p(m, K, N, 900);
      std::size_t bad = 0, runs = 0;
      for (std::size_t k = K + 1; k-- > 0;) {
        const auto full = p.ref(N, k);
        for (std::size_t n = 1; n <= N; ++n) {
          const auto ref = s8_cols(full, m, N, n);
          for (bool u8_rows : {false, true}) {
            const auto out = s8_out<Kernel>(p, n, k, u8_rows);
            const std::size_t miss = s8_mismatches(out, ref);
            if (miss) MESSAGE("mismatch at " << s8_dims(m, n, k) << (u8_rows ? " u8 rows" : " float rows"));
            bad += miss;
            ++runs;
          }
        }
      }
      CHECK(runs == 2 * (K + 1) * N);
      CHECK(bad == 0);
    }
    SUBCASE("sampled prefixes across the KC, MC and panel edges") {
      const std::size_t m = 16 * Kernel::mr + 5, K = Kernel::kc + 9, N = 3 * s8_nr + 7;
      const s8_problem p(m, K, N, 901);
      for (std::size_t k : {std::size_t(1), std::size_t(2), std::size_t(3), std::size_t(4), std::size_t(5), Kernel::kc - 1,
                            Kernel::kc, Kernel::kc + 1, Kernel::kc + 2, Kernel::kc + 3, K - 1, K}) {
        const auto full = p.ref(N, k);
        for (std::size_t n : {std::size_t(1), s8_nr - 1, s8_nr, s8_nr + 1, N}) {
          const auto ref = s8_cols(full, m, N, n);
          for (bool u8_rows : {false, true})
            CHECK_MESSAGE(s8_mismatches(s8_out<Kernel>(p, n, k, u8_rows), ref) == 0,
                          s8_dims(m, n, k) << (u8_rows ? " u8 rows" : " float rows"));
        }
      }
    }
    SUBCASE("k = 0: the output is the epilogue of zero (the bias)") {
      const s8_problem p(3, 9, s8_nr + 2, 902);
      const auto bias = random_vector(p.N, 903);
      drt::gemm_epilogue ep;
      ep.bias = bias.data();
      const auto out = s8_out<Kernel>(p, p.N, 0, false, ep);
      std::size_t bad = 0;
      for (std::size_t i = 0; i < p.m; ++i)
        for (std::size_t j = 0; j < p.N; ++j) bad += out[i * p.N + j] != bias[j];
      CHECK(bad == 0);
    }
  }

  TEST_CASE_TEMPLATE("gemm_s8 epilogues: alpha, bias, relu, gelu, residual (also aliasing C), strides", Kernel,
                     DRT_TEST_S8_KERNELS) {
    if (!kernel_runs_here<Kernel>()) return;
    const std::size_t m = 2 * Kernel::mr + 3, n = 2 * s8_nr + 5, k = 45;
    const s8_problem p(m, k, n, 950);
    const auto bias = random_vector(n, 951);
    const std::size_t ldr = n + 2;
    const auto residual = random_vector(m * ldr, 952, -3.f, 3.f);
    drt::gemm_epilogue ep;
    bool alias = false;
    for (const auto& c : epilogue_cases(bias.data(), residual.data(), ldr))
      SUBCASE(c.name.c_str()) {
        ep = c.ep;
        alias = c.alias;
      }
    std::vector<float> ref(m * n);
    drt::gemm_epilogue ep_ref = ep;
    if (alias) {
      ep_ref.residual = residual.data();
      ep_ref.ldr = ldr;
    }
    drt::gemm_s8_ref(m, n, k, p.a8.data(), k, p.aq, p.wq.data(), k, p.b.scales(), ref.data(), n, ep_ref);
    for (bool u8_rows : {false, true})
      for (bool par : {true, false}) {
        // Strided A (padding that must not be read) and C (padding that must not be written).
        const std::size_t lda = k + 7, ldc = n + 5;
        std::vector<float> a(m * lda, 1e30f);
        std::vector<std::uint8_t> a8(m * lda, 255);
        for (std::size_t i = 0; i < m; ++i)
          for (std::size_t kk = 0; kk < k; ++kk) {
            a[i * lda + kk] = p.a[i * k + kk];
            a8[i * lda + kk] = p.a8[i * k + kk];
          }
        std::vector<float> c(m * ldc, s8_sentinel);
        drt::gemm_epilogue e = ep;
        if (alias) {
          for (std::size_t i = 0; i < m; ++i)
            for (std::size_t j = 0; j < n; ++j) c[i * ldc + j] = residual[i * ldr + j];
          e.residual = c.data();
          e.ldr = ldc;
        }
        s8_run<Kernel>(m, n, k, a.data(), u8_rows ? a8.data() : nullptr, lda, p.aq, p.b, c.data(), ldc, e, par);
        std::vector<float> out(m * n);
        std::size_t touched = 0;
        for (std::size_t i = 0; i < m; ++i) {
          for (std::size_t j = 0; j < n; ++j) out[i * n + j] = c[i * ldc + j];
          for (std::size_t j = n; j < ldc; ++j) touched += c[i * ldc + j] != s8_sentinel;
        }
        CHECK(touched == 0);
        check_close(out.data(), ref.data(), ref.size(), s8_dims(m, n, k), 1e-6, 1e-6);
      }
  }

  TEST_CASE_TEMPLATE("gemm_s8_requant / gemm_s8_u8_requant: the u8 output is quantize_u8 of the float output", Kernel,
                     DRT_TEST_S8_KERNELS) {
    if (!kernel_runs_here<Kernel>()) return;
    // Partial and full panels, a bottom edge, a reduction prefix; the output range is calibrated to
    // the float result so that some outputs saturate at 0 and 255.
    const std::size_t m = Kernel::mr + 5, K = 41, N = 2 * s8_nr + 7, k = 39, n = 2 * s8_nr + 6;
    const s8_problem p(m, K, N, 960);
    const auto bias = random_vector(N, 961);
    const std::size_t ldr = n + 1;
    const auto residual = random_vector(m * ldr, 962);
    for (int variant = 0; variant < 3; ++variant) {
      drt::gemm_epilogue ep;
      if (variant >= 1) {
        ep.bias = bias.data();
        ep.act = drt::activation::relu;
      }
      if (variant == 2) {
        ep.act = drt::activation::gelu;
        ep.residual = residual.data();
        ep.ldr = ldr;
      }
      std::vector<float> ref(m * n);
      drt::gemm_s8_ref(m, n, k, p.a8.data(), K, p.aq, p.wq.data(), K, p.b.scales(), ref.data(), n, ep);
      const auto [lo, hi] = std::minmax_element(ref.begin(), ref.end());
      const drt::quant_params cq = drt::quant_params_u8(0.8f * *lo, 0.8f * *hi);
      for (bool u8_rows : {false, true}) {
        const std::size_t ldc = n + 5;
        std::vector<std::uint8_t> c(m * ldc, 77);
        const drt::detail::lowp_dest dst{nullptr, c.data(), ldc, cq};
        if (u8_rows)
          drt::detail::gemm_s8_with<Kernel>(m, n, k, drt::detail::s8_rows_u8{p.a8.data(), K}, p.aq, p.b, dst, ep, true);
        else
          drt::detail::gemm_s8_with<Kernel>(m, n, k, drt::detail::s8_rows_float{p.a.data(), K, p.aq}, p.aq, p.b, dst,
                                            ep, true);
        std::size_t exact = 0, off_by_one = 0, worse = 0, touched = 0, saturated = 0;
        for (std::size_t i = 0; i < m; ++i) {
          for (std::size_t j = 0; j < n; ++j) {
            const int want = drt::quantize_u8(ref[i * n + j], cq), got = c[i * ldc + j];
            exact += got == want;
            off_by_one += std::abs(got - want) == 1;
            worse += std::abs(got - want) > 1;
            saturated += want == 0 || want == 255;
          }
          for (std::size_t j = n; j < ldc; ++j) touched += c[i * ldc + j] != 77;
        }
        INFO("variant " << variant << (u8_rows ? " u8 rows" : " float rows") << ": " << off_by_one << " off by one");
        CHECK(touched == 0);
        CHECK(worse == 0);
        CHECK(saturated > 0);
        // Without an epilogue the float output is bit-exact, so is its quantization; with one, a
        // last-bit difference (multiply-add contraction, vector erf) may cross a rounding boundary.
        if (variant == 0)
          CHECK(exact == m * n);
        else
          CHECK(off_by_one <= m * n / 100);
      }
    }
    std::vector<std::uint8_t> c(m * n);
    CHECK_THROWS_WITH_AS(
        drt::gemm_s8_requant(m, n, k, p.a.data(), K, p.aq, p.b, c.data(), n, drt::quant_params{-1.f, 0}),
        "gemm_s8_requant: output quantization {scale=-1, zero_point=0} needs a finite scale > 0 "
        "and a zero point in [0, 255]",
        drt::invalid_input);
    // The public functions run the native kernel: the same bytes as above for the plain case.
    const drt::quant_params cq{0.05f, 100};
    std::vector<std::uint8_t> c1(m * n), c2(m * n);
    drt::gemm_s8_requant(m, n, k, p.a.data(), K, p.aq, p.b, c1.data(), n, cq);
    drt::gemm_s8_u8_requant(m, n, k, p.a8.data(), K, p.aq, p.b, c2.data(), n, cq);
    std::vector<float> ref(m * n);
    drt::gemm_s8_ref(m, n, k, p.a8.data(), K, p.aq, p.wq.data(), K, p.b.scales(), ref.data(), n);
    std::size_t bad = 0;
    for (std::size_t i = 0; i < m * n; ++i) bad += (c1[i] != drt::quantize_u8(ref[i], cq)) + (c2[i] != c1[i]);
    CHECK(bad == 0);
  }

  TEST_CASE("gemm_s8 / gemm_s8_u8 / the requantizing forms run this process's kernel: AMX where granted") {
    const s8_problem p(70, 130, 45, 4242);
    const auto ref = p.ref(p.N, p.K);
    std::vector<float> c(p.m * p.N);
    drt::gemm_s8(p.m, p.N, p.K, p.a.data(), p.K, p.aq, p.b, c.data(), p.N);
    CHECK(s8_mismatches(c, ref) == 0);
    drt::gemm_s8_u8(p.m, p.N, p.K, p.a8.data(), p.K, p.aq, p.b, c.data(), p.N);
    CHECK(s8_mismatches(c, ref) == 0);
    const drt::quant_params cq{0.05f, 128};
    std::vector<std::uint8_t> c8(p.m * p.N), c8u(p.m * p.N), want(p.m * p.N);
    drt::gemm_s8_requant(p.m, p.N, p.K, p.a.data(), p.K, p.aq, p.b, c8.data(), p.N, cq);
    drt::gemm_s8_u8_requant(p.m, p.N, p.K, p.a8.data(), p.K, p.aq, p.b, c8u.data(), p.N, cq);
    for (std::size_t i = 0; i < want.size(); ++i) want[i] = drt::quantize_u8(ref[i], cq);
    CHECK(c8 == want);
    CHECK(c8u == want);
    const std::string kernel = drt::kernel_description(drt::precision::int8);
    CHECK_MESSAGE((kernel.find("AMX") != std::string::npos) == drt::amx_usable(), kernel);
  }

  TEST_CASE("gemm_s8 is within 2 % of the float32 product (Gaussian data, min/max activation range)") {
    // Expected: activation step (max - min) / 255 ~ 8 sigma / 255, weight step max|w_j| / 127 ~ 3.5
    // sigma / 127: about 1 % relative L2 together.
    for (std::size_t k : {std::size_t(64), std::size_t(257), std::size_t(1030)}) {
      const std::size_t m = 67, n = 2 * s8_nr + 9;
      const auto a = s8_gaussian(m * k, 970), w = s8_gaussian(n * k, 971, 0.05f);
      const auto b = drt::packed_matrix_s8::from_nk(w.data(), n, k, k);
      std::vector<float> wt(k * n), c(m * n), ref(m * n);
      for (std::size_t j = 0; j < n; ++j)
        for (std::size_t kk = 0; kk < k; ++kk) wt[kk * n + j] = w[j * k + kk];
      drt::gemm_s8(m, n, k, a.data(), k, s8_range_params(a), b, c.data(), n);
      drt::gemm_ref(m, n, k, a.data(), k, wt.data(), n, ref.data(), n);
      const auto e = compare(c.data(), ref.data(), ref.size());
      INFO("k=" << k << " rel_l2=" << e.rel_l2);
      CHECK(e.rel_l2 < 0.02);
      CHECK(e.rel_l2 > 1e-4);  // it is quantized
    }
  }

  TEST_CASE("gemm_s8 rejects k or n beyond the packed matrix and invalid quantization parameters") {
    const auto w = random_vector(5 * 7, 981), a = random_vector(2 * 8, 982);
    const auto b = drt::packed_matrix_s8::from_nk(w.data(), 5, 7, 7);
    const drt::quant_params q{0.01f, 128};
    std::vector<float> c(2 * 6, s8_sentinel);
    CHECK_THROWS_WITH_AS(drt::gemm_s8(2, 5, 8, a.data(), 8, q, b, c.data(), 6),
                         "gemm_s8: requested k=8, n=5 exceeds the packed matrix [k=7, n=5]", drt::shape_error);
    CHECK_THROWS_WITH_AS(drt::gemm_s8(2, 6, 7, a.data(), 8, q, b, c.data(), 6),
                         "gemm_s8: requested k=7, n=6 exceeds the packed matrix [k=7, n=5]", drt::shape_error);
    const std::vector<std::uint8_t> a8(2 * 8, 1);
    CHECK_THROWS_WITH_AS(drt::gemm_s8_u8(2, 5, 7, a8.data(), 8, drt::quant_params{0.01f, 256}, b, c.data(), 6),
                         "gemm_s8_u8: activation quantization {scale=0.01, zero_point=256} needs a finite scale > 0 "
                         "and a zero point in [0, 255]",
                         drt::invalid_input);
    CHECK_THROWS_AS(drt::gemm_s8(2, 5, 7, a.data(), 8, drt::quant_params{0.f, 0}, b, c.data(), 6), drt::invalid_input);
    for (float v : c) CHECK(v == s8_sentinel);  // validated before anything is written
    CHECK_NOTHROW(drt::gemm_s8(2, 5, 7, a.data(), 8, q, b, c.data(), 6));
    drt::gemm_s8(0, 5, 7, a.data(), 8, q, b, c.data(), 6);  // m = 0: nothing to do
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
    CHECK(drt::gemm_s8_native);
#else
    CHECK_FALSE(drt::gemm_s8_native);
#endif
  }
}
