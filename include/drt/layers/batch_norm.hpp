#pragma once
/// @file batch_norm.hpp
/// Inference BatchNorm: y = (x - mean) / sqrt(var + eps) * gamma + beta, per channel (last dim).
/// In drt it is folded into the preceding convolution at load (`fold_batch_norm`).

#include <cmath>
#include <cstddef>
#include <vector>

namespace drt {

/// Per-channel scale/shift equivalent of a BatchNorm.
struct batch_norm_affine {
  std::vector<float> scale, shift;
};

inline batch_norm_affine batch_norm_to_affine(const float* gamma, const float* beta, const float* mean,
                                              const float* var, std::size_t channels, float eps) {
  batch_norm_affine a;
  a.scale.resize(channels);
  a.shift.resize(channels);
  for (std::size_t c = 0; c < channels; ++c) {
    const double s = gamma[c] / std::sqrt(static_cast<double>(var[c]) + eps);
    a.scale[c] = static_cast<float>(s);
    a.shift[c] = static_cast<float>(beta[c] - mean[c] * s);
  }
  return a;
}

/// Folds a BatchNorm into conv weights [OC, ...] (row of `per_out` floats each) and bias [OC]
/// (bias may be empty = zero). Returns the folded bias.
inline std::vector<float> fold_batch_norm(std::vector<float>& weight, std::size_t per_out, const std::vector<float>& bias,
                                          const batch_norm_affine& bn) {
  const std::size_t oc = bn.scale.size();
  std::vector<float> out(oc);
  for (std::size_t o = 0; o < oc; ++o) {
    for (std::size_t i = 0; i < per_out; ++i) weight[o * per_out + i] *= bn.scale[o];
    out[o] = (bias.empty() ? 0.f : bias[o]) * bn.scale[o] + bn.shift[o];
  }
  return out;
}

/// Plain-loop reference on [m, C] rows.
inline void batch_norm_ref(std::size_t m, std::size_t c, const float* x, const float* gamma, const float* beta,
                           const float* mean, const float* var, float eps, float* y) {
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < c; ++j)
      y[i * c + j] = static_cast<float>((x[i * c + j] - mean[j]) / std::sqrt(static_cast<double>(var[j]) + eps) *
                                            gamma[j] + beta[j]);
}

}  // namespace drt
