#pragma once
/// @file linear.hpp
/// Fully connected layer on token rows: y[m, out] = x[m, in] W^T + b (ref: torch.nn.Linear).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "../core/observer.hpp"
#include "../core/precision.hpp"
#include "packed_weights.hpp"

namespace drt {

/// Which kernel runs a precision in this build (compiled for the target's instruction set): what the
/// program reports beside a path, so that a slow portable kernel is never mistaken for the fast one.
inline std::string kernel_description(precision p) {
  switch (p) {
    case precision::fp32: return std::string("fp32 FMA, ") + detail::simd::arch_type::name();
    case precision::bf16:
      if (amx_usable()) return "bf16 AMX (tdpbf16ps)";
      return gemm_bf16_native ? "bf16 AVX-512 BF16 (vdpbf16ps)"
                              : "bf16 portable kernel (built without AVX-512 BF16: slower than fp32)";
    case precision::int8:
      if (amx_usable()) return "int8 AMX (tdpbusd)";
      return gemm_s8_native ? "int8 AVX-512 VNNI (vpdpbusd)"
                            : "int8 portable kernel (built without AVX-512 VNNI: slower than fp32)";
  }
  return "?";
}

/// A layer's inputs run in int8 with this u8 quantization: calibrated once (`linear::set_input_range`),
/// or, when none is set, from each call's own [min, max] ("dynamic" quantization).
class linear {
public:
  linear() = default;
  /// weight: [out, in] (PyTorch layout); bias: [out] or null.
  linear(const float* weight, const float* bias, std::size_t out_features, std::size_t in_features)
      : w_(weight, out_features, in_features, in_features),
        bias_(bias ? std::vector<float>(bias, bias + out_features) : std::vector<float>()) {}

  /// Packs the weights for `p` once (thread-safe; fp32 is always packed). Every run in `p` calls it;
  /// call it ahead (e.g. when a path is compiled) to keep the packing out of the first frame.
  void prepare(precision p) const { w_.prepare(p); }
  /// int8: quantize inputs with the calibrated range [lo, hi] (widened to contain 0) from now on.
  void set_input_range(float lo, float hi) { input_q_ = quant_params_u8(lo, hi), has_input_q_ = true; }
  /// int8: back to each call's own range.
  void clear_input_range() noexcept { has_input_q_ = false; }
  /// The calibrated int8 input quantization, or null (each call's range).
  const quant_params* input_quant() const noexcept { return has_input_q_ ? &input_q_ : nullptr; }
  /// The weights as [out, in] floats (unpacked).
  std::vector<float> weight_nk() const { return w_.weight_nk(); }

  std::size_t in_features() const noexcept { return w_.k(); }
  std::size_t out_features() const noexcept { return w_.n(); }
  const packed_matrix& weights() const noexcept { return w_.fp32(); }
  const float* bias() const noexcept { return bias_.empty() ? nullptr : bias_.data(); }

  /// x: [m, in] rows of stride ldx; y: [m, out] rows of stride ldy. `residual` (may alias y) is added last.
  void run(std::size_t m, const float* x, std::size_t ldx, float* y, std::size_t ldy,
           activation act = activation::none, const float* residual = nullptr, std::size_t ldr = 0,
           bool allow_parallel = true, precision p = precision::fp32) const {
    run_prefix(m, out_features(), in_features(), x, ldx, y, ldy, act, residual, ldr, nullptr, p, allow_parallel);
  }

  /// The first `outputs` outputs from the first `inputs` inputs (a channel prefix on both sides:
  /// the first panels, the first rows of each), on the same packed weights. `bias` (optional)
  /// replaces the layer's own, e.g. a compensated one. `p`: the arithmetic (one packed copy per
  /// precision serves every prefix: layers/gemm_int8.hpp, gemm_bf16.hpp). `input_q` (int8 only,
  /// optional): the inputs' quantization from `int8_input_quant` over a larger tensor this call is a
  /// part of, so that every part is quantized alike; null: this call's own.
  void run_prefix(std::size_t m, std::size_t outputs, std::size_t inputs, const float* x, std::size_t ldx, float* y,
                  std::size_t ldy, activation act = activation::none, const float* residual = nullptr,
                  std::size_t ldr = 0, const float* bias = nullptr, precision p = precision::fp32,
                  bool allow_parallel = true, const quant_params* input_q = nullptr) const {
    observe_activations(this, x, m, inputs, ldx);  // int8 calibration reads every linear's inputs
    gemm_epilogue ep;
    ep.bias = bias ? bias : this->bias();
    ep.act = act;
    ep.residual = residual;
    ep.ldr = ldr;
    quant_params q;
    if (p == precision::int8) q = input_q ? *input_q : int8_input_quant(x, m, inputs, ldx, outputs);
    w_.gemm(p, m, outputs, inputs, x, ldx, y, ldy, ep, allow_parallel, &q);
  }

  /// run_prefix in int8 on inputs its producer already quantized with `q` (from `int8_input_quant`):
  /// u8 x[m, :inputs], row stride ldx (the spatial reduction quantizes its patches as it gathers them).
  void run_prefix_u8(std::size_t m, std::size_t outputs, std::size_t inputs, const std::uint8_t* x, std::size_t ldx,
                     const quant_params& q, float* y, std::size_t ldy, bool allow_parallel = true) const {
    gemm_epilogue ep;
    ep.bias = bias();
    w_.gemm_u8(m, outputs, inputs, x, ldx, q, y, ldy, ep, allow_parallel);
  }

  /// The int8 quantization of the inputs x[m, inputs] (row stride ldx): the calibrated one, else their
  /// own [min, max]. The range pass runs with calibrated ranges too: quantizing clamps NaN / inf to a
  /// finite code, so without it a broken input would give a plausible, wrong output.
  quant_params int8_input_quant(const float* x, std::size_t m, std::size_t inputs, std::size_t ldx,
                                std::size_t outputs = 0) const {
    const auto [lo, hi] = detail::value_range(x, m, inputs, ldx);
    return int8_input_quant(std::pair<float, float>{lo, hi}, inputs, outputs);
  }
  /// The same from the inputs' [min, max] found by their producer (e.g.
  /// `layer_norm::run_with_ranges`; NaN where they are not finite) instead of a pass of its own.
  quant_params int8_input_quant(std::pair<float, float> range, std::size_t inputs, std::size_t outputs = 0) const {
    if (!std::isfinite(range.first) || !std::isfinite(range.second))
      throw invalid_input("linear [" + std::to_string(outputs ? outputs : out_features()) + " x " +
                          std::to_string(inputs) + "] in int8: its input holds non-finite values");
    return has_input_q_ ? input_q_ : quant_params_u8(range.first, range.second);
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
    gemm(1, n, k, tail.data(), k, w_.fp32(), out.data(), n, ep, false);
    return out;
  }

private:
  packed_weights w_;
  std::vector<float> bias_;
  quant_params input_q_;
  bool has_input_q_ = false;
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
