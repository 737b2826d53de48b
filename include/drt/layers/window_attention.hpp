#pragma once
/// @file window_attention.hpp
/// Swin (shifted-)window multi-head self-attention on NHWC token grids.
/// ref: transformers modeling_swin.py: window_partition, window_reverse, SwinSelfAttention (relative
/// position bias), SwinSelfOutput, SwinLayer.maybe_pad / get_attn_mask / set_shift_and_window_size /
/// forward (pad to a multiple of the window, cyclic shift by -shift, partition, attention with the
/// -100 mask between shifted regions, reverse, shift back, crop).
///
/// The fast path never materializes the padded or rolled map: `window_token_map` composes
/// pad -> roll -> partition into one index table (window-ordered token -> source pixel, or -1 for a
/// padding token, whose layer-normed value is zero as transformers pads after `layernorm_before`).
/// The plain-loop references (`window_partition_ref`, `roll_ref`, `pad_ref`,
/// `shifted_window_mask_ref`, `window_attention_ref`) follow the transformers code step by step.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../io/window_policy.hpp"
#include "gemm.hpp"
#include "linear.hpp"
#include "softmax.hpp"

namespace drt {

/// Attention score added between tokens of different shifted regions (ref: SwinLayer.get_attn_mask).
constexpr float shifted_window_mask_value = -100.f;

/// Geometry of one window-attention pass over an H x W token grid.
struct window_geometry {
  std::size_t height = 0, width = 0;  ///< token grid (unpadded)
  std::size_t window = 0;             ///< effective window size
  std::size_t shift = 0;              ///< effective cyclic shift (0 = regular windows)

  std::size_t padded_h() const noexcept { return (height + window - 1) / window * window; }
  std::size_t padded_w() const noexcept { return (width + window - 1) / window * window; }
  std::size_t windows_h() const noexcept { return padded_h() / window; }
  std::size_t windows_w() const noexcept { return padded_w() / window; }
  std::size_t windows() const noexcept { return windows_h() * windows_w(); }  ///< per image
  std::size_t tokens() const noexcept { return window * window; }             ///< per window
};

/// The geometry transformers uses for a block with configured `window` and `shift` (0 on even blocks,
/// window / 2 on odd ones) on an H x W grid.
inline window_geometry make_window_geometry(std::size_t height, std::size_t width, std::size_t window,
                                            std::size_t shift, window_policy policy = window_policy::always_partition) {
  if (height == 0 || width == 0 || window == 0 || shift >= window)
    throw invalid_input("window attention: grid " + std::to_string(height) + "x" + std::to_string(width) +
                        " with window " + std::to_string(window) + " and shift " + std::to_string(shift) +
                        " is invalid (needs a non-empty grid and shift < window)");
  window_geometry g{height, width, window, shift};
  if (policy == window_policy::clamp && std::min(height, width) <= window) {
    g.shift = 0;
    g.window = std::min(height, width);
  }
  return g;
}

// ------------------------------------------------------------------------------------------------
// Partition / reverse / roll / pad: fast versions and plain references.

namespace detail {
/// Calls f(offset in the windows, offset in the image) for every window row of ws * c floats
/// (throws unless H and W are multiples of ws): the one layout partition and reverse share.
template <class F>
void for_each_window_row(const char* what, std::size_t n, std::size_t h, std::size_t w, std::size_t c,
                         std::size_t ws, F&& f) {
  if (ws == 0 || h % ws || w % ws)
    throw shape_error(std::string(what) + ": grid " + std::to_string(h) + "x" + std::to_string(w) +
                      " is not a multiple of the window " + std::to_string(ws));
  const std::size_t nwh = h / ws, nww = w / ws, row = ws * c;
  for (std::size_t b = 0; b < n; ++b)
    for (std::size_t wy = 0; wy < nwh; ++wy)
      for (std::size_t wx = 0; wx < nww; ++wx)
        for (std::size_t ty = 0; ty < ws; ++ty)
          f((((b * nwh + wy) * nww + wx) * ws + ty) * row, ((b * h + wy * ws + ty) * w + wx * ws) * c);
}
}  // namespace detail

/// x: [N, H, W, C] (H, W multiples of ws) -> windows: [N * (H/ws) * (W/ws), ws*ws, C], windows in
/// row-major order per image, tokens row-major inside a window (ref: window_partition).
inline void window_partition(const float* x, std::size_t n, std::size_t h, std::size_t w, std::size_t c, std::size_t ws,
                             float* windows) {
  detail::for_each_window_row("window_partition", n, h, w, c, ws, [&](std::size_t wo, std::size_t xo) {
    std::memcpy(windows + wo, x + xo, ws * c * sizeof(float));
  });
}

/// Inverse of `window_partition` (ref: window_reverse): windows [N*nW, ws*ws, C] -> x [N, H, W, C].
inline void window_reverse(const float* windows, std::size_t n, std::size_t h, std::size_t w, std::size_t c,
                           std::size_t ws, float* x) {
  detail::for_each_window_row("window_reverse", n, h, w, c, ws, [&](std::size_t wo, std::size_t xo) {
    std::memcpy(x + xo, windows + wo, ws * c * sizeof(float));
  });
}

namespace detail {
/// Visits the 6-D view [N, H/ws, ws, W/ws, ws, C] permuted to (0, 1, 3, 2, 4, 5) element by element:
/// f(index in the windows, index in the NHWC image). The one order both plain references follow.
template <class F>
void for_each_window_element(std::size_t n, std::size_t h, std::size_t w, std::size_t c, std::size_t ws, F&& f) {
  const std::size_t nwh = h / ws, nww = w / ws;
  std::size_t o = 0;
  for (std::size_t b = 0; b < n; ++b)
    for (std::size_t i1 = 0; i1 < nwh; ++i1)
      for (std::size_t i3 = 0; i3 < nww; ++i3)
        for (std::size_t i2 = 0; i2 < ws; ++i2)
          for (std::size_t i4 = 0; i4 < ws; ++i4)
            for (std::size_t ch = 0; ch < c; ++ch) f(o++, ((b * h + i1 * ws + i2) * w + i3 * ws + i4) * c + ch);
}
}  // namespace detail

/// Plain reference of window_partition (ref: modeling_swin.window_partition: view + permute).
inline void window_partition_ref(const float* x, std::size_t n, std::size_t h, std::size_t w, std::size_t c,
                                 std::size_t ws, float* windows) {
  detail::for_each_window_element(n, h, w, c, ws, [&](std::size_t o, std::size_t i) { windows[o] = x[i]; });
}

/// Plain reference of window_reverse (the inverse permutation, element by element).
inline void window_reverse_ref(const float* windows, std::size_t n, std::size_t h, std::size_t w, std::size_t c,
                               std::size_t ws, float* x) {
  detail::for_each_window_element(n, h, w, c, ws, [&](std::size_t o, std::size_t i) { x[i] = windows[o]; });
}

/// torch.roll(x, shifts=(sy, sx), dims=(1, 2)) on [N, H, W, C]: y[i] = x[(i - s) mod size].
inline void roll_ref(const float* x, std::size_t n, std::size_t h, std::size_t w, std::size_t c, long sy, long sx,
                     float* y) {
  const long H = static_cast<long>(h), W = static_cast<long>(w);
  for (std::size_t b = 0; b < n; ++b)
    for (long yy = 0; yy < H; ++yy)
      for (long xx = 0; xx < W; ++xx) {
        const long src_y = ((yy - sy) % H + H) % H, src_x = ((xx - sx) % W + W) % W;
        for (std::size_t ch = 0; ch < c; ++ch)
          y[((b * h + static_cast<std::size_t>(yy)) * w + static_cast<std::size_t>(xx)) * c + ch] =
              x[((b * h + static_cast<std::size_t>(src_y)) * w + static_cast<std::size_t>(src_x)) * c + ch];
      }
}

/// Zero padding at the bottom and right (nn.functional.pad(x, (0, 0, 0, pw, 0, ph)) on [N, H, W, C]).
inline void pad_ref(const float* x, std::size_t n, std::size_t h, std::size_t w, std::size_t c, std::size_t ph,
                    std::size_t pw, float* y) {
  const std::size_t H = h + ph, W = w + pw;
  for (std::size_t b = 0; b < n; ++b)
    for (std::size_t yy = 0; yy < H; ++yy)
      for (std::size_t xx = 0; xx < W; ++xx)
        for (std::size_t ch = 0; ch < c; ++ch)
          y[((b * H + yy) * W + xx) * c + ch] = (yy < h && xx < w) ? x[((b * h + yy) * w + xx) * c + ch] : 0.f;
}

/// For each window-ordered token of one image (pad to the window multiple, roll by -shift, partition):
/// the source pixel y*W + x of the unpadded grid, or -1 for a padding token. Size windows()*tokens().
inline std::vector<std::int64_t> window_token_map(const window_geometry& g) {
  const std::size_t ws = g.window, hp = g.padded_h(), wp = g.padded_w(), nww = g.windows_w();
  std::vector<std::int64_t> map(g.windows() * g.tokens());
  for (std::size_t wi = 0; wi < g.windows(); ++wi)
    for (std::size_t t = 0; t < g.tokens(); ++t) {
      // token (ty, tx) of window (wy, wx) sits at (y, x) of the rolled map = (y + s, x + s) of the padded one
      const std::size_t y = ((wi / nww) * ws + t / ws + g.shift) % hp;
      const std::size_t x = ((wi % nww) * ws + t % ws + g.shift) % wp;
      map[wi * g.tokens() + t] = (y < g.height && x < g.width) ? static_cast<std::int64_t>(y * g.width + x) : -1;
    }
  return map;
}

namespace detail {
/// Region label along one axis of the padded, rolled map (ref: get_attn_mask's slices
/// (0, -window), (-window, -shift), (-shift, None)).
inline int shifted_region(std::size_t pos, std::size_t padded, std::size_t window, std::size_t shift) noexcept {
  if (pos < padded - window) return 0;
  return pos < padded - shift ? 1 : 2;
}

/// Region label (0..8) of every token of window `wi`; all zero without a shift.
inline void window_region_labels(const window_geometry& g, std::size_t wi, int* labels) noexcept {
  const std::size_t ws = g.window, nww = g.windows_w();
  for (std::size_t t = 0; t < g.tokens(); ++t) {
    if (g.shift == 0) {
      labels[t] = 0;
      continue;
    }
    const std::size_t y = (wi / nww) * ws + t / ws, x = (wi % nww) * ws + t % ws;
    labels[t] = 3 * shifted_region(y, g.padded_h(), ws, g.shift) + shifted_region(x, g.padded_w(), ws, g.shift);
  }
}
}  // namespace detail

/// The attention mask of a shifted-window pass: [windows, T, T], 0 within a region and -100 across.
/// Without a shift it is all zero (transformers then passes no mask at all).
inline std::vector<float> shifted_window_mask(const window_geometry& g) {
  const std::size_t T = g.tokens();
  std::vector<float> mask(g.windows() * T * T);
  std::vector<int> lab(T);
  for (std::size_t wi = 0; wi < g.windows(); ++wi) {
    detail::window_region_labels(g, wi, lab.data());
    for (std::size_t i = 0; i < T; ++i)
      for (std::size_t j = 0; j < T; ++j)
        mask[(wi * T + i) * T + j] = lab[i] == lab[j] ? 0.f : shifted_window_mask_value;
  }
  return mask;
}

/// Plain reference of the mask, literally as SwinLayer.get_attn_mask builds it: an image of region
/// counts filled through Python-style slices, partitioned into windows, pairwise differences != 0.
inline std::vector<float> shifted_window_mask_ref(std::size_t hp, std::size_t wp, std::size_t ws, std::size_t shift) {
  const std::size_t T = ws * ws, nw = (hp / ws) * (wp / ws);
  std::vector<float> mask(nw * T * T, 0.f);
  if (shift == 0) return mask;
  std::vector<float> img(hp * wp, 0.f);
  // slice(a, b) with negative bounds counted from the end, as Python does
  const long H = static_cast<long>(hp), W = static_cast<long>(wp), S = static_cast<long>(shift),
             WS = static_cast<long>(ws);
  const long hs[3][2] = {{0, H - WS}, {H - WS, H - S}, {H - S, H}};
  const long vs[3][2] = {{0, W - WS}, {W - WS, W - S}, {W - S, W}};
  float count = 0;
  for (const auto& hsl : hs)
    for (const auto& wsl : vs) {
      for (long y = std::max(0L, hsl[0]); y < hsl[1]; ++y)
        for (long x = std::max(0L, wsl[0]); x < wsl[1]; ++x) img[static_cast<std::size_t>(y * W + x)] = count;
      count += 1;
    }
  std::vector<float> win(nw * T);
  window_partition_ref(img.data(), 1, hp, wp, 1, ws, win.data());
  for (std::size_t wi = 0; wi < nw; ++wi)
    for (std::size_t i = 0; i < T; ++i)
      for (std::size_t j = 0; j < T; ++j)
        mask[(wi * T + i) * T + j] = win[wi * T + j] - win[wi * T + i] != 0.f ? shifted_window_mask_value : 0.f;
  return mask;
}

/// relative_position_index [T, T] of a ws x ws window (ref: SwinSelfAttention.__init__):
/// (dy + ws - 1) * (2 ws - 1) + (dx + ws - 1) with (dy, dx) = coords[i] - coords[j].
inline std::vector<std::int64_t> relative_position_index(std::size_t ws) {
  const std::size_t T = ws * ws;
  std::vector<std::int64_t> idx(T * T);
  const long w = static_cast<long>(ws);
  for (std::size_t i = 0; i < T; ++i)
    for (std::size_t j = 0; j < T; ++j) {
      const long dy = static_cast<long>(i / ws) - static_cast<long>(j / ws);
      const long dx = static_cast<long>(i % ws) - static_cast<long>(j % ws);
      idx[i * T + j] = (dy + w - 1) * (2 * w - 1) + (dx + w - 1);
    }
  return idx;
}

namespace detail {
/// Relative position bias [heads][T][T] for an effective window `ws` <= the table's window
/// `table_ws` (the centred sub-table when smaller). table: [(2 table_ws - 1)^2, heads].
inline std::vector<float> relative_position_bias(const float* table, std::size_t table_ws, std::size_t heads,
                                                 std::size_t ws) {
  const std::size_t T = ws * ws, span = 2 * table_ws - 1;
  const long off = static_cast<long>(table_ws) - 1;
  std::vector<float> bias(heads * T * T);
  for (std::size_t i = 0; i < T; ++i)
    for (std::size_t j = 0; j < T; ++j) {
      const long dy = static_cast<long>(i / ws) - static_cast<long>(j / ws);
      const long dx = static_cast<long>(i % ws) - static_cast<long>(j % ws);
      const std::size_t row = static_cast<std::size_t>((dy + off) * static_cast<long>(span) + dx + off);
      for (std::size_t h = 0; h < heads; ++h) bias[(h * T + i) * T + j] = table[row * heads + h];
    }
  return bias;
}
}  // namespace detail

// ------------------------------------------------------------------------------------------------
// The attention module.

/// Weights of one Swin attention (SwinAttention = SwinSelfAttention + SwinSelfOutput), PyTorch layouts.
struct window_attention_weights {
  const float *q_w, *k_w, *v_w;                                ///< [C, C]
  const float *q_b = nullptr, *k_b = nullptr, *v_b = nullptr;  ///< [C] (null when qkv_bias = false)
  const float* rel_table;                                      ///< relative_position_bias_table [(2ws-1)^2, heads]
  const float *o_w, *o_b;                                      ///< output dense [C, C], [C]
};

class window_attention {
public:
  window_attention() = default;
  /// `window`: the configured window size (the bias table's).
  window_attention(const window_attention_weights& w, std::size_t channels, std::size_t heads, std::size_t window)
      : c_(channels), heads_(heads), window_(window), out_(w.o_w, w.o_b, channels, channels) {
    if (heads == 0 || channels % heads)
      throw invalid_input("window attention: " + std::to_string(channels) + " channels are not a multiple of " +
                          std::to_string(heads) + " heads");
    // q, k and v in one GEMM, rows grouped by head: [q_0; k_0; v_0; q_1; k_1; v_1; ...] (d rows
    // each) -> outputs [T, 3C], so that the first h heads are the first 3 h d outputs (`heads_kept`).
    const std::size_t d = channels / heads;
    std::vector<float> wqkv(3 * channels * channels);
    const bool has_bias = w.q_b || w.k_b || w.v_b;
    std::vector<float> bqkv(has_bias ? 3 * channels : 0, 0.f);
    const float* ws[3] = {w.q_w, w.k_w, w.v_w};
    const float* bs[3] = {w.q_b, w.k_b, w.v_b};
    for (std::size_t h = 0; h < heads; ++h)
      for (std::size_t part = 0; part < 3; ++part) {
        const std::size_t dst = (3 * h + part) * d, src = h * d;
        std::copy_n(ws[part] + src * channels, d * channels, wqkv.begin() + static_cast<std::ptrdiff_t>(dst * channels));
        if (bs[part]) std::copy_n(bs[part] + src, d, bqkv.begin() + static_cast<std::ptrdiff_t>(dst));
      }
    qkv_ = linear(wqkv.data(), bqkv.empty() ? nullptr : bqkv.data(), 3 * channels, channels);
    const std::size_t rows = (2 * window - 1) * (2 * window - 1);
    table_.assign(w.rel_table, w.rel_table + rows * heads);
    bias_ = detail::relative_position_bias(table_.data(), window, heads, window);
  }

  std::size_t channels() const noexcept { return c_; }
  std::size_t heads() const noexcept { return heads_; }
  std::size_t window() const noexcept { return window_; }

  /// MACs for one image under geometry g (projections on padded windows, both attention matmuls).
  double macs(const window_geometry& g) const noexcept {
    const double rows = double(g.windows()) * g.tokens(), c = double(c_);
    return rows * 3 * c * c + double(g.height) * g.width * c * c + 2 * rows * g.tokens() * c;
  }

  /// normed: layer-normed tokens [N, H, W, C]; x: [N, H, W, C] holds the residual on entry and
  /// receives x + attention(normed). g: from make_window_geometry(H, W, ...). normed and x differ.
  /// `p`: the arithmetic of the q/k/v and output projections (the window products, 49-64 keys per
  /// query, and the softmax stay fp32: docs/precision.md). `heads_kept` (0 = all): only the first
  /// heads run -- the fused projection computes only their q, k and v, and the output projection
  /// reads only their channels (a head prefix of the model's head order, dynamic/channel_order.hpp).
  void run(const float* normed, std::size_t n, const window_geometry& g, float* x, precision p = precision::fp32,
           std::size_t heads_kept = 0) const {
    if (g.window > window_)
      throw shape_error("window attention: window " + std::to_string(g.window) + " exceeds the configured " +
                        std::to_string(window_));
    const std::size_t C = c_, T = g.tokens(), nw = g.windows(), hw = g.height * g.width;
    const std::size_t d = C / heads_, nwin = n * nw, rows = nwin * T;
    const std::size_t hk = heads_kept == 0 ? heads_ : std::min(heads_kept, heads_), ch = hk * d, C3 = 3 * ch;
    const auto map = window_token_map(g);
    detail::aligned_vector<float> xw(rows * C), qkv(rows * C3), ctxw(rows * ch), ctx(n * hw * ch);
    // 1. gather the (padded, rolled) windows; padding tokens are zero
    parallel_for(
        nwin,
        [&](std::size_t wi) {
          const std::size_t b = wi / nw, local = wi % nw;
          for (std::size_t t = 0; t < T; ++t) {
            float* dst = xw.data() + (wi * T + t) * C;
            const std::int64_t src = map[local * T + t];
            if (src < 0)
              std::fill(dst, dst + C, 0.f);
            else
              std::memcpy(dst, normed + (b * hw + static_cast<std::size_t>(src)) * C, C * sizeof(float));
          }
        },
        double(rows) * C);
    // 2. q, k, v for every window token
    qkv_.run_prefix(rows, C3, C, xw.data(), C, qkv.data(), C3, activation::none, nullptr, 0, nullptr, p);
    // 3. relative position bias + shift mask, one table per window kind (last row / last column)
    const std::vector<float> sub_bias = g.window == window_
                                            ? std::vector<float>()
                                            : detail::relative_position_bias(table_.data(), window_, heads_, g.window);
    const float* bias = g.window == window_ ? bias_.data() : sub_bias.data();
    const std::size_t kinds = g.shift > 0 ? 4 : 1;
    std::vector<float> bias_mask(kinds * hk * T * T);
    std::vector<int> lab(T);
    for (std::size_t kind = 0; kind < kinds; ++kind) {
      // kind bit 0: the window is in the last row of windows; bit 1: in the last column
      const std::size_t wy = (kind & 1) ? g.windows_h() - 1 : 0, wx = (kind & 2) ? g.windows_w() - 1 : 0;
      detail::window_region_labels(g, wy * g.windows_w() + wx, lab.data());
      for (std::size_t h = 0; h < hk; ++h)
        for (std::size_t i = 0; i < T; ++i)
          for (std::size_t j = 0; j < T; ++j)
            bias_mask[((kind * hk + h) * T + i) * T + j] =
                bias[(h * T + i) * T + j] + (lab[i] == lab[j] ? 0.f : shifted_window_mask_value);
    }
    auto kind_of = [&](std::size_t local) -> std::size_t {
      if (kinds == 1) return 0;
      return (local / g.windows_w() == g.windows_h() - 1 ? 1u : 0u) |
             (local % g.windows_w() == g.windows_w() - 1 ? 2u : 0u);
    };
    // 4. softmax(q k^T / sqrt(d) + bias + mask) v per window and head
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    parallel_for(
        nwin * hk,
        [&](std::size_t task) {
          thread_local packed_matrix kt, vp;
          thread_local detail::aligned_vector<float> scores;
          const std::size_t wi = task / hk, h = task % hk;
          if (scores.size() < T * T) scores.resize(T * T);
          const float* base = qkv.data() + wi * T * C3 + 3 * h * d;  // head h's q, then k, then v
          kt.assign_nk(base + d, T, d, C3);      // B = K^T: [d][T]
          vp.assign_kn(base + 2 * d, T, d, C3);  // B = V:   [T][d]
          gemm_epilogue ep;
          ep.alpha = scale;
          ep.residual = bias_mask.data() + (kind_of(wi % nw) * hk + h) * T * T;
          ep.ldr = T;
          gemm(T, T, d, base, C3, kt, scores.data(), T, ep, false);
          for (std::size_t i = 0; i < T; ++i) softmax_row(scores.data() + i * T, T);
          gemm(T, d, T, scores.data(), T, vp, ctxw.data() + wi * T * ch + h * d, ch, {}, false);
        },
        4.0 * double(rows) * T * ch);
    // 5. reverse + roll back + crop: scatter the real tokens back to the grid
    parallel_for(
        nwin,
        [&](std::size_t wi) {
          const std::size_t b = wi / nw, local = wi % nw;
          for (std::size_t t = 0; t < T; ++t) {
            const std::int64_t src = map[local * T + t];
            if (src >= 0)
              std::memcpy(ctx.data() + (b * hw + static_cast<std::size_t>(src)) * ch, ctxw.data() + (wi * T + t) * ch,
                          ch * sizeof(float));
          }
        },
        double(rows) * ch);
    // 6. output projection, residual added in the epilogue
    out_.run_prefix(n * hw, C, ch, ctx.data(), ch, x, C, activation::none, x, C, nullptr, p);
  }

  /// The output projection (its inputs are the heads' channels).
  const linear& output() const noexcept { return out_; }
  /// The two GEMM layers a precision lowers: "qkv" (query, key and value in one) and "output".
  template <class F>
  void for_each_linear(F&& f) const {
    f("qkv", qkv_);
    f("output", out_);
  }
  template <class F>
  void for_each_linear(F&& f) {
    f("qkv", qkv_);
    f("output", out_);
  }

private:
  std::size_t c_ = 0, heads_ = 1, window_ = 0;
  linear qkv_;
  std::vector<float> table_, bias_;
  linear out_;
};

/// Plain-loop reference of one attention pass, step by step as SwinLayer.forward + SwinAttention:
/// pad, roll by -shift, partition, q/k/v linears, scores / sqrt(d) + bias + mask, softmax, context,
/// reverse, roll by +shift, crop, output dense, residual. normed, x: [N, H, W, C]; x += attention.
/// `table_window` is the bias table's window (>= g.window).
inline void window_attention_ref(const float* normed, std::size_t n, std::size_t channels, std::size_t heads,
                                 std::size_t table_window, const window_attention_weights& w, const window_geometry& g,
                                 float* x) {
  const std::size_t C = channels, H = g.height, W = g.width, hp = g.padded_h(), wp = g.padded_w();
  const std::size_t ws = g.window, T = g.tokens(), nw = g.windows(), d = C / heads;
  std::vector<float> padded(n * hp * wp * C), rolled(padded.size()), win(padded.size());
  pad_ref(normed, n, H, W, C, hp - H, wp - W, padded.data());
  roll_ref(padded.data(), n, hp, wp, C, -static_cast<long>(g.shift), -static_cast<long>(g.shift), rolled.data());
  window_partition_ref(rolled.data(), n, hp, wp, C, ws, win.data());
  const std::size_t rows = n * nw * T;
  std::vector<float> q(rows * C), k(rows * C), v(rows * C), ctx(rows * C);
  linear_ref(rows, win.data(), w.q_w, w.q_b, C, C, q.data());
  linear_ref(rows, win.data(), w.k_w, w.k_b, C, C, k.data());
  linear_ref(rows, win.data(), w.v_w, w.v_b, C, C, v.data());
  const auto mask = shifted_window_mask_ref(hp, wp, ws, g.shift);
  const auto bias = detail::relative_position_bias(w.rel_table, table_window, heads, ws);
  std::vector<double> s(T);
  for (std::size_t wi = 0; wi < n * nw; ++wi)
    for (std::size_t h = 0; h < heads; ++h)
      for (std::size_t i = 0; i < T; ++i) {
        double mx = -1e300;
        for (std::size_t j = 0; j < T; ++j) {
          double acc = 0;
          for (std::size_t e = 0; e < d; ++e)
            acc += double(q[(wi * T + i) * C + h * d + e]) * k[(wi * T + j) * C + h * d + e];
          s[j] = acc / std::sqrt(double(d)) + bias[(h * T + i) * T + j] + mask[((wi % nw) * T + i) * T + j];
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (std::size_t j = 0; j < T; ++j) sum += (s[j] = std::exp(s[j] - mx));
        for (std::size_t e = 0; e < d; ++e) {
          double acc = 0;
          for (std::size_t j = 0; j < T; ++j) acc += s[j] / sum * v[(wi * T + j) * C + h * d + e];
          ctx[(wi * T + i) * C + h * d + e] = static_cast<float>(acc);
        }
      }
  window_reverse_ref(ctx.data(), n, hp, wp, C, ws, rolled.data());
  roll_ref(rolled.data(), n, hp, wp, C, static_cast<long>(g.shift), static_cast<long>(g.shift), padded.data());
  std::vector<float> cropped(n * H * W * C), out(n * H * W * C);
  for (std::size_t b = 0; b < n; ++b)
    for (std::size_t y = 0; y < H; ++y)
      for (std::size_t xx = 0; xx < W; ++xx)
        for (std::size_t ch = 0; ch < C; ++ch)
          cropped[((b * H + y) * W + xx) * C + ch] = padded[((b * hp + y) * wp + xx) * C + ch];
  linear_ref(n * H * W, cropped.data(), w.o_w, w.o_b, C, C, out.data());
  for (std::size_t i = 0; i < out.size(); ++i) x[i] += out[i];
}

}  // namespace drt
