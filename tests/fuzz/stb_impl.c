/* The stb implementation, compiled here with the fuzzer's sanitizers and coverage (see
 * DRT_FUZZ_INSTRUMENT_STB): the same Debian header libstb is built from. */
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image_resize.h>
