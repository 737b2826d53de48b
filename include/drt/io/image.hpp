#pragma once
/// @file image.hpp
/// Images in and out: decode PNG/JPEG to 8-bit RGB, resize, normalize to the model's
/// pixel_values, read 8-bit label maps, and write class maps and overlays as PNG.
///
/// Built on Debian's stb (`libstb-dev`): the headers come from /usr/include/stb and the
/// implementations from libstb.so, so this header never defines STB_*_IMPLEMENTATION.

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <stb_image.h>
#include <stb_image_resize.h>
#include <stb_image_write.h>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "file.hpp"

namespace drt {

/// An 8-bit RGB image.
struct rgb_image {
  std::size_t width = 0;
  std::size_t height = 0;
  std::vector<std::uint8_t> pixels;  ///< [H, W, 3] row-major, RGB interleaved
};

/// An 8-bit single-channel class map as stored in label PNGs (e.g. CamVid: 0..10, 11 = void).
struct label_map {
  std::size_t width = 0;
  std::size_t height = 0;
  std::vector<std::uint8_t> labels;  ///< [H, W] row-major, one class index per pixel
};

/// One palette entry.
struct rgb_color {
  std::uint8_t r = 0, g = 0, b = 0;
  friend bool operator==(const rgb_color& a, const rgb_color& c) noexcept {
    return a.r == c.r && a.g == c.g && a.b == c.b;
  }
  friend bool operator!=(const rgb_color& a, const rgb_color& c) noexcept { return !(a == c); }
};

/// Colour per class, index = class id.
using palette = std::vector<rgb_color>;

/// Images with more pixels than this are refused before decoding unless the caller passes another
/// limit: 4096 x 4096 = 16.8 MP covers UHD (3840x2160) and DCI 4K (4096x2160) frames, and bounds
/// what a small hostile file (a PNG of a few hundred KB can declare 8000 x 8000) makes drt allocate.
inline constexpr std::size_t default_max_pixels = std::size_t{4096} * 4096;

/// Throws drt::invalid_input naming `where` ("image 'a.png'", "--size") when height x width is
/// empty or above `max_pixels`.
inline void check_pixel_limit(const std::string& where, std::size_t height, std::size_t width,
                              std::size_t max_pixels = default_max_pixels) {
  std::size_t pixels = 0;
  if (height == 0 || width == 0 || __builtin_mul_overflow(height, width, &pixels) || pixels > max_pixels)
    throw invalid_input(where + ": " + std::to_string(height) + "x" + std::to_string(width) + " (HxW) is " +
                        (height == 0 || width == 0 ? std::string("empty")
                                                   : "more than the limit of " + std::to_string(max_pixels) + " pixels") +
                        (height == 0 || width == 0 ? "" : " (raise the limit to allow it)"));
}

/// What `load_image` does with files that are not 3-channel RGB.
enum class channel_policy {
  convert,      ///< grey, grey+alpha and RGBA are converted to RGB (alpha dropped), as PIL's convert("RGB")
  require_rgb,  ///< anything but 3 channels throws drt::invalid_input
};

namespace detail {

inline std::string image_where(const char* what, const std::string& path) {
  return std::string(what) + " '" + path + "'";
}

/// "1 channel (grey)", "4 channels (RGBA)".
inline std::string channels_str(int c) {
  static const char* const names[] = {"grey", "grey+alpha", "RGB", "RGBA"};
  const char* name = c >= 1 && c <= 4 ? names[c - 1] : "unknown";
  return std::to_string(c) + (c == 1 ? " channel (" : " channels (") + name + ")";
}

/// The checks stb_image needs on an encoded image: not empty, size fits in an int.
inline void check_encoded_size(const std::string& where, std::size_t size) {
  if (size == 0) throw io_error(where + ": file is empty");
  if (size > static_cast<std::size_t>(std::numeric_limits<int>::max()))
    throw io_error(where + ": file is " + std::to_string(size) + " bytes, larger than stb_image can decode");
}

struct stbi_deleter {
  void operator()(stbi_uc* p) const noexcept { stbi_image_free(p); }
};
using stbi_pixels = std::unique_ptr<stbi_uc, stbi_deleter>;

/// PNG and JPEG only: drt needs no other format, and every decoder stb would otherwise try (TGA
/// has no signature at all, HDR, PSD, PIC, GIF, PNM, BMP) is attack surface for a hostile file.
inline void check_png_or_jpeg(const std::string& where, const unsigned char* d, std::size_t n) {
  static const unsigned char png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  const bool is_png = n >= 8 && std::memcmp(d, png, 8) == 0;
  const bool is_jpeg = n >= 3 && d[0] == 0xff && d[1] == 0xd8 && d[2] == 0xff;
  if (!is_png && !is_jpeg) throw io_error(where + ": cannot decode (not a PNG or JPEG file)");
}

/// Refuses the JPEGs that Debian 12's stb_image (2.27) decodes out of bounds, both found by fuzzing:
/// - a Huffman table (DHT) declaring more than 256 codes: stb builds it without that check and
///   writes past its tables (a heap overflow, reached from stbi_info already; stb 2.28 checks it);
/// - a scan using a Huffman table that no DHT defined: stb does not check it and decodes with the
///   uninitialized table of its malloc'ed state (a heap over-read driven by earlier frames' data).
///   Baseline scans read the DC and AC tables they name; progressive DC-first scans the DC table,
///   AC scans the AC table, DC refinement none.
/// The markers are walked as stb walks them: segments skipped by their length, any other byte
/// skipped one at a time, so every DHT and SOS that stb would process is seen here first.
/// ref: stb_image.h 2.27, stbi__process_marker (case 0xC4), stbi__process_scan_header, stbi__build_huffman
inline void check_jpeg_huffman_tables(const std::string& where, const unsigned char* d, std::size_t n) {
  if (n < 2 || d[0] != 0xff || d[1] != 0xd8) return;
  auto byte = [&](std::size_t i) -> std::size_t { return i < n ? d[i] : 0; };  // stb reads 0 past the end
  bool defined[2][4] = {};  // [DC = 0, AC = 1][table id]
  bool frame = false, progressive = false;  // a frame stb decodes (SOF0/1/2) seen; it is SOF2
  std::size_t p = 2;
  while (p + 1 < n) {
    if (d[p] != 0xff) {  // entropy-coded data or garbage between segments
      ++p;
      continue;
    }
    const unsigned char m = d[p + 1];
    if (m == 0xff || m == 0x00 || m == 0x01 || (m >= 0xd0 && m <= 0xd8)) {  // fill, stuffing, TEM, RSTn, SOI
      p += m == 0xff ? 1 : 2;
      continue;
    }
    if (m == 0xd9) return;  // EOI
    if (p + 3 >= n) return;
    const std::size_t len = (std::size_t{d[p + 2]} << 8) | d[p + 3];  // includes its own two bytes
    const std::size_t end = std::min(n, p + 2 + len);
    if (m == 0xc0 || m == 0xc1 || m == 0xc2) frame = true, progressive = m == 0xc2;  // the frames stb decodes
    if (m == 0xda && frame) {  // SOS: the tables this scan reads (other frames stb refuses itself)
      const std::size_t ns = byte(p + 4), tail = p + 5 + 2 * ns;
      const std::size_t ss = byte(tail), ah = byte(tail + 2) >> 4;
      for (std::size_t c = 0; c < ns; ++c) {
        const std::size_t td = byte(p + 6 + 2 * c) >> 4, ta = byte(p + 6 + 2 * c) & 15;
        if (td > 3 || ta > 3) break;  // stb refuses the scan itself
        const bool needs_dc = progressive ? ss == 0 && ah == 0 : true, needs_ac = progressive ? ss > 0 : true;
        if ((needs_dc && !defined[0][td]) || (needs_ac && !defined[1][ta]))
          throw io_error(where + ": cannot decode (corrupt JPEG: a scan uses Huffman table " +
                         (needs_dc && !defined[0][td] ? "DC " + std::to_string(td) : "AC " + std::to_string(ta)) +
                         ", which no DHT segment defines)");
      }
    }
    if (m == 0xc4) {  // stb reads each table's 16 counts from the stream, past the segment's end if need be
      long left = static_cast<long>(len) - 2;
      for (std::size_t q = p + 4; left > 0;) {
        const std::size_t tc = byte(q) >> 4, th = byte(q) & 15;
        if (tc > 1 || th > 3) break;  // stb refuses the segment
        std::size_t codes = 0;
        for (std::size_t i = 1; i <= 16; ++i) codes += byte(q + i);
        if (codes > 256)
          throw io_error(where + ": cannot decode (corrupt JPEG: a Huffman table declares " + std::to_string(codes) +
                         " codes, at most 256 exist)");
        defined[tc][th] = true;
        q += 17 + codes;
        left -= static_cast<long>(17 + codes);
      }
    }
    p = std::max(end, p + 2);
  }
}

/// Refuses a PNG chunk whose length runs past the end of the data: stb_image 2.27 allocates an
/// IDAT chunk's declared length (up to 2 GB) before finding that the bytes are not there, so a
/// 473-byte file could make it allocate 1.3 GB (found by fuzzing).
/// ref: PNG specification, 5.3 Chunk layout (length, type, data, CRC); stb_image.h, stbi__parse_png_file
inline void check_png_chunks(const std::string& where, const unsigned char* d, std::size_t n) {
  if (n < 8 || d[0] != 0x89 || d[1] != 'P') return;
  for (std::size_t p = 8; p + 8 <= n;) {
    const std::size_t len = (std::size_t{d[p]} << 24) | (std::size_t{d[p + 1]} << 16) | (std::size_t{d[p + 2]} << 8) | d[p + 3];
    static const char hex[] = "0123456789abcdef";
    std::string type;  // as messages show it: letters as they are, any other byte as \xHH
    for (std::size_t i = 4; i < 8; ++i) {
      const unsigned char ch = d[p + i];
      if (std::isalpha(ch)) type += static_cast<char>(ch);
      else type += std::string("\\x") + hex[ch >> 4] + hex[ch & 15];
    }
    const std::size_t left = n - p - 8;  // bytes after the length and type fields
    if (len > left)
      throw io_error(where + ": cannot decode (corrupt PNG: chunk " + type + " declares " + std::to_string(len) +
                     " bytes, " + std::to_string(left) + " are left)");
    if (type == "IEND") return;
    p += 12 + len;
  }
}

/// stb's reason for the last failure, never empty.
inline std::string stbi_reason() {
  const char* why = stbi_failure_reason();
  return why && *why ? std::string("stb_image: ") + why : "stb_image gave no reason; truncated or corrupt file?";
}

/// Decode with stb_image; `desired` = 0 keeps the file's channel count. The header is read first
/// and the size checked against `max_pixels`, so a small file declaring a huge image allocates nothing.
inline stbi_pixels decode(const std::string& where, const unsigned char* data, std::size_t size, int desired,
                          std::size_t max_pixels, int& w, int& h, int& channels) {
  check_encoded_size(where, size);
  check_png_or_jpeg(where, data, size);
  check_jpeg_huffman_tables(where, data, size);
  check_png_chunks(where, data, size);
  const int n = static_cast<int>(size);
  if (!stbi_info_from_memory(data, n, &w, &h, &channels))
    throw io_error(where + ": cannot decode (" + stbi_reason() + ")");
  if (w <= 0 || h <= 0) throw io_error(where + ": cannot decode (declares " + std::to_string(h) + "x" + std::to_string(w) + " pixels)");
  check_pixel_limit(where, static_cast<std::size_t>(h), static_cast<std::size_t>(w), max_pixels);
  const int info_w = w, info_h = h;
  stbi_pixels px(stbi_load_from_memory(data, n, &w, &h, &channels, desired));
  if (!px) throw io_error(where + ": cannot decode (" + stbi_reason() + ")");
  if (w != info_w || h != info_h)  // the header said one size, the decoder another: refuse both
    throw io_error(where + ": cannot decode (header says " + std::to_string(info_h) + "x" + std::to_string(info_w) +
                   ", decoder " + std::to_string(h) + "x" + std::to_string(w) + ")");
  return px;
}

inline void check_rgb(const rgb_image& img, const std::string& what) {
  if (img.width == 0 || img.height == 0)
    throw invalid_input(what + ": image is " + std::to_string(img.height) + "x" + std::to_string(img.width) +
                        " (HxW), expected a non-empty image");
  if (img.pixels.size() != img.width * img.height * 3)
    throw invalid_input(what + ": image of " + std::to_string(img.height) + "x" + std::to_string(img.width) +
                        " (HxW) holds " + std::to_string(img.pixels.size()) +
                        " bytes, expected H*W*3 = " + std::to_string(img.width * img.height * 3));
}

/// Encode RGB rows [H, W, 3] as PNG bytes; `where` names the output in errors.
inline std::vector<unsigned char> encode_png_rgb(const std::string& where, std::size_t width, std::size_t height,
                                                 const std::uint8_t* rgb) {
  if (width > static_cast<std::size_t>(std::numeric_limits<int>::max() / 3) ||
      height > static_cast<std::size_t>(std::numeric_limits<int>::max()))
    throw invalid_input(where + ": " + std::to_string(height) + "x" + std::to_string(width) +
                        " (HxW) is too large for stb_image_write");
  std::vector<unsigned char> encoded;
  auto sink = [](void* ctx, void* data, int size) {
    auto* out = static_cast<std::vector<unsigned char>*>(ctx);
    const auto* p = static_cast<const unsigned char*>(data);
    out->insert(out->end(), p, p + size);
  };
  const int w = static_cast<int>(width), h = static_cast<int>(height);
  if (!stbi_write_png_to_func(sink, &encoded, w, h, 3, rgb, w * 3))
    throw io_error(where + ": stb_image_write could not encode the image");
  return encoded;
}

/// Class map [H, W] -> RGB via the palette; invalid_input naming the first pixel outside it.
inline std::vector<std::uint8_t> colorize(const std::string& where, const std::int32_t* classes, std::size_t height,
                                          std::size_t width, const palette& pal) {
  std::vector<std::uint8_t> rgb(height * width * 3);
  for (std::size_t i = 0; i < height * width; ++i) {
    const std::int32_t c = classes[i];
    if (c < 0 || static_cast<std::size_t>(c) >= pal.size())
      throw invalid_input(where + ": pixel (y " + std::to_string(i / width) + ", x " + std::to_string(i % width) +
                          ") has class " + std::to_string(c) + ", outside the palette's " + std::to_string(pal.size()) +
                          " classes");
    rgb[3 * i + 0] = pal[static_cast<std::size_t>(c)].r;
    rgb[3 * i + 1] = pal[static_cast<std::size_t>(c)].g;
    rgb[3 * i + 2] = pal[static_cast<std::size_t>(c)].b;
  }
  return rgb;
}

inline void check_item(const std::string& where, const itensor3& classes, std::size_t item) {
  if (item >= classes.shape(0))
    throw invalid_input(where + ": batch item " + std::to_string(item) + " requested from class maps of shape " +
                        shape_str(classes.shape()) + " ([N, H, W])");
}

}  // namespace detail

/// Decode a PNG or JPEG (anything stb_image reads) held in memory into 8-bit RGB; `name` stands
/// for the file in errors ("image 'name': ..."). 16-bit files are reduced to 8 bits. Throws
/// drt::io_error when it cannot be decoded (with stb's reason), drt::invalid_input when it has more
/// than `max_pixels` pixels (checked from the header, before decoding) or, under
/// `channel_policy::require_rgb`, when it is not 3-channel.
inline rgb_image decode_image(const std::string& name, const unsigned char* data, std::size_t size,
                              std::size_t max_pixels = default_max_pixels,
                              channel_policy policy = channel_policy::convert) {
  const std::string where = "image '" + name + "'";
  int w = 0, h = 0, channels = 0;
  auto px = detail::decode(where, data, size, 3, max_pixels, w, h, channels);
  if (policy == channel_policy::require_rgb && channels != 3)
    throw invalid_input(where + ": has " + detail::channels_str(channels) + ", expected 3 (RGB)");
  rgb_image img;
  img.width = static_cast<std::size_t>(w);
  img.height = static_cast<std::size_t>(h);
  img.pixels.assign(px.get(), px.get() + img.width * img.height * 3);
  return img;
}

/// Read and decode an image file (see `decode_image`); drt::io_error also when it cannot be read.
inline rgb_image load_image(const std::string& path, channel_policy policy = channel_policy::convert,
                            std::size_t max_pixels = default_max_pixels) {
  const auto bytes = read_file("image", path);
  return decode_image(path, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), max_pixels, policy);
}

/// Decode an 8-bit single-channel label PNG (one class index per pixel) held in memory. Throws
/// drt::io_error when it cannot be decoded, drt::invalid_input when it has other than 1 channel or
/// 16 bits, or more than `max_pixels` pixels.
inline label_map decode_label_png(const std::string& name, const unsigned char* data, std::size_t size,
                                  std::size_t max_pixels = default_max_pixels) {
  const std::string where = "label '" + name + "'";
  int w = 0, h = 0, channels = 0;
  auto px = detail::decode(where, data, size, 0, max_pixels, w, h, channels);
  if (channels != 1) throw invalid_input(where + ": has " + detail::channels_str(channels) + ", expected 1 (an 8-bit class map)");
  if (stbi_is_16_bit_from_memory(data, static_cast<int>(size)))
    throw invalid_input(where + ": has 16-bit samples, expected 8-bit class indices");
  label_map m;
  m.width = static_cast<std::size_t>(w);
  m.height = static_cast<std::size_t>(h);
  m.labels.assign(px.get(), px.get() + m.width * m.height);
  return m;
}

/// Read and decode a label PNG file (see `decode_label_png`).
inline label_map load_label_png(const std::string& path, std::size_t max_pixels = default_max_pixels) {
  const auto bytes = read_file("label", path);
  return decode_label_png(path, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), max_pixels);
}

/// Resize to `height` x `width` with stb's triangle (tent) filter, edges clamped, in linear RGB:
/// exact bilinear interpolation with half-pixel centres (align_corners=False) when enlarging; when
/// shrinking the tent widens with the scale (antialiased, like PIL's BILINEAR).
inline rgb_image resize_image(const rgb_image& img, std::size_t height, std::size_t width) {
  detail::check_rgb(img, "resize_image");
  constexpr auto int_max = static_cast<std::size_t>(std::numeric_limits<int>::max() / 3);
  if (height == 0 || width == 0 || height > int_max || width > int_max)
    throw invalid_input("resize_image: target size " + std::to_string(height) + "x" + std::to_string(width) +
                        " (HxW) must be positive and fit in an int");
  if (height == img.height && width == img.width) return img;
  rgb_image out;
  out.width = width;
  out.height = height;
  out.pixels.resize(width * height * 3);
  const int ok = stbir_resize_uint8_generic(
      img.pixels.data(), static_cast<int>(img.width), static_cast<int>(img.height), static_cast<int>(img.width * 3),
      out.pixels.data(), static_cast<int>(width), static_cast<int>(height), static_cast<int>(width * 3), 3,
      STBIR_ALPHA_CHANNEL_NONE, 0, STBIR_EDGE_CLAMP, STBIR_FILTER_TRIANGLE, STBIR_COLORSPACE_LINEAR, nullptr);
  if (!ok)
    throw io_error("resize_image: stb_image_resize failed for " + std::to_string(img.height) + "x" +
                   std::to_string(img.width) + " -> " + std::to_string(height) + "x" + std::to_string(width) +
                   " (HxW; out of memory?)");
  return out;
}

/// ImageNet mean and std per RGB channel, as SegformerImageProcessor.
inline constexpr float imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
inline constexpr float imagenet_std[3] = {0.229f, 0.224f, 0.225f};

/// Batch of equally sized images -> pixel_values [N, 3, H, W] float32 (NCHW, as transformers):
/// (x/255 - mean) / std, computed in float32 as transformers' fused fast image processor does,
/// (x - 255*mean) / (255*std), so values match its pixel_values bit for bit.
/// Throws drt::invalid_input for an empty batch or images of different sizes.
/// ref: transformers image_processing_utils_fast.py, _fuse_mean_std_and_rescale_factor
inline tensor4 normalize_imagenet(const std::vector<rgb_image>& images) {
  if (images.empty()) throw invalid_input("normalize_imagenet: the batch is empty, expected at least 1 image");
  for (std::size_t i = 0; i < images.size(); ++i) {
    detail::check_rgb(images[i], "normalize_imagenet: image " + std::to_string(i));
    if (images[i].height != images[0].height || images[i].width != images[0].width)
      throw shape_error("normalize_imagenet: image " + std::to_string(i) + " is " + std::to_string(images[i].height) +
                        "x" + std::to_string(images[i].width) + " (HxW) but image 0 is " +
                        std::to_string(images[0].height) + "x" + std::to_string(images[0].width) +
                        "; all images of a batch must have the same size");
  }
  float lut[3][256];
  for (int c = 0; c < 3; ++c) {
    const float m = imagenet_mean[c] * 255.0f, s = imagenet_std[c] * 255.0f;
    for (int v = 0; v < 256; ++v) lut[c][v] = (static_cast<float>(v) - m) / s;
  }
  const std::size_t n = images.size(), h = images[0].height, w = images[0].width, hw = h * w;
  tensor4 out = tensor4::from_shape({n, std::size_t{3}, h, w});
  float* dst = out.data();
  for (std::size_t b = 0; b < n; ++b) {
    const std::uint8_t* src = images[b].pixels.data();
    float* plane = dst + b * 3 * hw;
    for (std::size_t i = 0; i < hw; ++i) {
      plane[i] = lut[0][src[3 * i + 0]];
      plane[hw + i] = lut[1][src[3 * i + 1]];
      plane[2 * hw + i] = lut[2][src[3 * i + 2]];
    }
  }
  return out;
}

/// Single-image convenience: [1, 3, H, W].
inline tensor4 normalize_imagenet(const rgb_image& image) { return normalize_imagenet(std::vector<rgb_image>{image}); }

/// A fixed, distinct colour per class. For n == 11 the CamVid colours (sky, building, pole, road,
/// pavement, tree, sign_symbol, fence, car, pedestrian, bicyclist); otherwise the PASCAL VOC /
/// DeepLab bit-interleaved colormap, which is deterministic and distinct for any n <= 2^24.
inline palette class_palette(std::size_t n) {
  if (n == 11)
    return {{128, 128, 128}, {128, 0, 0},   {192, 192, 128}, {128, 64, 128}, {60, 40, 222}, {128, 128, 0},
            {192, 128, 128}, {64, 64, 128}, {64, 0, 128},    {64, 64, 0},    {0, 128, 192}};
  if (n > (std::size_t{1} << 24))
    throw invalid_input("class_palette: " + std::to_string(n) + " classes requested, at most 2^24 = 16777216 have " +
                        "distinct colours");
  // ref: DeepLab create_pascal_label_colormap: bits of the id spread over the colour bit planes,
  // from the most significant one down, so ids and colours are in one-to-one correspondence.
  palette p(n);
  for (std::size_t id = 0; id < n; ++id) {
    std::uint32_t r = 0, g = 0, b = 0, v = static_cast<std::uint32_t>(id);
    for (int shift = 7; shift >= 0; --shift) {
      r |= ((v >> 0) & 1u) << shift;
      g |= ((v >> 1) & 1u) << shift;
      b |= ((v >> 2) & 1u) << shift;
      v >>= 3;
    }
    p[id] = {static_cast<std::uint8_t>(r), static_cast<std::uint8_t>(g), static_cast<std::uint8_t>(b)};
  }
  return p;
}

/// A palette-coloured class map as RGB PNG bytes. `classes`: [H, W] row-major int32. Throws
/// drt::invalid_input for a class outside the palette; `where` names the output in errors.
inline std::vector<unsigned char> encode_class_map_png(const std::string& where, const std::int32_t* classes,
                                                       std::size_t height, std::size_t width, const palette& pal) {
  const auto rgb = detail::colorize("class map for " + where, classes, height, width, pal);
  return detail::encode_png_rgb(where, width, height, rgb.data());
}

/// `photo` blended with the palette-coloured class map, (1 - alpha) * photo + alpha * colour, as PNG
/// bytes. `classes`: [H, W] row-major int32, the photo's size. Throws drt::invalid_input for a size
/// mismatch, alpha outside [0, 1] or a class outside the palette.
inline std::vector<unsigned char> encode_overlay_png(const std::string& where, const rgb_image& photo,
                                                     const std::int32_t* classes, std::size_t height,
                                                     std::size_t width, const palette& pal, float alpha = 0.5f) {
  detail::check_rgb(photo, where);
  if (photo.height != height || photo.width != width)
    throw shape_error(where + ": class map is " + std::to_string(height) + "x" + std::to_string(width) +
                      " (HxW) but the photo is " + std::to_string(photo.height) + "x" + std::to_string(photo.width));
  if (!(alpha >= 0.0f && alpha <= 1.0f)) {
    std::ostringstream os;
    os << where << ": alpha is " << alpha << ", expected a value in [0, 1]";
    throw invalid_input(os.str());
  }
  auto rgb = detail::colorize(where, classes, height, width, pal);
  for (std::size_t i = 0; i < rgb.size(); ++i) {
    const float v = (1.0f - alpha) * static_cast<float>(photo.pixels[i]) + alpha * static_cast<float>(rgb[i]);
    rgb[i] = static_cast<std::uint8_t>(std::min(255.0f, v + 0.5f));
  }
  return detail::encode_png_rgb(where, width, height, rgb.data());
}

/// Write a palette-coloured class map as an RGB PNG, atomically (io/file.hpp). `classes`: [H, W]
/// row-major int32. Throws drt::invalid_input for a class outside the palette, drt::io_error when
/// writing fails (and then no file is left behind).
inline void write_class_map_png(const std::string& path, const std::int32_t* classes, std::size_t height,
                                std::size_t width, const palette& pal) {
  const auto bytes = encode_class_map_png("png '" + path + "'", classes, height, width, pal);
  write_file_atomic("png", path, bytes.data(), bytes.size());
}

/// Write batch item `item` of class maps [N, H, W] (as `upsample_argmax` returns).
inline void write_class_map_png(const std::string& path, const itensor3& classes, const palette& pal,
                                std::size_t item = 0) {
  detail::check_item("class map for png '" + path + "'", classes, item);
  const std::size_t h = classes.shape(1), w = classes.shape(2);
  write_class_map_png(path, classes.data() + item * h * w, h, w, pal);
}

/// Write `photo` blended with the class map (see `encode_overlay_png`), atomically.
inline void write_overlay_png(const std::string& path, const rgb_image& photo, const std::int32_t* classes,
                              std::size_t height, std::size_t width, const palette& pal, float alpha = 0.5f) {
  const auto bytes = encode_overlay_png("overlay png '" + path + "'", photo, classes, height, width, pal, alpha);
  write_file_atomic("png", path, bytes.data(), bytes.size());
}

/// Overlay of batch item `item` of class maps [N, H, W].
inline void write_overlay_png(const std::string& path, const rgb_image& photo, const itensor3& classes,
                              const palette& pal, float alpha = 0.5f, std::size_t item = 0) {
  detail::check_item("overlay png '" + path + "'", classes, item);
  const std::size_t h = classes.shape(1), w = classes.shape(2);
  write_overlay_png(path, photo, classes.data() + item * h * w, h, w, pal, alpha);
}

/// Write an RGB image as PNG, atomically. Throws drt::io_error naming the path when writing fails.
inline void write_png(const std::string& path, const rgb_image& img) {
  detail::check_rgb(img, "png '" + path + "'");
  const auto bytes = detail::encode_png_rgb("png '" + path + "'", img.width, img.height, img.pixels.data());
  write_file_atomic("png", path, bytes.data(), bytes.size());
}

/// Whether `path` names a PNG or JPEG file by its extension (any case).
inline bool has_image_extension(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return char(std::tolower(ch)); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

/// The PNG and JPEG files of folder `dir`, sorted by name (a folder of video frames). Throws naming
/// the folder (`what` 'dir': ...) when it is not a folder or holds no image.
inline std::vector<std::string> list_image_files(const std::string& dir, const std::string& what = "frames") {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw io_error(what + " '" + dir + "': not a directory");
  std::vector<std::string> out;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_regular_file(ec) && has_image_extension(it->path())) out.push_back(it->path().string());
  if (ec) throw io_error(what + " '" + dir + "': cannot list (" + ec.message() + ")");
  if (out.empty()) throw io_error(what + " '" + dir + "': no PNG or JPEG images");
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace drt
