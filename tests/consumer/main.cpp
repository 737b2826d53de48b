// Compiles, links and runs against an installed drt: its include paths, its dependencies (xtensor
// with xsimd, nlohmann_json, OpenMP, stb) and its compile definitions must all come from drt::drt.
// Usage: drt_consumer <scratch.png>
#include <cstdio>
#include <string>
#include <vector>

#include <drt/drt.hpp>
#include <drt/io/image.hpp>  // stb: headers from /usr/include/stb, implementation from libstb.so

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: drt_consumer <scratch.png>\n");
    return 2;
  }
  int failures = 0;
  auto check = [&](bool ok, const std::string& what) {
    if (!ok) {
      std::fprintf(stderr, "drt consumer: %s\n", what.c_str());
      ++failures;
    }
  };

  const float one = drt::detail::half_to_float(0x3c00);
  check(one == 1.0f, "half_to_float(0x3c00) = " + std::to_string(one) + ", expected 1");
  const std::string shape = drt::shape_str(std::vector<int>{1, 360, 480, 3});
  check(shape == "[1, 360, 480, 3]", "shape_str gave " + shape);
  const drt::tensor2 t = xt::ones<float>({2, 3});
  check(xt::sum(t)() == 6.0f, "xt::sum of ones [2, 3] is not 6");

  // PNG round trip through stb_image_write and stb_image.
  const drt::rgb_image img{2, 1, {255, 0, 0, 0, 128, 255}};
  drt::write_png(argv[1], img);
  const drt::rgb_image back = drt::load_image(argv[1]);
  check(back.width == 2 && back.height == 1 && back.pixels == img.pixels, "PNG round trip changed the image");

  if (failures == 0) std::printf("drt consumer: ok\n");
  return failures == 0 ? 0 : 1;
}
