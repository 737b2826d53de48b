// Tests for drt/io/image.hpp: decoding, resizing, normalization, palettes and PNG output.
#include <doctest/doctest.h>

#include <drt/io/image.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#ifndef DRT_SOURCE_DIR
#define DRT_SOURCE_DIR "."
#endif

namespace {

namespace fs = std::filesystem;

std::string data_path(const std::string& rel) { return std::string(DRT_SOURCE_DIR) + "/data/" + rel; }

/// A fresh directory under the system temp dir, removed with everything in it.
struct temp_dir {
  fs::path path;
  temp_dir() {
    path = fs::temp_directory_path() / ("drt_test_image_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::uint32_t pack(const drt::rgb_color& c) { return (std::uint32_t{c.r} << 16) | (std::uint32_t{c.g} << 8) | c.b; }

bool all_distinct(const drt::palette& p) {
  std::set<std::uint32_t> seen;
  for (const auto& c : p) seen.insert(pack(c));
  return seen.size() == p.size();
}

drt::rgb_image solid(std::size_t h, std::size_t w, std::uint8_t r, std::uint8_t g, std::uint8_t b) {
  drt::rgb_image img;
  img.height = h;
  img.width = w;
  img.pixels.resize(h * w * 3);
  for (std::size_t i = 0; i < h * w; ++i) {
    img.pixels[3 * i + 0] = r;
    img.pixels[3 * i + 1] = g;
    img.pixels[3 * i + 2] = b;
  }
  return img;
}

const std::string camvid_image = data_path("images/0016E5_07959.png");
const std::string camvid_label = data_path("labels/0016E5_07959.png");

}  // namespace

TEST_SUITE_BEGIN("io");

TEST_CASE("list_image_files: PNG/JPEG of a folder sorted by name; errors name the folder") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("drt_frames_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "sub.png");  // a folder with an image-like name is not a frame
  for (const char* name : {"b.JPG", "a.png", "c.jpeg", "notes.txt"}) std::ofstream(dir / name) << "x";
  const auto files = drt::list_image_files(dir.string());
  REQUIRE(files.size() == 3);
  CHECK(fs::path(files[0]).filename() == "a.png");
  CHECK(fs::path(files[1]).filename() == "b.JPG");
  CHECK(fs::path(files[2]).filename() == "c.jpeg");
  CHECK(drt::has_image_extension("x/y.PNG"));
  CHECK_FALSE(drt::has_image_extension("x/y.bmp"));
  fs::remove(dir / "a.png");
  fs::remove(dir / "b.JPG");
  fs::remove(dir / "c.jpeg");
  CHECK_THROWS_WITH_AS(drt::list_image_files(dir.string()), ("frames '" + dir.string() + "': no PNG or JPEG images").c_str(),
                       drt::io_error);
  CHECK_THROWS_WITH_AS(drt::list_image_files((dir / "notes.txt").string(), "images"),
                       ("images '" + (dir / "notes.txt").string() + "': not a directory").c_str(), drt::io_error);
  fs::remove_all(dir);
}

TEST_CASE("load_image reads the vendored CamVid PNG as 480x360 RGB") {
  const auto img = drt::load_image(camvid_image, drt::channel_policy::require_rgb);
  CHECK(img.width == 480);
  CHECK(img.height == 360);
  REQUIRE(img.pixels.size() == 480 * 360 * 3);
  // pixel (y 0, x 0) and (y 100, x 200), as decoded by stb_image
  CHECK(img.pixels[0] == 37);
  CHECK(img.pixels[1] == 37);
  CHECK(img.pixels[2] == 38);
  const std::size_t at = (100 * 480 + 200) * 3;
  CHECK(img.pixels[at + 0] == 64);
  CHECK(img.pixels[at + 1] == 60);
  CHECK(img.pixels[at + 2] == 61);
  // convert is the default and changes nothing for an RGB file
  CHECK(drt::load_image(camvid_image).pixels == img.pixels);
}

TEST_CASE("load_image converts grey and RGBA to RGB, or rejects them under require_rgb") {
  temp_dir tmp;
  SUBCASE("grey") {
    const std::string path = tmp.file("grey.png");
    const std::uint8_t grey[2 * 3] = {0, 10, 20, 30, 40, 255};
    REQUIRE(stbi_write_png(path.c_str(), 3, 2, 1, grey, 3) != 0);
    const auto img = drt::load_image(path);
    CHECK(img.width == 3);
    CHECK(img.height == 2);
    CHECK(img.pixels ==
          std::vector<std::uint8_t>{0, 0, 0, 10, 10, 10, 20, 20, 20, 30, 30, 30, 40, 40, 40, 255, 255, 255});
    CHECK_THROWS_WITH_AS(drt::load_image(path, drt::channel_policy::require_rgb),
                         ("image '" + path + "': has 1 channel (grey), expected 3 (RGB)").c_str(), drt::invalid_input);
  }
  SUBCASE("RGBA") {
    const std::string path = tmp.file("rgba.png");
    const std::uint8_t rgba[2 * 4] = {1, 2, 3, 0, 4, 5, 6, 255};
    REQUIRE(stbi_write_png(path.c_str(), 2, 1, 4, rgba, 8) != 0);
    CHECK(drt::load_image(path).pixels == std::vector<std::uint8_t>{1, 2, 3, 4, 5, 6});  // alpha dropped
    CHECK_THROWS_WITH_AS(drt::load_image(path, drt::channel_policy::require_rgb),
                         ("image '" + path + "': has 4 channels (RGBA), expected 3 (RGB)").c_str(), drt::invalid_input);
  }
}

TEST_CASE("load_image errors name the file and the reason") {
  temp_dir tmp;
  SUBCASE("missing file") {
    const std::string path = tmp.file("no_such_image.png");
    CHECK_THROWS_WITH_AS(drt::load_image(path),
                         ("image '" + path + "': cannot open file (No such file or directory)").c_str(), drt::io_error);
  }
  SUBCASE("not an image") {
    const std::string path = tmp.file("garbage.png");
    {
      std::ofstream out(path, std::ios::binary);
      out << "this is not an image, just some garbage bytes \x01\x02\x03";
    }
    CHECK_THROWS_WITH_AS(drt::load_image(path),
                         ("image '" + path + "': cannot decode (not a PNG or JPEG file)").c_str(),
                         drt::io_error);
  }
  SUBCASE("empty file") {
    const std::string path = tmp.file("empty.png");
    std::ofstream(path, std::ios::binary).close();
    CHECK_THROWS_WITH_AS(drt::load_image(path), ("image '" + path + "': file is empty").c_str(), drt::io_error);
  }
}

TEST_CASE("normalize_imagenet gives NCHW (x/255 - mean)/std, checked at a pixel by hand") {
  const auto img = drt::load_image(camvid_image);
  const auto t = drt::normalize_imagenet(std::vector<drt::rgb_image>{img, img});
  REQUIRE(t.dimension() == 4);
  CHECK(t.shape(0) == 2);
  CHECK(t.shape(1) == 3);
  CHECK(t.shape(2) == 360);
  CHECK(t.shape(3) == 480);
  // pixel (y 100, x 200) is RGB (64, 60, 61):
  //   R (64/255 - 0.485) / 0.229 = -1.0219197
  //   G (60/255 - 0.456) / 0.224 = -0.9852941
  //   B (61/255 - 0.406) / 0.225 = -0.7412636
  for (std::size_t b = 0; b < 2; ++b) {
    CHECK(t(b, 0, 100, 200) == doctest::Approx(-1.0219197).epsilon(1e-6));
    CHECK(t(b, 1, 100, 200) == doctest::Approx(-0.9852941).epsilon(1e-6));
    CHECK(t(b, 2, 100, 200) == doctest::Approx(-0.7412636).epsilon(1e-6));
  }
  // bit-exact with transformers' fused float32 form (x - 255 mean) / (255 std)
  CHECK(t(0, 0, 100, 200) == (64.0f - 0.485f * 255.0f) / (0.229f * 255.0f));
  CHECK(t(0, 1, 100, 200) == (60.0f - 0.456f * 255.0f) / (0.224f * 255.0f));
  CHECK(t(0, 2, 100, 200) == (61.0f - 0.406f * 255.0f) / (0.225f * 255.0f));
  // extremes: 0 and 255 in the red channel
  const auto black = drt::normalize_imagenet(solid(1, 1, 0, 0, 0));
  const auto white = drt::normalize_imagenet(solid(1, 1, 255, 255, 255));
  CHECK(black(0, 0, 0, 0) == doctest::Approx(-0.485 / 0.229).epsilon(1e-6));
  CHECK(white(0, 0, 0, 0) == doctest::Approx((1.0 - 0.485) / 0.229).epsilon(1e-6));
}

TEST_CASE("normalize_imagenet rejects an empty batch, mismatched sizes and bad buffers") {
  CHECK_THROWS_WITH_AS(drt::normalize_imagenet(std::vector<drt::rgb_image>{}),
                       "normalize_imagenet: the batch is empty, expected at least 1 image", drt::invalid_input);
  CHECK_THROWS_WITH_AS(drt::normalize_imagenet(std::vector<drt::rgb_image>{solid(4, 6, 1, 2, 3), solid(4, 5, 1, 2, 3)}),
                       "normalize_imagenet: image 1 is 4x5 (HxW) but image 0 is 4x6; all images of a batch must "
                       "have the same size",
                       drt::shape_error);
  auto broken = solid(2, 2, 0, 0, 0);
  broken.pixels.pop_back();
  CHECK_THROWS_WITH_AS(drt::normalize_imagenet(broken),
                       "normalize_imagenet: image 0: image of 2x2 (HxW) holds 11 bytes, expected H*W*3 = 12",
                       drt::invalid_input);
}

TEST_CASE("resize_image") {
  const auto img = drt::load_image(camvid_image);
  const auto half = drt::resize_image(img, 180, 240);
  CHECK(half.height == 180);
  CHECK(half.width == 240);
  CHECK(half.pixels.size() == 180 * 240 * 3);
  CHECK(drt::resize_image(img, 360, 480).pixels == img.pixels);
  // a constant image stays constant whatever the scale
  const auto grey = drt::resize_image(solid(5, 7, 90, 91, 92), 13, 3);
  CHECK(grey.pixels == solid(13, 3, 90, 91, 92).pixels);
  // enlarging 2x is bilinear with half-pixel centres: 0, 100 -> 0, 25, 75, 100
  drt::rgb_image two;
  two.height = 1;
  two.width = 2;
  two.pixels = {0, 0, 0, 100, 100, 100};
  const auto four = drt::resize_image(two, 1, 4);
  CHECK(four.pixels == std::vector<std::uint8_t>{0, 0, 0, 25, 25, 25, 75, 75, 75, 100, 100, 100});
  CHECK_THROWS_WITH_AS(drt::resize_image(img, 0, 10),
                       "resize_image: target size 0x10 (HxW) must be positive and fit in an int", drt::invalid_input);
}

TEST_CASE("class_palette: CamVid colours for 11 classes, distinct colours for any count") {
  const auto camvid = drt::class_palette(11);
  REQUIRE(camvid.size() == 11);
  CHECK(camvid[0] == drt::rgb_color{128, 128, 128});  // sky
  CHECK(camvid[3] == drt::rgb_color{128, 64, 128});   // road
  CHECK(camvid[4] == drt::rgb_color{60, 40, 222});    // pavement
  CHECK(camvid[10] == drt::rgb_color{0, 128, 192});   // bicyclist
  CHECK(all_distinct(camvid));
  const auto ade = drt::class_palette(150);
  CHECK(ade.size() == 150);
  CHECK(all_distinct(ade));
  CHECK(all_distinct(drt::class_palette(256)));
  CHECK(drt::class_palette(150) == ade);       // deterministic
  CHECK(ade[1] == drt::rgb_color{128, 0, 0});  // PASCAL VOC colormap
  CHECK(ade[2] == drt::rgb_color{0, 128, 0});
  CHECK(drt::class_palette(0).empty());
}

TEST_CASE("write_class_map_png and reload round trip") {
  temp_dir tmp;
  const auto pal = drt::class_palette(11);
  const std::size_t h = 5, w = 7;
  std::vector<std::int32_t> classes(h * w);
  for (std::size_t i = 0; i < classes.size(); ++i) classes[i] = static_cast<std::int32_t>((i * 7 + i / w) % 11);

  SUBCASE("raw [H, W]") {
    const std::string path = tmp.file("mask.png");
    drt::write_class_map_png(path, classes.data(), h, w, pal);
    const auto back = drt::load_image(path, drt::channel_policy::require_rgb);
    REQUIRE(back.height == h);
    REQUIRE(back.width == w);
    for (std::size_t i = 0; i < h * w; ++i) {
      const drt::rgb_color c{back.pixels[3 * i], back.pixels[3 * i + 1], back.pixels[3 * i + 2]};
      CHECK(c == pal[static_cast<std::size_t>(classes[i])]);
    }
  }
  SUBCASE("item of [N, H, W]") {
    drt::itensor3 batch = drt::itensor3::from_shape({2, h, w});
    std::fill(batch.begin(), batch.end(), 0);
    std::copy(classes.begin(), classes.end(), batch.begin() + static_cast<std::ptrdiff_t>(h * w));
    const std::string path = tmp.file("mask1.png");
    drt::write_class_map_png(path, batch, pal, 1);
    const auto back = drt::load_image(path);
    for (std::size_t i = 0; i < h * w; ++i)
      CHECK(back.pixels[3 * i + 2] == pal[static_cast<std::size_t>(classes[i])].b);
    CHECK_THROWS_WITH_AS(drt::write_class_map_png(path, batch, pal, 2),
                         ("class map for png '" + path +
                          "': batch item 2 requested from class maps of shape [2, 5, 7] "
                          "([N, H, W])")
                             .c_str(),
                         drt::invalid_input);
  }
  SUBCASE("overlay") {
    const auto photo = solid(h, w, 200, 100, 0);
    const std::string path = tmp.file("overlay.png");
    drt::write_overlay_png(path, photo, classes.data(), h, w, pal, 0.5f);
    const auto back = drt::load_image(path);
    for (std::size_t i = 0; i < h * w; ++i) {
      const auto& c = pal[static_cast<std::size_t>(classes[i])];
      CHECK(back.pixels[3 * i + 0] == static_cast<int>(0.5f * 200 + 0.5f * c.r + 0.5f));
      CHECK(back.pixels[3 * i + 1] == static_cast<int>(0.5f * 100 + 0.5f * c.g + 0.5f));
    }
    drt::write_overlay_png(path, photo, classes.data(), h, w, pal, 0.0f);
    CHECK(drt::load_image(path).pixels == photo.pixels);
    CHECK_THROWS_WITH_AS(drt::write_overlay_png(path, photo, classes.data(), h + 1, w, pal),
                         ("overlay png '" + path + "': class map is 6x7 (HxW) but the photo is 5x7").c_str(),
                         drt::shape_error);
    CHECK_THROWS_WITH_AS(drt::write_overlay_png(path, photo, classes.data(), h, w, pal, 1.5f),
                         ("overlay png '" + path + "': alpha is 1.5, expected a value in [0, 1]").c_str(),
                         drt::invalid_input);
  }
}

TEST_CASE("write_class_map_png errors") {
  temp_dir tmp;
  const std::vector<std::int32_t> classes = {0, 1, 11, 2};
  const std::string path = tmp.file("bad.png");
  CHECK_THROWS_WITH_AS(drt::write_class_map_png(path, classes.data(), 2, 2, drt::class_palette(11)),
                       ("class map for png '" + path +
                        "': pixel (y 1, x 0) has class 11, outside the palette's 11 "
                        "classes")
                           .c_str(),
                       drt::invalid_input);
  const std::string nowhere = tmp.file("no_such_dir/mask.png");
  CHECK_THROWS_WITH_AS(drt::write_class_map_png(nowhere, classes.data(), 2, 2, drt::class_palette(12)),
                       ("png '" + nowhere + "': cannot open for writing (No such file or directory)").c_str(),
                       drt::io_error);
  CHECK_THROWS_WITH_AS(drt::write_png(nowhere, solid(1, 1, 0, 0, 0)), doctest::Contains("cannot open for writing"),
                       drt::io_error);
}

TEST_CASE("load_label_png reads 8-bit class maps and rejects RGB files") {
  const auto label = drt::load_label_png(camvid_label);
  CHECK(label.width == 480);
  CHECK(label.height == 360);
  REQUIRE(label.labels.size() == 480 * 360);
  std::vector<std::size_t> hist(256, 0);
  for (auto v : label.labels) ++hist[v];
  CHECK(*std::max_element(label.labels.begin(), label.labels.end()) == 11);  // 11 = void
  CHECK(hist[1] == 52841);                                                   // building
  CHECK(hist[11] == 679);

  CHECK_THROWS_WITH_AS(drt::load_label_png(camvid_image),
                       ("label '" + camvid_image + "': has 3 channels (RGB), expected 1 (an 8-bit class map)").c_str(),
                       drt::invalid_input);
  temp_dir tmp;
  const std::string missing = tmp.file("missing_label.png");
  CHECK_THROWS_WITH_AS(drt::load_label_png(missing),
                       ("label '" + missing + "': cannot open file (No such file or directory)").c_str(),
                       drt::io_error);
}

TEST_SUITE_END();

TEST_SUITE_BEGIN("io");

TEST_CASE("the pixel limit refuses a small file declaring a huge image, before decoding (issue 16)") {
  const std::string huge = std::string(DRT_SOURCE_DIR) + "/tests/data/hostile/declares_8000x8000.png";  // 45 bytes
  CHECK_THROWS_WITH_AS(drt::load_image(huge),
                       ("image '" + huge +
                        "': 8000x8000 (HxW) is more than the limit of 16777216 pixels (raise the limit to allow it)")
                           .c_str(),
                       drt::invalid_input);
  CHECK_THROWS_WITH_AS(drt::load_label_png(huge), doctest::Contains(("label '" + huge + "': 8000x8000 (HxW) is more than the limit").c_str()),
                       drt::invalid_input);
  // Raised limit: the header passes, the missing pixel data is then a decode error, not an allocation of 192 MB.
  CHECK_THROWS_WITH_AS(drt::load_image(huge, drt::channel_policy::convert, std::size_t{64'000'000}),
                       doctest::Contains(("image '" + huge + "': cannot decode (stb_image: ").c_str()), drt::io_error);
  // The limit applies to real images too: the 360x480 CamVid frame under 100000 pixels.
  CHECK_THROWS_WITH_AS(drt::load_image(camvid_image, drt::channel_policy::convert, 100000),
                       ("image '" + camvid_image + "': 360x480 (HxW) is more than the limit of 100000 pixels (raise the limit to allow it)").c_str(),
                       drt::invalid_input);
  CHECK(drt::load_image(camvid_image, drt::channel_policy::convert, 360 * 480).width == 480);
  CHECK_THROWS_WITH_AS(drt::check_pixel_limit("--size 0x5", 0, 5), "--size 0x5: 0x5 (HxW) is empty", drt::invalid_input);
}

TEST_CASE("decode_image decodes bytes in memory exactly as load_image reads the file") {
  std::ifstream in(camvid_image, std::ios::binary);
  const std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto a = drt::decode_image("frame", bytes.data(), bytes.size());
  const auto b = drt::load_image(camvid_image);
  CHECK(a.height == b.height);
  CHECK(a.pixels == b.pixels);
  CHECK_THROWS_WITH_AS(drt::decode_image("frame", bytes.data(), 0), "image 'frame': file is empty", drt::io_error);
}

TEST_CASE("truncated images: every cut gives an error with stb's reason (never an empty one) or a smaller decode") {
  std::ifstream in(camvid_image, std::ios::binary);
  const std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::size_t errors = 0;
  for (std::size_t n = 1; n < bytes.size(); n += 997) {
    try {
      const auto img = drt::decode_image("cut", bytes.data(), n);
      CHECK(img.pixels.size() == img.width * img.height * 3);
    } catch (const drt::io_error& e) {
      ++errors;
      const std::string what = e.what();
      CHECK_MESSAGE(what.find("stb_image: )") == std::string::npos, what);
      CHECK_MESSAGE(what.rfind("image 'cut': cannot decode (", 0) == 0, what);
    }
  }
  CHECK(errors > 0);
}

TEST_SUITE_END();

TEST_SUITE_BEGIN("io");

TEST_CASE("the JPEG pre-checks accept real JPEGs of every kind stb decodes (libjpeg-turbo's cjpeg/jpegtran)") {
  // 96x64 crops of the vendored CamVid frame: baseline, progressive (incl. DC-first scans naming an
  // AC table not yet defined), restart intervals, optimized Huffman tables, 4:4:4, greyscale.
  const std::string dir = std::string(DRT_SOURCE_DIR) + "/tests/data/jpeg/";
  const auto ref = drt::load_image(dir + "baseline.jpg");
  REQUIRE(ref.height == 64);
  REQUIRE(ref.width == 96);
  for (const char* name : {"progressive.jpg", "restart.jpg", "progressive_restart.jpg", "optimized_444.jpg",
                           "progressive_grey.jpg"}) {
    INFO(name);
    const auto img = drt::load_image(dir + name);
    CHECK(img.height == 64);
    CHECK(img.width == 96);
    double diff = 0;  // same picture at the same quality: within JPEG noise of the baseline decode
    for (std::size_t i = 0; i < img.pixels.size(); ++i) diff += std::abs(int(img.pixels[i]) - int(ref.pixels[i]));
    CHECK(diff / double(img.pixels.size()) < 12.0);
  }
}

TEST_CASE("the JPEG and PNG pre-checks refuse what Debian's stb 2.27 would decode out of bounds") {
  // fuzz_image's findings, rebuilt by hand (tests/io/test_fuzz_regressions.cpp has the fuzzer's own inputs)
  auto decode = [](const std::vector<unsigned char>& b) { return drt::decode_image("x", b.data(), b.size()); };
  CHECK_THROWS_WITH_AS(decode({0xff, 0xd8, 0xff, 0xc4, 0x00, 0x13, 0x00, 200, 100}),
                       "image 'x': cannot decode (corrupt JPEG: a Huffman table declares 300 codes, at most 256 exist)",
                       drt::io_error);
  // a baseline scan naming AC table 2 that no DHT defined
  std::vector<unsigned char> sos = {0xff, 0xd8, 0xff, 0xc0, 0x00, 0x0b, 0x08, 0x00, 0x08, 0x00, 0x08, 0x01, 0x01, 0x11, 0x00,
                                    0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x02, 0x00, 0x3f, 0x00, 0x00, 0xff, 0xd9};
  CHECK_THROWS_WITH_AS(decode(sos), "image 'x': cannot decode (corrupt JPEG: a scan uses Huffman table DC 0, which no DHT segment defines)",
                       drt::io_error);
  // a PNG whose IDAT declares 1 GB in a 60-byte file
  std::vector<unsigned char> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                                    0, 0, 0, 8, 0, 0, 0, 8, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 'I', 'D', 'A', 'T', 1, 2, 3};
  CHECK_THROWS_WITH_AS(decode(png), "image 'x': cannot decode (corrupt PNG: chunk IDAT declares 1073741824 bytes, 3 are left)",
                       drt::io_error);
  CHECK_THROWS_WITH_AS(decode({'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0}), "image 'x': cannot decode (not a PNG or JPEG file)",
                       drt::io_error);
}

TEST_SUITE_END();
