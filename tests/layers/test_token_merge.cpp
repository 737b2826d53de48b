// token_merge (layers/token_merge.hpp) and the merged forms of the SegFormer block's layers:
// the plan's rules (kept count, destinations, best matches first, determinism), merge = mean and
// unmerge, the merged Mix-FFN against a plain-loop composition of the references, and the merged
// attention, which is exact when every 2 x 2 window holds one token value.
// Tolerance: rel L2 <= 1e-5, max abs <= 1e-4 * max|ref| (float vs double), as the layers' own tests.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <drt/core/parallel.hpp>
#include <drt/layers/attention.hpp>
#include <drt/layers/conv2d.hpp>
#include <drt/layers/mix_ffn.hpp>
#include <drt/layers/token_merge.hpp>

#include "test_support.hpp"

using namespace drt_test;

namespace {
double cosine(const float* a, const float* b, std::size_t c) {
  double ab = 0, aa = 0, bb = 0;
  for (std::size_t k = 0; k < c; ++k) ab += double(a[k]) * b[k], aa += double(a[k]) * a[k], bb += double(b[k]) * b[k];
  return aa > 0 && bb > 0 ? ab / std::sqrt(aa * bb) : 0.0;
}
bool is_destination(std::size_t i, std::size_t w) { return (i / w) % 2 == 0 && (i % w) % 2 == 0; }
}  // namespace

TEST_SUITE("layers") {
  TEST_CASE("token_merge: keeping every token is the identity") {
    const std::size_t h = 5, w = 7, c = 6;
    const auto x = random_vector(h * w * c, 11);
    const auto m = drt::token_merge::plan(x.data(), c, h, w, c, h * w);
    REQUIRE(m.kept() == h * w);
    for (std::size_t i = 0; i < h * w; ++i) CHECK(m.representative(i) == i);
    std::vector<float> y(h * w * c), back(h * w * c);
    m.merge(x.data(), c, c, y.data(), c);
    m.unmerge(y.data(), c, c, back.data(), c);
    CHECK(back == x);
  }

  TEST_CASE("token_merge: at least one token per 2x2 window stays; the kept count is exact") {
    for (auto [h, w] : {std::pair<std::size_t, std::size_t>{4, 6}, {5, 7}, {1, 9}, {3, 3}}) {
      const std::size_t c = 5, n = h * w, floor = ((h + 1) / 2) * ((w + 1) / 2);
      const auto x = random_vector(n * c, unsigned(h * 10 + w));
      CAPTURE(h);
      CAPTURE(w);
      CHECK(drt::token_merge::kept_tokens(h, w, 1) == floor);
      CHECK(drt::token_merge::kept_tokens(h, w, n + 5) == n);
      for (std::size_t keep : {std::size_t(1), floor, (floor + n) / 2, n - 1}) {
        if (keep > n) continue;
        const auto m = drt::token_merge::plan(x.data(), c, h, w, c, keep);
        CHECK(m.kept() == drt::token_merge::kept_tokens(h, w, keep));
        // every merged token holds exactly one destination or one unmerged source, members ascending
        std::size_t total = 0;
        for (std::size_t k = 0; k < m.kept(); ++k) {
          total += m.size(k);
          std::size_t dsts = 0;
          for (std::size_t t = 0; t < m.size(k); ++t) {
            dsts += is_destination(m.members(k)[t], w);
            CHECK(m.representative(m.members(k)[t]) == k);
            if (t) CHECK(m.members(k)[t] > m.members(k)[t - 1]);
          }
          CHECK((dsts == 1 || m.size(k) == 1));
        }
        CHECK(total == n);
      }
    }
  }

  TEST_CASE("token_merge: sources merge into their most similar nearby destination, best matches first") {
    const std::size_t h = 8, w = 10, c = 4, n = h * w;
    const auto x = random_vector(n * c, 21, -1.f, 1.f);
    const std::size_t keep = n * 6 / 10;
    const auto m = drt::token_merge::plan(x.data(), c, h, w, c, keep);
    REQUIRE(m.kept() == keep);
    // each source's best cosine similarity among the destinations of the 3x3 windows around its own
    auto best = [&](std::size_t i, std::size_t* arg) {
      const std::size_t wy = i / w / 2, wx = i % w / 2;
      double top = -2;
      for (std::size_t ay = wy ? wy - 1 : 0; ay <= std::min((h + 1) / 2 - 1, wy + 1); ++ay)
        for (std::size_t ax = wx ? wx - 1 : 0; ax <= std::min((w + 1) / 2 - 1, wx + 1); ++ax) {
          const std::size_t d = 2 * ay * w + 2 * ax;
          const double s = cosine(x.data() + i * c, x.data() + d * c, c);
          if (s > top) top = s, *arg = d;
        }
      return top;
    };
    double worst_merged = 2, best_kept = -2;
    std::size_t merged = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (is_destination(i, w)) continue;
      std::size_t d = 0;
      const double s = best(i, &d);
      const bool gone = m.size(m.representative(i)) > 1 || m.members(m.representative(i))[0] != i;
      if (gone) {
        ++merged;
        CHECK(m.representative(i) == m.representative(d));  // into its best destination
        worst_merged = std::min(worst_merged, s);
      } else {
        best_kept = std::max(best_kept, s);
      }
    }
    CHECK(merged == n - keep);
    CHECK(worst_merged >= best_kept - 1e-6);
  }

  TEST_CASE("token_merge: merge averages members, unmerge_add adds each token's merged row") {
    const std::size_t h = 6, w = 6, c = 3, n = h * w;
    const auto x = random_vector(n * c, 31);
    const auto m = drt::token_merge::plan(x.data(), c, h, w, c, 12);
    std::vector<float> y(m.kept() * c);
    m.merge(x.data(), c, c, y.data(), c);
    for (std::size_t k = 0; k < m.kept(); ++k)
      for (std::size_t j = 0; j < c; ++j) {
        double s = 0;
        for (std::size_t t = 0; t < m.size(k); ++t) s += x[m.members(k)[t] * c + j];
        CHECK(y[k * c + j] == doctest::Approx(s / double(m.size(k))).epsilon(1e-6));
      }
    std::vector<float> out(n * c, 1.f);
    m.unmerge_add(y.data(), c, c, out.data(), c);
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < c; ++j) CHECK(out[i * c + j] == 1.f + y[m.representative(i) * c + j]);
  }

  TEST_CASE("token_merge: non-finite tokens are planned without harm (they merge locally)") {
    const std::size_t h = 6, w = 6, c = 4, n = h * w;
    auto x = random_vector(n * c, 41);
    for (std::size_t i = 0; i < n * c; i += 3) x[i] = std::numeric_limits<float>::quiet_NaN();
    x[5] = std::numeric_limits<float>::infinity();
    const auto m = drt::token_merge::plan(x.data(), c, h, w, c, 14);
    CHECK(m.kept() == 14);
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t rep = m.members(m.representative(i))[0];  // the merged token's first member
      CHECK(std::max(rep / w, i / w) - std::min(rep / w, i / w) <= 3);  // within the 3x3 windows
    }
  }

  TEST_CASE("token_merge: an empty grid is refused by name") {
    std::vector<float> x(4);
    CHECK_THROWS_WITH_AS(drt::token_merge::plan(x.data(), 1, 0, 4, 1, 1),
                         "token merge: an empty grid (0x4 tokens of 1 channels)", drt::invalid_input);
  }

  TEST_CASE("mix_ffn::run_merged equals merge, dense1, unmerge, depthwise conv + GELU, merge, dense2, unmerge") {
    struct ffn_case {
      std::size_t h, w, c, hidden, kept, keep;
    };
    for (const auto& e : {ffn_case{6, 8, 16, 64, 0, 20}, ffn_case{5, 7, 17, 68, 30, 12}, ffn_case{7, 9, 8, 32, 0, 63}}) {
      unsigned seed = static_cast<unsigned>(50 + e.c + e.keep);
      const std::size_t c = e.c, full = e.hidden, r = e.kept ? e.kept : full, t = e.h * e.w;
      const float s1 = 1.f / std::sqrt(float(c)), s2 = 1.f / std::sqrt(float(full));
      const auto d1w = random_vector(full * c, seed++, -s1, s1), d1b = random_vector(full, seed++, -0.2f, 0.2f);
      const auto dww = random_vector(full * 9, seed++, -0.4f, 0.4f), dwb = random_vector(full, seed++, -0.2f, 0.2f);
      const auto d2w = random_vector(c * full, seed++, -s2, s2), d2b = random_vector(c, seed++, -0.2f, 0.2f);
      drt::mix_ffn_weights wts{d1w.data(), d1b.data(), dww.data(), dwb.data(), d2w.data(), d2b.data()};
      const drt::mix_ffn ffn(wts, c, full, drt::activation::gelu);
      const auto x = random_vector(t * c, seed++, -2.f, 2.f), residual = random_vector(t * c, seed++);
      const auto m = drt::token_merge::plan(x.data(), c, e.h, e.w, c, e.keep);
      std::vector<float> out = residual;
      ffn.run_merged(x.data(), m, e.h, e.w, out.data(), e.kept);

      // the reference: the same steps with plain loops (double sums)
      const std::size_t M = m.kept();
      std::vector<float> xm(M * c, 0.f), a(M * r), grid(t * r), conv(t * r), hm(M * r, 0.f), y(M * c), ref(t * c);
      for (std::size_t i = 0; i < t; ++i)
        for (std::size_t j = 0; j < c; ++j) xm[m.representative(i) * c + j] += x[i * c + j] / float(m.size(m.representative(i)));
      std::vector<float> d1k(d1w.begin(), d1w.begin() + static_cast<std::ptrdiff_t>(r * c)), d2k(c * r), dwk(r * 9);
      for (std::size_t o = 0; o < c; ++o)
        for (std::size_t i = 0; i < r; ++i) d2k[o * r + i] = d2w[o * full + i];
      std::copy_n(dww.begin(), r * 9, dwk.begin());
      drt::linear_ref(M, xm.data(), d1k.data(), d1b.data(), r, c, a.data());
      for (std::size_t i = 0; i < t; ++i) std::copy_n(a.data() + m.representative(i) * r, r, grid.data() + i * r);
      drt::conv2d_shape dw;
      dw.in_channels = dw.out_channels = dw.groups = r;
      dw.kernel_h = dw.kernel_w = 3;
      dw.pad_h = dw.pad_w = 1;
      drt::conv2d_ref(grid.data(), 1, e.h, e.w, dwk.data(), dwb.data(), dw, conv.data());
      for (std::size_t i = 0; i < t; ++i)
        for (std::size_t j = 0; j < r; ++j)
          hm[m.representative(i) * r + j] += drt::gelu_ref(conv[i * r + j]) / float(m.size(m.representative(i)));
      drt::linear_ref(M, hm.data(), d2k.data(), d2b.data(), c, r, y.data());
      for (std::size_t i = 0; i < t; ++i)
        for (std::size_t j = 0; j < c; ++j) ref[i * c + j] = residual[i * c + j] + y[m.representative(i) * c + j];
      check_close(out.data(), ref.data(), ref.size(),
                  "merged mix_ffn " + std::to_string(e.h) + "x" + std::to_string(e.w) + " keep " + std::to_string(e.keep),
                  1e-5, 1e-4);
    }
  }

  TEST_CASE("efficient_self_attention with merged queries: exact where each 2x2 window holds one token") {
    for (std::size_t sr : {std::size_t(1), std::size_t(2)}) {
      const std::size_t h = 6, w = 8, c = 16, heads = 2, t = h * w, n = 2;
      unsigned seed = static_cast<unsigned>(70 + sr);
      const float ws = 1.f / std::sqrt(float(c));
      std::vector<std::vector<float>> p;
      for (int i = 0; i < 8; ++i) p.push_back(random_vector(i % 2 ? c : c * c, seed++, i % 2 ? -0.1f : -ws, i % 2 ? 0.1f : ws));
      const auto srw = random_vector(c * c * sr * sr, seed++, -ws / float(sr), ws / float(sr));
      const auto srb = random_vector(c, seed++, -0.1f, 0.1f), lng = random_vector(c, seed++, 0.5f, 1.5f),
                 lnb = random_vector(c, seed++, -0.2f, 0.2f);
      drt::efficient_attention_weights wts{p[0].data(), p[1].data(), p[2].data(), p[3].data(),
                                           p[4].data(), p[5].data(), nullptr,     nullptr,
                                           nullptr,     nullptr,     p[6].data(), p[7].data()};
      if (sr > 1) wts.sr_w = srw.data(), wts.sr_b = srb.data(), wts.sr_ln_g = lng.data(), wts.sr_ln_b = lnb.data();
      const drt::efficient_self_attention att(wts, c, heads, sr, 1e-6f);
      // one random value per 2x2 window: every source is identical to its window's destination
      const auto cells = random_vector(n * (h / 2) * (w / 2) * c, seed++, -2.f, 2.f);
      std::vector<float> x(n * t * c);
      for (std::size_t b = 0; b < n; ++b)
        for (std::size_t i = 0; i < t; ++i)
          std::copy_n(cells.data() + ((b * (h / 2) + i / w / 2) * (w / 2) + i % w / 2) * c, c, x.data() + (b * t + i) * c);
      std::vector<drt::token_merge> plans;
      for (std::size_t b = 0; b < n; ++b) plans.push_back(drt::token_merge::plan(x.data() + b * t * c, c, h, w, c, 1));
      REQUIRE(plans[0].kept() == t / 4);
      const auto residual = random_vector(n * t * c, seed++);
      std::vector<float> full = residual, merged = residual;
      att.run(x.data(), n, h, w, full.data());
      att.run(x.data(), n, h, w, merged.data(), drt::precision::fp32, drt::precision::fp32, 0, plans.data());
      check_close(merged.data(), full.data(), full.size(), "merged attention sr " + std::to_string(sr), 1e-5, 1e-4);
      // and on random tokens merging changes the result (the merge is not a no-op)
      const auto y = random_vector(n * t * c, seed++, -2.f, 2.f);
      std::vector<drt::token_merge> rp;
      for (std::size_t b = 0; b < n; ++b) rp.push_back(drt::token_merge::plan(y.data() + b * t * c, c, h, w, c, t / 2));
      std::vector<float> f2 = residual, m2 = residual;
      att.run(y.data(), n, h, w, f2.data());
      att.run(y.data(), n, h, w, m2.data(), drt::precision::fp32, drt::precision::fp32, 0, rp.data());
      CHECK(compare(m2.data(), f2.data(), f2.size()).rel_l2 > 1e-3);
      // a plan of another grid is refused
      CHECK_THROWS_AS(att.run(y.data(), 1, h - 2, w, m2.data(), drt::precision::fp32, drt::precision::fp32, 0, rp.data()),
                      drt::shape_error);
    }
  }
}
