#pragma once
/// @file resize.hpp
/// Bilinear resize with PyTorch's align_corners=False semantics (ref: aten UpSampleBilinear2d,
/// area_pixel_compute_source_index): src = (dst + 0.5) * in/out - 0.5, clamped at 0, computed in
/// float as aten does for float tensors.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "../core/simd.hpp"

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor.hpp"
#include "../core/value_range.hpp"
#include "activation.hpp"

namespace drt {

namespace detail {
/// Source taps and weights of one output coordinate.
struct bilinear_tap {
  std::size_t i0, i1;
  float w0, w1;
};

inline std::vector<bilinear_tap> bilinear_taps(std::size_t in, std::size_t out) {
  std::vector<bilinear_tap> taps(out);
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (std::size_t d = 0; d < out; ++d) {
    float src = scale * (static_cast<float>(d) + 0.5f) - 0.5f;
    if (src < 0.f) src = 0.f;
    const std::size_t i0 = std::min(static_cast<std::size_t>(src), in - 1);
    const std::size_t i1 = i0 + (i0 < in - 1 ? 1 : 0);
    const float l1 = src - static_cast<float>(i0);
    taps[d] = {i0, i1, 1.f - l1, l1};
  }
  return taps;
}
}  // namespace detail

/// x: [N, H, W, *] with C channels at row stride ldx; y: [N, OH, OW, *] at row stride ldy.
/// Writing with ldy > C places the result in a channel slice of a wider tensor (the decoder concat).
inline void resize_bilinear(const float* x, std::size_t n, std::size_t h, std::size_t w, std::size_t c, std::size_t ldx,
                            float* y, std::size_t oh, std::size_t ow, std::size_t ldy) {
  const auto ty = detail::bilinear_taps(h, oh), tx = detail::bilinear_taps(w, ow);
  if (c < xsimd::batch<float>::size) {
    // Few channels (a batch of NCHW planes resized with c = 1): separable. Each source row is
    // interpolated horizontally once per thread and kept while consecutive output rows reuse it (an
    // upsampling by 4 reads each source row for ~8 output rows); the vertical blend of the two
    // horizontal rows is then one vector loop over the output row.
    // The cache is valid within one call only (`call` tags it): a later call may bring new data at
    // the same address (the buffer pool hands the same blocks out every frame).
    struct row_cache {
      const float* src = nullptr;
      std::uint64_t call = 0;
      std::vector<float> h;
    };
    static std::atomic<std::uint64_t> calls{0};
    const std::uint64_t call = ++calls;
    auto row = [&](std::size_t r) {
      thread_local row_cache cache[2];
      const std::size_t b = r / oh, oy = r % oh;
      const auto& vy = ty[oy];
      auto find = [&](const float* src) {
        for (int e = 0; e < 2; ++e)
          if (cache[e].src == src && cache[e].call == call) return e;
        return -1;
      };
      auto fill = [&](int e, const float* src) {
        cache[e].src = src;
        cache[e].call = call;
        cache[e].h.resize(ow * c);
        float* hr = cache[e].h.data();
        for (std::size_t ox = 0; ox < ow; ++ox) {
          const auto& vx = tx[ox];
          for (std::size_t j = 0; j < c; ++j) hr[ox * c + j] = vx.w0 * src[vx.i0 * ldx + j] + vx.w1 * src[vx.i1 * ldx + j];
        }
      };
      const float* s0 = x + (b * h + vy.i0) * w * ldx;
      const float* s1 = x + (b * h + vy.i1) * w * ldx;
      int e0 = find(s0), e1 = find(s1);
      if (e0 < 0) fill(e0 = (e1 == 0 ? 1 : 0), s0);
      if (e1 < 0) {
        if (s1 == s0)
          e1 = e0;
        else
          fill(e1 = 1 - e0, s1);
      }
      const float* top = cache[e0].h.data();
      const float* bot = cache[e1].h.data();
      float* out = y + (b * oh + oy) * ow * ldy;
      if (ldy == c) {
        using simd = xsimd::batch<float>;
        constexpr std::size_t W = simd::size;
        const std::size_t len = ow * c;
        std::size_t j = 0;
        for (; j + W <= len; j += W)
          (simd::load_unaligned(top + j) * simd(vy.w0) + simd::load_unaligned(bot + j) * simd(vy.w1)).store_unaligned(out + j);
        for (; j < len; ++j) out[j] = vy.w0 * top[j] + vy.w1 * bot[j];
      } else {
        for (std::size_t ox = 0; ox < ow; ++ox)
          for (std::size_t j = 0; j < c; ++j) out[ox * ldy + j] = vy.w0 * top[ox * c + j] + vy.w1 * bot[ox * c + j];
      }
    };
    parallel_for(n * oh, row, 8.0 * n * oh * ow * c);
    return;
  }
  auto row = [&](std::size_t r) {
    using simd = xsimd::batch<float>;
    constexpr std::size_t W = simd::size;
    const std::size_t b = r / oh, oy = r % oh;
    const auto& vy = ty[oy];
    for (std::size_t ox = 0; ox < ow; ++ox) {
      const auto& vx = tx[ox];
      const float* p00 = x + ((b * h + vy.i0) * w + vx.i0) * ldx;
      const float* p01 = x + ((b * h + vy.i0) * w + vx.i1) * ldx;
      const float* p10 = x + ((b * h + vy.i1) * w + vx.i0) * ldx;
      const float* p11 = x + ((b * h + vy.i1) * w + vx.i1) * ldx;
      float* out = y + ((b * oh + oy) * ow + ox) * ldy;
      std::size_t j = 0;
      for (; j + W <= c; j += W) {
        const simd top = simd::load_unaligned(p00 + j) * simd(vx.w0) + simd::load_unaligned(p01 + j) * simd(vx.w1);
        const simd bot = simd::load_unaligned(p10 + j) * simd(vx.w0) + simd::load_unaligned(p11 + j) * simd(vx.w1);
        (top * simd(vy.w0) + bot * simd(vy.w1)).store_unaligned(out + j);
      }
      for (; j < c; ++j)
        out[j] = vy.w0 * (vx.w0 * p00[j] + vx.w1 * p01[j]) + vy.w1 * (vx.w0 * p10[j] + vx.w1 * p11[j]);
    }
  };
  parallel_for(n * oh, row, 8.0 * n * oh * ow * c);
}

/// Plain-loop reference on contiguous NHWC tensors (double arithmetic).
inline void resize_bilinear_ref(const float* x, std::size_t n, std::size_t h, std::size_t w, std::size_t c, float* y,
                                std::size_t oh, std::size_t ow) {
  auto src = [](std::size_t d, std::size_t in, std::size_t out) {
    double s = (static_cast<double>(d) + 0.5) * static_cast<double>(in) / static_cast<double>(out) - 0.5;
    return s < 0 ? 0.0 : s;
  };
  for (std::size_t b = 0; b < n; ++b)
    for (std::size_t oy = 0; oy < oh; ++oy)
      for (std::size_t ox = 0; ox < ow; ++ox) {
        const double sy = src(oy, h, oh), sx = src(ox, w, ow);
        const std::size_t y0 = std::min(static_cast<std::size_t>(sy), h - 1), x0 = std::min(static_cast<std::size_t>(sx), w - 1);
        const std::size_t y1 = std::min(y0 + 1, h - 1), x1 = std::min(x0 + 1, w - 1);
        const double ly = sy - y0, lx = sx - x0;
        for (std::size_t j = 0; j < c; ++j) {
          auto at = [&](std::size_t yy, std::size_t xx) { return static_cast<double>(x[((b * h + yy) * w + xx) * c + j]); };
          y[((b * oh + oy) * ow + ox) * c + j] = static_cast<float>(
              (1 - ly) * ((1 - lx) * at(y0, x0) + lx * at(y0, x1)) + ly * ((1 - lx) * at(y1, x0) + lx * at(y1, x1)));
        }
      }
}

/// One input of `resize_bilinear_sum`: an NHWC map [N, h, w, C] (contiguous rows of C floats).
struct bilinear_source {
  const float* x;
  std::size_t h, w;
};

/// y[N, OH, OW, C] = act(base + sum_i resize_bilinear(x_i)), with base = y as given, or `bias`
/// broadcast over the pixels when `bias` is not null (y is then write-only). One pass over y: the
/// folded SegFormer decoder accumulates every stage's upsampled map into one buffer with it
/// (docs/decoder_fold.md) instead of writing S full-size intermediates.
/// Each output row blends its two source rows of every input vertically once (a row of w_i << OW
/// pixels), then every output pixel takes two horizontal taps per input; the taps are those of
/// `resize_bilinear` (align_corners=False). `rows(r0, r1, y)` does output rows [r0, r1) of the
/// N*OH rows serially into y (pointing at row r0), so that a caller can interleave it with other
/// work per row block; `resize_bilinear_sum` runs all rows in parallel.
class bilinear_sum {
public:
  bilinear_sum(std::vector<bilinear_source> xs, std::size_t n, std::size_t c, std::size_t oh, std::size_t ow,
               const float* bias = nullptr, activation act = activation::none)
      : xs_(std::move(xs)), n_(n), c_(c), oh_(oh), ow_(ow), bias_(bias), relu_(act == activation::relu) {
    if (act != activation::none && !relu_)
      throw invalid_input("resize_bilinear_sum: only none and relu activations are supported");
    for (const auto& s : xs_) {
      ty_.push_back(detail::bilinear_taps(s.h, oh));
      tx_.push_back(detail::bilinear_taps(s.w, ow));
      blended_ += s.w * c;
    }
  }

  std::size_t rows() const noexcept { return n_ * oh_; }
  /// Estimated flops of every row (for parallel_for).
  double work() const noexcept {
    double w = double(rows() * ow_ * c_);
    for (const auto& s : xs_) w += 4.0 * double(rows() * ow_ * c_) + 3.0 * double(rows() * s.w * c_);
    return w;
  }

  /// With `range` (non-null) the outputs also join it as they are stored (an int8 consumer's input
  /// range without a pass of its own).
  void rows(std::size_t r0, std::size_t r1, float* y, detail::range_accumulator* range = nullptr) const {
    thread_local std::vector<float> blended;  // the vertically blended rows of every input
    thread_local std::vector<const float*> src;
    blended.resize(blended_);
    src.resize(xs_.size());
    for (std::size_t r = r0; r < r1; ++r) {
      float* out = y + (r - r0) * ow_ * c_;
      if (range)
        row<true>(r, out, blended.data(), src.data(), range);
      else
        row<false>(r, out, blended.data(), src.data(), nullptr);
    }
  }

private:
  template <bool Ranged>
  void row(std::size_t r, float* out, float* blended, const float** src, detail::range_accumulator* range) const {
    using simd = xsimd::batch<float>;
    constexpr std::size_t W = simd::size;
    const std::size_t b = r / oh_, oy = r % oh_, c = c_;
    std::size_t off = 0;
    for (std::size_t i = 0; i < xs_.size(); ++i) {
      const auto& vy = ty_[i][oy];
      const auto& x = xs_[i];
      const float* s0 = x.x + (b * x.h + vy.i0) * x.w * c;
      const float* s1 = x.x + (b * x.h + vy.i1) * x.w * c;
      float* v = blended + off;
      const std::size_t len = x.w * c;
      std::size_t j = 0;
      for (; j + W <= len; j += W)
        (simd::load_unaligned(s0 + j) * simd(vy.w0) + simd::load_unaligned(s1 + j) * simd(vy.w1)).store_unaligned(v + j);
      for (; j < len; ++j) v[j] = vy.w0 * s0[j] + vy.w1 * s1[j];
      src[i] = v;
      off += len;
    }
    // Each output pixel's taps (two columns and two weights per input) are looked up once, before
    // its channels are swept: the sweep then only loads, multiplies and adds. More inputs than a
    // chunk go in chunks, the running sum kept in `o` between them (the same sum, in the same order).
    constexpr std::size_t chunk = 8;
    const std::size_t inputs = xs_.size();
    const float* left[chunk];
    const float* right[chunk];
    float wl[chunk], wr[chunk];
    for (std::size_t ox = 0; ox < ow_; ++ox) {
      float* o = out + ox * c;
      std::size_t j = 0;
      for (std::size_t i0 = 0; i0 == 0 || i0 < inputs; i0 += chunk) {
        const std::size_t n = std::min(chunk, inputs - i0);
        for (std::size_t i = 0; i < n; ++i) {
          const auto& vx = tx_[i0 + i][ox];
          left[i] = src[i0 + i] + vx.i0 * c, right[i] = src[i0 + i] + vx.i1 * c, wl[i] = vx.w0, wr[i] = vx.w1;
        }
        const bool first = i0 == 0, last = i0 + n >= inputs;
        for (j = 0; j + W <= c; j += W) {
          simd v = first && bias_ ? simd::load_unaligned(bias_ + j) : simd::load_unaligned(o + j);
          for (std::size_t i = 0; i < n; ++i)
            v += simd::load_unaligned(left[i] + j) * simd(wl[i]) + simd::load_unaligned(right[i] + j) * simd(wr[i]);
          if (last && relu_) v = xsimd::max(v, simd(0.f));
          v.store_unaligned(o + j);
          if constexpr (Ranged)
            if (last) range->add(v);
        }
      }
      for (; j < c; ++j) {
        float v = bias_ ? bias_[j] : o[j];
        for (std::size_t i = 0; i < xs_.size(); ++i) {
          const auto& vx = tx_[i][ox];
          v += src[i][vx.i0 * c + j] * vx.w0 + src[i][vx.i1 * c + j] * vx.w1;
        }
        o[j] = relu_ ? std::max(v, 0.f) : v;
        if constexpr (Ranged) range->add(o[j]);
      }
    }
  }

  std::vector<bilinear_source> xs_;
  std::size_t n_, c_, oh_, ow_;
  const float* bias_;
  bool relu_;
  std::vector<std::vector<detail::bilinear_tap>> ty_, tx_;
  std::size_t blended_ = 0;
};

/// All rows of `bilinear_sum` in parallel (see there).
inline void resize_bilinear_sum(const std::vector<bilinear_source>& xs, std::size_t n, std::size_t c, float* y,
                                std::size_t oh, std::size_t ow, const float* bias = nullptr,
                                activation act = activation::none) {
  const bilinear_sum op(xs, n, c, oh, ow, bias, act);
  parallel_for(op.rows(), [&](std::size_t r) { op.rows(r, r + 1, y + r * ow * c); }, op.work());
}

/// Plain-loop reference of `resize_bilinear_sum` (double arithmetic, via `resize_bilinear_ref`).
inline void resize_bilinear_sum_ref(const std::vector<bilinear_source>& xs, std::size_t n, std::size_t c, float* y,
                                    std::size_t oh, std::size_t ow, const float* bias = nullptr,
                                    activation act = activation::none) {
  const std::size_t m = n * oh * ow;
  std::vector<double> acc(m * c);
  for (std::size_t p = 0; p < m; ++p)
    for (std::size_t j = 0; j < c; ++j) acc[p * c + j] = bias ? bias[j] : y[p * c + j];
  std::vector<float> up(m * c);
  for (const auto& s : xs) {
    resize_bilinear_ref(s.x, n, s.h, s.w, c, up.data(), oh, ow);
    for (std::size_t q = 0; q < m * c; ++q) acc[q] += up[q];
  }
  for (std::size_t q = 0; q < m * c; ++q)
    y[q] = static_cast<float>(act == activation::relu ? std::max(acc[q], 0.0) : acc[q]);
}

/// Bilinear upsampling of logits [N, K, h, w] (NCHW) to H x W, then argmax over K -> [N, H, W].
/// Ties go to the lower class index, as torch.argmax; a NaN never wins.
/// Separable, as resize_bilinear's few-channel case: each source row's K classes are interpolated
/// horizontally once per block of output rows and kept while the next output rows reuse them (an
/// upsampling by 4 reads each source row for ~8 output rows); the vertical blend and the running
/// argmax are then vector loops over the output row. The arithmetic is the per-pixel formula's,
/// w_y0 (w_x0 p00 + w_x1 p01) + w_y1 (w_x0 p10 + w_x1 p11), in the same order.
inline itensor3 upsample_argmax(const tensor4& logits, std::size_t height, std::size_t width) {
  const std::size_t n = logits.shape(0), k = logits.shape(1), h = logits.shape(2), w = logits.shape(3);
  itensor3 out = itensor3::from_shape({n, height, width});
  const auto ty = detail::bilinear_taps(h, height), tx = detail::bilinear_taps(w, width);
  const float* L = logits.data();
  const std::size_t rows = n * height, block = 16, blocks = (rows + block - 1) / block;
  auto run_block = [&](std::size_t bi) {
    // Two slots of K horizontally interpolated source rows, keyed by (image, source row).
    std::vector<float> slot(2 * k * width), best(width);
    std::size_t key[2] = {SIZE_MAX, SIZE_MAX};
    auto source_row = [&](std::size_t b, std::size_t i, std::size_t keep) -> const float* {
      const std::size_t want = b * h + i;
      for (int e = 0; e < 2; ++e)
        if (key[e] == want) return slot.data() + e * k * width;
      const int e = key[0] == keep ? 1 : 0;
      key[e] = want;
      float* dst = slot.data() + e * k * width;
      for (std::size_t c = 0; c < k; ++c) {
        const float* p = L + ((b * k + c) * h + i) * w;
        float* d = dst + c * width;
        for (std::size_t ox = 0; ox < width; ++ox) d[ox] = tx[ox].w0 * p[tx[ox].i0] + tx[ox].w1 * p[tx[ox].i1];
      }
      return dst;
    };
    for (std::size_t r = bi * block; r < std::min(rows, (bi + 1) * block); ++r) {
      const std::size_t b = r / height, oy = r % height;
      const auto& vy = ty[oy];
      const float* h0 = source_row(b, vy.i0, b * h + vy.i1);
      const float* h1 = source_row(b, vy.i1, b * h + vy.i0);
      std::int32_t* o = &out(b, oy, 0);
      std::fill(best.begin(), best.end(), -INFINITY);
      std::fill(o, o + width, 0);
      for (std::size_t c = 0; c < k; ++c) {
        const float* a0 = h0 + c * width;
        const float* a1 = h1 + c * width;
        const std::int32_t cls = static_cast<std::int32_t>(c);
        for (std::size_t ox = 0; ox < width; ++ox) {
          const float v = vy.w0 * a0[ox] + vy.w1 * a1[ox];
          const bool better = v > best[ox];
          best[ox] = better ? v : best[ox];
          o[ox] = better ? cls : o[ox];
        }
      }
    }
  };
  parallel_for(blocks, run_block, 8.0 * n * height * width * k);
  return out;
}

}  // namespace drt
