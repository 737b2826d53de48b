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
#include <vector>

#include "../core/parallel.hpp"
#include "../core/profiler.hpp"
#include "conv2d.hpp"
#include "gemm.hpp"
#include "layer_norm.hpp"
#include "linear.hpp"
#include "softmax.hpp"

namespace drt {

/// Multi-head attention core on one sequence: ctx[T, C] = softmax(q k^T * scale) v, per head.
/// q: [T, ld_q], k and v: [S, ld_kv]; head h uses columns [h*d, (h+1)*d).
inline void multi_head_attention(std::size_t tokens, std::size_t keys, std::size_t heads, std::size_t head_dim,
                                 const float* q, std::size_t ldq, const float* k, const float* v, std::size_t ldkv,
                                 float* ctx, std::size_t ldc) {
  std::vector<packed_matrix> kt(heads), vp(heads);
  parallel_for(heads, [&](std::size_t h) {
    kt[h].assign_nk(k + h * head_dim, keys, head_dim, ldkv);  // B = K^T: [d][S]
    vp[h].assign_kn(v + h * head_dim, keys, head_dim, ldkv);  // B = V:   [S][d]
  }, 2.0 * heads * keys * head_dim * 1000);
  const std::size_t rows = std::max<std::size_t>(detail::gemm_mr, std::min<std::size_t>(256, (1u << 16) / (keys + 1)));
  const std::size_t blocks = (tokens + rows - 1) / rows;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  parallel_for(heads * blocks, [&](std::size_t t) {
    thread_local detail::aligned_vector<float> scores;
    const std::size_t h = t / blocks, r0 = (t % blocks) * rows, nr = std::min(rows, tokens - r0);
    if (scores.size() < nr * keys) scores.resize(nr * keys);
    gemm_epilogue ep;
    ep.alpha = scale;
    gemm(nr, keys, head_dim, q + r0 * ldq + h * head_dim, ldq, kt[h], scores.data(), keys, ep, false);
    for (std::size_t i = 0; i < nr; ++i) softmax_row(scores.data() + i * keys, keys);
    gemm(nr, head_dim, keys, scores.data(), keys, vp[h], ctx + r0 * ldc + h * head_dim, ldc, {}, false);
  }, 4.0 * tokens * keys * head_dim * heads);
}

/// Plain-loop reference of the core (contiguous q [T, H*d], k, v [S, H*d], ctx [T, H*d]).
inline void multi_head_attention_ref(std::size_t tokens, std::size_t keys, std::size_t heads, std::size_t head_dim,
                                     const float* q, const float* k, const float* v, float* ctx) {
  const std::size_t c = heads * head_dim;
  std::vector<double> s(keys);
  for (std::size_t h = 0; h < heads; ++h)
    for (std::size_t i = 0; i < tokens; ++i) {
      double mx = -1e300;
      for (std::size_t j = 0; j < keys; ++j) {
        double acc = 0;
        for (std::size_t d = 0; d < head_dim; ++d) acc += double(q[i * c + h * head_dim + d]) * k[j * c + h * head_dim + d];
        s[j] = acc / std::sqrt(double(head_dim));
        mx = std::max(mx, s[j]);
      }
      double sum = 0;
      for (std::size_t j = 0; j < keys; ++j) sum += (s[j] = std::exp(s[j] - mx));
      for (std::size_t d = 0; d < head_dim; ++d) {
        double acc = 0;
        for (std::size_t j = 0; j < keys; ++j) acc += s[j] / sum * v[j * c + h * head_dim + d];
        ctx[i * c + h * head_dim + d] = static_cast<float>(acc);
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
      conv2d_shape s;
      s.in_channels = s.out_channels = channels;
      s.kernel_h = s.kernel_w = s.stride_h = s.stride_w = sr_ratio;
      sr_conv_ = conv2d(w.sr_w, w.sr_b, s);
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
  /// (`out` holds the residual on entry; x and out must differ). `p`: the projections' arithmetic
  /// (the spatial-reduction conv and the attention products stay fp32).
  void run(const float* x, std::size_t n, std::size_t h, std::size_t w, float* out,
           precision p = precision::fp32) const {
    const std::size_t t = h * w, s = reduced_tokens(h, w), c = c_, d = c_ / heads_;
    detail::aligned_vector<float> q(t * c), kv(sr_ > 1 ? s * c : 0), k(s * c), v(s * c), ctx(t * c);
    for (std::size_t b = 0; b < n; ++b) {
      const float* xb = x + b * t * c;
      {
        profile_scope ps("attention.query");
        query_.run(t, xb, c, q.data(), c, activation::none, nullptr, 0, true, p);
      }
      const float* kv_in = xb;
      if (sr_ > 1) {
        {
          profile_scope ps("attention.sr");
          sr_conv_.run(xb, 1, h, w, kv.data());
        }
        profile_scope ps("attention.sr_layer_norm");
        sr_norm_.run(s, kv.data(), c, kv.data(), c);
        kv_in = kv.data();
      }
      {
        profile_scope ps("attention.key");
        key_.run(s, kv_in, c, k.data(), c, activation::none, nullptr, 0, true, p);
      }
      {
        profile_scope ps("attention.value");
        value_.run(s, kv_in, c, v.data(), c, activation::none, nullptr, 0, true, p);
      }
      {
        profile_scope ps("attention.qk_softmax_pv");  // one fused pass over row blocks
        multi_head_attention(t, s, heads_, d, q.data(), c, k.data(), v.data(), c, ctx.data(), c);
      }
      float* ob = out + b * t * c;
      profile_scope ps("attention.output");
      out_.run(t, ctx.data(), c, ob, c, activation::none, ob, c, true, p);
    }
  }

  /// The projections with their checkpoint module names (relative to the attention module).
  template <class F>
  void for_each_linear(F&& f) {
    f("self.query", query_), f("self.key", key_), f("self.value", value_), f("output.dense", out_);
  }
  template <class F>
  void for_each_linear(F&& f) const {
    f("self.query", query_), f("self.key", key_), f("self.value", value_), f("output.dense", out_);
  }

private:
  std::size_t c_ = 0, heads_ = 1, sr_ = 1;
  linear query_, key_, value_, out_;
  conv2d sr_conv_;
  layer_norm sr_norm_;
};

}  // namespace drt
