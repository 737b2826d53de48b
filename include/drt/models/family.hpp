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
#include <map>
#include <string>
#include <vector>

#include "../core/tensor.hpp"
#include "../dynamic/channel_order.hpp"
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
/// What every family does the same way; a family's traits derive from it and add or hide the rest.
template <class Model, class Path, class Execution>
struct model_family_base {
  using model_type = Model;
  using path_type = Path;
  using execution_type = Execution;
  static constexpr bool foldable_decoder = false;

  /// "full" (what tables write for the full model) or the family's path text.
  static path_type parse(const std::string& text) { return text == "full" ? path_type{} : path_type::parse(text); }
  static void validate(const model_type& m, const path_type& p) { p.validate(m.config()); }
  static execution_type compile(const model_type& m, const path_type& p) { return m.compile(p); }
  /// Segmentation logits [N, K, h, w] (classification families hide this).
  static tensor4 logits(const model_type& m, const tensor4& x, const execution_type& e) {
    return m.forward(x, false, e).logits;
  }
  static std::vector<layer_info> layers(const model_type& m, std::size_t h, std::size_t w, const execution_type& e,
                                        std::size_t n = 1) {
    return m.layers(h, w, e, n);
  }
  /// The path with depths `d` (written only when they differ from the model's `full` depths).
  static path_type with_depths(path_type p, const std::vector<int>& d, const std::vector<int>& full) {
    p.depths = d == full ? std::vector<int>{} : d;
    return p;
  }
  static bool decoder_folded(const model_type&) { return false; }
  /// The importance-orderable channel groups (dynamic/channel_order.hpp) and the layers reporting
  /// their activations for calibration; none by default.
  static std::vector<channel_group> channel_groups(const model_type&) { return {}; }
  static std::map<const void*, std::string> group_layers(const model_type&) { return {}; }
};

/// The channel groups of a family whose model declares them (SegFormer, Swin + UPerNet).
template <class Model, class Path, class Execution>
struct ordered_family_base : model_family_base<Model, Path, Execution> {
  static std::vector<channel_group> channel_groups(const Model& m) { return Model::channel_groups(m.config()); }
  static std::map<const void*, std::string> group_layers(const Model& m) { return m.group_layers(); }
};
}  // namespace detail

template <>
struct model_family<segformer_model>
    : detail::ordered_family_base<segformer_model, segformer_path, segformer_execution> {
  using encoding_type = segformer_features;
  static constexpr const char* name = "segformer";
  static constexpr output_kind output = output_kind::segmentation;
  /// The decoder can be folded (segformer_options): a table records which graph it measured.
  static constexpr bool foldable_decoder = true;

  /// The path with its head knobs removed: paths with equal keys share an encoding.
  static std::string encoder_key(path_type p) {
    p.fuse_in = p.pred_in = p.linear0_in = 0;
    p.propagate = true;
    p.precision = precision_plan{precision::fp32, {{"encoder", p.precision.of("encoder")}}};  // the decoder's is the head's
    return p.to_string();
  }
  static encoding_type encode(const model_type& m, const tensor4& x, const execution_type& e) { return m.encode(x, e); }
  static tensor4 decode(const model_type& m, const encoding_type& f, const execution_type& e) {
    return m.decode(f, e.head);
  }
  static void check_input(const model_type& m, std::size_t h, std::size_t w) { m.check_input(h, w); }
  static std::size_t classes(const model_type& m) { return m.decode_head().classes(); }
  static std::size_t input_channels(const model_type& m) { return static_cast<std::size_t>(m.config().num_channels); }
  static std::vector<int> depths(const model_type& m) { return m.config().depths; }
  static bool decoder_folded(const model_type& m) { return m.decoder_folded(); }
};

template <>
struct model_family<upernet_swin_model>
    : detail::ordered_family_base<upernet_swin_model, upernet_path, upernet_execution> {
  using encoding_type = upernet_features;
  static constexpr const char* name = "upernet";
  static constexpr output_kind output = output_kind::segmentation;

  static std::string encoder_key(path_type p) {
    p.bottleneck_in = p.fpn_out = p.fpn_in = p.pred_in = 0;
    return p.to_string();
  }
  static encoding_type encode(const model_type& m, const tensor4& x, const execution_type& e) { return m.encode(x, e); }
  static tensor4 decode(const model_type& m, const encoding_type& f, const execution_type& e) { return m.decode(f, e); }
  static void check_input(const model_type&, std::size_t, std::size_t) {}  // any size: the patch embedding pads
  static std::size_t classes(const model_type& m) { return m.classes(); }
  static std::size_t input_channels(const model_type& m) {
    return static_cast<std::size_t>(m.config().backbone.num_channels);
  }
  static std::vector<int> depths(const model_type& m) { return m.config().backbone.depths; }
};

template <>
struct model_family<resnet_model> : detail::model_family_base<resnet_model, resnet_path, resnet_execution> {
  using encoding_type = tensor4;  ///< the logits: the whole network is the encoder half
  static constexpr const char* name = "resnet";
  static constexpr output_kind output = output_kind::classification;

  static std::string encoder_key(const path_type& p) { return p.to_string(); }
  static tensor4 logits(const model_type& m, const tensor4& x, const execution_type& e) {
    const tensor2 l = m.forward(x, false, e).logits;
    tensor4 out = tensor4::from_shape({l.shape(0), l.shape(1), std::size_t{1}, std::size_t{1}});
    std::copy(l.begin(), l.end(), out.begin());
    return out;
  }
  static encoding_type encode(const model_type& m, const tensor4& x, const execution_type& e) { return logits(m, x, e); }
  static tensor4 decode(const model_type&, const encoding_type& f, const execution_type&) { return f; }
  static void check_input(const model_type&, std::size_t, std::size_t) {}
  static std::size_t classes(const model_type& m) { return m.num_classes(); }
  static std::size_t input_channels(const model_type& m) { return static_cast<std::size_t>(m.config().num_channels); }
  static std::vector<int> depths(const model_type& m) { return m.config().depths; }
};

}  // namespace drt
