#pragma once
/// @file patch_embed.hpp
/// Overlapping patch embedding (ref: transformers modeling_segformer.py,
/// SegformerOverlapPatchEmbeddings): conv k x k, stride s, padding k/2, then LayerNorm.

#include <cstddef>

#include "../core/profiler.hpp"
#include "conv2d.hpp"
#include "layer_norm.hpp"

namespace drt {

class overlap_patch_embed {
public:
  overlap_patch_embed() = default;
  /// proj_w: [C_out, C_in, k, k]; proj_b, ln_g, ln_b: [C_out].
  overlap_patch_embed(const float* proj_w, const float* proj_b, const float* ln_g, const float* ln_b,
                      std::size_t in_channels, std::size_t out_channels, std::size_t patch, std::size_t stride,
                      float ln_eps)
      : norm_(ln_g, ln_b, out_channels, ln_eps) {
    conv2d_shape s;
    s.in_channels = in_channels;
    s.out_channels = out_channels;
    s.kernel_h = s.kernel_w = patch;
    s.stride_h = s.stride_w = stride;
    s.pad_h = s.pad_w = patch / 2;
    proj_ = conv2d(proj_w, proj_b, s);
  }

  const conv2d_shape& shape() const noexcept { return proj_.shape(); }
  std::size_t out_h(std::size_t h) const noexcept { return proj_.shape().out_h(h); }
  std::size_t out_w(std::size_t w) const noexcept { return proj_.shape().out_w(w); }

  /// Packs the projection's weights for `p` ahead of the first frame (see conv2d::prepare).
  void prepare(precision p) const { proj_.prepare(p); }

  /// x: [N, H, W, C_in]; y: [N, OH, OW, C_out] normalized tokens. `p`: the projection's arithmetic
  /// (the LayerNorm is fp32).
  void run(const float* x, std::size_t n, std::size_t h, std::size_t w, float* y, precision p = precision::fp32) const {
    {
      profile_scope ps("Conv2D");
      proj_.run(x, n, h, w, y, activation::none, 0, p);
    }
    profile_scope ps("LayerNorm");
    const std::size_t m = n * out_h(h) * out_w(w), c = proj_.shape().out_channels;
    norm_.run(m, y, c, y, c);
  }

private:
  conv2d proj_;
  layer_norm norm_;
};

}  // namespace drt
