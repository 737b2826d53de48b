#pragma once
/// @file mix_ffn.hpp
/// Mix-FFN (ref: transformers modeling_segformer.py, SegformerMixFFN): dense1 (C -> rC), 3x3
/// depthwise conv with bias, activation, dense2 (rC -> C). The activation is fused into the
/// depthwise conv and the residual add into dense2.

#include <cstddef>

#include "../core/profiler.hpp"
#include "conv2d.hpp"
#include "gemm.hpp"
#include "linear.hpp"

namespace drt {

struct mix_ffn_weights {
  const float *dense1_w, *dense1_b;  ///< [rC, C], [rC]
  const float *dw_w, *dw_b;          ///< [rC, 1, 3, 3], [rC]
  const float *dense2_w, *dense2_b;  ///< [C, rC], [C]
};

class mix_ffn {
public:
  mix_ffn() = default;
  mix_ffn(const mix_ffn_weights& w, std::size_t channels, std::size_t hidden, activation act = activation::gelu)
      : dense1_(w.dense1_w, w.dense1_b, hidden, channels), dw_(w.dw_w, w.dw_b, hidden),
        dense2_(w.dense2_w, w.dense2_b, channels, hidden), act_(act) {}

  std::size_t channels() const noexcept { return dense1_.in_features(); }
  std::size_t hidden() const noexcept { return dense1_.out_features(); }
  double macs(std::size_t h, std::size_t w) const noexcept {
    const double t = double(h) * w;
    return 2 * t * channels() * hidden() + t * hidden() * 9;
  }

  /// x: layer-normed tokens [N, H*W, C]; out holds the residual on entry and receives residual + ffn(x).
  void run(const float* x, std::size_t n, std::size_t h, std::size_t w, float* out) const {
    const std::size_t m = n * h * w, r = hidden(), c = channels();
    detail::aligned_vector<float> a(m * r), b(m * r);
    {
      profile_scope ps("mlp.dense1");
      dense1_.run(m, x, c, a.data(), r);
    }
    {
    profile_scope ps("mlp.dwconv");
    switch (act_) {  // the kernel is compiled per activation; one branch per call
      case activation::gelu: dw_.run<activation::gelu>(a.data(), n, h, w, b.data()); break;
      case activation::relu: dw_.run<activation::relu>(a.data(), n, h, w, b.data()); break;
      case activation::none: dw_.run<activation::none>(a.data(), n, h, w, b.data()); break;
    }
    }
    profile_scope ps2("mlp.dense2");
    dense2_.run(m, b.data(), r, out, c, activation::none, out, c);
  }

private:
  linear dense1_;
  conv2d_dw<3> dw_;
  linear dense2_;
  activation act_ = activation::gelu;
};

}  // namespace drt
