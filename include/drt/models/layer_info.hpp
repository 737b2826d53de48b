#pragma once
/// @file layer_info.hpp
/// A model's layer list for one input size and path: what each layer computes, in the paper's
/// vocabulary, with its exact MAC count and its geometry in the accelerator notation
/// (K output channels, C input channels, P x Q output, R x S kernel). Profiles, the accelerator
/// model and the sweep all read this list, so they agree with what the CPU executor runs.

#include <cstddef>
#include <string>
#include <vector>

#include "../core/precision.hpp"

namespace drt {

enum class layer_kind { conv, depthwise_conv, linear, attention_matmul, softmax, norm, elementwise, resize, pool };

inline const char* to_string(layer_kind k) noexcept {
  switch (k) {
    case layer_kind::conv: return "conv";
    case layer_kind::depthwise_conv: return "depthwise conv";
    case layer_kind::linear: return "linear";
    case layer_kind::attention_matmul: return "attention matmul";
    case layer_kind::softmax: return "softmax";
    case layer_kind::norm: return "norm";
    case layer_kind::elementwise: return "elementwise";
    case layer_kind::resize: return "resize";
    case layer_kind::pool: return "pool";
  }
  return "?";
}

enum class model_region { encoder, decoder };

struct layer_info {
  std::string name;  ///< e.g. "PatchEmbed1_Conv2D", "Stage2 Block1 attention.query", "Conv2DFuse"
  layer_kind kind = layer_kind::conv;
  model_region region = model_region::encoder;
  std::size_t batch = 1;      ///< independent products (batch x heads for attention matmuls)
  std::size_t k = 0, c = 0;   ///< output / input channels (depthwise: c = 1 per group, k = channels)
  std::size_t p = 1, q = 1;   ///< output rows x columns (tokens: p = tokens, q = 1)
  std::size_t r = 1, s = 1;   ///< kernel
  std::size_t stride = 1;
  std::size_t params = 0;     ///< weights (+ bias) read by the layer
  double macs = 0;            ///< multiply-accumulates for the whole batch
  /// The profiling scope whose time covers this layer when it is fused with others
  /// (e.g. attention qk + softmax + pv run as one pass); empty = `name`.
  std::string timed_as;
  /// The layer's id in the checkpoint: the module its weights load from (`<module>.weight` is a
  /// tensor of model.safetensors; for a backbone-only ResNet checkpoint, without the `resnet.`
  /// prefix), or for a layer without weights the module that computes it (attention products:
  /// the attention module). Decoder layers folded together name the first module they fold.
  std::string module;
  /// The arithmetic the layer computes in (a path's `precision` lowers GEMM layers only).
  precision arithmetic = precision::fp32;
  /// How the layer computes when that changes its time beyond its work (e.g. "tokens=0.5": a
  /// SegFormer block's merged tokens, gathered and scattered); empty = the plain form. The sweep's
  /// latency model times each variant apart (engine/sweep_family.hpp).
  std::string variant;
  const std::string& timing_name() const noexcept { return timed_as.empty() ? name : timed_as; }
};

/// A layer of `batch` independent products with its exact MAC count: batch x K x C x P x Q x R x R
/// for convolutions (depthwise: C = 1), linears and attention matmuls; none for the other kinds.
inline layer_info make_layer(std::string name, layer_kind kind, model_region region, std::size_t batch,
                             std::size_t k, std::size_t c, std::size_t p, std::size_t q, std::size_t r,
                             std::size_t stride, std::size_t params) {
  layer_info l;
  l.name = std::move(name);
  l.kind = kind;
  l.region = region;
  l.batch = batch;
  l.k = k;
  l.c = c;
  l.p = p;
  l.q = q;
  l.r = l.s = r;
  l.stride = stride;
  l.params = params;
  const bool has_macs = kind == layer_kind::conv || kind == layer_kind::depthwise_conv || kind == layer_kind::linear ||
                        kind == layer_kind::attention_matmul;
  l.macs = has_macs ? double(batch) * k * c * p * q * r * r : 0.0;
  return l;
}

inline double total_macs(const std::vector<layer_info>& layers) noexcept {
  double t = 0;
  for (const auto& l : layers) t += l.macs;
  return t;
}

}  // namespace drt
