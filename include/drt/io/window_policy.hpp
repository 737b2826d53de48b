#pragma once
/// @file window_policy.hpp
/// How a Swin backbone's window and shift adapt to a token grid no larger than the window: a
/// setting of the model (swin_config::policy, io/upernet_config.hpp) that the window attention
/// (layers/window_attention.hpp) follows. Here so that loading a config needs no compute header.

namespace drt {

/// How the window and the shift adapt to a token grid no larger than the window.
enum class window_policy {
  /// Keep the configured window and shift; small grids are padded up to one window. This is what
  /// transformers' SwinBackbone does (it calls the encoder with always_partition=True), hence what
  /// UPerNet, Mask2Former, ... run.
  always_partition,
  /// SwinLayer.set_shift_and_window_size (SwinModel / SwinForImageClassification): when
  /// min(H, W) <= window, the shift becomes 0 and the window min(H, W). When that window is smaller
  /// than the configured one transformers itself fails (its bias is sized for the configured window);
  /// drt then takes the centred sub-table of the relative position bias.
  clamp,
};

}  // namespace drt
