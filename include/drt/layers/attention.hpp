#pragma once
/// @file attention.hpp
/// Efficient self-attention with spatial reduction (ref: transformers modeling_segformer.py,
/// SegformerEfficientSelfAttention + SegformerSelfOutput): queries from every token; keys and values
/// from the tokens reduced by a sr x sr stride-sr conv + LayerNorm (when sr > 1); per head
/// softmax(Q K^T / sqrt(d)) V; an output projection. The score matrix is only ever held for a block
/// of query rows per thread.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "../core/parallel.hpp"
#include "../core/profiler.hpp"
#include "gemm.hpp"
#include "gemm_bf16.hpp"
#include "gemm_int8.hpp"
#include "layer_norm.hpp"
#include "linear.hpp"
#include "softmax.hpp"
#include "token_merge.hpp"

namespace drt {

namespace detail {
/// Query rows per block of the attention core: a block's scores stay in cache (<= 64 K floats).
inline std::size_t attention_row_block(std::size_t keys) noexcept {
  return std::max<std::size_t>(gemm_mr, std::min<std::size_t>(256, (std::size_t(1) << 16) / (keys + 1)));
}
}  // namespace detail

/// Multi-head attention core on one sequence: ctx[T, C] = softmax(q k^T * scale) v, per head.
/// q: [T, ld_q], k and v: [S, ld_kv]; head h uses columns [h*d, (h+1)*d). The score matrix is held
/// for a block of query rows at a time (a function of the shape, never of the thread count).
/// `p`: the products' arithmetic, fp32 sums or fp32 accumulation in every case; the softmax is fp32.
///  - fp32;
///  - bf16: K, V rounded and packed once per call and head, Q and the probabilities per row block;
///  - int8: K (per key) and V (per value column) quantized symmetric int8 once per call and head;
///    Q u8 with its row block's own range; the probabilities enter PV as u8 codes of the softmax
///    numerators, 255 at each row's largest (`softmax_row_u8`), and each output row is divided by
///    its codes' sum: a per-row scale, so that a row's small probabilities keep their resolution
///    (plain u8 probabilities would round most of them, below 1/255, to zero).
inline void multi_head_attention(std::size_t tokens, std::size_t keys, std::size_t heads, std::size_t head_dim,
                                 const float* q, std::size_t ldq, const float* k, const float* v, std::size_t ldkv,
                                 float* ctx, std::size_t ldc, precision p = precision::fp32) {
  std::vector<packed_matrix> kt(p == precision::fp32 ? heads : 0), vp(kt.size());
  std::vector<packed_matrix_bf16> kt16(p == precision::bf16 ? heads : 0), vp16(kt16.size());
  std::vector<packed_matrix_s8> kt8(p == precision::int8 ? heads : 0), vp8(kt8.size());
  parallel_for(heads, [&](std::size_t h) {
    const float* kh = k + h * head_dim;
    const float* vh = v + h * head_dim;
    switch (p) {
      case precision::fp32:
        kt[h].assign_nk(kh, keys, head_dim, ldkv);  // B = K^T: [d][S]
        vp[h].assign_kn(vh, keys, head_dim, ldkv);  // B = V:   [S][d]
        break;
      case precision::bf16:
        kt16[h] = packed_matrix_bf16::from_nk(kh, keys, head_dim, ldkv);
        vp16[h] = packed_matrix_bf16::from_kn(vh, keys, head_dim, ldkv);
        break;
      case precision::int8:
        for (const auto& [what, x] : {std::pair<const char*, const float*>{"keys", kh}, {"values", vh}}) {
          const auto [lo, hi] = detail::value_range(x, keys, head_dim, ldkv);
          if (!std::isfinite(lo) || !std::isfinite(hi))
            throw invalid_input(std::string("attention in int8: the ") + what + " of head " + std::to_string(h) +
                                " hold non-finite values");
        }
        kt8[h] = packed_matrix_s8::from_nk(kh, keys, head_dim, ldkv);
        vp8[h] = packed_matrix_s8::from_kn(vh, keys, head_dim, ldkv);
        break;
    }
  }, 2.0 * heads * keys * head_dim * 1000);
  const std::size_t rows = detail::attention_row_block(keys);
  const std::size_t blocks = (tokens + rows - 1) / rows;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  parallel_for(heads * blocks, [&](std::size_t t) {
    thread_local detail::aligned_vector<float> scores;
    thread_local detail::aligned_vector<std::uint8_t> codes;
    const std::size_t h = t / blocks, r0 = (t % blocks) * rows, nr = std::min(rows, tokens - r0);
    if (scores.size() < nr * keys) scores.resize(nr * keys);
    gemm_epilogue ep;
    ep.alpha = scale;
    const float* qb = q + r0 * ldq + h * head_dim;
    float* cb = ctx + r0 * ldc + h * head_dim;
    switch (p) {
      case precision::fp32:
        gemm(nr, keys, head_dim, qb, ldq, kt[h], scores.data(), keys, ep, false);
        for (std::size_t i = 0; i < nr; ++i) softmax_row(scores.data() + i * keys, keys);
        gemm(nr, head_dim, keys, scores.data(), keys, vp[h], cb, ldc, {}, false);
        break;
      case precision::bf16:
        gemm_bf16(nr, keys, head_dim, qb, ldq, kt16[h], scores.data(), keys, ep, false);
        for (std::size_t i = 0; i < nr; ++i) softmax_row(scores.data() + i * keys, keys);
        gemm_bf16(nr, head_dim, keys, scores.data(), keys, vp16[h], cb, ldc, {}, false);
        break;
      case precision::int8: {
        const auto [lo, hi] = detail::value_range(qb, nr, head_dim, ldq);
        if (!std::isfinite(lo) || !std::isfinite(hi))
          throw invalid_input("attention in int8: the queries of head " + std::to_string(h) + " hold non-finite values");
        gemm_s8(nr, keys, head_dim, qb, ldq, quant_params_u8(lo, hi), kt8[h], scores.data(), keys, ep, false);
        if (codes.size() < nr * keys) codes.resize(nr * keys);
        std::uint32_t sums[256];
        for (std::size_t i = 0; i < nr; ++i) sums[i] = softmax_row_u8(scores.data() + i * keys, keys, codes.data() + i * keys);
        gemm_s8_u8(nr, head_dim, keys, codes.data(), keys, quant_params{1.f, 0}, vp8[h], cb, ldc, {}, false);
        for (std::size_t i = 0; i < nr; ++i) {
          const float inv = 1.f / static_cast<float>(sums[i]);
          for (std::size_t j = 0; j < head_dim; ++j) cb[i * ldc + j] *= inv;
        }
        break;
      }
    }
  }, 4.0 * tokens * keys * head_dim * heads);
}

/// Plain-loop reference of the core (contiguous q [T, H*d], k, v [S, H*d], ctx [T, H*d]), in double.
/// With `p` other than fp32 it follows the core's numerics: bf16 rounds q, k, v and the
/// probabilities to bf16; int8 quantizes K per key and V per column (symmetric int8), Q per row block
/// (`attention_row_block`) with the block's range, and weighs V by the u8 codes of the softmax
/// numerators; the products are summed exactly.
inline void multi_head_attention_ref(std::size_t tokens, std::size_t keys, std::size_t heads, std::size_t head_dim,
                                     const float* q, const float* k, const float* v, float* ctx,
                                     precision p = precision::fp32) {
  const std::size_t c = heads * head_dim, block = detail::attention_row_block(keys);
  auto operand = [p](float x) { return p == precision::bf16 ? double(from_bf16(to_bf16(x))) : double(x); };
  std::vector<double> kq(keys * head_dim), vq(keys * head_dim), s(keys), qrow(head_dim);
  for (std::size_t h = 0; h < heads; ++h) {
    // K and V of the head as the products see them (int8: quantized value x scale, the scale per
    // key for K, per column for V)
    auto as_operand = [&](const float* src, bool scale_per_key, std::vector<double>& out) {
      const std::size_t groups = scale_per_key ? keys : head_dim, len = scale_per_key ? head_dim : keys;
      auto index = [&](std::size_t g, std::size_t i) { return scale_per_key ? g * head_dim + i : i * head_dim + g; };
      auto value = [&](std::size_t g, std::size_t i) {
        const std::size_t at = index(g, i);
        return src[(at / head_dim) * c + h * head_dim + at % head_dim];
      };
      for (std::size_t g = 0; g < groups; ++g) {
        float amax = 0.f;
        for (std::size_t i = 0; i < len; ++i) amax = std::max(amax, std::abs(value(g, i)));
        const float sc = amax > 0.f ? amax / 127.f : 1.f;
        for (std::size_t i = 0; i < len; ++i)
          out[index(g, i)] = p == precision::int8 ? double(quantize_s8(value(g, i), sc)) * sc : operand(value(g, i));
      }
    };
    as_operand(k, true, kq);
    as_operand(v, false, vq);
    for (std::size_t i = 0; i < tokens; ++i) {
      quant_params qp;
      if (p == precision::int8) {  // the range of the row block holding i
        const std::size_t b0 = i / block * block, b1 = std::min(tokens, b0 + block);
        float lo = q[b0 * c + h * head_dim], hi = lo;
        for (std::size_t r = b0; r < b1; ++r)
          for (std::size_t d = 0; d < head_dim; ++d) {
            lo = std::min(lo, q[r * c + h * head_dim + d]);
            hi = std::max(hi, q[r * c + h * head_dim + d]);
          }
        qp = quant_params_u8(lo, hi);
      }
      for (std::size_t d = 0; d < head_dim; ++d) {
        const float x = q[i * c + h * head_dim + d];
        qrow[d] = p == precision::int8 ? (double(quantize_u8(x, qp)) - qp.zero_point) * qp.scale : operand(x);
      }
      double mx = -1e300;
      for (std::size_t j = 0; j < keys; ++j) {
        double acc = 0;
        for (std::size_t d = 0; d < head_dim; ++d) acc += qrow[d] * kq[j * head_dim + d];
        s[j] = acc / std::sqrt(double(head_dim));
        mx = std::max(mx, s[j]);
      }
      double sum = 0;
      for (std::size_t j = 0; j < keys; ++j) {
        s[j] = std::exp(s[j] - mx);
        if (p == precision::int8) s[j] = std::nearbyint(s[j] * 255.0);
        sum += s[j];
      }
      for (std::size_t d = 0; d < head_dim; ++d) {
        double acc = 0;
        for (std::size_t j = 0; j < keys; ++j) {
          const double w = p == precision::bf16 ? operand(float(s[j] / sum)) : s[j];
          acc += w * vq[j * head_dim + d];
        }
        ctx[i * c + h * head_dim + d] = static_cast<float>(p == precision::bf16 ? acc : acc / sum);
      }
    }
  }
}

/// Weights of one efficient self-attention (PyTorch layouts).
struct efficient_attention_weights {
  const float *q_w, *q_b, *k_w, *k_b, *v_w, *v_b;  ///< [C, C], [C]
  const float *sr_w = nullptr, *sr_b = nullptr;    ///< [C, C, sr, sr], [C] (sr > 1 only)
  const float *sr_ln_g = nullptr, *sr_ln_b = nullptr;
  const float *o_w, *o_b;  ///< output dense [C, C], [C]
};

class efficient_self_attention {
public:
  efficient_self_attention() = default;
  efficient_self_attention(const efficient_attention_weights& w, std::size_t channels, std::size_t heads,
                           std::size_t sr_ratio, float ln_eps)
      : c_(channels), heads_(heads), sr_(sr_ratio), query_(w.q_w, w.q_b, channels, channels),
        key_(w.k_w, w.k_b, channels, channels), value_(w.v_w, w.v_b, channels, channels),
        out_(w.o_w, w.o_b, channels, channels) {
    if (sr_ratio > 1) {
      // The sr x sr stride-sr conv is a linear map of each token's non-overlapping patch: weights
      // reordered from [C, C, sr, sr] to [C, (ky, kx, c)], the order of a gathered NHWC patch row.
      const std::size_t k = sr_ratio * sr_ratio * channels;
      std::vector<float> wr(channels * k);
      for (std::size_t o = 0; o < channels; ++o)
        for (std::size_t i = 0; i < channels; ++i)
          for (std::size_t ky = 0; ky < sr_ratio; ++ky)
            for (std::size_t kx = 0; kx < sr_ratio; ++kx)
              wr[o * k + (ky * sr_ratio + kx) * channels + i] = w.sr_w[((o * channels + i) * sr_ratio + ky) * sr_ratio + kx];
      reduce_ = linear(wr.data(), w.sr_b, channels, k);
      sr_norm_ = layer_norm(w.sr_ln_g, w.sr_ln_b, channels, ln_eps);
    }
  }

  std::size_t channels() const noexcept { return c_; }
  std::size_t heads() const noexcept { return heads_; }
  std::size_t sr_ratio() const noexcept { return sr_; }
  /// Key/value tokens for an H x W input.
  std::size_t reduced_tokens(std::size_t h, std::size_t w) const noexcept {
    return sr_ > 1 ? (h / sr_) * (w / sr_) : h * w;
  }
  /// MACs for one image of H x W tokens (projections, sr conv, both attention matmuls).
  double macs(std::size_t h, std::size_t w) const noexcept {
    const double t = double(h) * w, s = double(reduced_tokens(h, w)), c = double(c_);
    return 2 * t * c * c + 2 * s * c * c + (sr_ > 1 ? s * c * c * sr_ * sr_ : 0.0) + 2 * t * s * c;
  }

  /// x: layer-normed tokens [N, H*W, C]; out: [N, H*W, C] receives residual + attention(x)
  /// (`out` holds the residual on entry; x and out must differ). `p`: the arithmetic of the
  /// projections and the spatial reduction; `products`: that of the attention products (by default
  /// the same). `heads_kept` (0 = all): only the first heads run -- query, key and value compute
  /// only their channels and the output projection reads only those (a head prefix of the model's
  /// head order, dynamic/channel_order.hpp). `merges` (null = none; else one plan per image):
  /// queries, the attention and the output projection run on each image's merged tokens, keys and
  /// values on all of them (through the spatial reduction), and every token receives its merged
  /// token's result (layers/token_merge.hpp).
  void run(const float* x, std::size_t n, std::size_t h, std::size_t w, float* out, precision p = precision::fp32) const {
    run(x, n, h, w, out, p, p);
  }
  /// `x_ranges` (null = none; else one per image): each image's [min, max] of x from its producer
  /// (`layer_norm::run_with_ranges`), which the int8 projections reading x take instead of a pass
  /// of their own (the same values, so the same quantization).
  void run(const float* x, std::size_t n, std::size_t h, std::size_t w, float* out, precision p,
           precision products, std::size_t heads_kept = 0, const token_merge* merges = nullptr,
           const std::pair<float, float>* x_ranges = nullptr) const {
    const std::size_t t = h * w, s = reduced_tokens(h, w), c = c_, d = c_ / heads_;
    const std::size_t hk = heads_kept == 0 ? heads_ : std::min(heads_kept, heads_), ch = hk * d;
    detail::aligned_vector<float> q(t * ch), kv(sr_ > 1 ? s * c : 0), patches, k(s * ch), v(s * ch), ctx(t * ch),
        merged(merges ? t * c : 0), projected(merges ? t * c : 0);
    detail::aligned_vector<std::uint8_t> patches8;  // the spatial reduction's gathered patches, float or u8
    for (std::size_t b = 0; b < n; ++b) {
      const float* xb = x + b * t * c;
      const token_merge* tm = merges ? merges + b : nullptr;
      const std::size_t tq = tm ? tm->kept() : t;  // query tokens
      if (tm && tm->tokens() != t)
        throw shape_error("efficient_self_attention: a token merge plan of " + std::to_string(tm->tokens()) +
                          " tokens for a " + std::to_string(h) + "x" + std::to_string(w) + " grid");
      {
        profile_scope ps("attention.query");
        const float* xq = xb;
        if (tm) {
          tm->merge(xb, c, c, merged.data(), c);
          xq = merged.data();
        }
        // x's range serves the query when it reads x itself (merged tokens have their own range).
        const bool ranged = p == precision::int8 && x_ranges;
        quant_params qq;
        if (ranged && !tm) qq = query_.int8_input_quant(x_ranges[b], c, ch);
        query_.run_prefix(tq, ch, c, xq, c, q.data(), ch, activation::none, nullptr, 0, nullptr, p, true,
                          ranged && !tm ? &qq : nullptr);
      }
      const float* kv_in = xb;
      const bool kv_ranged = p == precision::int8 && x_ranges && sr_ == 1;  // key / value read x
      quant_params qk, qv;
      if (kv_ranged) {
        qk = key_.int8_input_quant(x_ranges[b], c, ch);
        qv = value_.int8_input_quant(x_ranges[b], c, ch);
      }
      if (sr_ > 1) {
        {
          profile_scope ps("attention.sr");
          // The patches hold every value of x when sr divides the grid (else the border is dropped):
          // then x's range is theirs, and int8 quantizes them as it gathers them (a quarter of the
          // bytes of a float gather, and no second pass; the same codes).
          const bool ranged = p == precision::int8 && x_ranges && h % sr_ == 0 && w % sr_ == 0;
          if (ranged) {
            const quant_params qr = reduce_.int8_input_quant(x_ranges[b], sr_ * sr_ * c);
            patches8.resize(s * sr_ * sr_ * c);
            gather_patches(xb, h, w, patches8.data(), [&](const float* src, std::size_t len, std::uint8_t* dst) {
              quantize_u8(src, len, qr, dst);
            });
            reduce_.run_prefix_u8(s, c, sr_ * sr_ * c, patches8.data(), sr_ * sr_ * c, qr, kv.data(), c);
          } else {
            patches.resize(s * sr_ * sr_ * c);
            gather_patches(xb, h, w, patches.data(),
                           [](const float* src, std::size_t len, float* dst) { std::copy_n(src, len, dst); });
            reduce_.run_prefix(s, c, sr_ * sr_ * c, patches.data(), sr_ * sr_ * c, kv.data(), c, activation::none,
                               nullptr, 0, nullptr, p, true);
          }
        }
        profile_scope ps("attention.sr_layer_norm");
        sr_norm_.run(s, kv.data(), c, kv.data(), c);
        kv_in = kv.data();
      }
      {
        profile_scope ps("attention.key");
        key_.run_prefix(s, ch, c, kv_in, c, k.data(), ch, activation::none, nullptr, 0, nullptr, p, true,
                        kv_ranged ? &qk : nullptr);
      }
      {
        profile_scope ps("attention.value");
        value_.run_prefix(s, ch, c, kv_in, c, v.data(), ch, activation::none, nullptr, 0, nullptr, p, true,
                          kv_ranged ? &qv : nullptr);
      }
      {
        profile_scope ps("attention.qk_softmax_pv");  // one fused pass over row blocks
        multi_head_attention(tq, s, hk, d, q.data(), ch, k.data(), v.data(), ch, ctx.data(), ch, products);
      }
      float* ob = out + b * t * c;
      profile_scope ps("attention.output");
      if (tm) {
        out_.run_prefix(tq, c, ch, ctx.data(), ch, projected.data(), c, activation::none, nullptr, 0, nullptr, p);
        tm->unmerge_add(projected.data(), c, c, ob, c);
      } else {
        out_.run_prefix(t, c, ch, ctx.data(), ch, ob, c, activation::none, ob, c, nullptr, p);
      }
    }
  }

  /// The output projection (its inputs are the heads' channels).
  const linear& output() const noexcept { return out_; }
  /// The GEMM layers with their checkpoint module names (relative to the attention module); the
  /// spatial reduction ("self.sr", a conv in the checkpoint) where sr > 1.
  template <class F>
  void for_each_linear(F&& f) {
    f("self.query", query_), f("self.key", key_), f("self.value", value_);
    if (sr_ > 1) f("self.sr", reduce_);
    f("output.dense", out_);
  }
  template <class F>
  void for_each_linear(F&& f) const {
    f("self.query", query_), f("self.key", key_), f("self.value", value_);
    if (sr_ > 1) f("self.sr", reduce_);
    f("output.dense", out_);
  }

private:
  /// x: [h, w, C] tokens; out: [(h/sr) * (w/sr), sr * sr * C], row (oy, ox) = the patch under it in
  /// (ky, kx, c) order (a stride-sr conv drops the last h % sr rows and w % sr columns). Each run of
  /// sr * C contiguous inputs goes through put(src, len, dst): a copy, or int8's quantization.
  template <class T, class Put>
  void gather_patches(const float* x, std::size_t h, std::size_t w, T* out, Put&& put) const {
    const std::size_t oh = h / sr_, ow = w / sr_, c = c_, seg = sr_ * c, row = sr_ * seg;
    parallel_for(oh, [&](std::size_t oy) {
      for (std::size_t ox = 0; ox < ow; ++ox)
        for (std::size_t ky = 0; ky < sr_; ++ky)
          put(x + ((oy * sr_ + ky) * w + ox * sr_) * c, seg, out + (oy * ow + ox) * row + ky * seg);
    }, double(h) * w * c);
  }

  std::size_t c_ = 0, heads_ = 1, sr_ = 1;
  linear query_, key_, value_, out_;
  linear reduce_;  ///< the spatial-reduction conv as a linear over gathered patches (sr > 1)
  layer_norm sr_norm_;
};

}  // namespace drt
