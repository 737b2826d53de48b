// bf16 GEMM (layers/gemm_bf16.hpp): the float -> bf16 rounding (nearest even, denormals to zero,
// NaN kept, overflow to infinity; the vector conversion equals the scalar one bit for bit); the
// packed layout and its zero padding; the GEMM against gemm_ref (double accumulation) on
// bf16-rounded inputs, on odd shapes, across the MR / MC / NR / KC edges and on every (k, n) prefix
// of one packed matrix; the epilogues; the shape error. Both kernels run: the one the compiler
// targets (AVX-512 BF16) and the portable one.
// Tolerances: against the double reference on the same bf16 inputs, fp32 accumulation: relative L2
// <= 1e-5 and max abs <= 1e-4 * max|ref| (as the float32 GEMM's tests); against the float32
// product on Gaussian data, relative L2 < 1 % (8-bit mantissas of both operands).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include <drt/layers/gemm_bf16.hpp>
#include <drt/layers/linear.hpp>

#include "test_support.hpp"

using namespace drt_test;

namespace {

constexpr std::size_t bf_nr = drt::packed_matrix_bf16::nr;
#if DRT_HAVE_AMX
#define DRT_TEST_BF_KERNELS drt::detail::bf16_kernel, drt::detail::bf16_kernel_generic, drt::detail::bf16_kernel_amx
#else
#define DRT_TEST_BF_KERNELS drt::detail::bf16_kernel, drt::detail::bf16_kernel_generic
#endif
constexpr double bf_rel = 1e-5, bf_abs = 1e-4;
constexpr float bf_sentinel = 12345.f;

float bf_bits(std::uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

std::vector<float> bf_gaussian(std::size_t n, unsigned seed, float sigma = 1.f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

std::vector<float> bf_round(const std::vector<float>& x) {
  std::vector<float> r(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) r[i] = drt::from_bf16(drt::to_bf16(x[i]));
  return r;
}

std::string bf_dims(std::size_t m, std::size_t n, std::size_t k) {
  return "m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k);
}

template <class Kernel>
void bf_run(std::size_t m, std::size_t n, std::size_t k, const float* a, std::size_t lda,
            const drt::packed_matrix_bf16& b, float* c, std::size_t ldc, const drt::gemm_epilogue& ep = {},
            bool par = true) {
  drt::detail::gemm_bf16_with<Kernel>(m, n, k, a, lda, b, c, ldc, ep, par);
}

/// A problem: float A [m][K] and W [N][K] (uniform), W packed to bf16; the reference reads both
/// rounded to bf16, B as [K][N].
struct bf_problem {
  std::size_t m, K, N;
  std::vector<float> a, w;
  drt::packed_matrix_bf16 b;
  std::vector<float> ar, bt;  ///< bf16-rounded A [m][K]; B [K][N] from the packed weights

  bf_problem(std::size_t m_, std::size_t K_, std::size_t N_, unsigned seed)
      : m(m_),
        K(K_),
        N(N_),
        a(random_vector(m_ * K_, seed)),
        w(random_vector(N_ * K_, seed + 1)),
        b(drt::packed_matrix_bf16::from_nk(w.data(), N_, K_, K_)),
        ar(bf_round(a)),
        bt(K_ * N_) {
    for (std::size_t kk = 0; kk < K; ++kk)
      for (std::size_t j = 0; j < N; ++j) bt[kk * N + j] = drt::from_bf16(b.at(j, kk));
  }
  std::vector<float> ref(std::size_t n, std::size_t k, const drt::gemm_epilogue& ep = {}) const {
    std::vector<float> c(m * n);
    drt::gemm_ref(m, n, k, ar.data(), K, bt.data(), N, c.data(), n, ep);
    return c;
  }
};

/// C of a prefix (k, n) through Kernel into a strided C whose padding must stay untouched. The A
/// rows past k hold 1e30 (a kernel that read them would be far off).
template <class Kernel>
std::vector<float> bf_out(const bf_problem& p, std::size_t n, std::size_t k, const drt::gemm_epilogue& ep = {},
                          bool par = true) {
  const std::size_t lda = p.K + 3, ldc = n + 3;
  std::vector<float> a(p.m * lda, 1e30f);
  for (std::size_t i = 0; i < p.m; ++i)
    for (std::size_t kk = 0; kk < k; ++kk) a[i * lda + kk] = p.a[i * p.K + kk];
  std::vector<float> c(p.m * ldc, bf_sentinel), out(p.m * n);
  bf_run<Kernel>(p.m, n, k, a.data(), lda, p.b, c.data(), ldc, ep, par);
  std::size_t touched = 0;
  for (std::size_t i = 0; i < p.m; ++i) {
    for (std::size_t j = 0; j < n; ++j) out[i * n + j] = c[i * ldc + j];
    for (std::size_t j = n; j < ldc; ++j) touched += c[i * ldc + j] != bf_sentinel;
  }
  CHECK(touched == 0);
  return out;
}

std::vector<float> bf_cols(const std::vector<float>& full, std::size_t m, std::size_t N, std::size_t n) {
  std::vector<float> out(m * n);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) out[i * n + j] = full[i * N + j];
  return out;
}

}  // namespace

TEST_SUITE("layers") {
  TEST_CASE("to_bf16: round to nearest even, denormals to zero, NaN and infinity kept") {
    CHECK(drt::to_bf16(1.f) == 0x3f80);
    CHECK(drt::to_bf16(-2.f) == 0xc000);
    CHECK(drt::to_bf16(bf_bits(0x3f808000u)) == 0x3f80);  // tie, even below
    CHECK(drt::to_bf16(bf_bits(0x3f818000u)) == 0x3f82);  // tie, odd below: up
    CHECK(drt::to_bf16(bf_bits(0x3f808001u)) == 0x3f81);  // above the tie
    CHECK(drt::to_bf16(bf_bits(0x3f807fffu)) == 0x3f80);  // below the tie
    CHECK(drt::to_bf16(bf_bits(0x00000001u)) == 0x0000);  // denormal -> +0
    CHECK(drt::to_bf16(bf_bits(0x807fffffu)) == 0x8000);  // denormal -> -0
    CHECK(drt::to_bf16(std::numeric_limits<float>::infinity()) == 0x7f80);
    CHECK(drt::to_bf16(std::numeric_limits<float>::max()) == 0x7f80);  // rounds up to infinity
    CHECK(std::isnan(drt::from_bf16(drt::to_bf16(std::numeric_limits<float>::quiet_NaN()))));
    CHECK(std::isnan(drt::from_bf16(drt::to_bf16(bf_bits(0x7f800001u)))));  // signalling NaN stays NaN
    CHECK(drt::from_bf16(0x3f80) == 1.f);
    CHECK(drt::from_bf16(0xbfc0) == -1.5f);

    // The row helper (vcvtneps2bf16 where available) equals the scalar rounding bit for bit.
    std::vector<float> x = random_vector(1000, 11, -1e3f, 1e3f);
    for (std::size_t i = 0; i < x.size(); i += 4) {
      std::uint32_t u;
      std::memcpy(&u, &x[i], sizeof u);
      x[i] = bf_bits((u & 0xffff0000u) | (i % 8 ? 0x8000u : 0x7fffu));  // ties and near-ties
    }
    const std::uint32_t specials[] = {0x00000001u, 0x807fffffu, 0x00800000u, 0x7f7fffffu, 0xff800000u,
                                      0x7fc00000u, 0x7f800001u, 0x80000000u, 0x3f818000u};
    for (std::size_t i = 0; i < std::size(specials); ++i) x[3 + 17 * i] = bf_bits(specials[i]);
    for (std::size_t n : {std::size_t(1), std::size_t(15), std::size_t(16), std::size_t(17), std::size_t(1000)}) {
      std::vector<std::uint16_t> v(n);
      drt::to_bf16(x.data(), n, v.data());
      std::size_t bad = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const std::uint16_t s = drt::to_bf16(x[i]);
        const bool both_nan = std::isnan(drt::from_bf16(s)) && std::isnan(drt::from_bf16(v[i]));
        bad += v[i] != s && !both_nan;
      }
      CHECK_MESSAGE(bad == 0, "n=" << n);
    }
  }

  TEST_CASE("packed_matrix_bf16: from_nk and from_kn hold the rounded weights, zero padded") {
    const std::size_t n = 2 * bf_nr + 3, k = 2 * 7 + 1, ld = k + 2;
    const auto w = random_vector(n * ld, 21);
    const auto b = drt::packed_matrix_bf16::from_nk(w.data(), n, k, ld);
    std::vector<float> wt(k * (n + 1));
    for (std::size_t j = 0; j < n; ++j)
      for (std::size_t kk = 0; kk < k; ++kk) wt[kk * (n + 1) + j] = w[j * ld + kk];
    const auto bk = drt::packed_matrix_bf16::from_kn(wt.data(), k, n, n + 1);
    REQUIRE(b.n() == n);
    REQUIRE(b.k() == k);
    REQUIRE(bk.n() == n);
    REQUIRE(bk.k() == k);
    CHECK(b.panels() == 3);
    CHECK(b.groups() == 8);
    std::size_t bad = 0;
    for (std::size_t j = 0; j < n; ++j)
      for (std::size_t kk = 0; kk < k; ++kk) {
        bad += b.at(j, kk) != drt::to_bf16(w[j * ld + kk]);
        bad += bk.at(j, kk) != b.at(j, kk);
      }
    CHECK(bad == 0);
    std::size_t nonzero = 0;
    for (std::size_t p = 0; p < b.panels(); ++p)
      for (std::size_t g = 0; g < b.groups(); ++g)
        for (std::size_t j = 0; j < bf_nr; ++j)
          for (std::size_t e = 0; e < 2; ++e)
            if (p * bf_nr + j >= n || 2 * g + e >= k) nonzero += b.panel(p)[(g * bf_nr + j) * 2 + e] != 0;
    CHECK(nonzero == 0);
  }

  TEST_CASE_TEMPLATE("gemm_bf16 matches the double reference on bf16 inputs on odd shapes and tile edges", Kernel,
                     DRT_TEST_BF_KERNELS) {
    if (!kernel_runs_here<Kernel>()) return;
    struct dims {
      std::size_t m, k, n;
    };
    const std::vector<dims> shapes{{1, 1, 1},
                                   {7, 13, 17},
                                   {33, 100, 45},
                                   {130, 257, 33},
                                   {Kernel::mr - 1, 2, bf_nr - 1},
                                   {Kernel::mr, 3, bf_nr},
                                   {Kernel::mr + 1, 5, bf_nr + 1},
                                   {16 * Kernel::mr + 1, 2 * Kernel::kc + 7, 70},
                                   {2 * 16 * Kernel::mr - 1, Kernel::kc, 3 * bf_nr},
                                   {5, Kernel::kc + 1, 11 * bf_nr + 9},  // 12 panels: more than one group of panels
                                   // AMX's edges: 16-row A tiles, 32-element reduction steps
                                   {15, 32, 32},
                                   {16, 33, 33},
                                   {17, 31, 31},
                                   {48, 65, 64}};
    unsigned seed = 600;
    for (const dims d : shapes) {
      const bf_problem p(d.m, d.k, d.n, seed += 2);
      const auto ref = p.ref(d.n, d.k);
      for (bool par : {true, false}) {
        const auto out = bf_out<Kernel>(p, d.n, d.k, {}, par);
        check_close(out.data(), ref.data(), ref.size(), bf_dims(d.m, d.n, d.k), bf_rel, bf_abs);
      }
    }
  }

  TEST_CASE_TEMPLATE("gemm_bf16 on every (k, n) prefix of one packed matrix matches the reference on that prefix",
                     Kernel, DRT_TEST_BF_KERNELS) {
    if (!kernel_runs_here<Kernel>()) return;
    SUBCASE("every k in 0..K and every n in 1..N") {
      const std::size_t m = Kernel::mr + 1, K = 21, N = 2 * bf_nr + 5;
      const bf_problem p(m, K, N, 700);
      std::size_t runs = 0;
      for (std::size_t k = K + 1; k-- > 0;) {
        const auto full = p.ref(N, k);
        for (std::size_t n = 1; n <= N; ++n) {
          const auto ref = bf_cols(full, m, N, n);
          const auto out = bf_out<Kernel>(p, n, k);
          const auto e = compare(out.data(), ref.data(), ref.size());
          // k = 0: the reference is exactly zero, and so must the output be.
          if (!(e.rel_l2 <= bf_rel && e.max_abs <= bf_abs * e.max_ref))
            FAIL_CHECK(bf_dims(m, n, k) << ": rel_l2=" << e.rel_l2 << " max_abs=" << e.max_abs);
          ++runs;
        }
      }
      CHECK(runs == (K + 1) * N);
    }
    SUBCASE("sampled prefixes across the KC, MC and panel edges") {
      const std::size_t m = 16 * Kernel::mr + 5, K = Kernel::kc + 9, N = 3 * bf_nr + 7;
      const bf_problem p(m, K, N, 701);
      for (std::size_t k :
           {std::size_t(1), std::size_t(2), std::size_t(3), Kernel::kc - 1, Kernel::kc, Kernel::kc + 1, Kernel::kc + 2, K - 1, K}) {
        const auto full = p.ref(N, k);
        for (std::size_t n : {std::size_t(1), bf_nr - 1, bf_nr, bf_nr + 1, N}) {
          const auto ref = bf_cols(full, m, N, n);
          const auto out = bf_out<Kernel>(p, n, k);
          check_close(out.data(), ref.data(), ref.size(), bf_dims(m, n, k), bf_rel, bf_abs);
        }
      }
    }
  }

  TEST_CASE_TEMPLATE("gemm_bf16 epilogues: alpha, bias, relu, gelu, residual (also aliasing C)", Kernel,
                     DRT_TEST_BF_KERNELS) {
    if (!kernel_runs_here<Kernel>()) return;
    const std::size_t m = 2 * Kernel::mr + 3, n = 2 * bf_nr + 5, k = 45;
    const bf_problem p(m, k, n, 750);
    const auto bias = random_vector(n, 751);
    const std::size_t ldr = n + 2;
    const auto residual = random_vector(m * ldr, 752, -3.f, 3.f);
    drt::gemm_epilogue ep;
    bool alias = false;
    for (const auto& c : epilogue_cases(bias.data(), residual.data(), ldr))
      SUBCASE(c.name.c_str()) {
        ep = c.ep;
        alias = c.alias;
      }
    drt::gemm_epilogue ep_ref = ep;
    if (alias) {
      ep_ref.residual = residual.data();
      ep_ref.ldr = ldr;
    }
    const auto ref = p.ref(n, k, ep_ref);
    for (bool par : {true, false}) {
      const std::size_t ldc = n + 5;
      std::vector<float> c(m * ldc, bf_sentinel);
      drt::gemm_epilogue e = ep;
      if (alias) {
        for (std::size_t i = 0; i < m; ++i)
          for (std::size_t j = 0; j < n; ++j) c[i * ldc + j] = residual[i * ldr + j];
        e.residual = c.data();
        e.ldr = ldc;
      }
      bf_run<Kernel>(m, n, k, p.a.data(), k, p.b, c.data(), ldc, e, par);
      std::vector<float> out(m * n);
      std::size_t touched = 0;
      for (std::size_t i = 0; i < m; ++i) {
        for (std::size_t j = 0; j < n; ++j) out[i * n + j] = c[i * ldc + j];
        for (std::size_t j = n; j < ldc; ++j) touched += c[i * ldc + j] != bf_sentinel;
      }
      CHECK(touched == 0);
      check_close(out.data(), ref.data(), ref.size(), bf_dims(m, n, k), bf_rel, bf_abs);
    }
  }

  TEST_CASE("gemm_bf16 runs this process's kernel: AMX where granted, else the compiled-in one") {
    const bf_problem p(70, 130, 45, 4343);
    std::vector<float> c(p.m * p.N), want(p.m * p.N);
    drt::gemm_bf16(p.m, p.N, p.K, p.a.data(), p.K, p.b, c.data(), p.N);
#if DRT_HAVE_AMX
    if (drt::amx_usable())
      drt::detail::gemm_bf16_with<drt::detail::bf16_kernel_amx>(p.m, p.N, p.K, p.a.data(), p.K, p.b, want.data(), p.N,
                                                                {}, true);
    else
#endif
      drt::detail::gemm_bf16_with<drt::detail::bf16_kernel>(p.m, p.N, p.K, p.a.data(), p.K, p.b, want.data(), p.N, {},
                                                            true);
    CHECK(c == want);
    const std::string kernel = drt::kernel_description(drt::precision::bf16);
    CHECK_MESSAGE((kernel.find("AMX") != std::string::npos) == drt::amx_usable(), kernel);
  }

  TEST_CASE("gemm_bf16 is within 1 % of the float32 product (Gaussian data)") {
    for (std::size_t k : {std::size_t(64), std::size_t(257), std::size_t(1030)}) {
      const std::size_t m = 67, n = 2 * bf_nr + 9;
      const auto a = bf_gaussian(m * k, 770), w = bf_gaussian(n * k, 771, 0.05f);
      const auto b = drt::packed_matrix_bf16::from_nk(w.data(), n, k, k);
      std::vector<float> wt(k * n), c(m * n), ref(m * n);
      for (std::size_t j = 0; j < n; ++j)
        for (std::size_t kk = 0; kk < k; ++kk) wt[kk * n + j] = w[j * k + kk];
      drt::gemm_bf16(m, n, k, a.data(), k, b, c.data(), n);
      drt::gemm_ref(m, n, k, a.data(), k, wt.data(), n, ref.data(), n);
      const auto e = compare(c.data(), ref.data(), ref.size());
      INFO("k=" << k << " rel_l2=" << e.rel_l2);
      CHECK(e.rel_l2 < 0.01);
      CHECK(e.rel_l2 > 1e-5);  // it is rounded to bf16
    }
  }

  TEST_CASE("gemm_bf16 rejects k or n beyond the packed matrix") {
    const auto w = random_vector(5 * 7, 781), a = random_vector(2 * 8, 782);
    const auto b = drt::packed_matrix_bf16::from_nk(w.data(), 5, 7, 7);
    std::vector<float> c(2 * 6, bf_sentinel);
    CHECK_THROWS_WITH_AS(drt::gemm_bf16(2, 5, 8, a.data(), 8, b, c.data(), 6),
                         "gemm_bf16: requested k=8, n=5 exceeds the packed matrix [k=7, n=5]", drt::shape_error);
    CHECK_THROWS_WITH_AS(drt::gemm_bf16(2, 6, 7, a.data(), 8, b, c.data(), 6),
                         "gemm_bf16: requested k=7, n=6 exceeds the packed matrix [k=7, n=5]", drt::shape_error);
    for (float v : c) CHECK(v == bf_sentinel);
    CHECK_NOTHROW(drt::gemm_bf16(2, 5, 7, a.data(), 8, b, c.data(), 6));
#if defined(__AVX512BF16__) && defined(__AVX512BW__)
    CHECK(drt::gemm_bf16_native);
#else
    CHECK_FALSE(drt::gemm_bf16_native);
#endif
  }
}
