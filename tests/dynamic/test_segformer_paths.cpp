// Property test: a dynamic path equals the full model whose dropped weights are zeroed and whose
// skipped blocks are replaced by the identity (their residual branches' output weights zeroed).
#include <doctest/doctest.h>

#include <random>

#include <drt/models/segformer.hpp>

#include "test_support.hpp"

using namespace drt_test;

namespace {
drt::segformer_config tiny_config() {
  auto c = drt::standard_segformer_config("segformer-b0", 7);
  c.hidden_sizes = {8, 16, 24, 32};
  c.num_attention_heads = {1, 2, 3, 4};
  c.depths = {2, 3, 2, 2};
  c.decoder_hidden_size = 24;
  return c;
}

/// The weights of the full model that computes what `path` computes.
drt::weight_source zeroed_source(const drt::segformer_config& c, const drt::segformer_path& p, unsigned seed) {
  const auto base = drt::random_source(seed);
  return [=](const std::string& name, const std::vector<std::int64_t>& shape) {
    auto v = base(name, shape);
    const std::size_t D = std::size_t(c.decoder_hidden_size), full = 4 * D;
    if (p.fuse_in && name == "decode_head.linear_fuse.weight")  // [D, 4D, 1, 1]: drop input columns
      for (std::size_t o = 0; o < D; ++o)
        for (std::size_t i = std::size_t(p.fuse_in); i < full; ++i) v[o * full + i] = 0.f;
    if (p.pred_in && name == "decode_head.classifier.weight") {  // [K, D, 1, 1]
      const std::size_t k = std::size_t(shape[0]);
      for (std::size_t o = 0; o < k; ++o)
        for (std::size_t i = std::size_t(p.pred_in); i < D; ++i) v[o * D + i] = 0.f;
    }
    if (p.linear0_in && name == "decode_head.linear_c.0.proj.weight") {  // [D, C0]
      const std::size_t c0 = std::size_t(shape[1]);
      for (std::size_t o = 0; o < D; ++o)
        for (std::size_t i = std::size_t(p.linear0_in); i < c0; ++i) v[o * c0 + i] = 0.f;
    }
    for (std::size_t s = 0; s < 4; ++s)
      for (int b = 0; b < c.depths[s]; ++b) {
        if (p.block_runs(s, std::size_t(b))) continue;
        const std::string pre = "segformer.encoder.block." + std::to_string(s) + "." + std::to_string(b) + ".";
        if (name == pre + "attention.output.dense.weight" || name == pre + "attention.output.dense.bias" ||
            name == pre + "mlp.dense2.weight" || name == pre + "mlp.dense2.bias")
          std::fill(v.begin(), v.end(), 0.f);
      }
    return v;
  };
}
}  // namespace

TEST_SUITE("dynamic") {
TEST_CASE("segformer: random dynamic paths equal the zeroed full model") {
  const auto cfg = tiny_config();
  const unsigned seed = 11;
  const drt::segformer_model model(cfg, drt::random_source(seed));
  std::mt19937 gen(2024);
  drt::tensor4 x = drt::tensor4::from_shape({2, 3, 72, 56});
  std::normal_distribution<float> nd;
  for (auto& v : x) v = nd(gen);
  for (int trial = 0; trial < 12; ++trial) {
    drt::segformer_path p;
    auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen); };
    p.depths = {pick(0, 2), pick(0, 3), pick(0, 2), pick(0, 2)};
    if (pick(0, 1)) p.skip.emplace_back(pick(0, 3), 0);
    p.fuse_in = pick(1, 96);
    p.pred_in = pick(1, 24);
    if (pick(0, 1)) p.linear0_in = pick(1, 8);
    p.propagate = pick(0, 3) != 0;
    CAPTURE(p.to_string());
    const auto dyn = model.forward(x, p);
    const drt::segformer_model zeroed(cfg, zeroed_source(cfg, p, seed));
    const auto ref = zeroed.forward(x);
    check_close(dyn.logits.data(), ref.logits.data(), ref.logits.size(), "path " + p.to_string(), 1e-5, 1e-5);
    // The path must actually change the output, or the comparison proves nothing.
    const auto full = model.forward(x);
    CHECK(compare(full.logits.data(), ref.logits.data(), ref.logits.size()).rel_l2 > 1e-4);
  }
}
}
