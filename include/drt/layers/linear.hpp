#pragma once
/// @file linear.hpp
/// Fully connected layer on token rows: y[m, out] = x[m, in] W^T + b (ref: torch.nn.Linear).

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "gemm.hpp"

namespace drt {

class linear {
public:
  linear() = default;
  /// weight: [out, in] (PyTorch layout); bias: [out] or null.
  linear(const float* weight, const float* bias, std::size_t out_features, std::size_t in_features)
      : w_(packed_matrix::from_nk(weight, out_features, in_features, in_features)),
        bias_(bias ? std::vector<float>(bias, bias + out_features) : std::vector<float>()) {}

  std::size_t in_features() const noexcept { return w_.k(); }
  std::size_t out_features() const noexcept { return w_.n(); }
  const packed_matrix& weights() const noexcept { return w_; }
  const float* bias() const noexcept { return bias_.empty() ? nullptr : bias_.data(); }

  /// x: [m, in] rows of stride ldx; y: [m, out] rows of stride ldy. `residual` (may alias y) is added last.
  void run(std::size_t m, const float* x, std::size_t ldx, float* y, std::size_t ldy,
           activation act = activation::none, const float* residual = nullptr, std::size_t ldr = 0,
           bool allow_parallel = true) const {
    gemm_epilogue ep;
    ep.bias = bias();
    ep.act = act;
    ep.residual = residual;
    ep.ldr = ldr;
    gemm(m, out_features(), in_features(), x, ldx, w_, y, ldy, ep, allow_parallel);
  }

  /// The first `outputs` outputs from the first `inputs` inputs (a channel prefix on both sides:
  /// the first panels, the first rows of each), on the same packed weights. `bias` (optional)
  /// replaces the layer's own, e.g. a compensated one.
  void run_prefix(std::size_t m, std::size_t outputs, std::size_t inputs, const float* x, std::size_t ldx, float* y,
                  std::size_t ldy, activation act = activation::none, const float* residual = nullptr,
                  std::size_t ldr = 0, const float* bias = nullptr) const {
    gemm_epilogue ep;
    ep.bias = bias ? bias : this->bias();
    ep.act = act;
    ep.residual = residual;
    ep.ldr = ldr;
    gemm(m, outputs, inputs, x, ldx, w_, y, ldy, ep);
  }

  /// The bias that keeps a prefix of `inputs` inputs unbiased: b + sum_{i >= inputs} W[:, i] * mean[i],
  /// `mean` the inputs' mean values on calibration data (in_features() floats). Computed once per
  /// path, as a one-row GEMM over the dropped tail.
  std::vector<float> compensated_bias(std::size_t inputs, const float* mean) const {
    const std::size_t k = in_features(), n = out_features();
    std::vector<float> tail(k, 0.f), out(n, 0.f);
    for (std::size_t i = std::min(inputs, k); i < k; ++i) tail[i] = mean[i];
    gemm_epilogue ep;
    ep.bias = bias();
    gemm(1, n, k, tail.data(), k, w_, out.data(), n, ep, false);
    return out;
  }

private:
  packed_matrix w_;
  std::vector<float> bias_;
};

/// Plain-loop reference. weight [out, in], bias [out] or null; x [m, in]; y [m, out] (contiguous).
inline void linear_ref(std::size_t m, const float* x, const float* weight, const float* bias, std::size_t out,
                       std::size_t in, float* y) {
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t o = 0; o < out; ++o) {
      double acc = bias ? bias[o] : 0.0;
      for (std::size_t c = 0; c < in; ++c) acc += static_cast<double>(x[i * in + c]) * weight[o * in + c];
      y[i * out + o] = static_cast<float>(acc);
    }
}

}  // namespace drt
