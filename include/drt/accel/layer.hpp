#pragma once
/// @file layer.hpp
/// One layer as the accelerator sees it: a literal geometry in the paper's notation (K output channels,
/// C input channels, P x Q output, R x S kernel, N independent products), made from the `layer_info`
/// of the graph the CPU runs, so both agree on what is computed.
///
/// Matrix products follow the paper: (m x n)(n x o) is an input of 1 x m positions, a 1x1 kernel,
/// C = n, K = o, so linears (layer_info p = tokens, k = out, c = in) and attention matmuls
/// (qk: K = keys, C = head_dim; pv: K = head_dim, C = keys; N = heads) put their tokens on Q,
/// the dimension of local weight reuse (Q0).

#include <cstddef>

#include "../core/error.hpp"
#include "../models/layer_info.hpp"

namespace drt {

/// What the array computes for a layer kind.
enum class accel_op : unsigned char {
  conv,       ///< dense convolution (K x C x R x S)
  depthwise,  ///< one filter per channel (K = channels, C = 1)
  matmul,     ///< linear or attention matmul (P = 1, Q = tokens, 1x1)
  none        ///< no MACs (norm, softmax, elementwise, resize, pool): fused in post-processing
};

/// A layer's geometry for the cost model. All extents >= 1.
struct accel_layer {
  accel_op op = accel_op::conv;
  std::size_t n = 1;  ///< independent products (batch x heads x windows)
  std::size_t k = 1, c = 1, p = 1, q = 1, r = 1, s = 1, stride = 1;
  /// The second operand is an activation (attention K^T / V), read from the global buffer (or DRAM)
  /// and different for each of the n products; otherwise weights are parameters shared by the n.
  bool operand_is_activation = false;

  constexpr double macs() const noexcept {
    if (op == accel_op::none) return 0;
    return double(n) * k * c * p * q * r * s;
  }
  /// Input rows / columns read (with the kernel halo; padding counted as read).
  constexpr std::size_t in_rows() const noexcept { return (p - 1) * stride + r; }
  constexpr std::size_t in_cols() const noexcept { return (q - 1) * stride + s; }
  /// Bytes (INT8) of the input, output and weights (or second operand) of the whole layer.
  constexpr double input_bytes() const noexcept {
    return double(n) * (op == accel_op::depthwise ? k : c) * in_rows() * in_cols();
  }
  constexpr double output_bytes() const noexcept { return double(n) * k * p * q; }
  constexpr double weight_bytes() const noexcept {
    if (op == accel_op::none) return 0;
    const double per = op == accel_op::depthwise ? double(k) * r * s : double(k) * c * r * s;
    return operand_is_activation ? per * n : per;
  }
  constexpr bool operator==(const accel_layer& o) const noexcept {
    return op == o.op && n == o.n && k == o.k && c == o.c && p == o.p && q == o.q && r == o.r && s == o.s &&
           stride == o.stride && operand_is_activation == o.operand_is_activation;
  }
  constexpr bool operator!=(const accel_layer& o) const noexcept { return !(*this == o); }
};

/// A dense conv (N images), e.g. conv_layer(64, 3, 128, 128, 7, 4) for SegFormer's first patch embedding.
constexpr accel_layer conv_layer(std::size_t k, std::size_t c, std::size_t p, std::size_t q, std::size_t rs,
                                 std::size_t stride = 1, std::size_t n = 1) noexcept {
  accel_layer l;
  l.op = accel_op::conv;
  l.n = n;
  l.k = k;
  l.c = c;
  l.p = p;
  l.q = q;
  l.r = l.s = rs;
  l.stride = stride;
  return l;
}
/// A depthwise conv over `channels`.
constexpr accel_layer depthwise_layer(std::size_t channels, std::size_t p, std::size_t q, std::size_t rs,
                                      std::size_t stride = 1, std::size_t n = 1) noexcept {
  accel_layer l = conv_layer(channels, 1, p, q, rs, stride, n);
  l.op = accel_op::depthwise;
  return l;
}
/// (tokens x in)(in x out): a linear layer (weights shared) or, with operand_is_activation, n products.
constexpr accel_layer matmul_layer(std::size_t tokens, std::size_t in, std::size_t out, std::size_t n = 1,
                                   bool operand_is_activation = false) noexcept {
  accel_layer l;
  l.op = accel_op::matmul;
  l.n = n;
  l.k = out;
  l.c = in;
  l.p = 1;
  l.q = tokens;
  l.operand_is_activation = operand_is_activation;
  return l;
}

/// The accelerator geometry of a graph layer. Kinds without MACs map to accel_op::none.
/// Throws drt::invalid_input when a MAC layer has a zero extent.
inline accel_layer to_accel_layer(const layer_info& li) {
  accel_layer l;
  switch (li.kind) {
    case layer_kind::conv:
      l = conv_layer(li.k, li.c, li.p, li.q, 1, li.stride, li.batch);
      l.r = li.r;
      l.s = li.s;
      break;
    case layer_kind::depthwise_conv:
      l = depthwise_layer(li.k, li.p, li.q, 1, li.stride, li.batch);
      l.r = li.r;
      l.s = li.s;
      break;
    case layer_kind::linear:
      l = matmul_layer(li.p * li.q, li.c, li.k, li.batch, false);
      break;
    case layer_kind::attention_matmul:
      l = matmul_layer(li.p * li.q, li.c, li.k, li.batch, true);
      break;
    default:
      l.op = accel_op::none;
      l.n = li.batch ? li.batch : 1;
      l.k = li.k ? li.k : 1;
      l.c = li.c ? li.c : 1;
      l.p = li.p ? li.p : 1;
      l.q = li.q ? li.q : 1;
      return l;
  }
  if (l.n == 0 || l.k == 0 || l.c == 0 || l.p == 0 || l.q == 0 || l.r == 0 || l.s == 0 || l.stride == 0)
    throw invalid_input("accelerator: layer '" + li.name + "' has a zero extent (batch " + std::to_string(li.batch) +
                        ", k " + std::to_string(li.k) + ", c " + std::to_string(li.c) + ", p " + std::to_string(li.p) +
                        ", q " + std::to_string(li.q) + ", r " + std::to_string(li.r) + ", s " + std::to_string(li.s) +
                        ", stride " + std::to_string(li.stride) + ")");
  return l;
}

}  // namespace drt
