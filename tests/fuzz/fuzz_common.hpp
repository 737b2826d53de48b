#pragma once
// Shared by the fuzz targets: which exceptions are a clean refusal, and the checks every refusal
// must pass. Anything else (another exception, a sanitizer report, a failed check) is a finding:
// it escapes or aborts, and libFuzzer saves the input.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <drt/core/error.hpp>

namespace drt_fuzz {

/// A failed property: print it and abort so libFuzzer reports the input.
[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "drt_fuzz: FINDING: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

/// Runs `f`; drt::invalid_input (and shape_error) and drt::io_error are the expected refusals, and
/// their message must name `name` (the file, field or text the input came from). Returns true when
/// `f` returned normally. Every other exception escapes.
template <class F>
bool refuses_cleanly(const std::string& name, F&& f) {
  try {
    f();
    return true;
  } catch (const drt::invalid_input& e) {
    if (std::string(e.what()).find(name) == std::string::npos)
      fail("drt::invalid_input without '" + name + "': " + e.what());
  } catch (const drt::io_error& e) {
    if (std::string(e.what()).find(name) == std::string::npos)
      fail("drt::io_error without '" + name + "': " + e.what());
  }
  return false;
}

}  // namespace drt_fuzz
