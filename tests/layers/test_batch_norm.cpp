// batch_norm (layers/batch_norm.hpp): folding a BatchNorm into the preceding conv's weights and
// bias must equal the conv followed by batch_norm_ref; the affine form must equal batch_norm_ref.
// Tolerance: rel L2 <= 1e-5, max abs <= 1e-4 * max|ref| (folded float weights vs double reference).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include <drt/layers/batch_norm.hpp>
#include <drt/layers/conv2d.hpp>

#include "test_support.hpp"

using namespace drt_test;

namespace {
constexpr double bn_rel = 1e-5, bn_abs = 1e-4;

struct bn_params {
  std::vector<float> gamma, beta, mean, var;
  explicit bn_params(std::size_t c, unsigned seed)
      : gamma(random_vector(c, seed, 0.5f, 2.f)),
        beta(random_vector(c, seed + 1)),
        mean(random_vector(c, seed + 2, -0.5f, 0.5f)),
        var(random_vector(c, seed + 3, 0.05f, 3.f)) {}
};

/// conv(fold(W, b, bn)) vs batch_norm_ref(conv_ref(W, b)).
void check_fold(const drt::conv2d_shape& s, std::size_t n, std::size_t h, std::size_t w, bool with_bias,
                unsigned seed) {
  const std::size_t per_out = s.in_channels / s.groups * s.kernel_h * s.kernel_w, oc = s.out_channels;
  const auto weight = random_vector(oc * per_out, seed);
  const std::vector<float> bias = with_bias ? random_vector(oc, seed + 1) : std::vector<float>();
  const auto x = random_vector(n * h * w * s.in_channels, seed + 2);
  const bn_params bn(oc, seed + 3);
  const float eps = 1e-5f;

  std::vector<float> folded_w = weight;
  const auto affine =
      drt::batch_norm_to_affine(bn.gamma.data(), bn.beta.data(), bn.mean.data(), bn.var.data(), oc, eps);
  REQUIRE(affine.scale.size() == oc);
  REQUIRE(affine.shift.size() == oc);
  const auto folded_b = drt::fold_batch_norm(folded_w, per_out, bias, affine);
  REQUIRE(folded_b.size() == oc);
  const drt::conv2d conv(folded_w.data(), folded_b.data(), s);
  const std::size_t m = n * s.out_h(h) * s.out_w(w);
  std::vector<float> y(m * oc), conv_out(m * oc), ref(m * oc);
  conv.run(x.data(), n, h, w, y.data());

  drt::conv2d_ref(x.data(), n, h, w, weight.data(), with_bias ? bias.data() : nullptr, s, conv_out.data());
  drt::batch_norm_ref(m, oc, conv_out.data(), bn.gamma.data(), bn.beta.data(), bn.mean.data(), bn.var.data(), eps,
                      ref.data());
  check_close(y.data(), ref.data(), ref.size(),
              "folded conv " + std::to_string(s.in_channels) + "->" + std::to_string(oc) +
                  " k=" + std::to_string(s.kernel_h) + " g=" + std::to_string(s.groups),
              bn_rel, bn_abs);
}

drt::conv2d_shape shape(std::size_t ic, std::size_t oc, std::size_t k, std::size_t pad, std::size_t groups = 1) {
  drt::conv2d_shape s;
  s.in_channels = ic;
  s.out_channels = oc;
  s.kernel_h = s.kernel_w = k;
  s.pad_h = s.pad_w = pad;
  s.groups = groups;
  return s;
}
}  // namespace

TEST_SUITE("layers") {
  TEST_CASE("fold_batch_norm into a conv equals the conv followed by batch_norm_ref") {
    SUBCASE("1x1 with bias (the decode head's fuse conv has none; both are covered)") {
      check_fold(shape(33, 17, 1, 0), 2, 13, 7, true, 10);
      check_fold(shape(128, 32, 1, 0), 1, 6, 5, false, 11);
    }
    SUBCASE("3x3 pad 1") {
      check_fold(shape(5, 17, 3, 1), 1, 13, 7, true, 20);
      check_fold(shape(3, 5, 3, 1), 2, 7, 13, false, 21);
    }
    SUBCASE("grouped") { check_fold(shape(20, 36, 3, 1, 4), 1, 13, 7, true, 30); }
  }

  TEST_CASE("batch_norm_to_affine: scale * x + shift equals batch_norm_ref") {
    const std::size_t m = 11, c = 17;
    const bn_params bn(c, 40);
    const float eps = 1e-3f;
    const auto x = random_vector(m * c, 44, -3.f, 3.f);
    const auto a = drt::batch_norm_to_affine(bn.gamma.data(), bn.beta.data(), bn.mean.data(), bn.var.data(), c, eps);
    std::vector<float> y(m * c), ref(m * c);
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t j = 0; j < c; ++j) y[i * c + j] = x[i * c + j] * a.scale[j] + a.shift[j];
    drt::batch_norm_ref(m, c, x.data(), bn.gamma.data(), bn.beta.data(), bn.mean.data(), bn.var.data(), eps,
                        ref.data());
    check_close(y.data(), ref.data(), ref.size(), "affine", bn_rel, bn_abs);
    // A known value: gamma 2, beta 1, mean 3, var 4 - eps: (x - 3) / 2 * 2 + 1 = x - 2.
    const float g = 2.f, b = 1.f, mu = 3.f, var = 4.f - 1e-5f;
    const auto k = drt::batch_norm_to_affine(&g, &b, &mu, &var, 1, 1e-5f);
    CHECK(k.scale[0] == doctest::Approx(1.0).epsilon(1e-6));
    CHECK(k.shift[0] == doctest::Approx(-2.0).epsilon(1e-6));
  }

}  // TEST_SUITE("layers")
