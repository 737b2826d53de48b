#pragma once
/// @file family.hpp
/// What the engine needs from a model family, in one place: `model_family<Model>` gives the path
/// type, the compiled execution, the split into an encoder (backbone) half and a head half, the
/// logits, the layer list and the name. The sweep, the executor, evaluation and profiling are
/// written once against it, so SegFormer, Swin + UPerNet and ResNet are driven by the same code.
///
/// - `encode` / `decode`: every head path of one encoder path reads the same encoding, so a sweep
///   encodes each image once per encoder path (`encoder_key`) and decodes it for every head path.
///   ResNet has no head knob: its whole network is the encoder half and `decode` reads the logits.
/// - `logits` is always 4-d NCHW: segmentation [N, K, h, w]; classification [N, K, 1, 1].

#include <cstddef>
#include <string>
#include <vector>

#include "../core/tensor.hpp"
#include "../dynamic/path.hpp"
#include "../dynamic/resnet_path.hpp"
#include "../dynamic/upernet_path.hpp"
#include "layer_info.hpp"
#include "resnet.hpp"
#include "segformer.hpp"
#include "upernet_swin.hpp"

namespace drt {

/// What a family's outputs are: per-pixel class scores or one class score vector per image.
enum class output_kind { segmentation, classification };

template <class Model>
struct model_family;

namespace detail {
/// "full" (what tables write for the full model) or the family's path text.
template <class Path>
Path parse_family_path_text(const std::string& text) {
  return text == "full" ? Path{} : Path::parse(text);
}
}  // namespace detail

template <>
struct model_family<segformer_model> {
  using model_type = segformer_model;
  using path_type = segformer_path;
  using execution_type = segformer_execution;
  using encoding_type = segformer_features;
  static constexpr const char* name = "segformer";
  static constexpr output_kind output = output_kind::segmentation;
  /// The decoder can be folded (segformer_options): a table records which graph it measured.
  static constexpr bool foldable_decoder = true;

  static path_type parse(const std::string& text) { return detail::parse_family_path_text<path_type>(text); }
  static void validate(const model_type& m, const path_type& p) { p.validate(m.config()); }
  static execution_type compile(const model_type& m, const path_type& p) { return m.compile(p); }
  /// The path with its head knobs removed: paths with equal keys share an encoding.
  static std::string encoder_key(path_type p) {
    p.fuse_in = p.pred_in = p.linear0_in = 0;
    p.propagate = true;
    return p.to_string();
  }
  static encoding_type encode(const model_type& m, const tensor4& x, const execution_type& e) { return m.encode(x, e); }
  static tensor4 decode(const model_type& m, const encoding_type& f, const execution_type& e) {
    return m.decode(f, e.head);
  }
  static tensor4 logits(const model_type& m, const tensor4& x, const execution_type& e) {
    return m.forward(x, false, e).logits;
  }
  static std::vector<layer_info> layers(const model_type& m, std::size_t h, std::size_t w, const execution_type& e,
                                        std::size_t n = 1) {
    return m.layers(h, w, e, n);
  }
  static void check_input(const model_type& m, std::size_t h, std::size_t w) { m.check_input(h, w); }
  static std::size_t classes(const model_type& m) { return m.decode_head().classes(); }
  static std::size_t input_channels(const model_type& m) { return static_cast<std::size_t>(m.config().num_channels); }
  static std::vector<int> depths(const model_type& m) { return m.config().depths; }
  static path_type with_depths(path_type p, const std::vector<int>& d, const std::vector<int>& full) {
    p.depths = d == full ? std::vector<int>{} : d;
    return p;
  }
  static bool decoder_folded(const model_type& m) { return m.decoder_folded(); }
};

template <>
struct model_family<upernet_swin_model> {
  using model_type = upernet_swin_model;
  using path_type = upernet_path;
  using execution_type = upernet_execution;
  using encoding_type = upernet_features;
  static constexpr const char* name = "upernet";
  static constexpr output_kind output = output_kind::segmentation;
  static constexpr bool foldable_decoder = false;

  static path_type parse(const std::string& text) { return detail::parse_family_path_text<path_type>(text); }
  static void validate(const model_type& m, const path_type& p) { p.validate(m.config()); }
  static execution_type compile(const model_type& m, const path_type& p) { return m.compile(p); }
  static std::string encoder_key(path_type p) {
    p.bottleneck_in = p.fpn_out = p.fpn_in = p.pred_in = 0;
    return p.to_string();
  }
  static encoding_type encode(const model_type& m, const tensor4& x, const execution_type& e) { return m.encode(x, e); }
  static tensor4 decode(const model_type& m, const encoding_type& f, const execution_type& e) { return m.decode(f, e); }
  static tensor4 logits(const model_type& m, const tensor4& x, const execution_type& e) {
    return m.forward(x, false, e).logits;
  }
  static std::vector<layer_info> layers(const model_type& m, std::size_t h, std::size_t w, const execution_type& e,
                                        std::size_t n = 1) {
    return m.layers(h, w, e, n);
  }
  static void check_input(const model_type&, std::size_t, std::size_t) {}  // any size: the patch embedding pads
  static std::size_t classes(const model_type& m) { return m.classes(); }
  static std::size_t input_channels(const model_type& m) {
    return static_cast<std::size_t>(m.config().backbone.num_channels);
  }
  static std::vector<int> depths(const model_type& m) { return m.config().backbone.depths; }
  static path_type with_depths(path_type p, const std::vector<int>& d, const std::vector<int>& full) {
    p.depths = d == full ? std::vector<int>{} : d;
    return p;
  }
  static bool decoder_folded(const model_type&) { return false; }
};

template <>
struct model_family<resnet_model> {
  using model_type = resnet_model;
  using path_type = resnet_path;
  using execution_type = resnet_execution;
  using encoding_type = tensor4;  ///< the logits: the whole network is the encoder half
  static constexpr const char* name = "resnet";
  static constexpr output_kind output = output_kind::classification;
  static constexpr bool foldable_decoder = false;

  static path_type parse(const std::string& text) { return detail::parse_family_path_text<path_type>(text); }
  static void validate(const model_type& m, const path_type& p) { p.validate(m.config()); }
  static execution_type compile(const model_type& m, const path_type& p) { return m.compile(p); }
  static std::string encoder_key(const path_type& p) { return p.to_string(); }
  static tensor4 logits(const model_type& m, const tensor4& x, const execution_type& e) {
    const tensor2 l = m.forward(x, false, e).logits;
    tensor4 out = tensor4::from_shape({l.shape(0), l.shape(1), std::size_t{1}, std::size_t{1}});
    std::copy(l.begin(), l.end(), out.begin());
    return out;
  }
  static encoding_type encode(const model_type& m, const tensor4& x, const execution_type& e) { return logits(m, x, e); }
  static tensor4 decode(const model_type&, const encoding_type& f, const execution_type&) { return f; }
  static std::vector<layer_info> layers(const model_type& m, std::size_t h, std::size_t w, const execution_type& e,
                                        std::size_t n = 1) {
    return m.layers(h, w, e, n);
  }
  static void check_input(const model_type&, std::size_t, std::size_t) {}
  static std::size_t classes(const model_type& m) { return m.num_classes(); }
  static std::size_t input_channels(const model_type& m) { return static_cast<std::size_t>(m.config().num_channels); }
  static std::vector<int> depths(const model_type& m) { return m.config().depths; }
  static path_type with_depths(path_type p, const std::vector<int>& d, const std::vector<int>& full) {
    p.depths = d == full ? std::vector<int>{} : d;
    return p;
  }
  static bool decoder_folded(const model_type&) { return false; }
};

}  // namespace drt
