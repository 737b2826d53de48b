// Packed GEMM (layers/gemm.hpp) against gemm_ref: XNNPACK-style sweeps of m around gemm_mr and
// gemm_mc, n around gemm_nr and k around the SIMD width (below, at, above the tile, not a multiple);
// prefixes of the packed k and n (the dynamic paths); every epilogue, residual aliasing C, strides;
// the shape error.
// Tolerance: float FMA accumulation against the double reference, rel L2 <= 1e-5 and
// max abs <= 1e-4 * max|ref|. Padding of strided outputs must be left bit-for-bit untouched.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include <drt/layers/gemm.hpp>

#include "test_support.hpp"

using namespace drt_test;

namespace {

constexpr double gemm_rel = 1e-5, gemm_abs = 1e-4;
constexpr std::size_t simd_w = drt::detail::simd_width;
constexpr std::size_t tile_mr = drt::detail::gemm_mr, tile_nr = drt::detail::gemm_nr, tile_mc = drt::detail::gemm_mc;
constexpr float gemm_sentinel = 12345.f;
const float poison = std::numeric_limits<float>::quiet_NaN();

/// 1, t-1, t, t+1, 2t+3: below, at, above the tile, and a remainder (duplicates and 0 removed).
std::vector<std::size_t> around(std::initializer_list<std::size_t> tiles,
                                std::initializer_list<std::size_t> extra = {}) {
  std::set<std::size_t> s(extra);
  for (std::size_t t : tiles) s.insert({1, t - 1, t, t + 1, 2 * t + 3});
  s.erase(0);
  return {s.begin(), s.end()};
}

/// Packs B given as [k][n] (row stride ldb) through [n][k]: the transpose is built with a padded
/// row stride whose padding is NaN, so reading past k shows up in the result.
struct pack_nk {
  static drt::packed_matrix pack(const float* b, std::size_t k, std::size_t n, std::size_t ldb) {
    const std::size_t ld = k + 3;
    std::vector<float> w(n * ld, poison);
    for (std::size_t j = 0; j < n; ++j)
      for (std::size_t kk = 0; kk < k; ++kk) w[j * ld + kk] = b[kk * ldb + j];
    return drt::packed_matrix::from_nk(w.data(), n, k, ld);
  }
};
/// Packs B [k][n] directly, from a copy whose row padding is NaN.
struct pack_kn {
  static drt::packed_matrix pack(const float* b, std::size_t k, std::size_t n, std::size_t ldb) {
    const std::size_t ld = n + 5;
    std::vector<float> w(k * ld, poison);
    for (std::size_t kk = 0; kk < k; ++kk) std::memcpy(w.data() + kk * ld, b + kk * ldb, n * sizeof(float));
    return drt::packed_matrix::from_kn(w.data(), k, n, ld);
  }
};

std::string dims(std::size_t m, std::size_t n, std::size_t k) {
  return "m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k);
}

/// Copies the m x n block of a strided C and checks its padding columns still hold the gemm_sentinel.
std::vector<float> unpad(const std::vector<float>& c, std::size_t m, std::size_t n, std::size_t ldc) {
  std::vector<float> out(m * n);
  std::size_t touched = 0;
  for (std::size_t i = 0; i < m; ++i) {
    for (std::size_t j = 0; j < n; ++j) out[i * n + j] = c[i * ldc + j];
    for (std::size_t j = n; j < ldc; ++j) touched += c[i * ldc + j] != gemm_sentinel;
  }
  CHECK(touched == 0);
  return out;
}

struct gemm_case {
  std::size_t m, n, k;
  std::size_t packed_k = 0, packed_n = 0;  ///< packed sizes (0: = k, n); larger ones test prefixes
  std::size_t lda_pad = 0, ldc_pad = 0;
  bool parallel = true;
};

/// Runs gemm on a packed B and gemm_ref on the plain B; returns the fast result (m x n).
template <class Pack>
std::vector<float> check_gemm(const gemm_case& g, const drt::gemm_epilogue& ep, unsigned seed) {
  const std::size_t K = std::max(g.k, g.packed_k), N = std::max(g.n, g.packed_n);
  const std::size_t lda = g.k + g.lda_pad, ldc = g.n + g.ldc_pad;
  const auto b = random_vector(K * N, seed + 1);
  // A's padding columns are NaN: the kernel must read only the first k of each row.
  auto a = random_vector(g.m * lda, seed);
  for (std::size_t i = 0; i < g.m; ++i)
    for (std::size_t kk = g.k; kk < lda; ++kk) a[i * lda + kk] = poison;
  const auto packed = Pack::pack(b.data(), K, N, N);
  REQUIRE(packed.k() == K);
  REQUIRE(packed.n() == N);

  std::vector<float> c(g.m * ldc, gemm_sentinel), ref(g.m * g.n);
  drt::gemm(g.m, g.n, g.k, a.data(), lda, packed, c.data(), ldc, ep, g.parallel);
  drt::gemm_ref(g.m, g.n, g.k, a.data(), lda, b.data(), N, ref.data(), g.n, ep);
  auto out = unpad(c, g.m, g.n, ldc);
  check_close(out.data(), ref.data(), ref.size(), dims(g.m, g.n, g.k), gemm_rel, gemm_abs);
  return out;
}

}  // namespace

TEST_SUITE("layers") {
  TEST_CASE_TEMPLATE("gemm matches gemm_ref across the micro-tile and block edges", Pack, pack_nk, pack_kn) {
    const auto ms = around({tile_mr, tile_mc});
    const auto ns = around({tile_nr}, {4 * tile_nr + 1});
    const auto ks = around({simd_w}, {67});
    unsigned seed = 100;
    for (std::size_t m : ms)
      for (std::size_t n : ns)
        for (std::size_t k : ks) check_gemm<Pack>({m, n, k}, {}, seed++);
  }

  TEST_CASE_TEMPLATE("gemm on a prefix of the packed k and n equals the reference on the first k rows and n columns",
                     Pack, pack_nk, pack_kn) {
    // One packed copy of B [K, N] serves every (k, n) prefix: a dynamic path keeps fewer reduction
    // channels and computes fewer outputs without repacking.
    const std::size_t K = 4 * simd_w + 5, N = 3 * tile_nr + 5, m = 2 * tile_mr + 1;
    const auto ks = around({simd_w}, {K - 1, K});
    const auto ns = around({tile_nr}, {N - 1, N});
    std::vector<float> bias = random_vector(N, 7);
    drt::gemm_epilogue ep;
    ep.bias = bias.data();
    SUBCASE("k and n around the tile edges, up to the full K and N") {
      unsigned seed = 300;
      for (std::size_t k : ks)
        for (std::size_t n : ns) {
          gemm_case g{m, n, k, K, N};
          g.ldc_pad = 3;  // the columns in [n, ldc) must not be written
          check_gemm<Pack>(g, ep, seed++);
        }
    }
    SUBCASE("k = 0 keeps no reduction channel: the output is the epilogue of zero") {
      gemm_case g{m, tile_nr + 1, 0, K, N};
      g.ldc_pad = 2;
      const auto out = check_gemm<Pack>(g, ep, 999);
      for (std::size_t j = 0; j < g.n; ++j) CHECK(out[(m - 1) * g.n + j] == bias[j]);
    }
  }

  TEST_CASE("gemm epilogues: bias, relu, gelu, alpha, residual (also aliasing C), strides") {
    const std::size_t m = 2 * tile_mr + 1, n = 2 * tile_nr + 3, k = 2 * simd_w + 5;
    const auto bias = random_vector(n, 11);
    const std::size_t ldr = n + 2;
    const auto residual = random_vector(m * ldr, 12);
    drt::gemm_epilogue ep;
    SUBCASE("bias") { ep.bias = bias.data(); }
    SUBCASE("relu") { ep.act = drt::activation::relu; }
    SUBCASE("bias + gelu") {
      ep.bias = bias.data();
      ep.act = drt::activation::gelu;
    }
    SUBCASE("alpha") { ep.alpha = 0.37f; }
    SUBCASE("alpha + bias + relu + residual") {
      ep.alpha = -1.7f;
      ep.bias = bias.data();
      ep.act = drt::activation::relu;
      ep.residual = residual.data();
      ep.ldr = ldr;
    }
    SUBCASE("gelu + residual") {
      ep.act = drt::activation::gelu;
      ep.residual = residual.data();
      ep.ldr = ldr;
    }
    SUBCASE("bias + residual, then relu (residual_before_act: the end of a ResNet block)") {
      ep.bias = bias.data();
      ep.act = drt::activation::relu;
      ep.residual = residual.data();
      ep.ldr = ldr;
      ep.residual_before_act = true;
    }
    for (bool par : {true, false}) {
      gemm_case g{m, n, k};
      g.parallel = par;
      check_gemm<pack_nk>(g, ep, 20);
      g.lda_pad = 7;
      g.ldc_pad = 5;
      check_gemm<pack_kn>(g, ep, 21);
    }
  }

  TEST_CASE("gemm residual_before_act: relu(acc + bias + residual), never relu(acc + bias) + residual") {
    const std::size_t m = tile_mr + 3, n = 2 * tile_nr + 5, k = 9;
    const auto a = random_vector(m * k, 41), b = random_vector(k * n, 42), res = random_vector(m * n, 43);
    const auto packed = drt::packed_matrix::from_kn(b.data(), k, n, n);
    drt::gemm_epilogue ep;
    ep.act = drt::activation::relu;
    ep.residual = res.data();
    ep.ldr = n;
    std::vector<float> before(m * n), after(m * n), plain(m * n);
    drt::gemm(m, n, k, a.data(), k, packed, plain.data(), n);  // acc alone
    drt::gemm(m, n, k, a.data(), k, packed, after.data(), n, ep);
    ep.residual_before_act = true;
    drt::gemm(m, n, k, a.data(), k, packed, before.data(), n, ep);
    std::size_t wrong = 0, negative_after = 0;
    for (std::size_t i = 0; i < m * n; ++i) {
      wrong += std::abs(before[i] - std::max(plain[i] + res[i], 0.f)) > 1e-5f;
      negative_after += after[i] < 0.f;  // relu(acc) + residual goes below zero where residual < 0
    }
    CHECK(wrong == 0);
    CHECK(negative_after > 0);
  }

  TEST_CASE("gemm residual may alias C (read before written)") {
    // ref: the transformer blocks add the residual in place: out = out + proj(x).
    for (std::size_t m : {std::size_t(1), tile_mr + 1, tile_mc + 3})
      for (std::size_t n : {std::size_t(3), tile_nr, 2 * tile_nr + 1}) {
        const std::size_t k = 2 * simd_w + 1, ldc = n + 4;
        const auto a = random_vector(m * k, 31), b = random_vector(k * n, 32), bias = random_vector(n, 33);
        const auto packed = drt::packed_matrix::from_kn(b.data(), k, n, n);
        std::vector<float> c = random_vector(m * ldc, 34);  // holds the residual on entry
        const std::vector<float> res = c;
        drt::gemm_epilogue ep;
        ep.bias = bias.data();
        ep.act = drt::activation::gelu;
        ep.residual = c.data();
        ep.ldr = ldc;
        drt::gemm(m, n, k, a.data(), k, packed, c.data(), ldc, ep);
        drt::gemm_epilogue er = ep;
        er.residual = res.data();
        std::vector<float> ref(m * n);
        drt::gemm_ref(m, n, k, a.data(), k, b.data(), n, ref.data(), n, er);
        std::vector<float> out(m * n);
        std::size_t pad_changed = 0;
        for (std::size_t i = 0; i < m; ++i) {
          for (std::size_t j = 0; j < n; ++j) out[i * n + j] = c[i * ldc + j];
          for (std::size_t j = n; j < ldc; ++j) pad_changed += c[i * ldc + j] != res[i * ldc + j];
        }
        CHECK(pad_changed == 0);
        check_close(out.data(), ref.data(), ref.size(), "aliased " + dims(m, n, k), gemm_rel, gemm_abs);
      }
  }

  TEST_CASE("gemm is deterministic across thread counts and the serial path") {
    // Every element is one micro-kernel's full reduction whatever the task split: bitwise equal.
    const std::size_t m = 3 * tile_mc + 7, n = 5 * tile_nr + 3, k = 77;
    const auto a = random_vector(m * k, 41), b = random_vector(k * n, 42);
    const auto packed = drt::packed_matrix::from_kn(b.data(), k, n, n);
    std::vector<float> serial(m * n), par(m * n);
    drt::gemm(m, n, k, a.data(), k, packed, serial.data(), n, {}, false);
    const int saved = drt::max_threads();
    for (int threads : {1, 2, 3, 5}) {
      drt::set_threads(threads);
      std::fill(par.begin(), par.end(), 0.f);
      drt::gemm(m, n, k, a.data(), k, packed, par.data(), n);
      CHECK_MESSAGE(std::memcmp(serial.data(), par.data(), m * n * sizeof(float)) == 0, "threads=" << threads);
    }
    drt::set_threads(saved);
    std::vector<float> ref(m * n);
    drt::gemm_ref(m, n, k, a.data(), k, b.data(), n, ref.data(), n);
    check_close(serial.data(), ref.data(), ref.size(), "serial", gemm_rel, gemm_abs);
  }

  TEST_CASE("packed_matrix sizes, and repacking in place with a new shape") {
    const std::size_t k = 9, n = 2 * tile_nr + 1;
    const auto b = random_vector(k * n, 51);
    auto p = drt::packed_matrix::from_kn(b.data(), k, n, n);
    CHECK(p.k() == k);
    CHECK(p.n() == n);
    CHECK(p.panels() == 3);
    CHECK(p.bytes() == 3 * k * tile_nr * sizeof(float));
    // Panels are zero past n.
    for (std::size_t kk = 0; kk < k; ++kk)
      for (std::size_t j = n - 2 * tile_nr; j < tile_nr; ++j) CHECK(p.panel(2)[kk * tile_nr + j] == 0.f);

    // Attention repacks K and V per frame into the same object: smaller, then larger again.
    for (auto [k2, n2] : {std::pair<std::size_t, std::size_t>{5, 3}, {k + 4, n + tile_nr}}) {
      const auto w = random_vector(n2 * k2, 52);  // [n2][k2]
      p.assign_nk(w.data(), n2, k2, k2);
      CHECK(p.k() == k2);
      CHECK(p.n() == n2);
      std::vector<float> bt(k2 * n2);
      for (std::size_t j = 0; j < n2; ++j)
        for (std::size_t kk = 0; kk < k2; ++kk) bt[kk * n2 + j] = w[j * k2 + kk];
      const std::size_t m = tile_mr + 2;
      const auto a = random_vector(m * k2, 53);
      std::vector<float> c(m * n2), ref(m * n2);
      drt::gemm(m, n2, k2, a.data(), k2, p, c.data(), n2);
      drt::gemm_ref(m, n2, k2, a.data(), k2, bt.data(), n2, ref.data(), n2);
      check_close(c.data(), ref.data(), ref.size(), "repacked " + dims(m, n2, k2), gemm_rel, gemm_abs);
    }
  }

  TEST_CASE("gemm with m = 0 or n = 0 writes nothing") {
    const auto b = random_vector(4 * 6, 61), a = random_vector(3 * 4, 62);
    const auto p = drt::packed_matrix::from_kn(b.data(), 4, 6, 6);
    std::vector<float> c(3 * 6, gemm_sentinel);
    drt::gemm(0, 6, 4, a.data(), 4, p, c.data(), 6);
    drt::gemm(3, 0, 4, a.data(), 4, p, c.data(), 6);
    for (float v : c) CHECK(v == gemm_sentinel);
  }

  TEST_CASE("gemm rejects k or n beyond the packed matrix") {
    const auto b = random_vector(7 * 5, 71), a = random_vector(2 * 8, 72);
    const auto p = drt::packed_matrix::from_kn(b.data(), 7, 5, 5);
    std::vector<float> c(2 * 6, gemm_sentinel);
    CHECK_THROWS_WITH_AS(drt::gemm(2, 5, 8, a.data(), 8, p, c.data(), 6),
                         "gemm: requested k=8, n=5 exceeds the packed matrix [k=7, n=5]", drt::shape_error);
    CHECK_THROWS_WITH_AS(drt::gemm(2, 6, 7, a.data(), 8, p, c.data(), 6),
                         "gemm: requested k=7, n=6 exceeds the packed matrix [k=7, n=5]", drt::shape_error);
    CHECK_THROWS_AS(drt::gemm(2, 6, 7, a.data(), 8, p, c.data(), 6), drt::invalid_input);
    for (float v : c) CHECK(v == gemm_sentinel);  // validated before anything is written
    CHECK_NOTHROW(drt::gemm(2, 5, 7, a.data(), 8, p, c.data(), 6));
  }

  TEST_CASE("gemm_checkpoints: the output of every reduction prefix equals gemm's bit for bit") {
    const std::size_t m = 37, n = 45, k = 1100;  // odd rows, a partial panel, several KC blocks
    const auto av = drt_test::random_vector(m * k, 21);
    const auto bv = drt_test::random_vector(k * n, 22);
    const auto bias = drt_test::random_vector(n, 23);
    const auto b = drt::packed_matrix::from_kn(bv.data(), k, n, n);
    const std::vector<std::size_t> ks = {1, 16, 300, 512, 513, 1100};
    for (const auto act : {drt::activation::none, drt::activation::relu}) {
      drt::gemm_epilogue ep;
      ep.bias = bias.data();
      ep.act = act;
      std::vector<std::vector<float>> got(ks.size(), std::vector<float>(m * n, -1.f));
      drt::detail::aligned_vector<float> tiles(drt::detail::gemm_mc * drt::detail::gemm_nr);
      auto dst = [&](std::size_t c) { return got[c].data(); };
      if (act == drt::activation::relu)
        drt::gemm_checkpoints<drt::activation::relu>(m, av.data(), k, b, n, ks, ep, tiles.data(), dst, n);
      else
        drt::gemm_checkpoints<drt::activation::none>(m, av.data(), k, b, n, ks, ep, tiles.data(), dst, n);
      for (std::size_t c = 0; c < ks.size(); ++c) {
        std::vector<float> ref(m * n);
        drt::gemm(m, n, ks[c], av.data(), k, b, ref.data(), n, ep, false);
        INFO("k = " << ks[c]);
        CHECK(got[c] == ref);
      }
    }
    CHECK_THROWS_WITH_AS(drt::gemm_checkpoints<drt::activation::none>(
                             m, av.data(), k, b, n, {k + 1}, {}, nullptr, [](std::size_t) { return nullptr; }, n),
                         "gemm_checkpoints: requested k=1101, n=45 exceeds the packed matrix [k=1100, n=45]",
                         drt::shape_error);
  }
}  // TEST_SUITE("layers")
