#pragma once
/// @file winograd.hpp
/// 3x3, stride-1, padding-1 convolutions by Winograd's minimal filtering F(m x m, 3x3) (Lavin & Gray,
/// "Fast Algorithms for Convolutional Neural Networks", 2016): each m x m block of outputs is
/// computed from an (m+2) x (m+2) input tile with (m+2)^2 multiplications per (input, output) channel
/// pair instead of 9 m^2. m = 2 (16 positions): the GEMM work is 16/36 = 1/2.25 of the direct
/// convolution's; m = 4 (36 positions): 36/144 = 1/4. Why: the 3x3 convolutions are 40 % of
/// ResNet-50's time and 65 % of Swin-T + UPerNet's MACs (fpn_bottleneck), and they already run at
/// 85-90 % of the FMA peak as implicit GEMMs: only less arithmetic makes them faster.
///
/// Layout of the work, per block of tiles (sized so that its transformed data stays within a few MB):
///   1. input transform  V[p][t][c] = (B^T d B)[p] for tile t, kept channel c, position p;
///   2. one GEMM per p    M[p] = V[p] x U[p], U[p] = (G g G^T)[p] packed like any GEMM B operand,
///                        so a prefix of the output channels uses fewer panels and a run of input
///                        channels is a run of reduction rows (dynamic paths keep working);
///   3. output transform  y = act(A^T M A + bias) for the m x m outputs of each tile.
/// Rounding: F(2x2) multiplies by 0, +-1 and 1/2 only, as exact as the direct convolution; F(4x4)
/// uses +-2, 4, 5, 8 and 1/4, 1/6, 1/12, 1/24, and its float error grows by about 10x (measured in
/// tests/layers/test_winograd.cpp: rel L2 ~1e-6 instead of ~2e-7). The default tile is 4
/// (`default_conv3x3_form`); layers take their form from `conv2d_options` when built.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdlib>
#include <string>
#include <vector>

#include "../core/simd.hpp"

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "activation.hpp"
#include "gemm.hpp"

namespace drt {

/// The form of the 3x3 stride-1 convolutions: Winograd F(m x m, 3x3) with m = tile, or implicit GEMM.
struct conv3x3_form {
  bool winograd = true;
  std::size_t tile = 4;
};

/// Parses a DRT_CONV3X3 value: "winograd4" (the default; also unset or empty), "winograd2" or "implicit".
inline conv3x3_form parse_conv3x3_form(const char* value) {
  const std::string v = value ? value : "";
  if (v.empty() || v == "winograd4") return {true, 4};
  if (v == "winograd2") return {true, 2};
  if (v == "implicit") return {false, 4};
  throw invalid_input("DRT_CONV3X3='" + v + "': expected winograd4 (the default), winograd2 or implicit");
}

/// The process default of the 3x3 form, read once from the environment variable DRT_CONV3X3
/// (parse_conv3x3_form; an invalid value throws here, naming it). It is only the starting value of
/// `conv2d_options` (layers/conv2d.hpp): each layer is given its form explicitly when built and keeps
/// it; nothing changes it at run time. The Winograd form runs ResNet-50 1.2x and Swin-T + UPerNet
/// 2.6x faster on this project's machine but holds 4x the 3x3 weights at F(4x4) (1.8x at F(2x2)):
/// ResNet-50 192 MiB of weights instead of 98, Swin-T + UPerNet 564 instead of 227. F(4x4, 3x3)
/// (the default tile) is 1.3-1.6x faster than F(2x2) on ResNet-50's and UPerNet's 3x3s with a rel L2
/// error ~1e-6 against a double reference; F(2x2, 3x3) ~2e-7, the direct convolution's level.
inline const conv3x3_form& default_conv3x3_form() {
  static const conv3x3_form form = parse_conv3x3_form(std::getenv("DRT_CONV3X3"));
  return form;
}

/// default_conv3x3_form().winograd / .tile, read-only: what a default-built layer takes (reports
/// such as engine/profile.hpp's name it). To build a layer in another form, pass conv2d_options.
inline bool winograd_enabled() { return default_conv3x3_form().winograd; }
inline std::size_t winograd_default_tile() { return default_conv3x3_form().tile; }

class winograd_conv3x3 {
public:
  /// Fewer input or output channels than this: the transforms would cost more than the GEMM saves.
  static constexpr std::size_t min_channels = 16;
  /// Transformed input + output of one block of tiles: ~24 MB, a few GEMM row blocks of the widest
  /// layers (fpn_bottleneck: 2048 + 512 channels, 192 tiles) and whole maps of ResNet's first stage.
  static constexpr std::size_t default_block_bytes = std::size_t(24) << 20;

  /// True for the convolutions this class computes: 3x3, stride 1, padding 1, one group.
  static bool applies(std::size_t kernel, std::size_t stride, std::size_t pad, std::size_t groups,
                      std::size_t in_channels, std::size_t out_channels) noexcept {
    return kernel == 3 && stride == 1 && pad == 1 && groups == 1 && in_channels >= min_channels &&
           out_channels >= min_channels;
  }

  winograd_conv3x3() = default;
  /// weight: [OC][IC][3][3] (PyTorch layout, any BatchNorm already folded in); tile: 2 or 4.
  winograd_conv3x3(const float* weight, std::size_t out_channels, std::size_t in_channels,
                   std::size_t tile = winograd_default_tile())
      : ic_(in_channels), oc_(out_channels), m_(tile) {
    if (tile != 2 && tile != 4)
      throw invalid_input("winograd_conv3x3: output tile " + std::to_string(tile) + " (F(m x m, 3x3) has m = 2 or 4)");
    // U = G g G^T. F(2x2): G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]];
    // F(4x4): G = [[1/4, 0, 0], [-1/6, -1/6, -1/6], [-1/6, 1/6, -1/6], [1/24, 1/12, 1/6],
    //              [1/24, -1/12, 1/6], [0, 0, 1]]. In double, rounded once.
    static constexpr double G2[4][3] = {{1, 0, 0}, {.5, .5, .5}, {.5, -.5, .5}, {0, 0, 1}};
    static constexpr double G4[6][3] = {{1. / 4, 0, 0},
                                        {-1. / 6, -1. / 6, -1. / 6},
                                        {-1. / 6, 1. / 6, -1. / 6},
                                        {1. / 24, 1. / 12, 1. / 6},
                                        {1. / 24, -1. / 12, 1. / 6},
                                        {0, 0, 1}};
    const std::size_t a = alpha(), pos = positions();
    std::vector<float> u(pos * oc_ * ic_);  // [p][o][i]
    for (std::size_t o = 0; o < oc_; ++o)
      for (std::size_t i = 0; i < ic_; ++i) {
        const float* g = weight + (o * ic_ + i) * 9;
        double gg[6][3];  // G g
        for (std::size_t r = 0; r < a; ++r)
          for (std::size_t c = 0; c < 3; ++c) {
            const double* G = m_ == 2 ? G2[r] : G4[r];
            gg[r][c] = G[0] * g[c] + G[1] * g[3 + c] + G[2] * g[6 + c];
          }
        for (std::size_t r = 0; r < a; ++r)
          for (std::size_t c = 0; c < a; ++c) {
            const double* G = m_ == 2 ? G2[c] : G4[c];
            u[((r * a + c) * oc_ + o) * ic_ + i] =
                static_cast<float>(gg[r][0] * G[0] + gg[r][1] * G[1] + gg[r][2] * G[2]);
          }
      }
    u_.resize(pos);
    for (std::size_t p = 0; p < pos; ++p) u_[p] = packed_matrix::from_nk(u.data() + p * oc_ * ic_, oc_, ic_, ic_);
  }

  std::size_t tile() const noexcept { return m_; }                      ///< outputs per tile side (m)
  std::size_t alpha() const noexcept { return m_ + 2; }                 ///< input tile side
  std::size_t positions() const noexcept { return alpha() * alpha(); }  ///< GEMMs per block

  /// Tiles per thread-private block when a layer of `tiles` output tiles, `kept` input and `n_out`
  /// output channels runs block by block in L2 (see run_in_l2), else 0.
  std::size_t l2_block_tiles(std::size_t tiles, std::size_t kept, std::size_t n_out) const noexcept {
    constexpr std::size_t MR = detail::gemm_mr, l2_budget = std::size_t(512) << 10;
    const std::size_t per_tile = positions() * (kept + n_out) * sizeof(float);
    const std::size_t u_bytes = positions() * kept * n_out * sizeof(float);
    const std::size_t block = std::min(detail::gemm_mc, std::max(MR, l2_budget / per_tile / MR * MR));
    const std::size_t threads = static_cast<std::size_t>(max_threads());
    return u_bytes > (std::size_t(1) << 20) || tiles < 4 * threads * block ? 0 : block;
  }

  bool empty() const noexcept { return ic_ == 0; }
  std::size_t in_channels() const noexcept { return ic_; }
  std::size_t out_channels() const noexcept { return oc_; }
  std::size_t bytes() const noexcept { return u_.empty() ? 0 : positions() * u_[0].bytes(); }
  /// Output tiles of an H x W map per image.
  std::size_t tiles(std::size_t h, std::size_t w) const noexcept { return ((h + m_ - 1) / m_) * ((w + m_ - 1) / m_); }

  /// y[:, :, :, :n_out] (pixel stride ldy) = act(bias + conv3x3(x)), where the reduction runs over
  /// `segs`: segment s reads input channels [a_offset, a_offset + k) of each pixel (pixel stride ldx)
  /// against weight input channels [b_row, b_row + k). x: [N, H, W, *] NHWC; y: [N, H, W, *].
  /// block_bytes bounds the transformed data of one block of tiles (tests shrink it to cover several).
  void run(const float* x, std::size_t ldx, std::size_t n, std::size_t h, std::size_t w,
           const std::vector<gemm_segment>& segs, const float* bias, float* y, std::size_t ldy, std::size_t n_out,
           activation act, std::size_t block_bytes = default_block_bytes) const {
    if (empty()) throw invalid_input("winograd_conv3x3: no weights");
    std::size_t kept = 0;
    for (const auto& s : segs) {
      if (s.b_row + s.k > ic_ || s.a_offset + s.k > ldx)
        throw shape_error("winograd_conv3x3: segment channels [" + std::to_string(s.a_offset) + ", +" +
                          std::to_string(s.k) + ") of a pixel stride " + std::to_string(ldx) +
                          " against weight rows [" + std::to_string(s.b_row) + ", +" + std::to_string(s.k) + ") of " +
                          std::to_string(ic_));
      kept += s.k;
    }
    if (n_out > oc_ || n_out > ldy)
      throw shape_error("winograd_conv3x3: " + std::to_string(n_out) + " outputs (pixel stride " + std::to_string(ldy) +
                        ") exceed the conv's " + std::to_string(oc_));
    if (n == 0 || h == 0 || w == 0 || n_out == 0) return;
    if (m_ == 2)
      run_tiles<2>(x, ldx, n, h, w, segs, kept, bias, y, ldy, n_out, act, block_bytes);
    else
      run_tiles<4>(x, ldx, n, h, w, segs, kept, bias, y, ldy, n_out, act, block_bytes);
  }

private:
  using simd = detail::simd;

  /// Where tile t of a layer lies: its image and the top-left output pixel.
  struct tile_pos {
    std::size_t img, y0, x0;
  };
  template <std::size_t M>
  static tile_pos locate(std::size_t tile, std::size_t th, std::size_t tw) noexcept {
    return {tile / (th * tw), M * ((tile / tw) % th), M * (tile % tw)};
  }

  template <std::size_t M>
  void run_tiles(const float* x, std::size_t ldx, std::size_t n, std::size_t h, std::size_t w,
                 const std::vector<gemm_segment>& segs, std::size_t kept, const float* bias, float* y, std::size_t ldy,
                 std::size_t n_out, activation act, std::size_t block_bytes) const {
    constexpr std::size_t P = (M + 2) * (M + 2);
    const std::size_t th = (h + M - 1) / M, tw = (w + M - 1) / M, tiles = n * th * tw;
    // The GEMMs' reduction over the compact V: segment s starts at column `col` of V.
    std::vector<gemm_segment> vsegs;
    std::size_t col = 0;
    for (const auto& s : segs) {
      if (s.k == 0) continue;
      vsegs.push_back({col, s.b_row, s.k});
      col += s.k;
    }
    // One block of `count` tiles from tile t0, into the caller's v, m ([P][count][kept], [P][count][n_out]).
    auto transform_in = [&](std::size_t t0, std::size_t t, std::size_t count, float* v) {
      const tile_pos tp = locate<M>(t0 + t, th, tw);
      std::size_t c0 = 0;
      for (const auto& s : segs) {
        if (s.k == 0) continue;
        transform_input<M>(x + tp.img * h * w * ldx + s.a_offset, ldx, h, w, tp.y0, tp.x0, s.k, v + t * kept + c0,
                           count * kept);
        c0 += s.k;
      }
    };
    auto transform_out = [&](std::size_t t0, std::size_t t, std::size_t count, const float* m) {
      const tile_pos tp = locate<M>(t0 + t, th, tw);
      transform_output<M>(m + t * n_out, count * n_out, n_out, bias, act, y + tp.img * h * w * ldy, ldy, h, w, tp.y0,
                          tp.x0);
    };
    auto gemm_p = [&](std::size_t p, std::size_t r0, std::size_t rows, std::size_t count, const float* v, float* m) {
      detail::gemm_dispatch(rows, n_out,
                            detail::strided_rows{v + (p * count + r0) * kept, kept, vsegs.data(), vsegs.size()}, u_[p],
                            m + (p * count + r0) * n_out, n_out, gemm_epilogue{}, false);
    };

    // Many tiles, few channels (ResNet's first stages: 4800 tiles of 64 channels at 640x480): each
    // thread takes blocks of tiles small enough that their V and M stay in its L2 and runs all three
    // steps on them. Phase by phase, 40 MB would go through memory there, more time than the GEMMs.
    const std::size_t l2_block = block_bytes == default_block_bytes ? l2_block_tiles(tiles, kept, n_out) : 0;
    if (l2_block > 0) {
      parallel_for((tiles + l2_block - 1) / l2_block,
                   [&](std::size_t bi) {
                     thread_local detail::aligned_vector<float> v, m;
                     if (v.size() < P * l2_block * kept) v.resize(P * l2_block * kept);
                     if (m.size() < P * l2_block * n_out) m.resize(P * l2_block * n_out);
                     const std::size_t t0 = bi * l2_block, count = std::min(l2_block, tiles - t0);
                     for (std::size_t t = 0; t < count; ++t) transform_in(t0, t, count, v.data());
                     for (std::size_t p = 0; p < P; ++p) gemm_p(p, 0, count, count, v.data(), m.data());
                     for (std::size_t t = 0; t < count; ++t) transform_out(t0, t, count, m.data());
                   },
                   2.0 * P * tiles * kept * n_out);
      return;
    }
    // Otherwise phase by phase over blocks of tiles: V and M of a block within block_bytes, and at
    // least one GEMM row block (fewer rows would re-stream every U[p] from memory per few tiles)
    // unless block_bytes asks for less.
    const std::size_t per_tile = P * (kept + n_out) * sizeof(float);
    std::size_t block = std::max<std::size_t>(1, block_bytes / std::max<std::size_t>(per_tile, 1));
    if (block_bytes >= default_block_bytes) block = std::max(block, detail::gemm_mc);
    block = std::min(block, tiles);
    thread_local detail::aligned_vector<float> v, m;
    if (v.size() < P * block * kept) v.resize(P * block * kept);
    if (m.size() < P * block * n_out) m.resize(P * block * n_out);
    float* vb = v.data();
    float* mb = m.data();
    for (std::size_t t0 = 0; t0 < tiles; t0 += block) {
      const std::size_t count = std::min(block, tiles - t0);
      parallel_for(
          count, [&](std::size_t t) { transform_in(t0, t, count, vb); }, double(count) * kept * 8 * P);
      // one GEMM per position; tasks = (position, row block), each over all the output panels
      const std::size_t rblocks = (count + detail::gemm_mc - 1) / detail::gemm_mc;
      parallel_for(
          P * rblocks,
          [&](std::size_t task) {
            const std::size_t p = task / rblocks, r0 = (task % rblocks) * detail::gemm_mc;
            gemm_p(p, r0, std::min(detail::gemm_mc, count - r0), count, vb, mb);
          },
          2.0 * P * count * kept * n_out);
      parallel_for(
          count, [&](std::size_t t) { transform_out(t0, t, count, mb); }, double(count) * n_out * 8 * P);
    }
  }

  /// V[p] = (B^T d B)[p] for the (M+2)^2 input patch whose top-left is (y0 - 1, x0 - 1) (zero outside
  /// the image), channels [0, k) at x: writes v[p * pstride + c].
  template <std::size_t M>
  static void transform_input(const float* x, std::size_t ldx, std::size_t h, std::size_t w, std::size_t y0,
                              std::size_t x0, std::size_t k, float* v, std::size_t pstride) noexcept {
    constexpr std::size_t A = M + 2;
    const float* px[A][A];
    for (std::size_t i = 0; i < A; ++i)
      for (std::size_t j = 0; j < A; ++j) {
        const long iy = static_cast<long>(y0 + i) - 1, ix = static_cast<long>(x0 + j) - 1;
        px[i][j] = iy >= 0 && ix >= 0 && iy < static_cast<long>(h) && ix < static_cast<long>(w)
                       ? x + (static_cast<std::size_t>(iy) * w + static_cast<std::size_t>(ix)) * ldx
                       : nullptr;
      }
    constexpr std::size_t W = simd::size;
    std::size_t c = 0;
    for (; c + W <= k; c += W) {
      simd d[A][A];
      for (std::size_t i = 0; i < A; ++i)
        for (std::size_t j = 0; j < A; ++j) d[i][j] = px[i][j] ? simd::load_unaligned(px[i][j] + c) : simd(0.f);
      input_tile<M>(d, v + c, pstride);
    }
    for (; c < k; ++c) {
      float d[A][A];
      for (std::size_t i = 0; i < A; ++i)
        for (std::size_t j = 0; j < A; ++j) d[i][j] = px[i][j] ? px[i][j][c] : 0.f;
      input_tile<M>(d, v + c, pstride);
    }
  }

  /// One B^T x 1-D transform: out[i * so] from in[j * si], j < M + 2.
  /// F(2x2): B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]].
  /// F(4x4): B^T = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
  ///                [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]].
  template <std::size_t M, class T>
  static void input_1d(const T* in, std::size_t si, T* out, std::size_t so) noexcept {
    const T d0 = in[0], d1 = in[si], d2 = in[2 * si], d3 = in[3 * si];
    if constexpr (M == 2) {
      out[0] = d0 - d2;
      out[so] = d1 + d2;
      out[2 * so] = d2 - d1;
      out[3 * so] = d1 - d3;
    } else {
      const T d4 = in[4 * si], d5 = in[5 * si];
      const T four(4.f), five(5.f), two(2.f);
      out[0] = four * d0 - five * d2 + d4;
      out[so] = d3 + d4 - four * (d1 + d2);
      out[2 * so] = d4 - d3 + four * (d1 - d2);
      out[3 * so] = d4 - d2 + two * (d3 - d1);
      out[4 * so] = d4 - d2 + two * (d1 - d3);
      out[5 * so] = four * d1 - five * d3 + d5;
    }
  }

  template <std::size_t M, class T>
  static void input_tile(const T (&d)[M + 2][M + 2], float* v, std::size_t pstride) noexcept {
    constexpr std::size_t A = M + 2;
    T t[A][A], r[A];
    for (std::size_t j = 0; j < A; ++j) input_1d<M>(&d[0][j], A, &t[0][j], A);  // B^T d, column by column
    for (std::size_t i = 0; i < A; ++i) {                                       // (B^T d) B, row by row
      input_1d<M>(&t[i][0], 1, r, 1);
      for (std::size_t j = 0; j < A; ++j) store(r[j], v + (i * A + j) * pstride);
    }
  }

  /// The M x M outputs at (y0, x0) from m[p * pstride + o], o < n_out: y = act(A^T m A + bias);
  /// outputs past the image edge are not written.
  template <std::size_t M>
  static void transform_output(const float* m, std::size_t pstride, std::size_t n_out, const float* bias,
                               activation act, float* y, std::size_t ldy, std::size_t h, std::size_t w, std::size_t y0,
                               std::size_t x0) noexcept {
    float* py[M][M];
    for (std::size_t a = 0; a < M; ++a)
      for (std::size_t b = 0; b < M; ++b)
        py[a][b] = y0 + a < h && x0 + b < w ? y + ((y0 + a) * w + x0 + b) * ldy : nullptr;
    switch (act) {
      case activation::none:
        return output_channels<M, activation::none>(m, pstride, n_out, bias, py);
      case activation::relu:
        return output_channels<M, activation::relu>(m, pstride, n_out, bias, py);
      case activation::gelu:
        return output_channels<M, activation::gelu>(m, pstride, n_out, bias, py);
    }
  }

  template <std::size_t M, activation Act>
  static void output_channels(const float* m, std::size_t pstride, std::size_t n_out, const float* bias,
                              float* const (&py)[M][M]) noexcept {
    constexpr std::size_t A = M + 2, W = simd::size;
    std::size_t o = 0;
    for (; o + W <= n_out; o += W) {
      simd t[A][A];
      for (std::size_t p = 0; p < A * A; ++p) t[p / A][p % A] = simd::load_unaligned(m + p * pstride + o);
      output_tile<M, Act>(t, bias ? simd::load_unaligned(bias + o) : simd(0.f), py, o);
    }
    for (; o < n_out; ++o) {
      float t[A][A];
      for (std::size_t p = 0; p < A * A; ++p) t[p / A][p % A] = m[p * pstride + o];
      output_tile<M, Act>(t, bias ? bias[o] : 0.f, py, o);
    }
  }

  /// One A^T x 1-D transform: out[i * so], i < M, from in[j * si], j < M + 2.
  /// F(2x2): A^T = [[1, 1, 1, 0], [0, 1, -1, -1]].
  /// F(4x4): A^T = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]].
  template <std::size_t M, class T>
  static void output_1d(const T* in, std::size_t si, T* out, std::size_t so) noexcept {
    const T m0 = in[0], m1 = in[si], m2 = in[2 * si], m3 = in[3 * si];
    if constexpr (M == 2) {
      out[0] = m0 + m1 + m2;
      out[so] = m1 - m2 - m3;
    } else {
      const T m4 = in[4 * si], m5 = in[5 * si];
      const T sum12 = m1 + m2, dif12 = m1 - m2, sum34 = m3 + m4, dif34 = m3 - m4;
      out[0] = m0 + sum12 + sum34;
      out[so] = dif12 + T(2.f) * dif34;
      out[2 * so] = sum12 + T(4.f) * sum34;
      out[3 * so] = dif12 + T(8.f) * dif34 + m5;
    }
  }

  template <std::size_t M, activation Act, class T>
  static void output_tile(const T (&t)[M + 2][M + 2], const T& bias, float* const (&py)[M][M], std::size_t o) noexcept {
    constexpr std::size_t A = M + 2;
    T r[M][A], out[M];
    for (std::size_t j = 0; j < A; ++j) output_1d<M>(&t[0][j], A, &r[0][j], A);  // A^T m, column by column
    for (std::size_t a = 0; a < M; ++a) {                                        // (A^T m) A, row by row
      output_1d<M>(&r[a][0], 1, out, 1);
      for (std::size_t b = 0; b < M; ++b)
        if (py[a][b]) store(activate<Act>(out[b] + bias), py[a][b] + o);
    }
  }

  static void store(const simd& v, float* p) noexcept { v.store_unaligned(p); }
  static void store(float v, float* p) noexcept { *p = v; }

  std::size_t ic_ = 0, oc_ = 0, m_ = 2;
  std::vector<packed_matrix> u_;  ///< one per position, [IC][OC] packed
};

}  // namespace drt
