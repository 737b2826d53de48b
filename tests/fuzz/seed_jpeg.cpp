// Seed helper (not a fuzz target): writes a crop of a PNG/JPEG as a baseline JPEG with
// stb_image_write, for the image corpus (Python's standard library has no JPEG encoder).
// Usage: seed_jpeg IN OUT X Y W H QUALITY CHANNELS(1|3)
#include <cstdio>
#include <cstdlib>
#include <vector>

#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>

int main(int argc, char** argv) {
  if (argc != 9) {
    std::fprintf(stderr, "usage: seed_jpeg IN OUT X Y W H QUALITY CHANNELS\n");
    return 2;
  }
  const int x = std::atoi(argv[3]), y = std::atoi(argv[4]), w = std::atoi(argv[5]), h = std::atoi(argv[6]);
  const int quality = std::atoi(argv[7]), c = std::atoi(argv[8]);
  int iw = 0, ih = 0, ic = 0;
  unsigned char* px = stbi_load(argv[1], &iw, &ih, &ic, c);
  if (!px || x < 0 || y < 0 || w < 1 || h < 1 || x + w > iw || y + h > ih || (c != 1 && c != 3)) {
    std::fprintf(stderr, "seed_jpeg: cannot crop %s\n", argv[1]);
    return 1;
  }
  std::vector<unsigned char> crop(static_cast<std::size_t>(w) * h * c);
  for (int r = 0; r < h; ++r)
    for (int i = 0; i < w * c; ++i) crop[(static_cast<std::size_t>(r) * w * c) + i] = px[((y + r) * iw + x) * c + i];
  stbi_image_free(px);
  return stbi_write_jpg(argv[2], w, h, c, crop.data(), quality) ? 0 : 1;
}
