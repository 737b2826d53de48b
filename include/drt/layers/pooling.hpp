#pragma once
/// @file pooling.hpp
/// Pooling on NHWC activations: max pooling (ref: torch.nn.MaxPool2d, padding with -inf) and
/// adaptive average pooling (ref: torch.nn.AdaptiveAvgPool2d: bin i covers
/// [floor(i*in/out), ceil((i+1)*in/out)) ). Global average pooling is adaptive pooling to 1x1.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string>

#include "../core/error.hpp"
#include "../core/parallel.hpp"

namespace drt {

struct pool2d_shape {
  std::size_t kernel = 3, stride = 2, pad = 1;
  std::size_t out(std::size_t in) const noexcept {
    return in + 2 * pad < kernel ? 0 : (in + 2 * pad - kernel) / stride + 1;
  }
};

/// x: [N, H, W, C] -> y: [N, OH, OW, C]. PyTorch ceil_mode=False, dilation 1.
inline void max_pool2d(const float* x, std::size_t n, std::size_t h, std::size_t w, std::size_t c, const pool2d_shape& p,
                       float* y) {
  const std::size_t oh = p.out(h), ow = p.out(w);
  if (oh == 0 || ow == 0 || p.pad * 2 > p.kernel)
    throw shape_error("max_pool2d: input " + std::to_string(h) + "x" + std::to_string(w) + " with kernel " +
                      std::to_string(p.kernel) + ", padding " + std::to_string(p.pad) + " gives no output");
  parallel_for(n * oh, [&](std::size_t r) {
    const std::size_t b = r / oh, oy = r % oh;
    for (std::size_t ox = 0; ox < ow; ++ox) {
      float* out = y + ((b * oh + oy) * ow + ox) * c;
      std::fill(out, out + c, -std::numeric_limits<float>::infinity());
      for (std::size_t ky = 0; ky < p.kernel; ++ky) {
        const long iy = static_cast<long>(oy * p.stride + ky) - static_cast<long>(p.pad);
        if (iy < 0 || iy >= static_cast<long>(h)) continue;
        for (std::size_t kx = 0; kx < p.kernel; ++kx) {
          const long ix = static_cast<long>(ox * p.stride + kx) - static_cast<long>(p.pad);
          if (ix < 0 || ix >= static_cast<long>(w)) continue;
          const float* in = x + ((b * h + static_cast<std::size_t>(iy)) * w + static_cast<std::size_t>(ix)) * c;
          for (std::size_t j = 0; j < c; ++j) out[j] = std::max(out[j], in[j]);
        }
      }
    }
  }, double(n) * oh * ow * c * p.kernel * p.kernel);
}

/// x: [N, H, W, C] -> y: [N, OH, OW, C] with PyTorch's adaptive bins.
inline void adaptive_avg_pool2d(const float* x, std::size_t n, std::size_t h, std::size_t w, std::size_t c, float* y,
                                std::size_t oh, std::size_t ow) {
  if (oh == 0 || ow == 0 || h == 0 || w == 0)
    throw shape_error("adaptive_avg_pool2d: cannot pool " + std::to_string(h) + "x" + std::to_string(w) + " to " +
                      std::to_string(oh) + "x" + std::to_string(ow));
  parallel_for(n * oh, [&](std::size_t r) {
    const std::size_t b = r / oh, oy = r % oh;
    const std::size_t y0 = oy * h / oh, y1 = ((oy + 1) * h + oh - 1) / oh;
    for (std::size_t ox = 0; ox < ow; ++ox) {
      const std::size_t x0 = ox * w / ow, x1 = ((ox + 1) * w + ow - 1) / ow;
      float* out = y + ((b * oh + oy) * ow + ox) * c;
      std::fill(out, out + c, 0.f);
      for (std::size_t iy = y0; iy < y1; ++iy)
        for (std::size_t ix = x0; ix < x1; ++ix) {
          const float* in = x + ((b * h + iy) * w + ix) * c;
          for (std::size_t j = 0; j < c; ++j) out[j] += in[j];
        }
      const float inv = 1.0f / static_cast<float>((y1 - y0) * (x1 - x0));
      for (std::size_t j = 0; j < c; ++j) out[j] *= inv;
    }
  }, double(n) * h * w * c);
}

/// Plain-loop references (double accumulation), same layouts and semantics.
inline void max_pool2d_ref(const float* x, std::size_t n, std::size_t h, std::size_t w, std::size_t c,
                           const pool2d_shape& p, float* y) {
  const std::size_t oh = p.out(h), ow = p.out(w);
  for (std::size_t b = 0; b < n; ++b)
    for (std::size_t oy = 0; oy < oh; ++oy)
      for (std::size_t ox = 0; ox < ow; ++ox)
        for (std::size_t j = 0; j < c; ++j) {
          float m = -std::numeric_limits<float>::infinity();
          for (std::size_t ky = 0; ky < p.kernel; ++ky)
            for (std::size_t kx = 0; kx < p.kernel; ++kx) {
              const long iy = long(oy * p.stride + ky) - long(p.pad), ix = long(ox * p.stride + kx) - long(p.pad);
              if (iy >= 0 && ix >= 0 && iy < long(h) && ix < long(w))
                m = std::max(m, x[((b * h + std::size_t(iy)) * w + std::size_t(ix)) * c + j]);
            }
          y[((b * oh + oy) * ow + ox) * c + j] = m;
        }
}

inline void adaptive_avg_pool2d_ref(const float* x, std::size_t n, std::size_t h, std::size_t w, std::size_t c, float* y,
                                    std::size_t oh, std::size_t ow) {
  for (std::size_t b = 0; b < n; ++b)
    for (std::size_t oy = 0; oy < oh; ++oy)
      for (std::size_t ox = 0; ox < ow; ++ox) {
        const auto y0 = std::size_t(std::floor(double(oy) * h / oh)), y1 = std::size_t(std::ceil(double(oy + 1) * h / oh));
        const auto x0 = std::size_t(std::floor(double(ox) * w / ow)), x1 = std::size_t(std::ceil(double(ox + 1) * w / ow));
        for (std::size_t j = 0; j < c; ++j) {
          double s = 0;
          for (std::size_t iy = y0; iy < y1; ++iy)
            for (std::size_t ix = x0; ix < x1; ++ix) s += x[((b * h + iy) * w + ix) * c + j];
          y[((b * oh + oy) * ow + ox) * c + j] = float(s / double((y1 - y0) * (x1 - x0)));
        }
      }
}

}  // namespace drt
