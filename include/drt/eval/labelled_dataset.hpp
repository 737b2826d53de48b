#pragma once
/// @file labelled_dataset.hpp
/// A labelled folder: `images/` (PNG or JPEG) and `labels/` (8-bit PNG, one class index per pixel)
/// with matching file stems. Listing checks that every image has its label.

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../io/image.hpp"

namespace drt {

struct labelled_item {
  std::string stem, image_path, label_path;
};

/// Items of DIR sorted by stem; `limit` > 0 keeps the first `limit`. Throws naming the folder or the
/// image whose label is missing.
inline std::vector<labelled_item> list_labelled_dataset(const std::string& dir, std::size_t limit = 0) {
  namespace fs = std::filesystem;
  const fs::path images = fs::path(dir) / "images", labels = fs::path(dir) / "labels";
  std::error_code ec;
  if (!fs::is_directory(images, ec) || !fs::is_directory(labels, ec))
    throw io_error("dataset '" + dir + "': expected folders images/ and labels/");
  std::vector<labelled_item> items;
  for (fs::directory_iterator it(images, ec), end; !ec && it != end; it.increment(ec)) {
    const auto& e = *it;
    if (!e.is_regular_file(ec) || !has_image_extension(e.path())) continue;
    const std::string stem = e.path().stem().string();
    const fs::path label = labels / (stem + ".png");
    if (!fs::exists(label, ec))
      throw io_error("dataset '" + dir + "': image '" + e.path().filename().string() + "' has no label '" +
                     label.string() + "'");
    items.push_back({stem, e.path().string(), label.string()});
  }
  if (ec) throw io_error("dataset '" + dir + "': cannot list images/ (" + ec.message() + ")");
  if (items.empty()) throw io_error("dataset '" + dir + "': no PNG or JPEG images in images/");
  std::sort(items.begin(), items.end(), [](const labelled_item& a, const labelled_item& b) { return a.stem < b.stem; });
  if (limit > 0 && items.size() > limit) items.resize(limit);
  return items;
}

}  // namespace drt
