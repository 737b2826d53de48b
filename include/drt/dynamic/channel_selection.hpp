#pragma once
/// @file channel_selection.hpp
/// Which channels of a layer's input (or output) a dynamic path keeps.
///
/// drt keeps a *prefix* of a channel order. By default the order is the checkpoint's (the paper's
/// semantics; SegFormer's decoder concatenates stage 3 first). A model may be given another order
/// once (e.g. by importance): the weights are packed in that order at load, so every path is still a
/// prefix of one packed buffer, and no path ever copies weights.

#include <cstddef>
#include <string>

#include "../core/error.hpp"

namespace drt {

struct channel_selection {
  std::size_t total = 0;  ///< channels of the layer
  std::size_t kept = 0;   ///< the first `kept` channels of the order run

  static channel_selection all(std::size_t total) noexcept { return {total, total}; }
  static channel_selection prefix(std::size_t total, std::size_t kept, const std::string& what) {
    if (kept == 0 || kept > total)
      throw invalid_input("path: " + what + "=" + std::to_string(kept) + " must be between 1 and " +
                          std::to_string(total));
    return {total, kept};
  }
  bool is_full() const noexcept { return kept == total; }
  double fraction() const noexcept { return total ? double(kept) / double(total) : 1.0; }
};

}  // namespace drt
