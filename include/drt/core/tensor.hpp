#pragma once
/// @file tensor.hpp
/// Tensor aliases. Activations are float32, NHWC ([N, H, W, C]); a token sequence [N, H*W, C]
/// is the same memory. Weights are packed at load (see layers/gemm.hpp).

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <xtensor/xadapt.hpp>
#include <xtensor/xtensor.hpp>

#include "buffer_pool.hpp"
#include "error.hpp"

namespace drt {

/// Row-major float32 tensor of rank N. Its storage comes from buffer_pool (large activation
/// buffers are recycled between frames instead of being page-faulted in again) and is not
/// zero-filled on creation.
template <std::size_t N>
using tensor = xt::xtensor<float, N, xt::layout_type::row_major, pool_allocator<float>>;
using tensor1 = tensor<1>;
using tensor2 = tensor<2>;
using tensor4 = tensor<4>;
using itensor3 = xt::xtensor<std::int32_t, 3>;

/// Dynamic-rank tensor as read from a file (float32 after conversion, or integer).
struct host_tensor {
  std::vector<std::int64_t> shape;
  std::vector<float> data;          ///< float dtypes (F32/F16/BF16) converted to float32
  std::vector<std::int64_t> idata;  ///< integer dtypes (I32/I64/...)
  std::string dtype;                ///< dtype as stored in the file
  bool is_integer() const noexcept { return !dtype.empty() && (dtype[0] == 'I' || dtype[0] == 'U'); }
  std::size_t numel() const noexcept {
    std::size_t n = 1;
    for (auto d : shape) n *= static_cast<std::size_t>(d);
    return n;
  }
};

/// Copy NCHW [N, C, H, W] into NHWC [N, H, W, C].
inline tensor4 nchw_to_nhwc(const float* src, std::size_t n, std::size_t c, std::size_t h,
                            std::size_t w) {
  tensor4 out = tensor4::from_shape({n, h, w, c});
  float* dst = out.data();
  for (std::size_t b = 0; b < n; ++b)
    for (std::size_t ch = 0; ch < c; ++ch)
      for (std::size_t y = 0; y < h; ++y)
        for (std::size_t x = 0; x < w; ++x)
          dst[((b * h + y) * w + x) * c + ch] = src[((b * c + ch) * h + y) * w + x];
  return out;
}

/// Copy NHWC [N, H, W, C] into NCHW [N, C, H, W].
inline tensor4 nhwc_to_nchw(const tensor4& in) {
  const std::size_t n = in.shape(0), h = in.shape(1), w = in.shape(2), c = in.shape(3);
  tensor4 out = tensor4::from_shape({n, c, h, w});
  const float* src = in.data();
  float* dst = out.data();
  for (std::size_t b = 0; b < n; ++b)
    for (std::size_t y = 0; y < h; ++y)
      for (std::size_t x = 0; x < w; ++x)
        for (std::size_t ch = 0; ch < c; ++ch)
          dst[((b * c + ch) * h + y) * w + x] = src[((b * h + y) * w + x) * c + ch];
  return out;
}

}  // namespace drt
