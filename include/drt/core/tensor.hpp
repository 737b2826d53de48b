#pragma once
/// @file tensor.hpp
/// Tensor aliases. Activations are float32, NHWC ([N, H, W, C]); a token sequence [N, H*W, C]
/// is the same memory. Weights are packed at load (see layers/gemm.hpp).

#include <array>
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "simd.hpp"  // before xtensor, which includes xsimd

#include <xtensor/xadapt.hpp>
#include <xtensor/xtensor.hpp>

#include "buffer_pool.hpp"
#include "error.hpp"
#include "parallel.hpp"

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

/// dst[j][i] = src[i][j] for a [rows][cols] matrix, in 32 x 32 tiles: the naive loop writes one
/// element per page when rows is large (a 150-class 128x128 logit map: 2.4 M TLB misses, ~50 ms).
inline void transpose_matrix(const float* src, std::size_t rows, std::size_t cols, float* dst) {
  constexpr std::size_t T = 32;
  const std::size_t row_tiles = (rows + T - 1) / T;
  parallel_for(
      row_tiles,
      [&](std::size_t rt) {
        const std::size_t i0 = rt * T, i1 = std::min(rows, i0 + T);
        for (std::size_t j0 = 0; j0 < cols; j0 += T) {
          const std::size_t j1 = std::min(cols, j0 + T);
          for (std::size_t j = j0; j < j1; ++j)
            for (std::size_t i = i0; i < i1; ++i) dst[j * rows + i] = src[i * cols + j];
        }
      },
      4.0 * static_cast<double>(rows) * static_cast<double>(cols));
}

/// Copy NCHW [N, C, H, W] into NHWC [N, H, W, C].
inline tensor4 nchw_to_nhwc(const float* src, std::size_t n, std::size_t c, std::size_t h,
                            std::size_t w) {
  tensor4 out = tensor4::from_shape({n, h, w, c});
  for (std::size_t b = 0; b < n; ++b) transpose_matrix(src + b * c * h * w, c, h * w, out.data() + b * h * w * c);
  return out;
}

/// Copy NHWC [N, H, W, C] (contiguous at p) into NCHW [N, C, H, W].
inline tensor4 nhwc_to_nchw(const float* p, std::size_t n, std::size_t h, std::size_t w, std::size_t c) {
  tensor4 out = tensor4::from_shape({n, c, h, w});
  for (std::size_t b = 0; b < n; ++b) transpose_matrix(p + b * h * w * c, h * w, c, out.data() + b * c * h * w);
  return out;
}

/// Copy NHWC [N, H, W, C] into NCHW [N, C, H, W].
inline tensor4 nhwc_to_nchw(const tensor4& in) {
  return nhwc_to_nchw(in.data(), in.shape(0), in.shape(1), in.shape(2), in.shape(3));
}

}  // namespace drt
