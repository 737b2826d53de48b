#pragma once
/// @file patch_merging.hpp
/// Swin patch merging (ref: transformers modeling_swin.py, SwinPatchMerging): zero-pad H and W to
/// even sizes (bottom/right), concatenate the four 2x2 neighbours in the order
/// x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2] -> 4C channels, LayerNorm(4C)
/// (PyTorch's default eps 1e-5: transformers does not pass `layer_norm_eps` here), then a
/// 4C -> 2C linear reduction without bias.

#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "gemm.hpp"
#include "layer_norm.hpp"
#include "linear.hpp"

namespace drt {

/// Output size of the merge along one axis: ceil(size / 2).
constexpr std::size_t patch_merging_out(std::size_t size) noexcept { return (size + 1) / 2; }

/// The 2x2 gather: x [N, H, W, C] -> y [N, ceil(H/2), ceil(W/2), 4C], slot k (k = 0..3) holding the
/// neighbour (dy, dx) = (k & 1, k >> 1), zero where it falls in the padding.
inline void patch_merge_gather(const float* x, std::size_t n, std::size_t h, std::size_t w, std::size_t c, float* y) {
  const std::size_t oh = patch_merging_out(h), ow = patch_merging_out(w);
  parallel_for(
      n * oh,
      [&](std::size_t r) {
        const std::size_t b = r / oh, oy = r % oh;
        for (std::size_t ox = 0; ox < ow; ++ox) {
          float* dst = y + ((b * oh + oy) * ow + ox) * 4 * c;
          for (std::size_t k = 0; k < 4; ++k) {
            const std::size_t iy = 2 * oy + (k & 1), ix = 2 * ox + (k >> 1);
            if (iy < h && ix < w)
              std::memcpy(dst + k * c, x + ((b * h + iy) * w + ix) * c, c * sizeof(float));
            else
              std::memset(dst + k * c, 0, c * sizeof(float));
          }
        }
      },
      double(n) * oh * ow * 4 * c);
}

class patch_merging {
public:
  patch_merging() = default;
  /// norm: [4C] gamma/beta; reduction: [2C, 4C] (no bias). `channels` is C (the input channels).
  patch_merging(const float* norm_gamma, const float* norm_beta, const float* reduction, std::size_t channels,
                float eps = 1e-5f)
      : c_(channels),
        norm_(norm_gamma, norm_beta, 4 * channels, eps),
        reduction_(reduction, nullptr, 2 * channels, 4 * channels) {}

  std::size_t in_channels() const noexcept { return c_; }
  std::size_t out_channels() const noexcept { return 2 * c_; }
  /// MACs for one image of H x W tokens.
  double macs(std::size_t h, std::size_t w) const noexcept {
    return double(patch_merging_out(h)) * patch_merging_out(w) * 8.0 * c_ * c_;
  }

  /// x: [N, H, W, C] -> y: [N, ceil(H/2), ceil(W/2), 2C]. `p`: the reduction's arithmetic.
  void run(const float* x, std::size_t n, std::size_t h, std::size_t w, float* y,
           precision p = precision::fp32) const {
    const std::size_t m = n * patch_merging_out(h) * patch_merging_out(w);
    detail::aligned_vector<float> merged(m * 4 * c_);
    patch_merge_gather(x, n, h, w, c_, merged.data());
    norm_.run(m, merged.data(), 4 * c_, merged.data(), 4 * c_);
    reduction_.run(m, merged.data(), 4 * c_, y, 2 * c_, activation::none, nullptr, 0, true, p);
  }
  /// The reduction, the GEMM layer a precision lowers.
  const linear& reduction() const noexcept { return reduction_; }
  linear& reduction() noexcept { return reduction_; }

private:
  std::size_t c_ = 0;
  layer_norm norm_;
  linear reduction_;
};

/// Plain-loop reference, step by step as SwinPatchMerging.forward: explicit padding, the four strided
/// slices, concatenation, layer_norm_ref, linear_ref. x: [N, H, W, C]; y: [N, ceil(H/2), ceil(W/2), 2C].
inline void patch_merging_ref(const float* x, std::size_t n, std::size_t h, std::size_t w, std::size_t c,
                              const float* norm_gamma, const float* norm_beta, const float* reduction, float eps,
                              float* y) {
  const std::size_t hp = h + h % 2, wp = w + w % 2, oh = hp / 2, ow = wp / 2;
  std::vector<float> padded(n * hp * wp * c, 0.f);
  for (std::size_t b = 0; b < n; ++b)
    for (std::size_t yy = 0; yy < h; ++yy)
      for (std::size_t xx = 0; xx < w; ++xx)
        for (std::size_t ch = 0; ch < c; ++ch)
          padded[((b * hp + yy) * wp + xx) * c + ch] = x[((b * h + yy) * w + xx) * c + ch];
  const std::size_t starts[4][2] = {{0, 0}, {1, 0}, {0, 1}, {1, 1}};  // (row, column) start of each slice
  std::vector<float> cat(n * oh * ow * 4 * c), normed(cat.size());
  for (std::size_t b = 0; b < n; ++b)
    for (std::size_t oy = 0; oy < oh; ++oy)
      for (std::size_t ox = 0; ox < ow; ++ox)
        for (std::size_t s = 0; s < 4; ++s)
          for (std::size_t ch = 0; ch < c; ++ch)
            cat[(((b * oh + oy) * ow + ox) * 4 + s) * c + ch] =
                padded[((b * hp + 2 * oy + starts[s][0]) * wp + 2 * ox + starts[s][1]) * c + ch];
  layer_norm_ref(n * oh * ow, 4 * c, cat.data(), norm_gamma, norm_beta, eps, normed.data());
  linear_ref(n * oh * ow, normed.data(), reduction, nullptr, 2 * c, 4 * c, y);
}

}  // namespace drt
