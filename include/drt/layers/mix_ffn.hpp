#pragma once
/// @file mix_ffn.hpp
/// Mix-FFN (ref: transformers modeling_segformer.py, SegformerMixFFN): dense1 (C -> rC), 3x3
/// depthwise conv with bias, activation, dense2 (rC -> C). The activation is fused into the
/// depthwise conv and the residual add into dense2.

#include <algorithm>
#include <cstddef>
#include <vector>

#include "../core/observer.hpp"
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
  /// `kept` (0: all) computes only the first `kept` hidden units: dense1's first outputs, the
  /// depthwise conv on those channels, dense2's first inputs (a prefix of every packed panel: the
  /// same weights serve every width).
  /// `bias2` (optional, C floats) replaces dense2's bias: the compensated bias of a prefix
  /// (`dense2().compensated_bias`).
  /// `p`: dense1's and dense2's arithmetic (the depthwise conv stays fp32).
  void run(const float* x, std::size_t n, std::size_t h, std::size_t w, float* out, std::size_t kept = 0,
           const float* bias2 = nullptr, precision p = precision::fp32) const {
    const std::size_t m = n * h * w, r = kept ? std::min(kept, hidden()) : hidden(), c = channels();
    detail::aligned_vector<float> a(m * r), b(m * r);
    {
      profile_scope ps("mlp.dense1");
      dense1_.run_prefix(m, r, c, x, c, a.data(), r, activation::none, nullptr, 0, nullptr, p);
    }
    {
    profile_scope ps("mlp.dwconv");
    switch (act_) {  // the kernel is compiled per activation; one branch per call
      case activation::gelu: dw_.run<activation::gelu>(a.data(), n, h, w, b.data(), r); break;
      case activation::relu: dw_.run<activation::relu>(a.data(), n, h, w, b.data(), r); break;
      case activation::none: dw_.run<activation::none>(a.data(), n, h, w, b.data(), r); break;
    }
    }
    profile_scope ps2("mlp.dense2");
    dense2_.run_prefix(m, c, r, b.data(), r, out, c, activation::none, out, c, bias2, p);
  }

  /// The consumer of the hidden units (its compensated_bias keeps a prefix unbiased).
  const linear& dense2() const noexcept { return dense2_; }
  /// dense1 and dense2 with their checkpoint module names (relative to the mlp module).
  template <class F>
  void for_each_linear(F&& f) {
    f("dense1", dense1_), f("dense2", dense2_);
  }
  template <class F>
  void for_each_linear(F&& f) const {
    f("dense1", dense1_), f("dense2", dense2_);
  }

private:
  linear dense1_;
  conv2d_dw<3> dw_;
  linear dense2_;
  activation act_ = activation::gelu;
};

}  // namespace drt
