#pragma once
/// @file token_merge.hpp
/// Training-free token merging on an image grid, for a SegFormer block (the path knob `tokens`).
///
/// The merge is a local bipartite soft matching in the manner of ToMe (Bolya et al., ICLR 2023) as
/// SegFormer++ adapts it to dense prediction (Kienzle et al., arXiv 2405.14467: the destination set
/// is one token per 2 x 2 window, merged tokens are averaged, and every token gets its merged
/// token's result back, "unmerge"). Two changes make it cheap and predictable on a CPU:
///  - each source token is compared (cosine similarity) only with the destination tokens of its own
///    and the 8 neighbouring windows: 9 dot products per token, not a full bipartite matrix, which at
///    SegFormer's stage 1 (10 800 tokens at 360 x 480) would cost more than the layers it saves;
///  - the number of merged tokens is fixed by the fraction kept, never by a similarity threshold, so
///    a path's work (and its latency in the lookup table) does not depend on the image.
/// Sources are merged best match first (ties by token index), so the plan is a function of the
/// input alone, whatever the thread count.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

#include "../core/buffer_pool.hpp"
#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/simd.hpp"

namespace drt {

namespace detail {
inline float dot(const float* a, const float* b, std::size_t c) noexcept {
  using B = xsimd::batch<float>;
  B acc(0.f);
  std::size_t j = 0;
  for (; j + B::size <= c; j += B::size) acc = xsimd::fma(B::load_unaligned(a + j), B::load_unaligned(b + j), acc);
  float s = xsimd::hadd(acc);
  for (; j < c; ++j) s += a[j] * b[j];
  return s;
}
}  // namespace detail

/// Which of an image's h x w tokens are merged into which: `kept()` merged tokens, each the mean of
/// its members (a destination token and the sources merged into it, or one unmerged source).
class token_merge {
public:
  token_merge() = default;

  /// Tokens a plan keeps of an h x w grid when asked for `keep`: at least one per 2 x 2 window, at
  /// most all of them.
  static std::size_t kept_tokens(std::size_t h, std::size_t w, std::size_t keep) noexcept {
    return std::min(h * w, std::max(keep, ((h + 1) / 2) * ((w + 1) / 2)));
  }

  /// The plan for tokens x[h*w, c] (row stride ldx, raster order) keeping `keep` tokens: at least
  /// one per 2 x 2 window (ceil(h/2) * ceil(w/2)), at most h*w (nothing merged).
  static token_merge plan(const float* x, std::size_t ldx, std::size_t h, std::size_t w, std::size_t c,
                          std::size_t keep) {
    const std::size_t n = h * w, wh = (h + 1) / 2, ww = (w + 1) / 2, dst = wh * ww;
    if (n == 0 || c == 0) throw invalid_input("token merge: an empty grid (" + std::to_string(h) + "x" +
                                              std::to_string(w) + " tokens of " + std::to_string(c) + " channels)");
    keep = kept_tokens(h, w, keep);
    token_merge m;
    m.tokens_ = n;
    m.rep_.resize(n);
    if (keep == n) {  // nothing merged: every token is its own
      std::iota(m.rep_.begin(), m.rep_.end(), 0u);
      m.finish(n);
      return m;
    }
    // Unit-length copies of the tokens (a zero token has no direction: similarity 0 with everything).
    std::vector<float, pool_allocator<float>> unit(n * c);
    parallel_for(n, [&](std::size_t i) {
      const float* xi = x + i * ldx;
      const float sq = detail::dot(xi, xi, c), inv = sq > 0.f ? 1.f / std::sqrt(sq) : 0.f;
      for (std::size_t k = 0; k < c; ++k) unit[i * c + k] = xi[k] * inv;
    }, 2.0 * double(n) * c);
    auto is_dst = [&](std::size_t i) { return (i / w) % 2 == 0 && (i % w) % 2 == 0; };
    // Each source's best destination among the 3 x 3 windows around its own.
    std::vector<float> score(n, -2.f);
    std::vector<std::uint32_t> best(n);
    parallel_for(h, [&](std::size_t y) {
      for (std::size_t xq = 0; xq < w; ++xq) {
        const std::size_t i = y * w + xq;
        if (is_dst(i)) continue;
        const std::size_t wy = y / 2, wx = xq / 2;
        // its own window's destination unless another is more similar: a non-finite token (NaN
        // similarities) stays local and its score finite, so the ranking below is a strict order
        float top = -2.f;
        auto arg = static_cast<std::uint32_t>(2 * wy * w + 2 * wx);
        for (std::size_t ay = wy ? wy - 1 : 0; ay <= std::min(wh - 1, wy + 1); ++ay)
          for (std::size_t ax = wx ? wx - 1 : 0; ax <= std::min(ww - 1, wx + 1); ++ax) {
            const std::size_t d = (2 * ay) * w + 2 * ax;
            const float sim = detail::dot(unit.data() + i * c, unit.data() + d * c, c);
            if (sim > top) top = sim, arg = static_cast<std::uint32_t>(d);
          }
        score[i] = top;
        best[i] = arg;
      }
    }, 9.0 * double(n) * c);
    // The n - keep sources most similar to their destination merge (ties: the lower index).
    std::vector<std::uint32_t> src;
    src.reserve(n - dst);
    for (std::size_t i = 0; i < n; ++i)
      if (!is_dst(i)) src.push_back(static_cast<std::uint32_t>(i));
    const std::size_t merged = n - keep;
    auto better = [&](std::uint32_t a, std::uint32_t b) { return score[a] > score[b] || (score[a] == score[b] && a < b); };
    std::nth_element(src.begin(), src.begin() + static_cast<std::ptrdiff_t>(merged - 1), src.end(), better);
    std::vector<unsigned char> gone(n, 0);
    for (std::size_t k = 0; k < merged; ++k) gone[src[k]] = 1;
    // Merged tokens numbered in raster order of the tokens that stay; sources point to their destination's.
    std::uint32_t next = 0;
    for (std::size_t i = 0; i < n; ++i)
      if (!gone[i]) m.rep_[i] = next++;
    for (std::size_t i = 0; i < n; ++i)
      if (gone[i]) m.rep_[i] = m.rep_[best[i]];
    m.finish(next);
    return m;
  }

  std::size_t tokens() const noexcept { return tokens_; }           ///< tokens of the grid
  std::size_t kept() const noexcept { return start_.empty() ? 0 : start_.size() - 1; }  ///< merged tokens
  /// The merged token of grid token i.
  std::uint32_t representative(std::size_t i) const noexcept { return rep_[i]; }
  /// Grid tokens merged into merged token m, ascending.
  const std::uint32_t* members(std::size_t m) const noexcept { return members_.data() + start_[m]; }
  std::size_t size(std::size_t m) const noexcept { return start_[m + 1] - start_[m]; }

  /// y[m] = the mean of x over merged token m's members (c channels; x rows of stride ldx).
  void merge(const float* x, std::size_t ldx, std::size_t c, float* y, std::size_t ldy) const {
    parallel_for(kept(), [&](std::size_t m) {
      const std::uint32_t* mem = members(m);
      const std::size_t k = size(m);
      float* o = y + m * ldy;
      std::copy_n(x + std::size_t(mem[0]) * ldx, c, o);
      for (std::size_t t = 1; t < k; ++t) {
        const float* r = x + std::size_t(mem[t]) * ldx;
        for (std::size_t j = 0; j < c; ++j) o[j] += r[j];
      }
      if (k > 1) {
        const float s = 1.f / static_cast<float>(k);
        for (std::size_t j = 0; j < c; ++j) o[j] *= s;
      }
    }, double(tokens_) * c);
  }
  /// out[i] = y[representative(i)] for every grid token (c channels).
  void unmerge(const float* y, std::size_t ldy, std::size_t c, float* out, std::size_t ldo) const {
    parallel_for(tokens_, [&](std::size_t i) { std::copy_n(y + std::size_t(rep_[i]) * ldy, c, out + i * ldo); },
                 double(tokens_) * c);
  }
  /// out[i] += y[representative(i)] (the residual add of a merged block's result).
  void unmerge_add(const float* y, std::size_t ldy, std::size_t c, float* out, std::size_t ldo) const {
    parallel_for(tokens_, [&](std::size_t i) {
      const float* r = y + std::size_t(rep_[i]) * ldy;
      float* o = out + i * ldo;
      for (std::size_t j = 0; j < c; ++j) o[j] += r[j];
    }, double(tokens_) * c);
  }

private:
  void finish(std::size_t kept) {
    start_.assign(kept + 1, 0);
    for (auto r : rep_) ++start_[r + 1];
    for (std::size_t m = 0; m < kept; ++m) start_[m + 1] += start_[m];
    members_.resize(tokens_);
    std::vector<std::uint32_t> fill(start_.begin(), start_.end() - 1);
    for (std::size_t i = 0; i < tokens_; ++i) members_[fill[rep_[i]]++] = static_cast<std::uint32_t>(i);
  }

  std::size_t tokens_ = 0;
  std::vector<std::uint32_t> rep_;      ///< grid token -> merged token
  std::vector<std::uint32_t> start_;    ///< CSR offsets of each merged token's members
  std::vector<std::uint32_t> members_;  ///< grid tokens grouped by merged token, ascending
};

}  // namespace drt
