// Swin window attention (layers/window_attention.hpp) against plain references on odd shapes:
// partition/reverse (memcpy rows) vs the element-wise 6-D permutation and their round trip; the
// fused pad -> roll -> partition token map vs pad_ref + roll_ref + window_partition_ref; the
// shifted-window mask vs the region labelling of SwinLayer.get_attn_mask; the relative position
// index on a 2x2 window; the whole attention (qkv GEMM, bias + mask, softmax, scatter, output
// projection + residual) vs window_attention_ref on padded odd grids, with and without shift, with
// and without qkv bias, head dims below the SIMD width, and the clamp policy.
// Tolerance: rel L2 <= 1e-5, max abs <= 1e-4 * max|ref| (float vs double).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include <drt/layers/window_attention.hpp>

#include "test_support.hpp"

using namespace drt_test;

namespace {
constexpr double wa_rel = 1e-5, wa_abs = 1e-4;

struct attn_case {
  std::size_t n, h, w, c, heads, window, shift;
  bool qkv_bias;
  drt::window_policy policy;
};

std::string describe(const attn_case& a) {
  return "N=" + std::to_string(a.n) + " " + std::to_string(a.h) + "x" + std::to_string(a.w) +
         " C=" + std::to_string(a.c) + " heads=" + std::to_string(a.heads) + " window=" + std::to_string(a.window) +
         " shift=" + std::to_string(a.shift) + (a.qkv_bias ? " bias" : " no-bias") +
         (a.policy == drt::window_policy::clamp ? " clamp" : " always_partition");
}

void check_attention(const attn_case& a, unsigned seed) {
  const std::size_t C = a.c, table = (2 * a.window - 1) * (2 * a.window - 1);
  const auto qw = random_vector(C * C, seed), kw = random_vector(C * C, seed + 1), vw = random_vector(C * C, seed + 2);
  const auto qb = random_vector(C, seed + 3), kb = random_vector(C, seed + 4), vb = random_vector(C, seed + 5);
  const auto ow = random_vector(C * C, seed + 6, -0.5f, 0.5f), ob = random_vector(C, seed + 7);
  const auto tab = random_vector(table * a.heads, seed + 8, -2.f, 2.f);
  drt::window_attention_weights w{};
  w.q_w = qw.data();
  w.k_w = kw.data();
  w.v_w = vw.data();
  if (a.qkv_bias) {
    w.q_b = qb.data();
    w.k_b = kb.data();
    w.v_b = vb.data();
  }
  w.rel_table = tab.data();
  w.o_w = ow.data();
  w.o_b = ob.data();
  const std::size_t m = a.n * a.h * a.w;
  const auto normed = random_vector(m * C, seed + 9, -0.6f, 0.6f);
  const auto residual = random_vector(m * C, seed + 10);
  const auto g = drt::make_window_geometry(a.h, a.w, a.window, a.shift, a.policy);
  std::vector<float> got(residual), ref(residual);
  const drt::window_attention att(w, C, a.heads, a.window);
  att.run(normed.data(), a.n, g, got.data());
  drt::window_attention_ref(normed.data(), a.n, C, a.heads, a.window, w, g, ref.data());
  check_close(got.data(), ref.data(), ref.size(), describe(a), wa_rel, wa_abs);
  // A head prefix equals the reference whose output projection ignores the other heads (their
  // columns zeroed): the fused projection's head-grouped rows keep each head's q, k and v together.
  const std::size_t d = C / a.heads;
  for (std::size_t kept = 1; kept < a.heads; ++kept) {
    CAPTURE(kept);
    auto ow0 = ow;
    for (std::size_t o = 0; o < C; ++o)
      for (std::size_t i = kept * d; i < C; ++i) ow0[o * C + i] = 0.f;
    auto w0 = w;
    w0.o_w = ow0.data();
    std::vector<float> pre(residual), zeroed(residual);
    att.run(normed.data(), a.n, g, pre.data(), drt::precision::fp32, kept);
    drt::window_attention_ref(normed.data(), a.n, C, a.heads, a.window, w0, g, zeroed.data());
    check_close(pre.data(), zeroed.data(), zeroed.size(), describe(a) + " head prefix", wa_rel, wa_abs);
    CHECK(compare(pre.data(), got.data(), got.size()).rel_l2 > 1e-3);  // dropping heads changes the output
  }
}
}  // namespace

TEST_SUITE("layers") {
  TEST_CASE("window_partition / window_reverse: vs the 6-D permutation, and the round trip") {
    struct pc {
      std::size_t n, h, w, c, ws;
    };
    for (const pc& p : {pc{1, 7, 7, 3, 7}, pc{2, 10, 15, 5, 5}, pc{1, 12, 8, 17, 4}, pc{3, 3, 6, 1, 3}}) {
      CAPTURE(p.h);
      CAPTURE(p.w);
      CAPTURE(p.ws);
      const auto x = random_vector(p.n * p.h * p.w * p.c, 5);
      std::vector<float> win(x.size()), win_ref(x.size()), back(x.size()), back_ref(x.size());
      drt::window_partition(x.data(), p.n, p.h, p.w, p.c, p.ws, win.data());
      drt::window_partition_ref(x.data(), p.n, p.h, p.w, p.c, p.ws, win_ref.data());
      CHECK(win == win_ref);
      drt::window_reverse(win.data(), p.n, p.h, p.w, p.c, p.ws, back.data());
      drt::window_reverse_ref(win_ref.data(), p.n, p.h, p.w, p.c, p.ws, back_ref.data());
      CHECK(back == x);
      CHECK(back_ref == x);
    }
    // token (ty, tx) of window (wy, wx) is pixel (wy*ws + ty, wx*ws + tx)
    std::vector<float> x(6 * 4), win(24);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = float(i);
    drt::window_partition(x.data(), 1, 6, 4, 1, 2, win.data());
    CHECK(win[0 * 4 + 2] == 4.f);   // window (0,0) token (1,0) = pixel (1,0)
    CHECK(win[1 * 4 + 1] == 3.f);   // window (0,1) token (0,1) = pixel (0,3)
    CHECK(win[5 * 4 + 3] == 23.f);  // window (2,1) token (1,1) = pixel (5,3)
    std::vector<float> y(24);
    CHECK_THROWS_WITH_AS(drt::window_partition(x.data(), 1, 6, 4, 1, 3, y.data()),
                         "window_partition: grid 6x4 is not a multiple of the window 3", drt::shape_error);
  }

  TEST_CASE("window_token_map: pad -> roll by -shift -> partition in one index table") {
    struct mc {
      std::size_t h, w, ws, shift;
    };
    for (const mc& p :
         {mc{9, 11, 4, 2}, mc{16, 16, 7, 3}, mc{2, 3, 7, 3}, mc{7, 7, 7, 3}, mc{13, 5, 3, 0}, mc{6, 10, 5, 1}}) {
      CAPTURE(p.h);
      CAPTURE(p.w);
      CAPTURE(p.ws);
      CAPTURE(p.shift);
      const auto g = drt::make_window_geometry(p.h, p.w, p.ws, p.shift);
      const std::size_t hp = g.padded_h(), wp = g.padded_w();
      std::vector<float> ids(p.h * p.w), padded(hp * wp), rolled(hp * wp), win(hp * wp);
      for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = float(i + 1);  // 0 marks padding
      drt::pad_ref(ids.data(), 1, p.h, p.w, 1, hp - p.h, wp - p.w, padded.data());
      drt::roll_ref(padded.data(), 1, hp, wp, 1, -long(p.shift), -long(p.shift), rolled.data());
      drt::window_partition_ref(rolled.data(), 1, hp, wp, 1, p.ws, win.data());
      const auto map = drt::window_token_map(g);
      REQUIRE(map.size() == win.size());
      std::size_t wrong = 0;
      for (std::size_t t = 0; t < map.size(); ++t) wrong += float(map[t] + 1) != win[t];
      CHECK(wrong == 0);
    }
  }

  TEST_CASE("shifted_window_mask: vs the region labelling of SwinLayer.get_attn_mask") {
    struct mc {
      std::size_t h, w, ws, shift;
    };
    for (const mc& p :
         {mc{14, 21, 7, 3}, mc{7, 7, 7, 3}, mc{12, 8, 4, 2}, mc{9, 15, 3, 1}, mc{10, 10, 5, 0}, mc{2, 2, 7, 3}}) {
      CAPTURE(p.h);
      CAPTURE(p.w);
      CAPTURE(p.ws);
      CAPTURE(p.shift);
      const auto g = drt::make_window_geometry(p.h, p.w, p.ws, p.shift);
      const auto mask = drt::shifted_window_mask(g);
      const auto ref = drt::shifted_window_mask_ref(g.padded_h(), g.padded_w(), p.ws, p.shift);
      CHECK(mask == ref);
    }
    // 7x7 with shift 3 is one window with regions {0..3, 4..6} per axis: tokens (0,0) and (0,4) are masked
    const auto g = drt::make_window_geometry(7, 7, 7, 3);
    const auto mask = drt::shifted_window_mask(g);
    CHECK(mask[0 * 49 + 3] == 0.f);
    CHECK(mask[0 * 49 + 4] == -100.f);
    CHECK(mask[(4 * 7 + 4) * 49 + 6 * 7 + 6] == 0.f);
  }

  TEST_CASE("relative_position_index: 2x2 window") {
    const std::vector<std::int64_t> expect{4, 3, 1, 0, 5, 4, 2, 1, 7, 6, 4, 3, 8, 7, 5, 4};
    CHECK(drt::relative_position_index(2) == expect);
    const auto idx7 = drt::relative_position_index(7);
    CHECK(idx7[0] == 84);         // (6, 6) * 13: the centre of the 13x13 table
    CHECK(idx7[48] == 0);         // token 0 - token 48 = (-6, -6)
    CHECK(idx7[48 * 49] == 168);  // (6, 6) offset: the last table row
  }

  TEST_CASE("make_window_geometry: always_partition keeps the window, clamp follows set_shift_and_window_size") {
    const auto a = drt::make_window_geometry(2, 3, 7, 3);
    CHECK(a.window == 7);
    CHECK(a.shift == 3);
    CHECK(a.padded_h() == 7);
    CHECK(a.windows() == 1);
    const auto c = drt::make_window_geometry(2, 3, 7, 3, drt::window_policy::clamp);
    CHECK(c.window == 2);
    CHECK(c.shift == 0);
    CHECK(c.windows() == 2);
    const auto e = drt::make_window_geometry(7, 9, 7, 3, drt::window_policy::clamp);
    CHECK(e.window == 7);
    CHECK(e.shift == 0);
    const auto f = drt::make_window_geometry(8, 9, 7, 3, drt::window_policy::clamp);
    CHECK(f.shift == 3);
    CHECK_THROWS_WITH_AS(drt::make_window_geometry(4, 4, 3, 3),
                         "window attention: grid 4x4 with window 3 and shift 3 is invalid (needs a non-empty grid and "
                         "shift < window)",
                         drt::invalid_input);
  }

  TEST_CASE("window_attention: vs the step-by-step reference on padded odd grids") {
    using P = drt::window_policy;
    const attn_case cases[] = {
        {1, 9, 11, 20, 2, 4, 0, true, P::always_partition},    // padding to 12x12, d = 10
        {2, 9, 11, 20, 2, 4, 2, true, P::always_partition},    // shifted, batch 2
        {1, 14, 14, 12, 3, 7, 3, false, P::always_partition},  // no qkv bias, d = 4
        {1, 16, 13, 24, 3, 7, 3, true, P::always_partition},   // the 64x64 stage-0 shape (16x16 -> 21x21), odd width
        {1, 3, 2, 16, 2, 7, 3, true, P::always_partition},     // grid smaller than the window, still shifted
        {1, 5, 7, 9, 1, 5, 2, true, P::clamp},                 // clamp to the same window: shift dropped
        {1, 3, 6, 9, 3, 5, 2, true, P::clamp},                 // clamp to a 3x3 window: centred bias sub-table
        {1, 10, 6, 40, 5, 3, 1, true, P::always_partition},    // d = 8, 40 windows
    };
    unsigned seed = 100;
    for (const auto& a : cases) {
      CAPTURE(describe(a));
      check_attention(a, seed);
      seed += 20;
    }
  }
}
