#pragma once
/// @file safetensors.hpp
/// Reader and writer for the safetensors format (https://github.com/huggingface/safetensors):
/// 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}},
/// then the data section. Float dtypes (F32, F16, BF16, F64) are converted to float32 on read;
/// integer dtypes (I8..I64, U8, BOOL) to int64. Every malformed input throws with the file and
/// tensor named.

#include <algorithm>
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

/// A safetensors file read once into memory; tensors are converted on request.
class safetensors_file {
public:
  explicit safetensors_file(std::string path) : path_(std::move(path)) {
    std::ifstream in(path_, std::ios::binary | std::ios::ate);
    if (!in) throw io_error(where() + ": cannot open file");
    const auto size = static_cast<std::size_t>(in.tellg());
    in.seekg(0);
    bytes_.resize(size);
    if (size > 0 && !in.read(bytes_.data(), static_cast<std::streamsize>(size)))
      throw io_error(where() + ": cannot read " + std::to_string(size) + " bytes");
    parse_header();
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

  /// Float tensor converted to float32. Throws for integer dtypes.
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
      std::memcpy(t.data.data(), p, n * 4);
    } else if (e.dtype == "F16") {
      for (std::size_t i = 0; i < n; ++i) t.data[i] = detail::half_to_float(detail::load_le<std::uint16_t>(p + 2 * i));
    } else if (e.dtype == "BF16") {
      for (std::size_t i = 0; i < n; ++i) t.data[i] = detail::bf16_to_float(detail::load_le<std::uint16_t>(p + 2 * i));
    } else {
      for (std::size_t i = 0; i < n; ++i) t.data[i] = static_cast<float>(detail::load_le<double>(p + 8 * i));
    }
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

private:
  std::string where() const { return "safetensors '" + path_ + "'"; }
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
      for (const auto& d : v["shape"]) {
        if (!d.is_number_integer() || d.get<std::int64_t>() < 0)
          throw invalid_input(where() + ": tensor '" + name + "' has a negative or non-integer dimension");
        e.shape.push_back(d.get<std::int64_t>());
      }
      const auto& off = v["data_offsets"];
      if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned())
        throw invalid_input(where() + ": tensor '" + name + "' has non-integer data_offsets");
      e.begin = off[0].get<std::size_t>();
      e.end = off[1].get<std::size_t>();
      if (e.begin > e.end || e.end > data_size)
        throw io_error(where() + ": tensor '" + name + "' data_offsets [" + std::to_string(e.begin) + ", " +
                       std::to_string(e.end) + "] out of range (data section is " + std::to_string(data_size) +
                       " bytes; truncated?)");
      const std::size_t expect = numel(e.shape) * esize;
      if (e.end - e.begin != expect)
        throw invalid_input(where() + ": tensor '" + name + "' holds " + std::to_string(e.end - e.begin) +
                            " bytes but dtype " + e.dtype + " x shape " + shape_str(e.shape) + " needs " +
                            std::to_string(expect));
      by_offset.emplace_back(e.begin, name);
      entries_.emplace(name, std::move(e));
    }
    std::sort(by_offset.begin(), by_offset.end());
    for (std::size_t i = 1; i < by_offset.size(); ++i) {
      const auto& prev = entries_.at(by_offset[i - 1].second);
      const auto& cur = entries_.at(by_offset[i].second);
      if (cur.begin < prev.end && cur.end > cur.begin && prev.end > prev.begin)
        throw invalid_input(where() + ": tensors '" + by_offset[i - 1].second + "' and '" + by_offset[i].second +
                            "' overlap in the data section");
    }
  }

  std::string path_;
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

/// Write tensors (F32 or I32) to `path` in safetensors format, names sorted as the format requires.
inline void save_safetensors(const std::string& path, const std::map<std::string, safetensors_record>& tensors,
                             const std::map<std::string, std::string>& metadata = {}) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::size_t offset = 0;
  for (const auto& [name, rec] : tensors) {
    std::size_t n = 1;
    for (auto d : rec.shape) n *= static_cast<std::size_t>(d);
    header[name] = {{"dtype", rec.f32 ? "F32" : "I32"}, {"shape", rec.shape}, {"data_offsets", {offset, offset + 4 * n}}};
    offset += 4 * n;
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');  // align the data section
  std::ofstream out(path, std::ios::binary);
  if (!out) throw io_error("safetensors '" + path + "': cannot open for writing");
  const std::uint64_t hlen = h.size();
  out.write(reinterpret_cast<const char*>(&hlen), 8);
  out.write(h.data(), static_cast<std::streamsize>(h.size()));
  for (const auto& [name, rec] : tensors) {
    std::size_t n = 1;
    for (auto d : rec.shape) n *= static_cast<std::size_t>(d);
    const char* p = rec.f32 ? reinterpret_cast<const char*>(rec.f32) : reinterpret_cast<const char*>(rec.i32);
    out.write(p, static_cast<std::streamsize>(4 * n));
  }
  if (!out) throw io_error("safetensors '" + path + "': write failed");
}

}  // namespace drt
