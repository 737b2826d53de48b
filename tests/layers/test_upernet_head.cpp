// UPerNet head pieces (layers/upernet_head.hpp, the head models/upernet_swin.hpp runs): conv_bn_relu
// (a conv2d with the BN folded, run on strided views with channel prefixes) against conv2d_ref + batch_norm_ref + ReLU
// on odd shapes, batch 1 and 2, kernels 1 and 3, with input/output channel prefixes (the run-time channel counts later
// masks use) and strided input/output rows; the whole head against a composition of plain references. Tolerance: rel L2
// <= 1e-5, max abs <= 1e-4 * max|ref| (float vs double).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include <drt/layers/conv2d.hpp>
#include <drt/layers/linear.hpp>
#include <drt/layers/upernet_head.hpp>

#include "test_support.hpp"

using namespace drt_test;

namespace {
struct module_data {
  std::vector<float> w, g, b, mean, var;
  drt::conv_module_weights view() const { return {w.data(), g.data(), b.data(), mean.data(), var.data()}; }
};

module_data make_module(std::size_t ic, std::size_t oc, std::size_t k, unsigned seed) {
  module_data m;
  const float a = 1.0f / std::sqrt(float(ic * k * k));
  m.w = random_vector(oc * ic * k * k, seed, -a, a);
  m.g = random_vector(oc, seed + 1, 0.5f, 1.5f);
  m.b = random_vector(oc, seed + 2, -0.5f, 0.5f);
  m.mean = random_vector(oc, seed + 3, -0.3f, 0.3f);
  m.var = random_vector(oc, seed + 4, 0.5f, 1.5f);
  return m;
}

/// conv2d_ref (first `in` of ic input channels, first `out` outputs) + batch_norm_ref + ReLU.
/// x: [N, H, W, ldx] (the first `in` channels used); y: [N, H, W, out].
void conv_module_ref(const module_data& m, std::size_t ic, std::size_t k, const float* x, std::size_t ldx,
                     std::size_t n, std::size_t h, std::size_t w, std::size_t in, std::size_t out,
                     std::vector<float>& y) {
  std::vector<float> xs(n * h * w * in), ws(out * in * k * k), conv(n * h * w * out);
  for (std::size_t p = 0; p < n * h * w; ++p)
    for (std::size_t c = 0; c < in; ++c) xs[p * in + c] = x[p * ldx + c];
  for (std::size_t o = 0; o < out; ++o)
    for (std::size_t i = 0; i < in; ++i)
      for (std::size_t t = 0; t < k * k; ++t) ws[(o * in + i) * k * k + t] = m.w[(o * ic + i) * k * k + t];
  drt::conv2d_shape s;
  s.in_channels = in;
  s.out_channels = out;
  s.kernel_h = s.kernel_w = k;
  s.pad_h = s.pad_w = k / 2;
  drt::conv2d_ref(xs.data(), n, h, w, ws.data(), nullptr, s, conv.data());
  y.resize(conv.size());
  drt::batch_norm_ref(n * h * w, out, conv.data(), m.g.data(), m.b.data(), m.mean.data(), m.var.data(), 1e-5f,
                      y.data());
  for (auto& v : y) v = v > 0 ? v : 0;
}

/// The whole head (built with `options`) against UperNetHead.forward step by step on plain references.
void check_head(std::size_t D, const drt::conv2d_options& options, const std::string& what) {
  const std::size_t n = 1, K = 5;
  const std::vector<std::size_t> cs{6, 10, 12}, hs{9, 5, 3}, ws{7, 4, 2}, scales{1, 2, 3};
  const std::size_t L = cs.size();
  unsigned seed = 300;
  std::vector<module_data> psp, lat, fpn;
  for (std::size_t i = 0; i < scales.size(); ++i) psp.push_back(make_module(cs[L - 1], D, 1, seed += 10));
  const auto bott = make_module(cs[L - 1] + scales.size() * D, D, 3, seed += 10);
  for (std::size_t i = 0; i + 1 < L; ++i) {
    lat.push_back(make_module(cs[i], D, 1, seed += 10));
    fpn.push_back(make_module(D, D, 3, seed += 10));
  }
  const auto fb = make_module(L * D, D, 3, seed += 10);
  const auto cls_w = random_vector(K * D, seed += 10), cls_b = random_vector(K, seed += 10);
  drt::upernet_head_weights hw;
  for (const auto& m : psp) hw.psp.push_back(m.view());
  hw.bottleneck = bott.view();
  for (std::size_t i = 0; i + 1 < L; ++i) {
    hw.lateral.push_back(lat[i].view());
    hw.fpn.push_back(fpn[i].view());
  }
  hw.fpn_bottleneck = fb.view();
  hw.cls_w = cls_w.data();
  hw.cls_b = cls_b.data();
  std::vector<std::vector<float>> feats;
  std::vector<const float*> fp;
  for (std::size_t i = 0; i < L; ++i) {
    feats.push_back(random_vector(n * hs[i] * ws[i] * cs[i], seed += 10));
    fp.push_back(feats.back().data());
  }
  const drt::upernet_head head(hw, cs, D, K, scales, 1e-5f, options);
  std::vector<float> got(n * hs[0] * ws[0] * K);
  head.run(fp, n, hs, ws, got.data());

  // reference, step by step as UperNetHead.forward
  auto resize = [&](const std::vector<float>& x, std::size_t h, std::size_t w, std::size_t c, std::size_t oh,
                    std::size_t ow) {
    std::vector<float> y(n * oh * ow * c);
    drt::resize_bilinear_ref(x.data(), n, h, w, c, y.data(), oh, ow);
    return y;
  };
  const std::size_t hl = hs[L - 1], wl = ws[L - 1], cl = cs[L - 1], ctot = cl + scales.size() * D;
  std::vector<float> cat(n * hl * wl * ctot);
  for (std::size_t p = 0; p < n * hl * wl; ++p)
    for (std::size_t c = 0; c < cl; ++c) cat[p * ctot + c] = feats[L - 1][p * cl + c];
  for (std::size_t i = 0; i < scales.size(); ++i) {
    const std::size_t s = scales[i];
    std::vector<float> pooled(n * s * s * cl), conv;
    drt::adaptive_avg_pool2d_ref(feats[L - 1].data(), n, hl, wl, cl, pooled.data(), s, s);
    conv_module_ref(psp[i], cl, 1, pooled.data(), cl, n, s, s, cl, D, conv);
    const auto up = resize(conv, s, s, D, hl, wl);
    for (std::size_t p = 0; p < n * hl * wl; ++p)
      for (std::size_t c = 0; c < D; ++c) cat[p * ctot + cl + i * D + c] = up[p * D + c];
  }
  std::vector<std::vector<float>> lats(L);
  conv_module_ref(bott, ctot, 3, cat.data(), ctot, n, hl, wl, ctot, D, lats[L - 1]);
  for (std::size_t i = 0; i + 1 < L; ++i)
    conv_module_ref(lat[i], cs[i], 1, fp[i], cs[i], n, hs[i], ws[i], cs[i], D, lats[i]);
  for (std::size_t i = L - 1; i > 0; --i) {
    const auto up = resize(lats[i], hs[i], ws[i], D, hs[i - 1], ws[i - 1]);
    for (std::size_t j = 0; j < up.size(); ++j) lats[i - 1][j] += up[j];
  }
  std::vector<float> fcat(n * hs[0] * ws[0] * L * D);
  for (std::size_t i = 0; i < L; ++i) {
    std::vector<float> o = lats[i];
    if (i + 1 < L) conv_module_ref(fpn[i], D, 3, lats[i].data(), D, n, hs[i], ws[i], D, D, o);
    const auto up = resize(o, hs[i], ws[i], D, hs[0], ws[0]);
    for (std::size_t p = 0; p < n * hs[0] * ws[0]; ++p)
      for (std::size_t c = 0; c < D; ++c) fcat[p * L * D + i * D + c] = up[p * D + c];
  }
  std::vector<float> fused, ref(got.size());
  conv_module_ref(fb, L * D, 3, fcat.data(), L * D, n, hs[0], ws[0], L * D, D, fused);
  drt::linear_ref(n * hs[0] * ws[0], fused.data(), cls_w.data(), cls_b.data(), K, D, ref.data());
  check_close(got.data(), ref.data(), ref.size(), "upernet head " + what, 1e-5, 1e-4);
}
}  // namespace

TEST_SUITE("layers") {
  TEST_CASE("upernet conv_bn_relu: vs conv2d_ref + batch_norm_ref + ReLU, with channel prefixes") {
    struct cc {
      std::size_t n, h, w, ic, oc, k, in, out, x_pad, y_pad;
    };
    unsigned seed = 7;
    for (const cc& p : {cc{1, 7, 5, 13, 11, 3, 13, 11, 0, 0}, cc{2, 6, 9, 24, 20, 3, 24, 20, 0, 0},
                        cc{1, 7, 5, 13, 11, 3, 9, 6, 0, 0}, cc{1, 1, 1, 8, 17, 3, 8, 17, 0, 0},
                        cc{2, 5, 3, 19, 33, 1, 19, 33, 0, 0}, cc{1, 4, 6, 19, 33, 1, 10, 17, 3, 5},
                        cc{1, 9, 4, 16, 16, 3, 16, 16, 7, 9}, cc{1, 5, 5, 6, 4, 5, 6, 4, 0, 0}}) {
      const std::string what = "N=" + std::to_string(p.n) + " " + std::to_string(p.h) + "x" + std::to_string(p.w) +
                               " k=" + std::to_string(p.k) + " " + std::to_string(p.in) + "/" + std::to_string(p.ic) +
                               " -> " + std::to_string(p.out) + "/" + std::to_string(p.oc);
      CAPTURE(what);
      const auto m = make_module(p.ic, p.oc, p.k, seed);
      const std::size_t ldx = p.ic + p.x_pad, ldy = p.out + p.y_pad, px = p.n * p.h * p.w;
      const auto x = random_vector(px * ldx, seed + 9);
      std::vector<float> got(px * ldy, 77.f), ref;
      const drt::conv_bn_relu conv(m.view(), p.ic, p.oc, p.k, 1e-5f);
      conv.run(x.data(), ldx, p.n, p.h, p.w, got.data(), ldy, p.in, p.out);
      conv_module_ref(m, p.ic, p.k, x.data(), ldx, p.n, p.h, p.w, p.in, p.out, ref);
      std::vector<float> compact(px * p.out);
      std::size_t pad_changed = 0;
      for (std::size_t i = 0; i < px; ++i) {
        for (std::size_t j = 0; j < p.out; ++j) compact[i * p.out + j] = got[i * ldy + j];
        for (std::size_t j = p.out; j < ldy; ++j) pad_changed += got[i * ldy + j] != 77.f;
      }
      CHECK(pad_changed == 0);
      check_close(compact.data(), ref.data(), ref.size(), what, 1e-5, 1e-4);
      seed += 20;
    }
    const auto m = make_module(4, 4, 3, 1);
    const drt::conv_bn_relu conv(m.view(), 4, 4, 3, 1e-5f);
    std::vector<float> x(16), y(16);
    CHECK_THROWS_WITH_AS(conv.run(x.data(), 4, 1, 2, 2, y.data(), 4, 5, 4),
                         "conv2d: channels in=5 (stride 4), out=4 (stride 4) do not fit the conv [4 -> 4], groups 1",
                         drt::shape_error);
  }

  TEST_CASE("upernet_head: vs a composition of plain references (3 levels, odd sizes)") {
    // levels 9x7 (C 6), 5x4 (C 10), 3x2 (C 12); D = 8 (every 3x3 an implicit GEMM) and 20 (the 3x3s
    // in the form of the options: Winograd F(2x2), F(4x4) or implicit GEMM); pool scales 1, 2, 3; 5 classes
    for (const std::size_t D : {std::size_t(8), std::size_t(20)})
      for (const std::size_t tile : {std::size_t(0), std::size_t(2), std::size_t(4)}) {
        if (D == 8 && tile != 0) continue;
        const auto options = tile ? drt::conv2d_options::winograd_form(tile) : drt::conv2d_options::implicit_gemm();
        const std::string what = "D=" + std::to_string(D) + " tile=" + std::to_string(tile);
        CAPTURE(what);
        check_head(D, options, what);
      }
  }
}
