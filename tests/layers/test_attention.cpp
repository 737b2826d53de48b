// multi_head_attention and efficient_self_attention (layers/attention.hpp) against the plain-loop
// references: (tokens, keys, heads, head_dim) = (37, 5, 2, 16), (64, 64, 1, 32), (200, 13, 5, 32),
// odd head dims below the SIMD width, several query-row blocks, strided q/kv/ctx; the whole
// efficient self-attention (sr = 1, 2, 4 on sizes not divisible by sr) against linear_ref +
// conv2d_ref + layer_norm_ref + multi_head_attention_ref + linear_ref + residual.
// Tolerance: rel L2 <= 1e-5, max abs <= 1e-4 * max|ref| (float vs double).
// The bf16 and int8 cores against a double reference of their numerics (bf16: q, k, v and the
// probabilities rounded to bf16; int8: K per key, V per column, Q per row block quantized, V weighed
// by u8 codes of the softmax numerators): rel L2 <= 2e-3 (a value near a rounding tie may round the
// other way); against the fp32 reference they differ (> 1e-4: they really ran in low precision) but
// stay close (rel L2 <= 1e-2 bf16, 3e-2 int8).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include <drt/layers/attention.hpp>
#include <drt/layers/conv2d.hpp>
#include <drt/layers/gemm_bf16.hpp>

#include "test_support.hpp"

using namespace drt_test;

namespace {
constexpr double att_rel = 1e-5, att_abs = 1e-4;

struct mha_case {
  std::size_t tokens, keys, heads, head_dim;
};

std::string describe(const mha_case& a) {
  return "T=" + std::to_string(a.tokens) + " S=" + std::to_string(a.keys) + " H=" + std::to_string(a.heads) +
         " d=" + std::to_string(a.head_dim);
}

/// Runs the fast core on q [T, ldq], k/v [S, ldkv] (the first H*d columns used), ctx [T, ldc];
/// compares with the reference on contiguous copies; ctx's padding columns must stay untouched.
void check_mha(const mha_case& a, unsigned seed, std::size_t q_pad = 0, std::size_t kv_pad = 0, std::size_t c_pad = 0,
               float scale = 1.f, drt::precision p = drt::precision::fp32) {
  const std::size_t c = a.heads * a.head_dim, ldq = c + q_pad, ldkv = c + kv_pad, ldc = c + c_pad;
  const auto qs = random_vector(a.tokens * ldq, seed, -scale, scale);
  const auto ks = random_vector(a.keys * ldkv, seed + 1, -scale, scale);
  const auto vs = random_vector(a.keys * ldkv, seed + 2);
  auto compact = [c](const std::vector<float>& src, std::size_t rows, std::size_t ld) {
    std::vector<float> out(rows * c);
    for (std::size_t i = 0; i < rows; ++i)
      for (std::size_t j = 0; j < c; ++j) out[i * c + j] = src[i * ld + j];
    return out;
  };
  const auto q = compact(qs, a.tokens, ldq), k = compact(ks, a.keys, ldkv), v = compact(vs, a.keys, ldkv);
  std::vector<float> ctx(a.tokens * ldc, 31.f), ref(a.tokens * c);
  drt::multi_head_attention(a.tokens, a.keys, a.heads, a.head_dim, qs.data(), ldq, ks.data(), vs.data(), ldkv,
                            ctx.data(), ldc, p);
  drt::multi_head_attention_ref(a.tokens, a.keys, a.heads, a.head_dim, q.data(), k.data(), v.data(), ref.data());
  std::size_t pad_changed = 0;
  for (std::size_t i = 0; i < a.tokens; ++i)
    for (std::size_t j = c; j < ldc; ++j) pad_changed += ctx[i * ldc + j] != 31.f;
  CHECK(pad_changed == 0);
  const auto got = compact(ctx, a.tokens, ldc);
  if (p == drt::precision::fp32) {
    check_close(got.data(), ref.data(), ref.size(), describe(a), att_rel, att_abs);
    return;
  }
  std::vector<float> ref16(a.tokens * c);
  drt::multi_head_attention_ref(a.tokens, a.keys, a.heads, a.head_dim, q.data(), k.data(), v.data(), ref16.data(), p);
  INFO(describe(a) << " in " << drt::to_string(p));
  const double own = compare(got.data(), ref16.data(), ref16.size()).rel_l2;
  const double to_fp32 = compare(got.data(), ref.data(), ref.size()).rel_l2;
  if (std::getenv("DRT_TEST_VERBOSE")) MESSAGE(describe(a) << ": rel L2 vs own numerics " << own << ", vs fp32 " << to_fp32);
  CHECK(own <= 2e-3);
  CHECK(to_fp32 > 1e-4);
  CHECK(to_fp32 <= (p == drt::precision::int8 ? 3e-2 : 1e-2));
}
}  // namespace

TEST_SUITE("layers") {
  TEST_CASE("multi_head_attention matches multi_head_attention_ref") {
    SUBCASE("the SegFormer-like shapes") {
      check_mha({37, 5, 2, 16}, 1);
      check_mha({64, 64, 1, 32}, 2);
      check_mha({200, 13, 5, 32}, 3);
    }
    SUBCASE("head dims and key counts off the SIMD width and the tiles") {
      const std::size_t nr = drt::detail::gemm_nr;
      check_mha({1, 1, 1, 1}, 10);
      check_mha({7, 3, 3, 5}, 11);
      check_mha({drt::detail::gemm_mr + 1, nr + 1, 2, nr - 1}, 12);
      check_mha({29, 2 * nr + 3, 4, 8}, 13);
    }
    SUBCASE("several blocks of query rows per head") {
      // Rows per block shrink as keys grow (a score block stays in cache): 300 keys give two blocks.
      check_mha({300, 300, 2, 8}, 20);
      check_mha({513, 40, 1, 16}, 21);
    }
    SUBCASE("strided q, kv and ctx (q, k, v as column slices of wider buffers)") {
      check_mha({37, 5, 2, 16}, 30, 64, 32, 7);
      check_mha({50, 17, 5, 7}, 31, 3, 70, 1);
    }
    SUBCASE("peaked scores (large q, k) stay finite and accurate") { check_mha({37, 29, 2, 16}, 40, 0, 0, 0, 4.f); }
    SUBCASE("bf16 and int8 products: odd shapes, strides, several row blocks") {
      for (const drt::precision p : {drt::precision::bf16, drt::precision::int8}) {
        check_mha({37, 5, 2, 16}, 50, 0, 0, 0, 1.f, p);
        check_mha({7, 3, 3, 5}, 51, 0, 0, 0, 1.f, p);
        check_mha({drt::detail::gemm_mr + 1, drt::detail::gemm_nr + 1, 2, drt::detail::gemm_nr - 1}, 52, 0, 0, 0, 1.f, p);
        check_mha({50, 17, 5, 7}, 53, 3, 70, 1, 1.f, p);
        check_mha({300, 300, 2, 8}, 54, 0, 0, 0, 1.f, p);
        check_mha({37, 29, 2, 16}, 55, 0, 0, 0, 4.f, p);
      }
    }
  }

  TEST_CASE("multi_head_attention in int8 refuses non-finite queries, keys and values by name") {
    const std::size_t T = 20, S = 9, H = 2, d = 8, c = H * d;
    for (const char* which : {"queries", "keys", "values"}) {
      INFO(which);
      auto q = random_vector(T * c, 60), k = random_vector(S * c, 61), v = random_vector(S * c, 62);
      std::vector<float> ctx(T * c);
      const std::string w(which);
      (w == "queries" ? q[5 * c + d + 3] : w == "keys" ? k[4 * c + d + 1] : v[2 * c + d]) = std::nanf("");
      CHECK_THROWS_WITH_AS(drt::multi_head_attention(T, S, H, d, q.data(), c, k.data(), v.data(), c, ctx.data(), c,
                                                     drt::precision::int8),
                           ("attention in int8: the " + w + " of head 1 hold non-finite values").c_str(),
                           drt::invalid_input);
    }
  }

  TEST_CASE("efficient_self_attention equals the composition of the references") {
    struct esa_case {
      std::size_t n, h, w, c, heads, sr;
    };
    const esa_case cases[] = {{2, 5, 7, 16, 2, 1}, {1, 13, 9, 32, 1, 2}, {2, 13, 9, 40, 5, 4}, {1, 16, 8, 20, 4, 8}, {2, 8, 6, 24, 3, 2}};
    for (const auto& e : cases) {
      const std::string what = "esa " + std::to_string(e.n) + "x" + std::to_string(e.h) + "x" + std::to_string(e.w) +
                               " C=" + std::to_string(e.c) + " heads=" + std::to_string(e.heads) +
                               " sr=" + std::to_string(e.sr);
      INFO(what);
      const std::size_t c = e.c, t = e.h * e.w;
      unsigned seed = static_cast<unsigned>(1000 + c + e.sr);
      const float ws = 1.f / std::sqrt(float(c));
      const auto qw = random_vector(c * c, seed++, -ws, ws), qb = random_vector(c, seed++, -0.1f, 0.1f);
      const auto kw = random_vector(c * c, seed++, -ws, ws), kb = random_vector(c, seed++, -0.1f, 0.1f);
      const auto vw = random_vector(c * c, seed++, -ws, ws), vb = random_vector(c, seed++, -0.1f, 0.1f);
      const auto ow = random_vector(c * c, seed++, -ws, ws), ob = random_vector(c, seed++, -0.1f, 0.1f);
      const float ss = 1.f / (std::sqrt(float(c)) * float(e.sr));
      const auto srw = random_vector(c * c * e.sr * e.sr, seed++, -ss, ss), srb = random_vector(c, seed++, -0.1f, 0.1f);
      const auto lng = random_vector(c, seed++, 0.5f, 1.5f), lnb = random_vector(c, seed++, -0.2f, 0.2f);
      drt::efficient_attention_weights wts{};
      wts.q_w = qw.data();
      wts.q_b = qb.data();
      wts.k_w = kw.data();
      wts.k_b = kb.data();
      wts.v_w = vw.data();
      wts.v_b = vb.data();
      wts.o_w = ow.data();
      wts.o_b = ob.data();
      if (e.sr > 1) {
        wts.sr_w = srw.data();
        wts.sr_b = srb.data();
        wts.sr_ln_g = lng.data();
        wts.sr_ln_b = lnb.data();
      }
      const float eps = 1e-6f;
      const drt::efficient_self_attention att(wts, c, e.heads, e.sr, eps);
      CHECK(att.channels() == c);
      CHECK(att.heads() == e.heads);
      CHECK(att.sr_ratio() == e.sr);
      const std::size_t s = att.reduced_tokens(e.h, e.w);
      CHECK(s == (e.sr > 1 ? (e.h / e.sr) * (e.w / e.sr) : t));

      const auto x = random_vector(e.n * t * c, seed++, -2.f, 2.f);
      const auto residual = random_vector(e.n * t * c, seed++);
      std::vector<float> out = residual;
      att.run(x.data(), e.n, e.h, e.w, out.data());

      std::vector<float> ref(e.n * t * c);
      for (std::size_t b = 0; b < e.n; ++b) {
        const float* xb = x.data() + b * t * c;
        std::vector<float> q(t * c), kv(s * c), k(s * c), v(s * c), ctx(t * c), o(t * c);
        drt::linear_ref(t, xb, qw.data(), qb.data(), c, c, q.data());
        const float* kv_in = xb;
        if (e.sr > 1) {
          drt::conv2d_shape sh;
          sh.in_channels = sh.out_channels = c;
          sh.kernel_h = sh.kernel_w = sh.stride_h = sh.stride_w = e.sr;
          std::vector<float> red(s * c);
          drt::conv2d_ref(xb, 1, e.h, e.w, srw.data(), srb.data(), sh, red.data());
          drt::layer_norm_ref(s, c, red.data(), lng.data(), lnb.data(), eps, kv.data());
          kv_in = kv.data();
        }
        drt::linear_ref(s, kv_in, kw.data(), kb.data(), c, c, k.data());
        drt::linear_ref(s, kv_in, vw.data(), vb.data(), c, c, v.data());
        drt::multi_head_attention_ref(t, s, e.heads, c / e.heads, q.data(), k.data(), v.data(), ctx.data());
        drt::linear_ref(t, ctx.data(), ow.data(), ob.data(), c, c, o.data());
        for (std::size_t i = 0; i < t * c; ++i) ref[b * t * c + i] = residual[b * t * c + i] + o[i];
      }
      check_close(out.data(), ref.data(), ref.size(), what, att_rel, att_abs);
      // int8: each image's input range handed in (as the LayerNorm before it does) gives the bits
      // of the projections' own range passes (sr 4 on 13x9 does not divide the grid: its spatial
      // reduction keeps its own pass; the query still takes the range). Where sr divides the grid
      // (sr 8 on 16x8, sr 2 on 8x6) the ranged spatial reduction quantizes its patches as it
      // gathers them, the other gathers floats: the same bits.
      {
        std::vector<std::pair<float, float>> ranges(e.n);
        for (std::size_t b = 0; b < e.n; ++b) ranges[b] = drt::detail::value_range(x.data() + b * t * c, t, c, c);
        std::vector<float> own = residual, given = residual;
        att.run(x.data(), e.n, e.h, e.w, own.data(), drt::precision::int8, drt::precision::int8);
        att.run(x.data(), e.n, e.h, e.w, given.data(), drt::precision::int8, drt::precision::int8, 0, nullptr,
                ranges.data());
        CHECK(own == given);
        ranges[0] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::quiet_NaN()};
        CHECK_THROWS_AS(att.run(x.data(), e.n, e.h, e.w, given.data(), drt::precision::int8, drt::precision::int8, 0,
                                nullptr, ranges.data()),
                        drt::invalid_input);
      }
      // The attention term is not negligible next to the residual: the check can fail.
      CHECK(compare(out.data(), residual.data(), residual.size()).rel_l2 > 1e-2);

      // A head prefix equals the full layer whose output projection ignores the other heads (their
      // columns zeroed): the kept heads' query, key and value channels are computed alike.
      const std::size_t d = c / e.heads;
      for (std::size_t kept = 1; kept < e.heads; ++kept) {
        INFO("heads kept " << kept);
        auto ow0 = ow;
        for (std::size_t o = 0; o < c; ++o)
          for (std::size_t i = kept * d; i < c; ++i) ow0[o * c + i] = 0.f;
        auto w0 = wts;
        w0.o_w = ow0.data();
        const drt::efficient_self_attention zeroed(w0, c, e.heads, e.sr, eps);
        std::vector<float> pre = residual, full = residual;
        att.run(x.data(), e.n, e.h, e.w, pre.data(), drt::precision::fp32, drt::precision::fp32, kept);
        zeroed.run(x.data(), e.n, e.h, e.w, full.data());
        check_close(pre.data(), full.data(), full.size(), what + " head prefix", 1e-5f, 1e-5f);
        CHECK(compare(pre.data(), out.data(), out.size()).rel_l2 > 1e-3);  // dropping heads changes the output
      }
    }
  }

}  // TEST_SUITE("layers")
