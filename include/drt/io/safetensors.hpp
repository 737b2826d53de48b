#pragma once
/// @file safetensors.hpp
/// Reader and writer for the safetensors format (https://github.com/huggingface/safetensors):
/// 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}},
/// then the data section. Float dtypes (F32, F16, BF16, F64) are converted to float32 on read;
/// integer dtypes (I8..I64, U8, BOOL) to int64. Every malformed input throws with the file and
/// tensor named.
///
/// Validation follows the reference implementation (safetensors' Rust `Metadata::validate`): the
/// header is at most 100 MB, every size is computed with overflow checks, and the tensors must tile
/// the data section exactly, from byte 0 to its last byte, without holes or trailing bytes. The
/// last rule is what catches a header length that is off by a few bytes: the JSON still parses
/// (its space padding absorbs the error) but every tensor would be read shifted.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "file.hpp"

namespace drt {

namespace detail {

/// Bytes per element of a safetensors dtype, 0 when unknown.
inline std::size_t dtype_size(const std::string& dt) {
  if (dt == "F64" || dt == "I64" || dt == "U64") return 8;
  if (dt == "F32" || dt == "I32" || dt == "U32") return 4;
  if (dt == "F16" || dt == "BF16" || dt == "I16" || dt == "U16") return 2;
  if (dt == "I8" || dt == "U8" || dt == "BOOL") return 1;
  return 0;
}

inline bool dtype_is_float(const std::string& dt) {
  return dt == "F32" || dt == "F16" || dt == "BF16" || dt == "F64";
}

/// IEEE half -> float (handles subnormals, inf, nan).
inline float half_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = (h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t mant = h & 0x3ffu;
  std::uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline float bf16_to_float(std::uint16_t h) noexcept {
  const std::uint32_t bits = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

/// a * b, or false when it does not fit in std::size_t.
inline bool checked_mul(std::size_t a, std::size_t b, std::size_t& out) noexcept {
  return !__builtin_mul_overflow(a, b, &out);
}

/// The safetensors reference rejects headers above 100 MB (safetensors/src/tensor.rs, MAX_HEADER_SIZE).
inline constexpr std::uint64_t max_safetensors_header = 100'000'000;

template <class T>
T load_le(const char* p) noexcept {  // x86/ARM are little-endian like the format
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

}  // namespace detail

/// One tensor's entry in a safetensors header.
struct safetensors_entry {
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::size_t begin = 0;  ///< offset into the data section
  std::size_t end = 0;
};

/// How a safetensors file is read.
struct safetensors_options {
  /// Accept NaN and infinity in float tensors. Off by default: one non-finite weight turns every
  /// output into NaN (one class everywhere), so a checkpoint holding one is refused at load,
  /// naming the tensor and the first bad element.
  bool allow_nonfinite = false;
};

/// A safetensors file read once into memory; tensors are converted on request.
class safetensors_file {
public:
  /// Read and validate `path`. Throws drt::io_error (cannot read, truncated) or
  /// drt::invalid_input (malformed header, sizes that do not add up), naming the file.
  explicit safetensors_file(std::string path, safetensors_options options = {})
      : path_(std::move(path)), options_(options) {
    bytes_ = read_file("safetensors", path_);
    parse_header();
  }

  /// Validate a safetensors image already in memory; `name` stands for the file in errors.
  static safetensors_file from_bytes(std::string name, std::vector<char> bytes, safetensors_options options = {}) {
    return safetensors_file(std::move(name), std::move(bytes), options);
  }

  const std::string& path() const noexcept { return path_; }
  const std::string& metadata(const std::string& key) const {
    auto it = metadata_.find(key);
    if (it == metadata_.end()) throw invalid_input(where() + ": no metadata entry '" + key + "'");
    return it->second;
  }
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& kv : entries_) out.push_back(kv.first);
    return out;
  }
  const safetensors_entry& entry(const std::string& name) const {
    auto it = entries_.find(name);
    if (it == entries_.end()) throw invalid_input(where() + ": missing tensor '" + name + "'");
    return it->second;
  }

  /// Float tensor converted to float32. Throws for integer dtypes, and for a NaN or infinite value
  /// unless the file was opened with `allow_nonfinite`.
  host_tensor read_float(const std::string& name) const {
    const auto& e = entry(name);
    if (!detail::dtype_is_float(e.dtype))
      throw invalid_input(where() + ": tensor '" + name + "' has dtype " + e.dtype +
                          ", expected a float dtype (F32, F16, BF16, F64)");
    host_tensor t;
    t.shape = e.shape;
    t.dtype = e.dtype;
    const std::size_t n = numel(e.shape);
    t.data.resize(n);
    const char* p = data_begin() + e.begin;
    if (e.dtype == "F32") {
      if (n > 0) std::memcpy(t.data.data(), p, n * 4);  // an empty vector's data() may be null: no memcpy then
    } else if (e.dtype == "F16") {
      for (std::size_t i = 0; i < n; ++i) t.data[i] = detail::half_to_float(detail::load_le<std::uint16_t>(p + 2 * i));
    } else if (e.dtype == "BF16") {
      for (std::size_t i = 0; i < n; ++i) t.data[i] = detail::bf16_to_float(detail::load_le<std::uint16_t>(p + 2 * i));
    } else {
      for (std::size_t i = 0; i < n; ++i) t.data[i] = static_cast<float>(detail::load_le<double>(p + 8 * i));
    }
    if (!options_.allow_nonfinite) check_finite(name, t);
    return t;
  }

  /// Float tensor that must have exactly `expected` shape.
  host_tensor read_float(const std::string& name, const std::vector<std::int64_t>& expected) const {
    check_shape(name, expected);
    return read_float(name);
  }

  /// Integer tensor widened to int64. Throws for float dtypes.
  host_tensor read_int(const std::string& name) const {
    const auto& e = entry(name);
    if (detail::dtype_is_float(e.dtype))
      throw invalid_input(where() + ": tensor '" + name + "' has dtype " + e.dtype + ", expected an integer dtype");
    host_tensor t;
    t.shape = e.shape;
    t.dtype = e.dtype;
    const std::size_t n = numel(e.shape);
    t.idata.resize(n);
    const char* p = data_begin() + e.begin;
    for (std::size_t i = 0; i < n; ++i) {
      const std::string& d = e.dtype;
      if (d == "I64") t.idata[i] = detail::load_le<std::int64_t>(p + 8 * i);
      else if (d == "U64") t.idata[i] = static_cast<std::int64_t>(detail::load_le<std::uint64_t>(p + 8 * i));
      else if (d == "I32") t.idata[i] = detail::load_le<std::int32_t>(p + 4 * i);
      else if (d == "U32") t.idata[i] = detail::load_le<std::uint32_t>(p + 4 * i);
      else if (d == "I16") t.idata[i] = detail::load_le<std::int16_t>(p + 2 * i);
      else if (d == "U16") t.idata[i] = detail::load_le<std::uint16_t>(p + 2 * i);
      else if (d == "I8") t.idata[i] = detail::load_le<std::int8_t>(p + i);
      else t.idata[i] = detail::load_le<std::uint8_t>(p + i);  // U8, BOOL
    }
    return t;
  }

  /// Throws naming the tensor and both shapes when `name` does not have shape `expected`.
  void check_shape(const std::string& name, const std::vector<std::int64_t>& expected) const {
    const auto& e = entry(name);
    if (e.shape != expected)
      throw shape_error(where() + ": tensor '" + name + "' has shape " + shape_str(e.shape) + ", expected " +
                        shape_str(expected));
  }

  const safetensors_options& options() const noexcept { return options_; }

private:
  void check_finite(const std::string& name, const host_tensor& t) const {
    const auto bad = std::find_if(t.data.begin(), t.data.end(), [](float v) { return !std::isfinite(v); });
    if (bad == t.data.end()) return;
    const auto count = std::count_if(bad, t.data.end(), [](float v) { return !std::isfinite(v); });
    throw invalid_input(where() + ": tensor '" + name + "' " + shape_str(t.shape) + " holds " + std::to_string(count) +
                        " non-finite value" + (count > 1 ? "s" : "") + " (first: " + (std::isnan(*bad) ? "nan" : *bad > 0 ? "inf" : "-inf") +
                        " at element " + std::to_string(bad - t.data.begin()) +
                        "); refused unless non-finite values are allowed (--allow-nonfinite)");
  }

  safetensors_file(std::string name, std::vector<char> bytes, safetensors_options options)
      : path_(std::move(name)), options_(options), bytes_(std::move(bytes)) {
    parse_header();
  }

  std::string where() const { return "safetensors '" + path_ + "'"; }
  /// Element count of a validated entry (its product was checked at parse time).
  static std::size_t numel(const std::vector<std::int64_t>& s) {
    std::size_t n = 1;
    for (auto d : s) n *= static_cast<std::size_t>(d);
    return n;
  }
  const char* data_begin() const noexcept { return bytes_.data() + 8 + header_len_; }

  void parse_header() {
    const std::size_t size = bytes_.size();
    if (size < 8)
      throw io_error(where() + ": file is " + std::to_string(size) +
                     " bytes, too short for the 8-byte header length (truncated?)");
    const auto hlen = detail::load_le<std::uint64_t>(bytes_.data());
    if (hlen > detail::max_safetensors_header)
      throw invalid_input(where() + ": header length " + std::to_string(hlen) + " exceeds the format's limit of " +
                          std::to_string(detail::max_safetensors_header) + " bytes (corrupt file?)");
    if (hlen > size - 8)
      throw io_error(where() + ": header length " + std::to_string(hlen) + " exceeds the file size (" +
                     std::to_string(size) + " bytes; truncated?)");
    header_len_ = static_cast<std::size_t>(hlen);
    nlohmann::json header;
    try {
      header = nlohmann::json::parse(bytes_.begin() + 8, bytes_.begin() + 8 + static_cast<std::ptrdiff_t>(hlen));
    } catch (const nlohmann::json::exception& ex) {
      throw invalid_input(where() + ": header is not valid JSON (" + ex.what() + ")");
    }
    if (!header.is_object()) throw invalid_input(where() + ": header is not a JSON object");
    const std::size_t data_size = size - 8 - header_len_;
    std::vector<std::pair<std::size_t, std::string>> by_offset;
    for (auto it = header.begin(); it != header.end(); ++it) {
      const std::string& name = it.key();
      if (name == "__metadata__") {
        if (it->is_object())
          for (auto m = it->begin(); m != it->end(); ++m)
            metadata_[m.key()] = m->is_string() ? m->get<std::string>() : m->dump();
        continue;
      }
      const auto& v = *it;
      if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets") ||
          !v["dtype"].is_string() || !v["shape"].is_array() || !v["data_offsets"].is_array() ||
          v["data_offsets"].size() != 2)
        throw invalid_input(where() + ": tensor '" + name +
                            "' header entry needs string 'dtype', array 'shape' and two 'data_offsets'");
      safetensors_entry e;
      e.dtype = v["dtype"].get<std::string>();
      const std::size_t esize = detail::dtype_size(e.dtype);
      if (esize == 0) throw invalid_input(where() + ": tensor '" + name + "' has unknown dtype '" + e.dtype + "'");
      std::size_t count = 1;
      for (const auto& d : v["shape"]) {
        if (!d.is_number_unsigned() || d.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX))
          throw invalid_input(where() + ": tensor '" + name + "' has dimension " + d.dump() +
                              ", expected a non-negative integer");
        e.shape.push_back(d.get<std::int64_t>());
        if (!detail::checked_mul(count, static_cast<std::size_t>(e.shape.back()), count))
          throw invalid_input(where() + ": tensor '" + name + "' has shape " + v["shape"].dump() +
                              " whose element count overflows 64 bits");
      }
      std::size_t expect = 0;
      if (!detail::checked_mul(count, esize, expect))
        throw invalid_input(where() + ": tensor '" + name + "' has shape " + shape_str(e.shape) + " whose size in " +
                            e.dtype + " bytes overflows 64 bits");
      const auto& off = v["data_offsets"];
      if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned())
        throw invalid_input(where() + ": tensor '" + name + "' has non-integer data_offsets");
      e.begin = off[0].get<std::size_t>();
      e.end = off[1].get<std::size_t>();
      if (e.begin > e.end || e.end > data_size)
        throw io_error(where() + ": tensor '" + name + "' data_offsets [" + std::to_string(e.begin) + ", " +
                       std::to_string(e.end) + "] out of range (data section is " + std::to_string(data_size) +
                       " bytes; truncated?)");
      if (e.end - e.begin != expect)
        throw invalid_input(where() + ": tensor '" + name + "' holds " + std::to_string(e.end - e.begin) +
                            " bytes but dtype " + e.dtype + " x shape " + shape_str(e.shape) + " needs " +
                            std::to_string(expect));
      by_offset.emplace_back(e.begin, name);
      entries_.emplace(name, std::move(e));
    }
    // The tensors must tile the data section: sorted by offset, each starts where the previous
    // ends (empty tensors sit anywhere), the first at 0, the last ends at the end of the file.
    std::sort(by_offset.begin(), by_offset.end(), [&](const auto& a, const auto& b) {
      const auto &ea = entries_.at(a.second), &eb = entries_.at(b.second);
      return ea.begin != eb.begin ? ea.begin < eb.begin : ea.end < eb.end;
    });
    std::size_t covered = 0;
    std::string last = "the header";
    for (const auto& [begin, name] : by_offset) {
      const auto& e = entries_.at(name);
      if (e.begin == e.end) continue;
      if (e.begin < covered)
        throw invalid_input(where() + ": tensors '" + last + "' and '" + name + "' overlap in the data section");
      if (e.begin > covered)
        throw invalid_input(where() + ": bytes [" + std::to_string(covered) + ", " + std::to_string(e.begin) +
                            ") of the data section before tensor '" + name + "' belong to no tensor (header length " +
                            std::to_string(header_len_) + " wrong, or a corrupt file?)");
      covered = e.end;
      last = name;
    }
    if (covered != data_size)
      throw invalid_input(where() + ": the data section is " + std::to_string(data_size) + " bytes but the tensors cover " +
                          std::to_string(covered) + " (trailing bytes after " +
                          (last == "the header" ? last : "tensor '" + last + "'") +
                          "; header length " + std::to_string(header_len_) + " wrong, or a corrupt file?)");
  }

  std::string path_;
  safetensors_options options_;
  std::vector<char> bytes_;
  std::size_t header_len_ = 0;
  std::map<std::string, safetensors_entry> entries_;
  std::map<std::string, std::string> metadata_;
};

/// A tensor to write: float32 or int32 data with its shape.
struct safetensors_record {
  std::vector<std::int64_t> shape;
  const float* f32 = nullptr;
  const std::int32_t* i32 = nullptr;
};

/// The bytes of a safetensors file holding `tensors` (F32 or I32), names sorted as the format requires.
inline std::string safetensors_bytes(const std::map<std::string, safetensors_record>& tensors,
                                     const std::map<std::string, std::string>& metadata = {}) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::size_t offset = 0;
  auto bytes_of = [](const safetensors_record& rec) {
    std::size_t n = 4;
    for (auto d : rec.shape) n *= static_cast<std::size_t>(d);
    return n;
  };
  for (const auto& [name, rec] : tensors) {
    const std::size_t n = bytes_of(rec);
    header[name] = {{"dtype", rec.f32 ? "F32" : "I32"}, {"shape", rec.shape}, {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');  // align the data section
  std::string out;
  out.reserve(8 + h.size() + offset);
  const std::uint64_t hlen = h.size();
  out.append(reinterpret_cast<const char*>(&hlen), 8);
  out += h;
  for (const auto& [name, rec] : tensors) {
    const char* p = rec.f32 ? reinterpret_cast<const char*>(rec.f32) : reinterpret_cast<const char*>(rec.i32);
    if (const std::size_t n = bytes_of(rec); n > 0) out.append(p, n);
  }
  return out;
}

/// Write tensors (F32 or I32) to `path` in safetensors format, atomically (io/file.hpp): a failed
/// write throws drt::io_error naming the file and leaves no file behind.
inline void save_safetensors(const std::string& path, const std::map<std::string, safetensors_record>& tensors,
                             const std::map<std::string, std::string>& metadata = {}) {
  write_file_atomic("safetensors", path, safetensors_bytes(tensors, metadata));
}

}  // namespace drt
