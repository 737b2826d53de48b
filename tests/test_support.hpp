#pragma once
// Helpers shared by the tests: where the fixtures are, and how outputs are compared.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include <drt/core/amx.hpp>
#include <drt/core/tensor.hpp>
#include <drt/io/safetensors.hpp>
#include <drt/layers/gemm.hpp>
#include <drt/layers/resize.hpp>
#include <drt/models/layer_info.hpp>

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

/// Whether a GEMM micro-kernel can run in this process (an AMX kernel needs the tiles granted); a
/// kernel that cannot is skipped with a visible note.
template <class Kernel>
bool kernel_runs_here() {
  if (!Kernel::needs_amx || drt::amx_usable()) return true;
  MESSAGE("skipped: the AMX kernel (AMX not granted to this process, or DRT_AMX=0)");
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

/// The epilogues every GEMM precision is tested with (one SUBCASE each): alpha, bias, activations,
/// a residual before or after the activation, and a residual that is C itself (`alias`: the test
/// copies the residual into C and points the epilogue at C).
struct epilogue_case {
  std::string name;
  drt::gemm_epilogue ep;
  bool alias = false;
};
inline std::vector<epilogue_case> epilogue_cases(const float* bias, const float* residual, std::size_t ldr) {
  std::vector<epilogue_case> cases(7);
  cases[0].name = "bias";
  cases[0].ep.bias = bias;
  cases[1].name = "alpha";
  cases[1].ep.alpha = -0.37f;
  cases[2].name = "bias + relu";
  cases[2].ep.bias = bias;
  cases[2].ep.act = drt::activation::relu;
  cases[3].name = "bias + gelu";
  cases[3].ep.bias = bias;
  cases[3].ep.act = drt::activation::gelu;
  cases[4].name = "alpha + bias + relu + residual";
  cases[4].ep.alpha = 1.7f;
  cases[4].ep.bias = bias;
  cases[4].ep.act = drt::activation::relu;
  cases[4].ep.residual = residual;
  cases[4].ep.ldr = ldr;
  cases[5].name = "bias + residual, then relu (residual_before_act)";
  cases[5].ep = cases[4].ep;
  cases[5].ep.alpha = 1.f;
  cases[5].ep.residual_before_act = true;
  cases[6].name = "gelu + residual aliasing C";
  cases[6].ep.act = drt::activation::gelu;
  cases[6].alias = true;
  return cases;
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

/// The fraction of pixels whose argmax over classes agrees between two NCHW score tensors of
/// `images` x `classes` x `plane` values.
inline double argmax_agreement(const float* a, const float* b, std::size_t images, std::size_t classes,
                               std::size_t plane) {
  std::size_t same = 0;
  for (std::size_t img = 0; img < images; ++img)
    for (std::size_t p = 0; p < plane; ++p) {
      const std::size_t at = img * classes * plane + p;
      std::size_t ia = 0, ib = 0;
      for (std::size_t c = 1; c < classes; ++c) {
        if (a[at + c * plane] > a[at + ia * plane]) ia = c;
        if (b[at + c * plane] > b[at + ib * plane]) ib = c;
      }
      same += ia == ib;
    }
  return images * plane != 0 ? double(same) / double(images * plane) : 1.0;
}

inline std::vector<float> random_vector(std::size_t n, unsigned seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(gen);
  return v;
}

/// A 4-D float tensor read from a safetensors file as a tensor4 (e.g. a case's pixel_values).
inline drt::tensor4 as_tensor4(const drt::host_tensor& t) {
  REQUIRE(t.shape.size() == 4);
  drt::tensor4 x = drt::tensor4::from_shape(
      {std::size_t(t.shape[0]), std::size_t(t.shape[1]), std::size_t(t.shape[2]), std::size_t(t.shape[3])});
  std::copy(t.data.begin(), t.data.end(), x.data());
  return x;
}

/// x has exactly shape s (stops the test case otherwise).
template <class T>
void check_shape(const T& x, const std::vector<std::int64_t>& s) {
  REQUIRE(x.dimension() == s.size());
  for (std::size_t i = 0; i < s.size(); ++i) REQUIRE(std::int64_t(x.shape(i)) == s[i]);
}

/// An N x C x H x W input of standard-normal values (a normalized image's scale).
inline drt::tensor4 random_image(std::size_t n, std::size_t c, std::size_t h, std::size_t w, unsigned seed) {
  drt::tensor4 x = drt::tensor4::from_shape({n, c, h, w});
  std::mt19937 gen(seed);
  std::normal_distribution<float> nd;
  for (auto& v : x) v = nd(gen);
  return x;
}

/// The layer called `name` in a layer list, or null.
inline const drt::layer_info* find_layer(const std::vector<drt::layer_info>& layers, const std::string& name) {
  for (const auto& l : layers)
    if (l.name == name) return &l;
  return nullptr;
}

/// A low-precision path and its bounds against a case's float32 reference (issue 20).
struct low_precision_bound {
  const char* path;
  double rel_l2, agree;  ///< agree: minimum argmax agreement (at full resolution when the case has
                         ///< "prediction", else at the logits' resolution)
};

/// Runs each bound's path (text of `Path`) on the case's pixel_values and checks the logits against
/// the case's (transformers float32) "logits": relative L2 error within the bound and above 1e-5 (it
/// really ran in the low precision; float32 is near 1e-6), argmax agreement at least the bound.
/// DRT_TEST_VERBOSE=1 prints the measured values (what the bounds are 2-3x of).
template <class Path, class Model>
void check_low_precision(const Model& model, const std::string& case_path,
                         std::initializer_list<low_precision_bound> bounds) {
  const drt::safetensors_file io(case_path);
  const auto x = as_tensor4(io.read_float("pixel_values"));
  const auto ref = io.read_float("logits");
  const bool has_prediction = io.contains("prediction");
  for (const low_precision_bound& b : bounds) {
    CAPTURE(case_path);
    CAPTURE(std::string(b.path));
    const auto out = model.forward(x, Path::parse(b.path));
    check_shape(out.logits, ref.shape);
    const auto err = compare(out.logits.data(), ref.data.data(), ref.data.size());
    double agree = 0.0;
    if (!has_prediction) {  // argmax over classes at the logits' resolution (NCHW)
      agree = argmax_agreement(out.logits.data(), ref.data.data(), out.logits.shape(0), out.logits.shape(1),
                               out.logits.shape(2) * out.logits.shape(3));
    } else {
      const auto pred = io.read_int("prediction");
      const auto mine = drt::upsample_argmax(out.logits, x.shape(2), x.shape(3));
      REQUIRE(mine.size() == pred.idata.size());
      std::size_t same = 0;
      for (std::size_t i = 0; i < mine.size(); ++i) same += mine.data()[i] == pred.idata[i];
      agree = double(same) / double(mine.size());
    }
    if (std::getenv("DRT_TEST_VERBOSE"))
      MESSAGE(case_path << " " << std::string(b.path) << ": rel L2 " << err.rel_l2 << ", argmax agreement " << agree);
    CHECK(err.rel_l2 <= b.rel_l2);
    CHECK(err.rel_l2 > 1e-5);
    CHECK(agree >= b.agree);
  }
}

}  // namespace drt_test
