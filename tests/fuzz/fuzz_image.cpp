// libFuzzer target: image decoding (stb_image behind drt's checks). Every input goes to
// decode_image (RGB, converting grey/alpha), decode_image with require_rgb, and decode_label_png.
// A small pixel limit keeps each run cheap and exercises the limit check; refusals must be
// drt::invalid_input / io_error naming the file, and an accepted image must hold H*W*3 bytes.
#include <cstddef>
#include <cstdint>
#include <string>

#include <drt/io/image.hpp>

#include "fuzz_common.hpp"

namespace {
constexpr std::size_t max_pixels = std::size_t{1} << 16;  // 256x256: 170x any seed, cheap per run
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string name = "fuzz.png";
  for (const auto policy : {drt::channel_policy::convert, drt::channel_policy::require_rgb})
    drt_fuzz::refuses_cleanly("'" + name + "'", [&] {
      const auto img = drt::decode_image(name, data, size, max_pixels, policy);
      if (img.width == 0 || img.height == 0 || img.width * img.height > max_pixels ||
          img.pixels.size() != img.width * img.height * 3)
        drt_fuzz::fail("decode_image accepted a " + std::to_string(img.height) + "x" + std::to_string(img.width) +
                       " image holding " + std::to_string(img.pixels.size()) + " bytes");
    });
  drt_fuzz::refuses_cleanly("'" + name + "'", [&] {
    const auto lab = drt::decode_label_png(name, data, size, max_pixels);
    if (lab.width == 0 || lab.height == 0 || lab.width * lab.height > max_pixels ||
        lab.labels.size() != lab.width * lab.height)
      drt_fuzz::fail("decode_label_png accepted a " + std::to_string(lab.height) + "x" + std::to_string(lab.width) +
                     " map holding " + std::to_string(lab.labels.size()) + " bytes");
  });
  return 0;
}
