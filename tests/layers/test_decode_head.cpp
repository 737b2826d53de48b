// mlp_decode_head (layers/decode_head.hpp) against a plain-loop reference written here from
// linear_ref + resize_bilinear_ref + concatenation in reverse stage order + 1x1 fuse conv +
// batch_norm_ref + ReLU + classifier (ref: transformers modeling_segformer.py, SegformerDecodeHead).
// Stages of 8, 16, 24, 40 channels at 12x10, 6x5, 3x3, 2x2, hidden 32 (concat 128), 11 classes, N = 2.
// Channel prefixes: the head on (fuse_in, pred_in, linear0_in) must equal the full reference with the
// dropped concat channels and fuse outputs zeroed and stage 0's dropped input channels ignored.
// Every case runs on both forms of the head: folded (M_s = G W_fuse[:, slot(s)] P_s composed in double,
// applied at each stage's own resolution, upsampled and summed) and unfolded (the checkpoint's graph).
// Tolerance: rel L2 <= 1e-5, max abs <= 1e-4 * max|ref| (float, BN folded, vs double loops).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include <drt/layers/decode_head.hpp>

#include "test_support.hpp"

using namespace drt_test;

namespace {
constexpr double dh_rel = 1e-5, dh_abs = 1e-4;

struct head_fixture {
  std::vector<std::size_t> channels{8, 16, 24, 40};
  std::size_t hidden = 32, classes = 11, n = 2;
  std::vector<std::size_t> hs{12, 6, 3, 2}, ws{10, 5, 3, 2};
  float eps = 1e-5f;
  std::vector<std::vector<float>> lin_w, lin_b, feats;
  std::vector<float> fuse_w, bn_g, bn_b, bn_mean, bn_var, cls_w, cls_b;

  explicit head_fixture(std::vector<std::size_t> heights = {12, 6, 3, 2},
                        std::vector<std::size_t> widths = {10, 5, 3, 2})
      : hs(std::move(heights)), ws(std::move(widths)) {
    unsigned seed = 500;
    const std::size_t d = hidden, s = channels.size();
    for (std::size_t i = 0; i < s; ++i) {
      const float sc = 1.f / std::sqrt(float(channels[i]));
      lin_w.push_back(random_vector(d * channels[i], seed++, -sc, sc));
      lin_b.push_back(random_vector(d, seed++, -0.2f, 0.2f));
      feats.push_back(random_vector(n * hs[i] * ws[i] * channels[i], seed++, -2.f, 2.f));
    }
    const float sf = 1.f / std::sqrt(float(s * d));
    fuse_w = random_vector(d * s * d, seed++, -sf, sf);
    bn_g = random_vector(d, seed++, 0.5f, 1.5f);
    bn_b = random_vector(d, seed++, -0.3f, 0.3f);
    bn_mean = random_vector(d, seed++, -0.2f, 0.2f);
    bn_var = random_vector(d, seed++, 0.1f, 2.f);
    cls_w = random_vector(classes * d, seed++, -0.3f, 0.3f);
    cls_b = random_vector(classes, seed++, -0.1f, 0.1f);
  }

  drt::mlp_decode_head build(bool fold = true) const {
    drt::decode_head_weights w{};
    for (std::size_t i = 0; i < channels.size(); ++i) {
      w.linear_w.push_back(lin_w[i].data());
      w.linear_b.push_back(lin_b[i].data());
    }
    w.fuse_w = fuse_w.data();
    w.bn_g = bn_g.data();
    w.bn_b = bn_b.data();
    w.bn_mean = bn_mean.data();
    w.bn_var = bn_var.data();
    w.cls_w = cls_w.data();
    w.cls_b = cls_b.data();
    return drt::mlp_decode_head(w, channels, hidden, classes, eps, fold);
  }

  std::vector<const float*> inputs() const {
    std::vector<const float*> p;
    for (const auto& f : feats) p.push_back(f.data());
    return p;
  }

  std::size_t pixels() const { return n * hs[0] * ws[0]; }

  /// The plain-loop head. fuse_in / pred_in / linear0_in: channels kept (0 = all); the rest are zeroed.
  std::vector<float> reference(std::size_t fuse_in = 0, std::size_t pred_in = 0, std::size_t linear0_in = 0) const {
    const std::size_t d = hidden, s = channels.size(), m0 = pixels(), cat = s * d;
    if (fuse_in == 0) fuse_in = cat;
    if (pred_in == 0) pred_in = d;
    if (linear0_in == 0) linear0_in = channels[0];
    std::vector<float> concat(m0 * cat);
    for (std::size_t st = 0; st < s; ++st) {
      const std::size_t ms = n * hs[st] * ws[st], cs = channels[st];
      std::vector<float> x = feats[st];
      if (st == 0)  // dropped input channels of DecodeLinear0 contribute nothing
        for (std::size_t p = 0; p < ms; ++p)
          for (std::size_t c = linear0_in; c < cs; ++c) x[p * cs + c] = 0.f;
      std::vector<float> proj(ms * d), up(m0 * d);
      drt::linear_ref(ms, x.data(), lin_w[st].data(), lin_b[st].data(), d, cs, proj.data());
      drt::resize_bilinear_ref(proj.data(), n, hs[st], ws[st], d, up.data(), hs[0], ws[0]);
      const std::size_t off = (s - 1 - st) * d;  // reverse stage order: stage 3 first
      for (std::size_t p = 0; p < m0; ++p)
        for (std::size_t j = 0; j < d; ++j) concat[p * cat + off + j] = up[p * d + j];
    }
    for (std::size_t p = 0; p < m0; ++p)
      for (std::size_t j = fuse_in; j < cat; ++j) concat[p * cat + j] = 0.f;
    std::vector<float> fused(m0 * d), normed(m0 * d), logits(m0 * classes);
    drt::linear_ref(m0, concat.data(), fuse_w.data(), nullptr, d, cat, fused.data());
    drt::batch_norm_ref(m0, d, fused.data(), bn_g.data(), bn_b.data(), bn_mean.data(), bn_var.data(), eps,
                        normed.data());
    for (std::size_t p = 0; p < m0; ++p)
      for (std::size_t j = 0; j < d; ++j) {
        float& v = normed[p * d + j];
        v = j < pred_in ? std::max(v, 0.f) : 0.f;
      }
    drt::linear_ref(m0, normed.data(), cls_w.data(), cls_b.data(), classes, d, logits.data());
    return logits;
  }

  std::vector<float> run(const drt::mlp_decode_head& head, drt::decode_head_channels ch = {}) const {
    std::vector<float> logits(pixels() * classes, 1e9f);
    head.run(inputs(), n, hs, ws, logits.data(), ch);
    return logits;
  }
};

drt::decode_head_channels channels(std::size_t fuse_in, std::size_t pred_in, std::size_t linear0_in,
                                   bool propagate = true) {
  drt::decode_head_channels ch;
  ch.fuse_in = fuse_in;
  ch.pred_in = pred_in;
  ch.linear0_in = linear0_in;
  ch.propagate = propagate;
  return ch;
}
}  // namespace

TEST_SUITE("layers") {
  TEST_CASE("mlp_decode_head matches the plain-loop reference, folded and unfolded") {
    const head_fixture f;
    const auto ref = f.reference();
    for (const bool fold : {true, false}) {
      const auto head = f.build(fold);
      CHECK(head.folded() == fold);
      CHECK(head.hidden() == 32);
      CHECK(head.classes() == 11);
      CHECK(head.stages() == 4);
      CHECK(head.stage_channels(3) == 40);
      const auto out = f.run(head);
      check_close(out.data(), ref.data(), ref.size(), fold ? "folded head" : "unfolded head", dh_rel, dh_abs);
    }
    const auto unfolded = f.build(false), folded = f.build(true);
    CHECK(unfolded.stage_linear(3).in_features() == 40);
    CHECK(unfolded.stage_linear(3).out_features() == 32);
    CHECK_THROWS_WITH_AS(folded.stage_linear(3), "decode head: the folded head has no separate decoder linears",
                         drt::invalid_input);
    CHECK_THROWS_WITH_AS(folded.fuse_weights(), "decode head: the folded head has no Conv2DFuse", drt::invalid_input);
    // Folded weights: M_s is D x C_s per stage (32 x (8+16+24+40) floats, in panels of NR columns),
    // unfolded: the linears D x C_s and Conv2DFuse D x 4D. Both hold the classifier.
    CHECK(folded.weight_bytes() < unfolded.weight_bytes());
    CHECK(folded.composition_bytes() == (32 * 128 + 32 * 88 + 4 * 32) * sizeof(float) + 2 * 32 * sizeof(double));
    CHECK(unfolded.composition_bytes() == 0);
  }

  TEST_CASE("folded and unfolded heads agree on random shapes, batches and upsample edge cases") {
    // Stage sizes that exercise the upsample's edges: odd ratios, a stage larger than 1/2 of the
    // previous, 1x1 stages (every tap clamps), a later stage as large as stage 0, batch 1 and 3.
    const std::vector<std::pair<std::vector<std::size_t>, std::vector<std::size_t>>> shapes = {
        {{7, 4, 2, 1}, {9, 5, 3, 1}}, {{13, 7, 4, 2}, {11, 6, 3, 2}}, {{5, 5, 5, 5}, {3, 3, 3, 3}},
        {{1, 1, 1, 1}, {1, 1, 1, 1}}, {{16, 8, 4, 2}, {16, 8, 4, 2}}, {{9, 3, 2, 1}, {4, 2, 2, 1}}};
    for (const std::size_t batch : {1, 3})
      for (const auto& [h, w] : shapes) {
        head_fixture f(h, w);
        f.n = batch;
        f.feats.clear();
        unsigned seed = 900;
        for (std::size_t i = 0; i < f.channels.size(); ++i)
          f.feats.push_back(random_vector(f.n * f.hs[i] * f.ws[i] * f.channels[i], seed++, -2.f, 2.f));
        const auto folded = f.build(true), unfolded = f.build(false);
        const std::string what = "batch " + std::to_string(batch) + ", stage 0 " + std::to_string(h[0]) + "x" +
                                 std::to_string(w[0]) + ", stage 3 " + std::to_string(h[3]) + "x" + std::to_string(w[3]);
        const auto ref = f.reference();
        const auto a = f.run(folded), b = f.run(unfolded);
        check_close(a.data(), ref.data(), ref.size(), "folded, " + what, dh_rel, dh_abs);
        check_close(a.data(), b.data(), b.size(), "folded vs unfolded, " + what, dh_rel, dh_abs);
        const auto refp = f.reference(70, 19, 6);
        const auto ap = f.run(folded, channels(70, 19, 6)), bp = f.run(unfolded, channels(70, 19, 6));
        check_close(ap.data(), refp.data(), refp.size(), "folded, fuse_in=70 pred_in=19 linear0_in=6, " + what, dh_rel,
                    dh_abs);
        check_close(ap.data(), bp.data(), bp.size(), "folded vs unfolded, fuse_in=70, " + what, dh_rel, dh_abs);
      }
  }

  TEST_CASE("the folded head composes a path's weights once, only where fuse_in cuts") {
    const head_fixture f;
    const auto head = f.build(true);
    CHECK(head.resolve({}).cut == nullptr);                   // full width: the model's own M_s and c
    CHECK(head.resolve(channels(128, 16, 3)).cut == nullptr);  // pred_in and linear0_in are prefixes
    const auto whole = head.resolve(channels(96, 0, 0));      // stage 0's slot dropped whole: only c changes
    REQUIRE(whole.cut != nullptr);
    CHECK(whole.cut->stage == drt::folded_head_cut::none);
    CHECK(whole.cut->bias.size() == 32);
    CHECK(drt::mlp_decode_head::path_bytes(whole) == 32 * sizeof(float));
    const auto part = head.resolve(channels(80, 0, 0));  // 16 of stage 1's 32 slot columns
    REQUIRE(part.cut != nullptr);
    CHECK(part.cut->stage == 1);
    CHECK(part.cut->m.out_features() == 32);
    CHECK(part.cut->m.in_features() == 16);
    CHECK(drt::mlp_decode_head::path_bytes(part) == part.cut->m.weights().bytes() + 32 * sizeof(float));
    CHECK(part.cut->m.weights().bytes() >= 32 * 16 * sizeof(float));
    // A resolved cut is reused, not recomposed; one composed for another fuse_in is replaced.
    const auto again = head.resolve(part);
    CHECK(again.cut == part.cut);
    CHECK(part.cut->fuse_in == 80);
    auto changed = part;
    changed.fuse_in = 112;  // stage 0's slot cut partway instead of stage 1's
    const auto re = head.resolve(changed);
    REQUIRE(re.cut != nullptr);
    CHECK(re.cut != part.cut);
    CHECK(re.cut->stage == 0);
    const auto out = f.run(head, changed), ref = f.reference(112);
    check_close(out.data(), ref.data(), ref.size(), "folded head, a stale cut replaced", dh_rel, dh_abs);
    // with_defaults checks and fills in, never composes.
    CHECK(head.with_defaults(channels(80, 0, 0)).cut == nullptr);
    CHECK(head.with_defaults(channels(80, 0, 0)).pred_in == 32);
    // The unfolded head never composes anything.
    CHECK(f.build(false).resolve(channels(80, 0, 0)).cut == nullptr);
  }

  TEST_CASE("mlp_decode_head with a later stage at the stage-0 size (the in-place concat write)") {
    const head_fixture f({6, 6, 3, 2}, {5, 5, 3, 2});
    for (const bool fold : {true, false}) {
    INFO("folded: " << fold);
    const auto head = f.build(fold);
    const auto out = f.run(head);
    const auto ref = f.reference();
    check_close(out.data(), ref.data(), ref.size(), "decode head, stage 1 at 6x5", dh_rel, dh_abs);
    const auto outp = f.run(head, channels(48, 7, 3));  // stage 2 full, stage 1 partly
    const auto refp = f.reference(48, 7, 3);
    check_close(outp.data(), refp.data(), refp.size(), "decode head, stage 1 at 6x5, fuse_in=48", dh_rel, dh_abs);
    }
  }

  TEST_CASE("mlp_decode_head channel prefixes equal the reference with the dropped channels zeroed") {
    const head_fixture f;
    for (const bool fold : {true, false}) {
    INFO("folded: " << fold);
    const auto head = f.build(fold);
    const auto full = f.reference();
    // Both ways of running a path give the same logits: with propagation the dropped linear outputs
    // are never computed; without it the linears run in full and the fuse conv reads a prefix.
    auto check_path = [&](std::size_t fuse_in, std::size_t pred_in, std::size_t linear0_in) {
      const auto ref = f.reference(fuse_in, pred_in, linear0_in);
      std::vector<float> first;
      for (bool propagate : {true, false}) {
        const std::string what = "fuse_in=" + std::to_string(fuse_in) + " pred_in=" + std::to_string(pred_in) +
                                 " linear0_in=" + std::to_string(linear0_in) +
                                 " propagate=" + std::to_string(propagate);
        const auto out = f.run(head, channels(fuse_in, pred_in, linear0_in, propagate));
        check_close(out.data(), ref.data(), ref.size(), what, dh_rel, dh_abs);
        if (first.empty()) first = out;
      }
      // The path really differs from the full head, so the checks above can fail.
      INFO("fuse_in=" << fuse_in << " pred_in=" << pred_in << " linear0_in=" << linear0_in);
      CHECK(compare(ref.data(), full.data(), full.size()).rel_l2 > 1e-3);
      return first;
    };
    SUBCASE("fuse_in = 80 (stage 3's 32, stage 2's 32, 16 of stage 1's), pred_in = 20, linear0_in = 5") {
      CHECK(head.stage_outputs_kept(3, 80) == 32);
      CHECK(head.stage_outputs_kept(2, 80) == 32);
      CHECK(head.stage_outputs_kept(1, 80) == 16);
      CHECK(head.stage_outputs_kept(0, 80) == 0);
      const auto out = check_path(80, 20, 5);
      // Stage 0's slice is dropped, so linear0_in cannot matter (with propagation stage 0 does not run).
      const auto same = f.run(head, channels(80, 20, 0));
      CHECK(out == same);
      CHECK(f.run(head, channels(80, 20, 5, false)) == f.run(head, channels(80, 20, 0, false)));
    }
    SUBCASE("stage 0 partly kept, so linear0_in matters") {
      CHECK(head.stage_outputs_kept(0, 112) == 16);
      check_path(112, 20, 5);
      check_path(128, 32, 5);
      check_path(128, 32, 1);
      check_path(97, 31, 7);
    }
    SUBCASE("edges of the prefixes") {
      check_path(32, 32, 0);  // stage 3 only
      check_path(1, 1, 0);
      check_path(33, 32, 0);  // one channel of stage 2
      check_path(96, 1, 0);   // stage 0 dropped exactly at its boundary
      check_path(128, 17, 0);
    }
    }
  }

  TEST_CASE("mlp_decode_head resolves defaults and rejects prefixes beyond the model") {
    const head_fixture f;
    for (const bool fold : {true, false}) {
    INFO("folded: " << fold);
    const auto head = f.build(fold);
    const auto r = head.resolve({});
    CHECK(r.fuse_in == 128);
    CHECK(r.pred_in == 32);
    CHECK(r.linear0_in == 8);
    const auto r2 = head.resolve(channels(80, 0, 5));
    CHECK(r2.fuse_in == 80);
    CHECK(r2.pred_in == 32);
    CHECK(r2.linear0_in == 5);
    CHECK_THROWS_WITH_AS(
        head.resolve(channels(129, 0, 0)),
        "decode head: channels fuse_in=129 (max 128), pred_in=32 (max 32), linear0_in=8 (max 8) exceed "
        "the model",
        drt::invalid_input);
    CHECK_THROWS_WITH_AS(head.resolve(channels(64, 33, 0)),
                         "decode head: channels fuse_in=64 (max 128), pred_in=33 (max 32), linear0_in=8 (max 8) exceed "
                         "the model",
                         drt::invalid_input);
    CHECK_THROWS_WITH_AS(
        head.resolve(channels(0, 0, 9)),
        "decode head: channels fuse_in=128 (max 128), pred_in=32 (max 32), linear0_in=9 (max 8) exceed "
        "the model",
        drt::invalid_input);
    std::vector<float> logits(f.pixels() * f.classes, 1e9f);
    CHECK_THROWS_AS(head.run(f.inputs(), f.n, f.hs, f.ws, logits.data(), channels(129, 0, 0)), drt::invalid_input);
    std::size_t written = 0;
    for (float v : logits) written += v != 1e9f;
    CHECK(written == 0);
    }
  }

}  // TEST_SUITE("layers")
