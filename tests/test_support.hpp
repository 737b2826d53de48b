#pragma once
// Helpers shared by the tests: where the fixtures are, and how outputs are compared.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace drt_test {

/// ../shared (fixtures, models, data): $DRT_SHARED, else the configured default.
inline std::string shared_dir() {
  if (const char* env = std::getenv("DRT_SHARED"); env && *env) return env;
  return DRT_DEFAULT_SHARED_DIR;
}
inline std::string source_dir() { return DRT_SOURCE_DIR; }
inline bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

/// True when `path` exists. Otherwise: a failure under CI=true, a visible skip note elsewhere.
inline bool require_file(const std::string& path) {
  if (std::filesystem::exists(path)) return true;
  if (in_ci()) FAIL("missing fixture (CI=true makes this a failure): " << path);
  MESSAGE("skipped: missing fixture " << path << " (set DRT_SHARED)");
  return false;
}

struct error_stats {
  double rel_l2 = 0, max_abs = 0, max_ref = 0;
};

inline error_stats compare(const float* out, const float* ref, std::size_t n) {
  double num = 0, den = 0;
  error_stats s;
  for (std::size_t i = 0; i < n; ++i) {
    const double d = double(out[i]) - ref[i];
    num += d * d;
    den += double(ref[i]) * ref[i];
    s.max_abs = std::max(s.max_abs, std::abs(d));
    s.max_ref = std::max(s.max_ref, std::abs(double(ref[i])));
  }
  s.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return s;
}

/// The project's tolerance: relative L2 <= rel and max abs <= abs_frac * max|ref|.
inline void check_close(const float* out, const float* ref, std::size_t n, const std::string& what,
                        double rel = 1e-4, double abs_frac = 1e-3) {
  const auto s = compare(out, ref, n);
  INFO(what << ": rel_l2=" << s.rel_l2 << " max_abs=" << s.max_abs << " max|ref|=" << s.max_ref);
  if (std::getenv("DRT_TEST_VERBOSE"))
    MESSAGE(what << ": rel_l2=" << s.rel_l2 << " max_abs=" << s.max_abs << " max|ref|=" << s.max_ref);
  CHECK(s.rel_l2 <= rel);
  CHECK(s.max_abs <= abs_frac * s.max_ref);
}

inline std::vector<float> random_vector(std::size_t n, unsigned seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(gen);
  return v;
}

}  // namespace drt_test
