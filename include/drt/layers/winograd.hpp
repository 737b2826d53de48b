#pragma once
/// @file winograd.hpp
/// 3x3, stride-1, padding-1 convolutions by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray,
/// "Fast Algorithms for Convolutional Neural Networks", 2016): each 2x2 block of outputs is computed
/// from a 4x4 input tile with 16 multiplications per (input, output) channel pair instead of 36, so
/// the GEMM work is 16/36 = 1/2.25 of the direct convolution's. Why: the 3x3 convolutions are 40 % of
/// ResNet-50's time and 65 % of Swin-T + UPerNet's MACs (fpn_bottleneck), and they already run at
/// 85-90 % of the FMA peak as implicit GEMMs: only less arithmetic makes them faster.
///
/// Layout of the work, per block of tiles (sized so that its transformed data stays within a few MB):
///   1. input transform  V[p][t][c] = (B^T d B)[p] for tile t, kept channel c (p = 16 positions);
///   2. 16 GEMMs          M[p] = V[p] x U[p], U[p] = (G g G^T)[p] packed like any GEMM B operand,
///                        so a prefix of the output channels uses fewer panels and a run of input
///                        channels is a run of reduction rows (dynamic paths keep working);
///   3. output transform  y = act(A^T M A + bias) for the 2x2 outputs of each tile.
/// The transforms use only 0, +-1 and 1/2 (F(2x2, 3x3)), so float32 rounding stays at the level of
/// the direct convolution's (parity tests: rel L2 ~1e-7 on random data, see tests/layers).

#include <algorithm>
#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "activation.hpp"
#include "gemm.hpp"

namespace drt {

/// Whether convolutions that qualify run as Winograd F(2x2, 3x3) (default) or as implicit GEMMs.
/// A process-wide switch for comparisons (benchmarks, tests); not meant to change during a forward.
inline bool& winograd_enabled() noexcept {
  static bool enabled = true;
  return enabled;
}

class winograd_conv3x3 {
public:
  static constexpr std::size_t positions = 16;  ///< 4x4 transformed tile
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
  /// weight: [OC][IC][3][3] (PyTorch layout, any BatchNorm already folded in).
  winograd_conv3x3(const float* weight, std::size_t out_channels, std::size_t in_channels)
      : ic_(in_channels), oc_(out_channels) {
    // U = G g G^T, G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]].
    static constexpr float G[4][3] = {{1.f, 0.f, 0.f}, {.5f, .5f, .5f}, {.5f, -.5f, .5f}, {0.f, 0.f, 1.f}};
    std::vector<float> u(positions * oc_ * ic_);  // [p][o][i]
    for (std::size_t o = 0; o < oc_; ++o)
      for (std::size_t i = 0; i < ic_; ++i) {
        const float* g = weight + (o * ic_ + i) * 9;
        float gg[4][3];  // G g
        for (std::size_t a = 0; a < 4; ++a)
          for (std::size_t c = 0; c < 3; ++c) gg[a][c] = G[a][0] * g[c] + G[a][1] * g[3 + c] + G[a][2] * g[6 + c];
        for (std::size_t a = 0; a < 4; ++a)
          for (std::size_t b = 0; b < 4; ++b)
            u[((a * 4 + b) * oc_ + o) * ic_ + i] = gg[a][0] * G[b][0] + gg[a][1] * G[b][1] + gg[a][2] * G[b][2];
      }
    for (std::size_t p = 0; p < positions; ++p) u_[p] = packed_matrix::from_nk(u.data() + p * oc_ * ic_, oc_, ic_, ic_);
  }

  /// Tiles per thread-private block when a layer of `tiles` 2x2 output tiles, `kept` input and
  /// `n_out` output channels runs block by block in L2 (see run_in_l2), else 0.
  static std::size_t l2_block_tiles(std::size_t tiles, std::size_t kept, std::size_t n_out) noexcept {
    constexpr std::size_t MR = detail::gemm_mr, l2_budget = std::size_t(512) << 10;
    const std::size_t per_tile = positions * (kept + n_out) * sizeof(float);
    const std::size_t u_bytes = positions * kept * n_out * sizeof(float);
    const std::size_t block = std::min(detail::gemm_mc, std::max(MR, l2_budget / per_tile / MR * MR));
    const std::size_t threads = static_cast<std::size_t>(max_threads());
    return u_bytes > (std::size_t(1) << 20) || tiles < 4 * threads * block ? 0 : block;
  }

  bool empty() const noexcept { return ic_ == 0; }
  std::size_t in_channels() const noexcept { return ic_; }
  std::size_t out_channels() const noexcept { return oc_; }
  std::size_t bytes() const noexcept { return positions * u_[0].bytes(); }

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
    const std::size_t th = (h + 1) / 2, tw = (w + 1) / 2, tiles = n * th * tw;
    // The GEMMs' reduction over the compact V: segment s starts at column `col[s]` of V.
    std::vector<gemm_segment> vsegs;
    std::size_t col = 0;
    for (const auto& s : segs) {
      if (s.k == 0) continue;
      vsegs.push_back({col, s.b_row, s.k});
      col += s.k;
    }
    if (block_bytes == default_block_bytes && run_in_l2(x, ldx, n, h, w, segs, vsegs, kept, bias, y, ldy, n_out, act))
      return;
    // Tiles per block: V and M of a block ([16][T][kept] + [16][T][n_out] floats) within block_bytes,
    // and at least one GEMM row block (fewer rows would re-stream every U[p] from memory per few tiles)
    // unless block_bytes asks for less.
    const std::size_t per_tile = positions * (kept + n_out) * sizeof(float);
    std::size_t block = std::max<std::size_t>(1, block_bytes / std::max<std::size_t>(per_tile, 1));
    if (block_bytes >= default_block_bytes) block = std::max(block, detail::gemm_mc);
    block = std::min(block, tiles);
    thread_local detail::aligned_vector<float> v, m;
    if (v.size() < positions * block * kept) v.resize(positions * block * kept);
    if (m.size() < positions * block * n_out) m.resize(positions * block * n_out);
    const std::size_t ldm = n_out;
    for (std::size_t t0 = 0; t0 < tiles; t0 += block) {
      const std::size_t count = std::min(block, tiles - t0);
      float* vb = v.data();
      float* mb = m.data();
      // 1. input transform
      parallel_for(
          count,
          [&](std::size_t t) {
            const std::size_t tile = t0 + t, img = tile / (th * tw), ty = (tile / tw) % th, tx = tile % tw;
            std::size_t c0 = 0;
            for (const auto& s : segs) {
              if (s.k == 0) continue;
              transform_input(x + img * h * w * ldx + s.a_offset, ldx, h, w, 2 * ty, 2 * tx, s.k, vb + t * kept + c0,
                              count * kept);
              c0 += s.k;
            }
          },
          double(count) * kept * 64);
      // 2. one GEMM per position; tasks = (position, row block), each over all the output panels
      const std::size_t rblocks = (count + detail::gemm_mc - 1) / detail::gemm_mc;
      parallel_for(
          positions * rblocks,
          [&](std::size_t task) {
            const std::size_t p = task / rblocks, r0 = (task % rblocks) * detail::gemm_mc;
            const std::size_t rows = std::min(detail::gemm_mc, count - r0);
            const float* a = vb + (p * count + r0) * kept;
            detail::gemm_dispatch(rows, n_out, detail::strided_rows{a, kept, vsegs.data(), vsegs.size()}, u_[p],
                                  mb + (p * count + r0) * ldm, ldm, gemm_epilogue{}, false);
          },
          2.0 * positions * count * kept * n_out);
      // 3. output transform
      parallel_for(
          count,
          [&](std::size_t t) {
            const std::size_t tile = t0 + t, img = tile / (th * tw), ty = (tile / tw) % th, tx = tile % tw;
            transform_output(mb + t * ldm, count * ldm, n_out, bias, act, y + img * h * w * ldy, ldy, h, w, 2 * ty,
                             2 * tx);
          },
          double(count) * n_out * 32);
    }
  }

private:
  using simd = detail::simd;

  /// Layers with many tiles and few channels (ResNet's first two stages: 4800 tiles of 64 channels at
  /// 640x480): each thread takes blocks of tiles small enough that their V and M stay in its L2 and
  /// runs all three steps on them. The phase-by-phase path would send 40 MB through memory there,
  /// more time than the GEMMs. Returns false (does nothing) when the layer does not fit this scheme:
  /// U over 1 MB (it is re-read per block) or too few blocks to share among the threads.
  bool run_in_l2(const float* x, std::size_t ldx, std::size_t n, std::size_t h, std::size_t w,
                 const std::vector<gemm_segment>& segs, const std::vector<gemm_segment>& vsegs, std::size_t kept,
                 const float* bias, float* y, std::size_t ldy, std::size_t n_out, activation act) const {
    const std::size_t th = (h + 1) / 2, tw = (w + 1) / 2, tiles = n * th * tw;
    const std::size_t block = l2_block_tiles(tiles, kept, n_out);
    if (block == 0) return false;
    const std::size_t blocks = (tiles + block - 1) / block;
    parallel_for(
        blocks,
        [&](std::size_t bi) {
          thread_local detail::aligned_vector<float> v, m;
          if (v.size() < positions * block * kept) v.resize(positions * block * kept);
          if (m.size() < positions * block * n_out) m.resize(positions * block * n_out);
          const std::size_t t0 = bi * block, count = std::min(block, tiles - t0);
          for (std::size_t t = 0; t < count; ++t) {
            const std::size_t tile = t0 + t, img = tile / (th * tw), ty = (tile / tw) % th, tx = tile % tw;
            std::size_t c0 = 0;
            for (const auto& s : segs) {
              if (s.k == 0) continue;
              transform_input(x + img * h * w * ldx + s.a_offset, ldx, h, w, 2 * ty, 2 * tx, s.k,
                              v.data() + t * kept + c0, count * kept);
              c0 += s.k;
            }
          }
          for (std::size_t p = 0; p < positions; ++p)
            detail::gemm_dispatch(count, n_out,
                                  detail::strided_rows{v.data() + p * count * kept, kept, vsegs.data(), vsegs.size()},
                                  u_[p], m.data() + p * count * n_out, n_out, gemm_epilogue{}, false);
          for (std::size_t t = 0; t < count; ++t) {
            const std::size_t tile = t0 + t, img = tile / (th * tw), ty = (tile / tw) % th, tx = tile % tw;
            transform_output(m.data() + t * n_out, count * n_out, n_out, bias, act, y + img * h * w * ldy, ldy, h, w,
                             2 * ty, 2 * tx);
          }
        },
        2.0 * positions * tiles * kept * n_out);
    return true;
  }

  /// V[p] = (B^T d B)[p] for the 4x4 input patch whose top-left is (y0 - 1, x0 - 1) (zero outside
  /// the image), channels [0, k) at x: writes v[p * pstride + c].
  /// B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]].
  static void transform_input(const float* x, std::size_t ldx, std::size_t h, std::size_t w, std::size_t y0,
                              std::size_t x0, std::size_t k, float* v, std::size_t pstride) noexcept {
    const float* px[4][4];
    for (std::size_t i = 0; i < 4; ++i)
      for (std::size_t j = 0; j < 4; ++j) {
        const long iy = static_cast<long>(y0 + i) - 1, ix = static_cast<long>(x0 + j) - 1;
        px[i][j] = iy >= 0 && ix >= 0 && iy < static_cast<long>(h) && ix < static_cast<long>(w)
                       ? x + (static_cast<std::size_t>(iy) * w + static_cast<std::size_t>(ix)) * ldx
                       : nullptr;
      }
    constexpr std::size_t W = simd::size;
    std::size_t c = 0;
    for (; c + W <= k; c += W) {
      simd d[4][4];
      for (std::size_t i = 0; i < 4; ++i)
        for (std::size_t j = 0; j < 4; ++j) d[i][j] = px[i][j] ? simd::load_unaligned(px[i][j] + c) : simd(0.f);
      input_tile(d, v + c, pstride);
    }
    for (; c < k; ++c) {
      float d[4][4];
      for (std::size_t i = 0; i < 4; ++i)
        for (std::size_t j = 0; j < 4; ++j) d[i][j] = px[i][j] ? px[i][j][c] : 0.f;
      input_tile(d, v + c, pstride);
    }
  }

  template <class T>
  static void input_tile(const T (&d)[4][4], float* v, std::size_t pstride) noexcept {
    T t[4][4];  // B^T d
    for (std::size_t j = 0; j < 4; ++j) {
      t[0][j] = d[0][j] - d[2][j];
      t[1][j] = d[1][j] + d[2][j];
      t[2][j] = d[2][j] - d[1][j];
      t[3][j] = d[1][j] - d[3][j];
    }
    for (std::size_t i = 0; i < 4; ++i) {  // (B^T d) B
      store(t[i][0] - t[i][2], v + (i * 4 + 0) * pstride);
      store(t[i][1] + t[i][2], v + (i * 4 + 1) * pstride);
      store(t[i][2] - t[i][1], v + (i * 4 + 2) * pstride);
      store(t[i][1] - t[i][3], v + (i * 4 + 3) * pstride);
    }
  }

  /// The 2x2 outputs at (y0, x0) from m[p * pstride + o], o < n_out: y = act(A^T m A + bias),
  /// A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]; outputs past the image edge are not written.
  static void transform_output(const float* m, std::size_t pstride, std::size_t n_out, const float* bias,
                               activation act, float* y, std::size_t ldy, std::size_t h, std::size_t w, std::size_t y0,
                               std::size_t x0) noexcept {
    float* py[2][2];
    for (std::size_t a = 0; a < 2; ++a)
      for (std::size_t b = 0; b < 2; ++b)
        py[a][b] = y0 + a < h && x0 + b < w ? y + ((y0 + a) * w + x0 + b) * ldy : nullptr;
    switch (act) {
      case activation::none:
        return output_channels<activation::none>(m, pstride, n_out, bias, py);
      case activation::relu:
        return output_channels<activation::relu>(m, pstride, n_out, bias, py);
      case activation::gelu:
        return output_channels<activation::gelu>(m, pstride, n_out, bias, py);
    }
  }

  template <activation A>
  static void output_channels(const float* m, std::size_t pstride, std::size_t n_out, const float* bias,
                              float* const (&py)[2][2]) noexcept {
    constexpr std::size_t W = simd::size;
    std::size_t o = 0;
    for (; o + W <= n_out; o += W) {
      simd t[4][4];
      for (std::size_t p = 0; p < positions; ++p) t[p / 4][p % 4] = simd::load_unaligned(m + p * pstride + o);
      output_tile<A>(t, bias ? simd::load_unaligned(bias + o) : simd(0.f), py, o);
    }
    for (; o < n_out; ++o) {
      float t[4][4];
      for (std::size_t p = 0; p < positions; ++p) t[p / 4][p % 4] = m[p * pstride + o];
      output_tile<A>(t, bias ? bias[o] : 0.f, py, o);
    }
  }

  template <activation A, class T>
  static void output_tile(const T (&t)[4][4], const T& bias, float* const (&py)[2][2], std::size_t o) noexcept {
    T r[2][4];  // A^T m
    for (std::size_t j = 0; j < 4; ++j) {
      r[0][j] = t[0][j] + t[1][j] + t[2][j];
      r[1][j] = t[1][j] - t[2][j] - t[3][j];
    }
    for (std::size_t a = 0; a < 2; ++a) {  // (A^T m) A
      const T v0 = r[a][0] + r[a][1] + r[a][2], v1 = r[a][1] - r[a][2] - r[a][3];
      if (py[a][0]) store(activate<A>(v0 + bias), py[a][0] + o);
      if (py[a][1]) store(activate<A>(v1 + bias), py[a][1] + o);
    }
  }

  static void store(const simd& v, float* p) noexcept { v.store_unaligned(p); }
  static void store(float v, float* p) noexcept { *p = v; }

  std::size_t ic_ = 0, oc_ = 0;
  std::array<packed_matrix, positions> u_;
};

}  // namespace drt
