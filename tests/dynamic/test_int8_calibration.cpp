// int8 calibration (dynamic/int8_calibration.hpp): the range each method chooses on known samples,
// the observer's exact [min, max], the JSON form and its errors, and calibration applied to a model.
#include <doctest/doctest.h>

#include <algorithm>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <drt/dynamic/int8_calibration.hpp>
#include <drt/models/segformer.hpp>

#include "test_support.hpp"

using namespace drt_test;

namespace {
/// 10000 values uniform in [-1, 1] and one outlier at 100.
drt::observed_range heavy_tail() {
  drt::observed_range r;
  std::mt19937 g(7);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (int i = 0; i < 10000; ++i) r.sample.push_back(u(g));
  r.sample.push_back(100.f);
  r.min = *std::min_element(r.sample.begin(), r.sample.end());
  r.max = 100.f;
  r.values = r.sample.size();
  return r;
}

drt::segformer_config small_segformer() {
  drt::segformer_config c = drt::standard_segformer_config("segformer-b0", 5);
  c.hidden_sizes = {8, 16, 24, 32};
  c.num_attention_heads = {1, 2, 3, 4};
  c.decoder_hidden_size = 16;
  return c;
}

drt::tensor4 pixels(std::size_t h, std::size_t w, unsigned seed) {
  drt::tensor4 x = drt::tensor4::from_shape({1, 3, h, w});
  const auto v = random_vector(x.size(), seed, -2.f, 2.f);
  std::copy(v.begin(), v.end(), x.data());
  return x;
}
}  // namespace

TEST_SUITE("dynamic") {
  TEST_CASE("int8 calibration: what minmax, percentile and mse choose on known samples") {
    const auto r = heavy_tail();
    const auto mm = drt::choose_range(r, drt::range_method::minmax);
    CHECK(mm.first == r.min);
    CHECK(mm.second == 100.f);
    const auto pc = drt::choose_range(r, drt::range_method::percentile);  // 99.99 %: the outlier is 1 in 10001
    CHECK(pc.second <= 1.f);
    CHECK(pc.second > 0.99f);
    CHECK(pc.first >= r.min);
    CHECK(pc.first < -0.99f);
    // mse keeps the outlier: clipping it to below 6 would cost (100 - 6)^2 / 10001 = 0.88 of squared
    // error, far more than the 0.013 its quantization step costs the uniform values.
    const auto ms = drt::choose_range(r, drt::range_method::mse);
    const double e_ms = drt::detail::u8_roundtrip_mse(r.sample, ms.first, ms.second);
    CHECK(ms.second == 100.f);
    CHECK(e_ms <= drt::detail::u8_roundtrip_mse(r.sample, mm.first, mm.second));
    CHECK(e_ms < drt::detail::u8_roundtrip_mse(r.sample, pc.first, pc.second));
    // a lower tail of a few far values (the GELU's or a LayerNorm's rare outliers): mse clips it
    drt::observed_range t;
    for (int i = 0; i < 10000; ++i) t.sample.push_back(float(i % 200) / 100.f);  // 0 .. 1.99
    t.sample.push_back(-3.f);
    t.min = -3.f, t.max = 1.99f;
    const auto tc = drt::choose_range(t, drt::range_method::mse);
    CHECK(tc.first > -3.f);
    CHECK(tc.second == 1.99f);
    CHECK(drt::detail::u8_roundtrip_mse(t.sample, tc.first, tc.second) <
          drt::detail::u8_roundtrip_mse(t.sample, t.min, t.max));
    CHECK(drt::parse_range_method("mse") == drt::range_method::mse);
    CHECK_THROWS_WITH_AS(drt::parse_range_method("kl"),
                         "int8 calibration method 'kl' is not one of minmax, percentile, mse", drt::invalid_input);
  }

  TEST_CASE("int8 calibration: every linear observed, ranges exact, applied at load, JSON round trip") {
    const auto cfg = small_segformer();
    auto model = drt::segformer_model::with_random_weights(cfg, 3);
    std::vector<std::string> names;
    model.for_each_linear([&](const std::string& n, drt::linear&) { names.push_back(n); });
    // 8 blocks x (q, k, v, o, dense1, dense2), the sr reduction of the 6 blocks of stages 1-3 (sr 8, 4,
    // 2), folded M_0..3, classifier
    REQUIRE(names.size() == 8 * 6 + 6 + 4 + 1);
    CHECK(names.front() == "segformer.encoder.block.0.0.attention.self.query");
    CHECK(names[3] == "segformer.encoder.block.0.0.attention.self.sr");
    CHECK(std::count(names.begin(), names.end(), "segformer.encoder.block.3.1.attention.self.sr") == 0);  // sr = 1
    CHECK(names.back() == "decode_head.classifier");
    const auto images = [&] {
      for (unsigned s = 0; s < 3; ++s) (void)model.forward(pixels(64, 48, 10 + s));
    };
    const auto cal = drt::calibrate_int8(model, images, drt::range_method::minmax, "three random images");
    CHECK(cal.ranges.size() == names.size());
    CHECK(cal.method == "minmax");
    // The first query's input is a LayerNorm output: its range is the exact [min, max] over the images.
    const auto& q = cal.ranges.at("segformer.encoder.block.0.0.attention.self.query");
    CHECK(q.first < 0.f);
    CHECK(q.second > 0.f);
    // JSON round trip, and the errors that name the file and the layer.
    const auto back = drt::int8_calibration::from_json(nlohmann::json::parse(cal.to_json().dump()), "f");
    CHECK(back.ranges == cal.ranges);
    CHECK(back.source == "three random images");
    CHECK_THROWS_WITH_AS(drt::int8_calibration::from_json(nlohmann::json::parse(R"({"ranges": {"a": [2, 1]}})"), "f.json"),
                         doctest::Contains("f.json: range of layer 'a' [2.000000, 1.000000] must be finite with lo <= hi"),
                         drt::invalid_input);
    CHECK_THROWS_WITH_AS(drt::int8_calibration::from_json(nlohmann::json::parse("[]"), "f.json"),
                         doctest::Contains("f.json: not an int8 calibration"), drt::invalid_input);
    auto other = cal;
    other.ranges["segformer.encoder.block.9.0.mlp.dense1"] = {0.f, 1.f};
    CHECK_THROWS_WITH_AS(drt::apply_int8_calibration(model, other, "ranges.json"),
                         "ranges.json: layer 'segformer.encoder.block.9.0.mlp.dense1' is not a GEMM layer of this model",
                         drt::invalid_input);
    // Loaded with the calibration: every layer carries its range; int8 stays close to fp32.
    drt::segformer_options opt;
    opt.int8 = std::make_shared<drt::int8_calibration>(cal);
    auto calibrated = drt::segformer_model::with_random_weights(cfg, 3, opt);
    std::size_t with_range = 0;
    calibrated.for_each_linear([&](const std::string& n, drt::linear& l) {
      const auto* p = l.input_quant();
      if (!p) return;
      ++with_range;
      const auto want = drt::quant_params_u8(cal.ranges.at(n).first, cal.ranges.at(n).second);
      CHECK(p->scale == want.scale);
      CHECK(p->zero_point == want.zero_point);
    });
    CHECK(with_range == names.size());
    const auto x = pixels(64, 48, 10);
    const auto ref = calibrated.forward(x).logits;
    for (const char* path : {"precision=int8", "precision=bf16", "precision=encoder:int8,decoder:bf16",
                             "mlp=0.5 fuse_in=40 precision=int8"}) {
      CAPTURE(path);
      const auto full = drt::segformer_path::parse(path).mlp.empty() && drt::segformer_path::parse(path).fuse_in == 0;
      const auto got = calibrated.forward(x, drt::segformer_path::parse(path)).logits;
      REQUIRE(got.size() == ref.size());
      if (!full) {  // a pruned path: compare with the same path in fp32
        auto p = drt::segformer_path::parse(path);
        p.precision = {};
        const auto want = calibrated.forward(x, p).logits;
        check_close(got.data(), want.data(), want.size(), path, 0.05, 1.0);
      } else {
        check_close(got.data(), ref.data(), ref.size(), path, 0.05, 1.0);
      }
    }
    // The unfolded decoder runs in fp32 only: a decoder precision is refused, naming it.
    const auto unfolded = drt::segformer_model::with_random_weights(cfg, 3, drt::segformer_options{false});
    CHECK_THROWS_WITH_AS(unfolded.compile(drt::segformer_path::parse("precision=bf16")),
                         "decode head: precision bf16 needs the folded decoder (the unfolded one runs in fp32 only)",
                         drt::invalid_input);
    CHECK_NOTHROW(unfolded.compile(drt::segformer_path::parse("precision=encoder:int8")));
  }
}
