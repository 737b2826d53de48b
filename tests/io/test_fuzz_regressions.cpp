// Every input the fuzzers (tests/fuzz, docs/fuzzing.md) found on the way, fed again to the entry
// point that failed on it: each must now be refused with its exact message (or, for a valid file
// that crashed the reader, read correctly). The inputs live in tests/data/fuzz/<target>/.
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <drt/dynamic/path.hpp>
#include <drt/dynamic/resnet_path.hpp>
#include <drt/dynamic/upernet_path.hpp>
#include <drt/io/image.hpp>
#include <drt/io/safetensors.hpp>

#include "test_support.hpp"

namespace {

/// tests/data/fuzz/<target>/<name> as bytes.
std::vector<char> fuzz_input(const std::string& target, const std::string& name) {
  const std::string path = drt_test::source_dir() + "/tests/data/fuzz/" + target + "/" + name;
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "missing fuzz regression input " << path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string fuzz_text(const std::string& target, const std::string& name) {
  const auto bytes = fuzz_input(target, name);
  return {bytes.begin(), bytes.end()};
}

}  // namespace

TEST_SUITE("io") {
  TEST_CASE("fuzz regressions: path text with a NUL byte is named in full, the byte escaped") {
    // fuzz_path: the message was cut at the NUL ("path 'fuse_in=512 "), naming neither key nor rule.
    const std::string text = fuzz_text("path", "nul_in_key.txt");
    REQUIRE(text.size() == 24);
    using E = drt::invalid_input;
    CHECK_THROWS_WITH_AS(drt::segformer_path::parse(text),
                         "path 'fuse_in=512 \\x00propagate=0': key '\\x00propagate' does not apply to segformer "
                         "(keys: depths, skip, fuse_in, pred_in, linear0_in, propagate, mlp, heads, tokens, precision)",
                         E);
    CHECK_THROWS_WITH_AS(drt::upernet_path::parse(text),
                         "path 'fuse_in=512 \\x00propagate=0': key 'fuse_in' does not apply to upernet (keys: depths, "
                         "skip, bottleneck_in, fpn_out, fpn_in, pred_in, mlp, heads, precision)",
                         E);
    CHECK_THROWS_WITH_AS(drt::resnet_path::parse(text),
                         "path 'fuse_in=512 \\x00propagate=0': key 'fuse_in' does not apply to resnet (keys: depths, "
                         "mid, expand, width, precision)",
                         E);
  }

  TEST_CASE("fuzz regressions: path JSON with a float too large for int is refused, not cast") {
    // fuzz_path: resnet_path::from_json converted 520e8 with get<int>() (UBSan: outside the range of
    // int); a fraction like 0.25 in depths was silently truncated to 0.
    using E = drt::invalid_input;
    const auto found = nlohmann::json::parse(fuzz_text("path", "json_float_cast_overflow.json"));
    CHECK_THROWS_WITH_AS(drt::resnet_path::from_json(found), "path JSON: key 'depths' has a malformed value [2,3,0.25]",
                         E);
    CHECK_THROWS_WITH_AS(drt::segformer_path::from_json(found),
                         "path JSON: key 'depths' has a malformed value [2,3,0.25]", E);
    CHECK_THROWS_WITH_AS(drt::upernet_path::from_json(found),
                         "path JSON: key 'depths' has a malformed value [2,3,0.25]", E);
    const auto width = nlohmann::json::parse(fuzz_text("path", "json_width_float_cast_overflow.json"));
    CHECK_THROWS_WITH_AS(drt::resnet_path::from_json(width),
                         "path JSON: key 'width' has a malformed value [128,62,52000000000.0]", E);
  }

  TEST_CASE("fuzz regressions: path JSON integers are read exactly or refused") {
    // Found with the fuzzer's properties in mind: get<int>() wrapped 2^40 + 1 to 1, truncated 2.5 to 2
    // and ignored a third number in a skip entry.
    using E = drt::invalid_input;
    using J = nlohmann::json;
    CHECK_THROWS_WITH_AS(drt::segformer_path::from_json(J::parse(R"({"pred_in":1099511627777})")),
                         "path JSON: key 'pred_in' has value 1099511627777, outside the int range [-2147483648, "
                         "2147483647]",
                         E);
    CHECK_THROWS_WITH_AS(drt::upernet_path::from_json(J::parse(R"({"depths":[2,2,-2147483649,2]})")),
                         "path JSON: key 'depths' has value -2147483649, outside the int range [-2147483648, "
                         "2147483647]",
                         E);
    CHECK_THROWS_WITH_AS(drt::segformer_path::from_json(J::parse(R"({"fuse_in":2.5})")),
                         "path JSON: key 'fuse_in' has a malformed value 2.5", E);
    CHECK_THROWS_WITH_AS(drt::upernet_path::from_json(J::parse(R"({"skip":[[0,1,7]]})")),
                         "path JSON: key 'skip' has a malformed value [[0,1,7]]", E);
    CHECK_THROWS_WITH_AS(drt::segformer_path::from_json(J::parse(R"({"skip":5})")),
                         "path JSON: key 'skip' has a malformed value 5", E);
    CHECK_THROWS_WITH_AS(drt::segformer_path::from_json(J::parse(R"({"propagate":1})")),
                         "path JSON: key 'propagate' has a malformed value 1", E);
    CHECK_THROWS_WITH_AS(drt::resnet_path::from_json(J::parse(R"({"expand":[0.5,true]})")),
                         "path JSON: key 'expand' has a malformed value [0.5,true]", E);
    // The limits themselves are read as given (the model's ranges are validate()'s business).
    const auto p = drt::segformer_path::from_json(J::parse(R"({"fuse_in":2147483647,"pred_in":-2147483648})"));
    CHECK(p.fuse_in == 2147483647);
    CHECK(p.pred_in == -2147483648);
  }

  TEST_CASE("fuzz regressions: hostile JPEG and PNG files are refused before stb_image misbehaves") {
    // fuzz_image, against Debian's stb_image 2.27 (the same reason for decode_image, under both
    // channel policies, and decode_label_png):
    // - a JPEG DHT segment whose 16 code counts sum past 256: stbi__build_huffman wrote past
    //   size[257] and values[256] (heap overflow), already in stbi_info_from_memory;
    // - the same with a segment shorter than its table: stb reads the counts past the segment
    //   (0x05 + 0x5d + 0xd9 = 315), which the first pre-check did not;
    // - a 473-byte PNG whose IDAT length field says 1325400475: stb allocated that much before
    //   finding the bytes missing (11-19 s under ASan per input);
    // - a scan that uses AC table 2, which no DHT defined: stb decoded with the uninitialised table
    //   of its malloc'ed state (heap over-read, index 905 of size[257]; not reproducible in a fresh
    //   process, whose heap happens to keep the index in bounds);
    // - a zero-length first IDAT (legal PNG): stb computes NULL + 0, benign, so the fuzz build
    //   exempts stb from those UBSan checks; the file, also cut short, is refused cleanly.
    const std::pair<const char*, const char*> cases[] = {
        {"jpeg_dht_overflow.jpg", "corrupt JPEG: a Huffman table declares 472 codes, at most 256 exist"},
        {"jpeg_dht_short_segment.jpg", "corrupt JPEG: a Huffman table declares 315 codes, at most 256 exist"},
        {"jpeg_scan_uses_undefined_ac_table.jpg",
         "corrupt JPEG: a scan uses Huffman table AC 2, which no DHT segment defines"},
        {"png_idat_length_1325400475.png", "corrupt PNG: chunk IDAT declares 1325400475 bytes, 432 are left"},
        {"png_empty_idat_null_offset.png", "stb_image gave no reason; truncated or corrupt file?"},
    };
    for (const auto& [name, reason] : cases) {
      CAPTURE(name);
      const auto bytes = fuzz_input("image", name);
      const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
      const std::string tail = std::string("'") + name + "': cannot decode (" + reason + ")";
      CHECK_THROWS_WITH_AS(drt::decode_image(name, data, bytes.size()), ("image " + tail).c_str(), drt::io_error);
      CHECK_THROWS_WITH_AS(
          drt::decode_image(name, data, bytes.size(), drt::default_max_pixels, drt::channel_policy::require_rgb),
          ("image " + tail).c_str(), drt::io_error);
      CHECK_THROWS_WITH_AS(drt::decode_label_png(name, data, bytes.size()), ("label " + tail).c_str(), drt::io_error);
    }
  }

  TEST_CASE("fuzz regressions: a JPEG whose entropy data runs into a marker decodes") {
    // fuzz_image: stb shifts a zero byte by 32 bits once its bit buffer ran dry at a marker (UBSan
    // shift-exponent; benign, exempted for stb in the fuzz build). The image decodes (16x24, RGB)
    // and is refused as a label map for its 3 channels.
    const auto bytes = fuzz_input("image", "jpeg_bit_buffer_shift_32.jpg");
    const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
    const std::string name = "jpeg_bit_buffer_shift_32.jpg";
    const auto img =
        drt::decode_image(name, data, bytes.size(), drt::default_max_pixels, drt::channel_policy::require_rgb);
    CHECK(img.height == 16);
    CHECK(img.width == 24);
    CHECK(img.pixels.size() == 16 * 24 * 3);
    CHECK_THROWS_WITH_AS(drt::decode_label_png(name, data, bytes.size()),
                         "label 'jpeg_bit_buffer_shift_32.jpg': has 3 channels (RGB), expected 1 (an 8-bit class map)",
                         drt::invalid_input);
  }

  TEST_CASE("fuzz regressions: an empty F32 tensor reads as empty (no memcpy to null)") {
    // fuzz_safetensors: read_float called memcpy(nullptr, p, 0) for shape [0, 3] (UBSan nonnull).
    // The input is the seed corpus's own scalar_and_empty.safetensors.
    auto bytes = fuzz_input("safetensors", "empty_tensor_memcpy_null.safetensors");
    const auto f = drt::safetensors_file::from_bytes("empty_tensor_memcpy_null.safetensors", std::move(bytes));
    CHECK(f.names() == std::vector<std::string>{"empty", "scalar"});
    const auto empty = f.read_float("empty");
    CHECK(empty.shape == std::vector<std::int64_t>{0, 3});
    CHECK(empty.data.empty());
    const auto scalar = f.read_float("scalar");
    CHECK(scalar.shape.empty());
    REQUIRE(scalar.data.size() == 1);
    CHECK(scalar.data[0] == -0.03294609859585762f);
  }

  TEST_CASE("fuzz regressions: a resnet expand fraction's text form reads back") {
    // fuzz_path's round-trip property: to_string() printed 1e-07, which parse() refuses, so a LUT
    // holding the path could not be read back.
    const auto p = drt::resnet_path::parse("expand=0.0000001,999999999999,0.5,0.0001234");
    CHECK(p.to_string() == "expand=0.0000001,999999999999,0.5,0.0001234");
    CHECK(drt::resnet_path::parse(p.to_string()).expand == p.expand);
  }
}
