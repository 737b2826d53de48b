// libFuzzer target: the safetensors reader. The input is a whole file: `from_bytes` parses the
// header, then every tensor is converted (read_float for float dtypes, read_int for integer ones),
// which reads exactly the bytes the header declares. Refusals must be drt::invalid_input /
// io_error naming the file.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <drt/io/safetensors.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string name = "fuzz.safetensors";
  std::vector<char> bytes(reinterpret_cast<const char*>(data), reinterpret_cast<const char*>(data) + size);
  drt_fuzz::refuses_cleanly("safetensors '" + name + "'", [&] {
    const auto f = drt::safetensors_file::from_bytes(name, std::move(bytes));
    for (const auto& [key, value] : f.metadata()) (void)f.metadata(key);
    for (const auto& n : f.names()) {
      const auto& e = f.entry(n);
      std::size_t numel = 1;
      for (const auto d : e.shape)
        if (d < 0 || __builtin_mul_overflow(numel, static_cast<std::size_t>(d), &numel))
          drt_fuzz::fail("tensor '" + n + "' accepted with shape " + drt::shape_str(e.shape) +
                         ": negative or its element count overflows");
      const auto t = drt::detail::dtype_is_float(e.dtype) ? f.read_float(n) : f.read_int(n);
      if (t.shape != e.shape) drt_fuzz::fail("tensor '" + n + "' read with another shape than its entry's");
      if (t.data.size() + t.idata.size() != numel)
        drt_fuzz::fail("tensor '" + n + "' read " + std::to_string(t.data.size() + t.idata.size()) +
                       " values, its shape holds " + std::to_string(numel));
    }
  });
  return 0;
}
