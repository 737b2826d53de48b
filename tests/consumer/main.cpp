// Compiles and links against an installed drt: its include paths, its dependencies (xtensor with
// xsimd, nlohmann_json, OpenMP) and its compile definitions must all come from drt::drt.
#include <cstdio>
#include <string>
#include <vector>

#if __has_include(<drt/drt.hpp>)
#include <drt/drt.hpp>
#else  // before the umbrella header exists
#include <drt/core/tensor.hpp>
#include <drt/io/safetensors.hpp>
#endif

int main() {
  const float one = drt::detail::half_to_float(0x3c00);
  const std::string shape = drt::shape_str(std::vector<int>{1, 360, 480, 3});
  const drt::tensor2 t = xt::ones<float>({2, 3});
  const float sum = xt::sum(t)();
  if (one != 1.0f || shape != "[1, 360, 480, 3]" || sum != 6.0f) {
    std::fprintf(stderr, "drt consumer: got half_to_float(0x3c00) = %g, shape_str = %s, sum = %g\n", one, shape.c_str(),
                 sum);
    return 1;
  }
  std::printf("drt consumer: ok (%s)\n", shape.c_str());
  return 0;
}
