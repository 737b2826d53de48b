// safetensors reader/writer: dtype conversion, round trip, and every malformed-input message.
#include <doctest/doctest.h>

#include <cstdint>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include <drt/io/safetensors.hpp>

#include "test_support.hpp"

namespace fs = std::filesystem;

namespace {
std::string temp_path(const std::string& name) {
  const auto dir = fs::temp_directory_path() / "drt_test_safetensors";
  fs::create_directories(dir);
  return (dir / name).string();
}

/// Writes an 8-byte length + `header` + `data` (no validation: used to make broken files).
std::string write_raw(const std::string& name, const std::string& header, const std::string& data,
                      std::uint64_t length_override = 0) {
  const std::string path = temp_path(name);
  std::ofstream out(path, std::ios::binary);
  const std::uint64_t n = length_override ? length_override : header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header << data;
  return path;
}

std::string floats(std::initializer_list<float> v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), v.begin(), s.size());
  return s;
}
}  // namespace

TEST_SUITE("io") {
TEST_CASE("safetensors: F32, F16, BF16 convert to float32; I64/I32 read as integers") {
  std::string data = floats({1.5f, -2.0f});
  const std::uint16_t f16[3] = {0x3c00, 0xc000, 0x0001};  // 1, -2, smallest subnormal
  const std::uint16_t bf16[2] = {0x3fc0, 0xc040};          // 1.5, -3
  const std::int64_t i64 = 42;
  const std::int32_t i32[2] = {7, -1};
  data.append(reinterpret_cast<const char*>(f16), 6);
  data.append(reinterpret_cast<const char*>(bf16), 4);
  data.append(reinterpret_cast<const char*>(&i64), 8);
  data.append(reinterpret_cast<const char*>(i32), 8);
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("h":{"dtype":"F16","shape":[3],"data_offsets":[8,14]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[14,18]},)"
      R"("n":{"dtype":"I64","shape":[],"data_offsets":[18,26]},"i":{"dtype":"I32","shape":[2],"data_offsets":[26,34]}})";
  const drt::safetensors_file f(write_raw("dtypes.safetensors", header, data));
  CHECK(f.metadata("format") == "pt");
  CHECK(f.read_float("a").data == std::vector<float>{1.5f, -2.0f});
  const auto h = f.read_float("h");
  CHECK(h.data[0] == 1.0f);
  CHECK(h.data[1] == -2.0f);
  CHECK(h.data[2] == doctest::Approx(5.9604645e-8f));
  CHECK(f.read_float("b").data == std::vector<float>{1.5f, -3.0f});
  CHECK(f.read_int("n").idata == std::vector<std::int64_t>{42});
  CHECK(f.read_int("i").idata == std::vector<std::int64_t>{7, -1});
  CHECK(drt::detail::half_to_float(0x7c00) == INFINITY);
  CHECK(drt::detail::half_to_float(0x3555) == doctest::Approx(0.33325195f));
}

TEST_CASE("safetensors: save then read round-trips F32 and I32") {
  const std::vector<float> x = {0.25f, -1.f, 3.f, 4.5f, 5.f, 6.f};
  const std::vector<std::int32_t> y = {1, 2, 3};
  const std::string path = temp_path("roundtrip.safetensors");
  drt::save_safetensors(path, {{"x", {{2, 3}, x.data(), nullptr}}, {"y", {{3}, nullptr, y.data()}}}, {{"k", "v"}});
  const drt::safetensors_file f(path);
  CHECK(f.read_float("x", {2, 3}).data == x);
  CHECK(f.read_int("y").idata == std::vector<std::int64_t>{1, 2, 3});
  CHECK(f.metadata("k") == "v");
}

TEST_CASE("safetensors: malformed files give one clear message naming the file and tensor") {
  const std::string ok_header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  SUBCASE("missing file") {
    CHECK_THROWS_WITH_AS(drt::safetensors_file("/nonexistent/model.safetensors"),
                         "safetensors '/nonexistent/model.safetensors': cannot open file (No such file or directory)",
                         drt::io_error);
  }
  SUBCASE("shorter than the length field") {
    const std::string p = temp_path("tiny.safetensors");
    std::ofstream(p, std::ios::binary) << "abc";
    CHECK_THROWS_WITH_AS(drt::safetensors_file{p},
                         ("safetensors '" + p + "': file is 3 bytes, too short for the 8-byte header length (truncated?)").c_str(),
                         drt::io_error);
  }
  SUBCASE("header length beyond the file") {
    const auto p = write_raw("hlen.safetensors", ok_header, floats({1, 2}), 5000);
    CHECK_THROWS_WITH_AS(drt::safetensors_file{p},
                         ("safetensors '" + p + "': header length 5000 exceeds the file size (" +
                          std::to_string(8 + ok_header.size() + 8) + " bytes; truncated?)").c_str(),
                         drt::io_error);
  }
  SUBCASE("truncated data section") {
    const auto p = write_raw("trunc.safetensors", ok_header, floats({1}));
    CHECK_THROWS_WITH_AS(drt::safetensors_file{p},
                         ("safetensors '" + p + "': tensor 'w' data_offsets [0, 8] out of range (data section is 4 bytes; truncated?)").c_str(),
                         drt::io_error);
  }
  SUBCASE("bad JSON") {
    const auto p = write_raw("json.safetensors", R"({"w": {"dtype": )", "");
    CHECK_THROWS_WITH_AS(drt::safetensors_file{p}, doctest::Contains("': header is not valid JSON ("), drt::invalid_input);
  }
  SUBCASE("unknown dtype") {
    const auto p = write_raw("dtype.safetensors", R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", "ab");
    CHECK_THROWS_WITH_AS(drt::safetensors_file{p}, ("safetensors '" + p + "': tensor 'w' has unknown dtype 'F8_E4M3'").c_str(),
                         drt::invalid_input);
  }
  SUBCASE("byte size not matching dtype x shape") {
    const auto p = write_raw("size.safetensors", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", floats({1, 2}));
    CHECK_THROWS_WITH_AS(drt::safetensors_file{p},
                         ("safetensors '" + p + "': tensor 'w' holds 8 bytes but dtype F32 x shape [3] needs 12").c_str(),
                         drt::invalid_input);
  }
  SUBCASE("overlapping tensors") {
    const auto p = write_raw("overlap.safetensors",
                             R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                             floats({1, 2}));
    CHECK_THROWS_WITH_AS(drt::safetensors_file{p},
                         ("safetensors '" + p + "': tensors 'a' and 'b' overlap in the data section").c_str(), drt::invalid_input);
  }
  SUBCASE("offsets reversed") {
    const auto p = write_raw("rev.safetensors", R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", floats({1, 2}));
    CHECK_THROWS_WITH_AS(drt::safetensors_file{p}, doctest::Contains("tensor 'w' data_offsets [8, 0] out of range"), drt::io_error);
  }
  SUBCASE("entry without data_offsets") {
    const auto p = write_raw("entry.safetensors", R"({"w":{"dtype":"F32","shape":[2]}})", floats({1, 2}));
    CHECK_THROWS_WITH_AS(drt::safetensors_file{p},
                         ("safetensors '" + p + "': tensor 'w' header entry needs string 'dtype', array 'shape' and two 'data_offsets'").c_str(),
                         drt::invalid_input);
  }
  SUBCASE("missing tensor and wrong shape") {
    const auto p = write_raw("ok.safetensors", ok_header, floats({1, 2}));
    const drt::safetensors_file f(p);
    CHECK_THROWS_WITH_AS(f.read_float("decode_head.classifier.weight"),
                         ("safetensors '" + p + "': missing tensor 'decode_head.classifier.weight'").c_str(), drt::invalid_input);
    CHECK_THROWS_WITH_AS(f.read_float("w", {1, 2}), ("safetensors '" + p + "': tensor 'w' has shape [2], expected [1, 2]").c_str(),
                         drt::shape_error);
    CHECK_THROWS_WITH_AS(f.read_int("w"), ("safetensors '" + p + "': tensor 'w' has dtype F32, expected an integer dtype").c_str(),
                         drt::invalid_input);
  }
}

TEST_CASE("safetensors: hostile headers are refused before any tensor is read (issue 16)") {
  SUBCASE("dimensions whose product wraps past 2^64 (the reproducer: [2^62+1, 3, 32, 32] over 12 KiB)") {
    const auto p = write_raw("wrap.safetensors",
                             R"({"pixel_values":{"dtype":"F32","shape":[4611686018427387905,3,32,32],"data_offsets":[0,12288]}})",
                             std::string(12288, '\0'));
    CHECK_THROWS_WITH_AS(drt::safetensors_file{p},
                         ("safetensors '" + p +
                          "': tensor 'pixel_values' has shape [4611686018427387905,3,32,32] whose element count overflows 64 bits")
                             .c_str(),
                         drt::invalid_input);
  }
  SUBCASE("element count fits, byte count does not") {
    const auto p = write_raw("bytes.safetensors", R"({"w":{"dtype":"F64","shape":[2305843009213693953],"data_offsets":[0,8]}})",
                             floats({1, 2}));
    CHECK_THROWS_WITH_AS(drt::safetensors_file{p},
                         ("safetensors '" + p + "': tensor 'w' has shape [2305843009213693953] whose size in F64 bytes overflows 64 bits").c_str(),
                         drt::invalid_input);
  }
  SUBCASE("a dimension beyond int64 or negative") {
    const auto p = write_raw("dim.safetensors", R"({"w":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8]}})",
                             floats({1, 2}));
    CHECK_THROWS_WITH_AS(drt::safetensors_file{p},
                         ("safetensors '" + p + "': tensor 'w' has dimension 18446744073709551615, expected a non-negative integer").c_str(),
                         drt::invalid_input);
    const auto q = write_raw("neg.safetensors", R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", floats({1, 2}));
    CHECK_THROWS_WITH_AS(drt::safetensors_file{q}, ("safetensors '" + q + "': tensor 'w' has dimension -2, expected a non-negative integer").c_str(),
                         drt::invalid_input);
  }
  SUBCASE("header length one byte short: the padding would absorb it and shift every tensor") {
    const std::string header = std::string(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})") + "  ";
    const auto p = write_raw("short.safetensors", header, floats({1, 2}), header.size() - 1);
    CHECK_THROWS_WITH_AS(drt::safetensors_file{p},
                         ("safetensors '" + p + "': the data section is 9 bytes but the tensors cover 8 (trailing bytes after tensor 'w'; header length " +
                          std::to_string(header.size() - 1) + " wrong, or a corrupt file?)")
                             .c_str(),
                         drt::invalid_input);
  }
  SUBCASE("a hole at the start of the data section") {
    const auto p = write_raw("hole.safetensors", R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", floats({1, 2}));
    CHECK_THROWS_WITH_AS(drt::safetensors_file{p},
                         ("safetensors '" + p +
                          "': bytes [0, 4) of the data section before tensor 'w' belong to no tensor (header length 54 wrong, or a corrupt file?)")
                             .c_str(),
                         drt::invalid_input);
  }
  SUBCASE("a hole between two tensors") {
    const auto p = write_raw("gap.safetensors",
                             R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                             floats({1, 2, 3}));
    CHECK_THROWS_WITH_AS(drt::safetensors_file{p}, doctest::Contains("': bytes [4, 8) of the data section before tensor 'b' belong to no tensor"),
                         drt::invalid_input);
  }
  SUBCASE("trailing bytes after the last tensor") {
    const auto p = write_raw("trail.safetensors", R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", floats({1, 2}));
    CHECK_THROWS_WITH_AS(drt::safetensors_file{p}, doctest::Contains("': the data section is 8 bytes but the tensors cover 4 (trailing bytes after tensor 'w'"),
                         drt::invalid_input);
  }
  SUBCASE("empty tensors anywhere are fine; the rest must still tile") {
    const auto p = write_raw("empty.safetensors",
                             R"({"e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                             floats({1, 2}));
    const drt::safetensors_file f(p);
    CHECK(f.read_float("w").data == std::vector<float>{1, 2});
    CHECK(f.read_float("e").data.empty());
  }
  SUBCASE("a header length above the format's 100 MB limit") {
    const auto p = write_raw("huge.safetensors", "{}", "", 200'000'000);
    CHECK_THROWS_WITH_AS(drt::safetensors_file{p},
                         ("safetensors '" + p + "': header length 200000000 exceeds the format's limit of 100000000 bytes (corrupt file?)").c_str(),
                         drt::invalid_input);
  }
  SUBCASE("a folder given as the file") {
    const std::string d = temp_path("folder.safetensors");
    fs::create_directories(d);
    CHECK_THROWS_WITH_AS(drt::safetensors_file{d}, ("safetensors '" + d + "': cannot open file (it is a directory)").c_str(), drt::io_error);
  }
}

TEST_CASE("safetensors: non-finite values are refused unless allowed, naming the tensor and the element") {
  const std::string header = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
  const auto p = write_raw("nan.safetensors", header, floats({1, NAN, -INFINITY, NAN}));
  const drt::safetensors_file strict(p);
  CHECK_THROWS_WITH_AS(strict.read_float("w"),
                       ("safetensors '" + p + "': tensor 'w' [2, 2] holds 3 non-finite values (first: nan at element 1); refused unless "
                        "non-finite values are allowed (--allow-nonfinite)")
                           .c_str(),
                       drt::invalid_input);
  CHECK_THROWS_AS(strict.read_float("w", {2, 2}), drt::invalid_input);  // the weight loaders' call
  const drt::safetensors_file lenient(p, drt::safetensors_options{true});
  const auto t = lenient.read_float("w");
  CHECK(t.data[0] == 1.0f);
  CHECK(std::isnan(t.data[1]));
  CHECK(std::isinf(t.data[2]));
  // F16 infinity (0x7c00) is found after conversion too
  const auto q = write_raw("inf16.safetensors", R"({"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", std::string("\x00\x3c\x00\x7c", 4));
  CHECK_THROWS_WITH_AS(drt::safetensors_file(q).read_float("h"), doctest::Contains("holds 1 non-finite value (first: inf at element 1)"),
                       drt::invalid_input);
}

TEST_CASE("safetensors: from_bytes validates an image in memory like a file") {
  const std::string header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  std::string bytes(8, '\0');
  const std::uint64_t n = header.size();
  std::memcpy(bytes.data(), &n, 8);
  bytes += header + floats({3, 4});
  const auto f = drt::safetensors_file::from_bytes("mem", std::vector<char>(bytes.begin(), bytes.end()));
  CHECK(f.read_float("w").data == std::vector<float>{3, 4});
  bytes.push_back('x');
  CHECK_THROWS_WITH_AS(drt::safetensors_file::from_bytes("mem", std::vector<char>(bytes.begin(), bytes.end())),
                       doctest::Contains("safetensors 'mem': the data section is 9 bytes but the tensors cover 8"), drt::invalid_input);
}

TEST_CASE("save_safetensors is atomic: a failed write leaves no file") {
  const std::vector<float> v{1, 2};
  const std::string nowhere = temp_path("no_such_dir/out.safetensors");
  CHECK_THROWS_WITH_AS(drt::save_safetensors(nowhere, {{"w", {{2}, v.data(), nullptr}}}),
                       ("safetensors '" + nowhere + "': cannot open for writing (No such file or directory)").c_str(), drt::io_error);
  const std::string ok = temp_path("atomic_ok.safetensors");
  drt::save_safetensors(ok, {{"w", {{2}, v.data(), nullptr}}});
  CHECK(drt::safetensors_file(ok).read_float("w").data == v);
}
}
