// ResNet (models/resnet.hpp): the transformers fixtures (../shared/fixtures/resnet50-narrow), the
// basic / downsample_in_bottleneck / downsample_in_first_stage / backbone-checkpoint variants against
// a plain unfused reference written here (conv2d_ref + batch_norm_ref + pooling refs + linear_ref),
// config and checkpoint error messages, and the standard ResNet-50 built from its config alone.
// Tolerance: the project's (rel L2 <= 1e-4, max abs <= 1e-3 * max|ref|).
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <drt/layers/batch_norm.hpp>
#include <drt/layers/conv2d.hpp>
#include <drt/layers/linear.hpp>
#include <drt/layers/pooling.hpp>
#include <drt/models/resnet.hpp>

#include "test_support.hpp"

using namespace drt_test;

namespace {

nlohmann::json narrow_json() {
  return nlohmann::json::parse(R"({"model_type":"resnet","num_channels":3,"embedding_size":16,
    "hidden_sizes":[32,64,128,256],"depths":[3,4,6,3],"layer_type":"bottleneck","hidden_act":"relu",
    "downsample_in_first_stage":false,"downsample_in_bottleneck":false,
    "id2label":{"0":"LABEL_0","1":"LABEL_1","2":"LABEL_2"}})");
}

// ------------------------------------------------------------ plain reference (unfused, NHWC)

/// A checkpoint held in memory: name -> (shape, data).
struct checkpoint {
  std::map<std::string, std::pair<std::vector<std::int64_t>, std::vector<float>>> t;
  unsigned seed = 1;
  const std::vector<float>& add(const std::string& name, std::vector<std::int64_t> shape, float lo, float hi) {
    std::size_t n = 1;
    for (auto d : shape) n *= std::size_t(d);
    auto& e = t[name];
    e.first = std::move(shape);
    e.second = random_vector(n, seed++, lo, hi);
    return e.second;
  }
  const float* get(const std::string& name) const { return t.at(name).second.data(); }
  void save(const std::string& path) const {
    std::map<std::string, drt::safetensors_record> recs;
    for (const auto& [name, e] : t) recs[name] = drt::safetensors_record{e.first, e.second.data(), nullptr};
    drt::save_safetensors(path, recs);
  }
};

/// Adds a conv (no bias) + BatchNorm as transformers names them (ResNetConvLayer / ResNetShortCut).
void add_conv_bn(checkpoint& ck, const std::string& p, std::int64_t in, std::int64_t out, std::int64_t k) {
  const float a = 1.0f / std::sqrt(float(in * k * k));
  ck.add(p + "convolution.weight", {out, in, k, k}, -a, a);
  ck.add(p + "normalization.weight", {out}, 0.7f, 1.3f);
  ck.add(p + "normalization.bias", {out}, -0.2f, 0.2f);
  ck.add(p + "normalization.running_mean", {out}, -0.2f, 0.2f);
  ck.add(p + "normalization.running_var", {out}, 0.5f, 1.5f);
}

/// Random weights for every tensor of `cfg` (written independently of the model's loader).
checkpoint make_checkpoint(const drt::resnet_config& cfg, const std::string& prefix, bool classifier) {
  checkpoint ck;
  add_conv_bn(ck, prefix + "embedder.embedder.", cfg.num_channels, cfg.embedding_size, 7);
  std::int64_t in = cfg.embedding_size;
  for (std::size_t s = 0; s < cfg.depths.size(); ++s) {
    const std::int64_t out = cfg.hidden_sizes[s];
    for (int j = 0; j < cfg.depths[s]; ++j) {
      const std::string p = prefix + "encoder.stages." + std::to_string(s) + ".layers." + std::to_string(j) + ".";
      const std::int64_t bin = j == 0 ? in : out;
      const bool strided = j == 0 && (s > 0 || cfg.downsample_in_first_stage);
      if (cfg.layer_type == drt::resnet_layer_type::bottleneck) {
        add_conv_bn(ck, p + "layer.0.", bin, out / 4, 1);
        add_conv_bn(ck, p + "layer.1.", out / 4, out / 4, 3);
        add_conv_bn(ck, p + "layer.2.", out / 4, out, 1);
      } else {
        add_conv_bn(ck, p + "layer.0.", bin, out, 3);
        add_conv_bn(ck, p + "layer.1.", out, out, 3);
      }
      if (bin != out || strided) add_conv_bn(ck, p + "shortcut.", bin, out, 1);
    }
    in = out;
  }
  if (classifier) {
    const auto k = std::int64_t(cfg.num_classes());
    ck.add("classifier.1.weight", {k, in}, -0.1f, 0.1f);
    ck.add("classifier.1.bias", {k}, -0.1f, 0.1f);
  }
  return ck;
}

struct feature {
  std::vector<float> v;  // NHWC
  std::size_t h = 0, w = 0, c = 0;
};

/// Conv2d(bias=False) + BatchNorm2d (+ ReLU), unfused, padding k // 2.
feature ref_conv_bn(const checkpoint& ck, const std::string& p, const feature& x, std::size_t out, std::size_t k,
                    std::size_t stride, bool relu) {
  drt::conv2d_shape s;
  s.in_channels = x.c;
  s.out_channels = out;
  s.kernel_h = s.kernel_w = k;
  s.stride_h = s.stride_w = stride;
  s.pad_h = s.pad_w = k / 2;
  feature y{{}, s.out_h(x.h), s.out_w(x.w), out};
  std::vector<float> conv(y.h * y.w * out);
  drt::conv2d_ref(x.v.data(), 1, x.h, x.w, ck.get(p + "convolution.weight"), nullptr, s, conv.data());
  y.v.resize(conv.size());
  drt::batch_norm_ref(y.h * y.w, out, conv.data(), ck.get(p + "normalization.weight"), ck.get(p + "normalization.bias"),
                      ck.get(p + "normalization.running_mean"), ck.get(p + "normalization.running_var"), 1e-5f,
                      y.v.data());
  if (relu)
    for (auto& v : y.v) v = std::max(v, 0.f);
  return y;
}

/// ResNetForImageClassification.forward, batch 1, step by step as modeling_resnet.py writes it.
std::vector<feature> ref_forward(const drt::resnet_config& cfg, const checkpoint& ck, const std::string& prefix,
                                 const drt::tensor4& px, std::vector<float>* logits) {
  feature x{std::vector<float>(px.size()), px.shape(2), px.shape(3), px.shape(1)};
  const auto nhwc = drt::nchw_to_nhwc(px.data(), 1, x.c, x.h, x.w);
  std::copy(nhwc.begin(), nhwc.end(), x.v.begin());
  std::vector<feature> hidden;
  const auto stem = ref_conv_bn(ck, prefix + "embedder.embedder.", x, std::size_t(cfg.embedding_size), 7, 2, true);
  const drt::pool2d_shape mp{3, 2, 1};
  feature pooled{std::vector<float>(mp.out(stem.h) * mp.out(stem.w) * stem.c), mp.out(stem.h), mp.out(stem.w), stem.c};
  drt::max_pool2d_ref(stem.v.data(), 1, stem.h, stem.w, stem.c, mp, pooled.v.data());
  hidden.push_back(pooled);
  feature cur = pooled;
  for (std::size_t s = 0; s < cfg.depths.size(); ++s) {
    const std::size_t out = std::size_t(cfg.hidden_sizes[s]);
    for (int j = 0; j < cfg.depths[s]; ++j) {
      const std::string p = prefix + "encoder.stages." + std::to_string(s) + ".layers." + std::to_string(j) + ".";
      const std::size_t stride = j == 0 && (s > 0 || cfg.downsample_in_first_stage) ? 2 : 1;
      feature y;
      if (cfg.layer_type == drt::resnet_layer_type::bottleneck) {
        const bool dib = cfg.downsample_in_bottleneck;
        const auto a = ref_conv_bn(ck, p + "layer.0.", cur, out / 4, 1, dib ? stride : 1, true);
        const auto b = ref_conv_bn(ck, p + "layer.1.", a, out / 4, 3, dib ? 1 : stride, true);
        y = ref_conv_bn(ck, p + "layer.2.", b, out, 1, 1, false);
      } else {
        const auto a = ref_conv_bn(ck, p + "layer.0.", cur, out, 3, stride, true);
        y = ref_conv_bn(ck, p + "layer.1.", a, out, 3, 1, false);
      }
      const feature res =
          cur.c != out || stride != 1 ? ref_conv_bn(ck, p + "shortcut.", cur, out, 1, stride, false) : cur;
      REQUIRE(res.v.size() == y.v.size());
      for (std::size_t i = 0; i < y.v.size(); ++i) y.v[i] = std::max(y.v[i] + res.v[i], 0.f);
      cur = std::move(y);
    }
    hidden.push_back(cur);
  }
  if (logits) {
    std::vector<float> avg(cur.c);
    drt::adaptive_avg_pool2d_ref(cur.v.data(), 1, cur.h, cur.w, cur.c, avg.data(), 1, 1);
    logits->resize(cfg.num_classes());
    drt::linear_ref(1, avg.data(), ck.get("classifier.1.weight"), ck.get("classifier.1.bias"), cfg.num_classes(), cur.c,
                    logits->data());
  }
  return hidden;
}

/// Writes config.json + model.safetensors for `cfg` into a fresh directory and returns it.
std::string write_model_dir(const std::string& name, const nlohmann::json& config, const checkpoint& ck) {
  const auto dir = std::filesystem::temp_directory_path() / ("drt_test_resnet_" + name);
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json") << config.dump(2);
  ck.save((dir / "model.safetensors").string());
  return dir.string();
}
}  // namespace

TEST_SUITE("models") {
  TEST_CASE("resnet50-narrow fixture: logits and hidden states match transformers") {
    const std::string dir = shared_dir() + "/fixtures/resnet50-narrow";
    if (!require_file(dir + "/model.safetensors")) return;
    // Both forms of the stride-1 3x3 convs, chosen when the model is built.
    for (const bool winograd : {true, false}) {
      drt::conv2d_options convs;
      convs.winograd = winograd;
      const auto model = drt::resnet_model::from_dir(dir, {}, convs);
      CHECK(model.conv_options().winograd == winograd);
      CHECK(model.has_classifier());
      CHECK(model.num_classes() == 10);
      CHECK(model.num_stages() == 4);
      for (const char* name : {"case_64x64", "case_120x160", "case_224x224"}) {
        SUBCASE((std::string(name) + (winograd ? " (Winograd)" : " (implicit GEMM)")).c_str()) {
          const std::string path = dir + "/" + name + ".safetensors";
          if (!require_file(path)) return;
          const drt::safetensors_file io(path);
          const auto x = as_tensor4(io.read_float("pixel_values"));
          const auto out = model.forward(x, true);
          const auto ref = io.read_float("logits");
          check_shape(out.logits, ref.shape);
          check_close(out.logits.data(), ref.data.data(), ref.data.size(), std::string(name) + " logits");
          REQUIRE(out.hidden_states.size() == 5);
          for (std::size_t s = 0; s < 5; ++s) {
            const std::string key = "hidden_state" + std::to_string(s);
            REQUIRE(io.contains(key));
            const auto r = io.read_float(key);
            check_shape(out.hidden_states[s], r.shape);
            check_close(out.hidden_states[s].data(), r.data.data(), r.data.size(), std::string(name) + " " + key);
          }
          // The backbone path gives the same maps, NHWC.
          const auto maps = model.features(x);
          REQUIRE(maps.size() == 5);
          const auto sizes = model.feature_sizes(x.shape(2), x.shape(3));
          for (std::size_t s = 0; s < 5; ++s) {
            const auto nchw = drt::nhwc_to_nchw(maps[s]);
            CHECK(maps[s].shape(1) == sizes[s].first);
            CHECK(maps[s].shape(2) == sizes[s].second);
            CHECK(maps[s].shape(3) == model.config().feature_channels()[s]);
            CHECK(std::equal(nchw.begin(), nchw.end(), out.hidden_states[s].begin()));
          }
        }
      }
    }
  }

  // Issue 20: precision on ResNet: the stages' 1x1 convs (reduce, expand, shortcut projections) in bf16
  // or int8 with each call's own input range; the stem, the 3x3 convs and the classifier fp32. Bounds
  // about 2-3x the measured error against transformers' fp32 outputs (DRT_TEST_VERBOSE prints it):
  // 64x64 / 224x224: bf16 logits rel L2 3.9e-3 / 4.0e-3, stage 4 5.6e-3 / 7.0e-3; int8 1.3e-2 /
  // 9.0e-3, 2.1e-2 / 2.3e-2.
  TEST_CASE("resnet50-narrow fixture in bf16 and int8 stays within the stated error of transformers") {
    const std::string dir = shared_dir() + "/fixtures/resnet50-narrow";
    if (!require_file(dir + "/model.safetensors")) return;
    const auto model = drt::resnet_model::from_dir(dir);
    struct bound {
      const char* path;
      double logits, features;
    };
    for (const char* name : {"case_64x64", "case_224x224"}) {
      const std::string file = dir + "/" + name + ".safetensors";
      if (!require_file(file)) return;
      const drt::safetensors_file io(file);
      const auto x = as_tensor4(io.read_float("pixel_values"));
      const auto logits = io.read_float("logits"), last = io.read_float("hidden_state4");
      for (const bound& b : {bound{"precision=bf16", 1e-2, 2e-2}, bound{"precision=int8", 3e-2, 5e-2}}) {
        CAPTURE(name);
        CAPTURE(std::string(b.path));
        const auto out = model.forward(x, drt::resnet_path::parse(b.path), true);
        const double el = compare(out.logits.data(), logits.data.data(), logits.data.size()).rel_l2;
        const double ef = compare(out.hidden_states[4].data(), last.data.data(), last.data.size()).rel_l2;
        if (std::getenv("DRT_TEST_VERBOSE")) MESSAGE(std::string(name) << " " << std::string(b.path) << ": logits rel L2 " << el << ", stage 4 " << ef);
        CHECK(el <= b.logits);
        CHECK(ef <= b.features);
        CHECK(ef > 1e-5);  // the 1x1 convs did run in low precision
      }
    }
    // The layer list says what runs in which arithmetic: the 1x1 convs in the path's, the rest fp32.
    const auto layers = model.layers(64, 64, model.compile(drt::resnet_path::parse("precision=int8")));
    std::size_t lowered = 0;
    for (const auto& l : layers) {
      CAPTURE(l.name);
      const bool one = l.kind == drt::layer_kind::conv && l.r == 1;
      CHECK(l.arithmetic == (one ? drt::precision::int8 : drt::precision::fp32));
      lowered += one;
    }
    CHECK(lowered == 16 * 2 + 4);  // 16 bottlenecks x (reduce, expand) + 4 shortcut projections
    CHECK_THROWS_WITH_AS(model.compile(drt::resnet_path::parse("precision=decoder:int8")),
                         "path 'precision=decoder:int8': precision region 'decoder' is not a region of resnet "
                         "(regions: encoder)",
                         drt::invalid_input);
  }

  TEST_CASE("resnet variants against a plain reference: basic, downsample_in_bottleneck, downsample_in_first_stage") {
    struct variant {
      const char* name;
      const char* layer_type;
      bool dib, difs;
      std::size_t h, w;
    };
    const variant variants[] = {
        {"bottleneck", "bottleneck", false, false, 37, 29},
        {"bottleneck_dib", "bottleneck", true, false, 37, 29},
        {"bottleneck_dib_difs", "bottleneck", true, true, 45, 33},
        {"basic", "basic", false, false, 37, 29},
        {"basic_difs", "basic", false, true, 45, 33},
    };
    for (const auto& v : variants) {
      SUBCASE(v.name) {
        auto j = nlohmann::json::parse(R"({"model_type":"resnet","num_channels":3,"embedding_size":8,
        "hidden_sizes":[12,20,24],"depths":[2,1,2],"hidden_act":"relu",
        "id2label":{"0":"a","1":"b","2":"c","3":"d","4":"e"}})");
        j["layer_type"] = v.layer_type;
        j["downsample_in_bottleneck"] = v.dib;
        j["downsample_in_first_stage"] = v.difs;
        if (std::string(v.layer_type) == "basic") j["hidden_sizes"] = {8, 12, 20};  // stage 0 keeps the width
        const auto cfg = drt::parse_resnet_config(j, "config.json");
        const auto ck = make_checkpoint(cfg, "resnet.", true);
        const auto model = drt::resnet_model::from_dir(write_model_dir(v.name, j, ck));
        drt::tensor4 x = drt::tensor4::from_shape({1, 3, v.h, v.w});
        const auto px = random_vector(x.size(), 99, -2.f, 2.f);
        std::copy(px.begin(), px.end(), x.data());
        std::vector<float> ref_logits;
        const auto ref = ref_forward(cfg, ck, "resnet.", x, &ref_logits);
        const auto out = model.forward(x, true);
        REQUIRE(out.hidden_states.size() == ref.size());
        for (std::size_t s = 0; s < ref.size(); ++s) {
          const auto mine = drt::nchw_to_nhwc(out.hidden_states[s].data(), 1, out.hidden_states[s].shape(1),
                                              out.hidden_states[s].shape(2), out.hidden_states[s].shape(3));
          REQUIRE(mine.shape(1) == ref[s].h);
          REQUIRE(mine.shape(2) == ref[s].w);
          REQUIRE(mine.shape(3) == ref[s].c);
          check_close(mine.data(), ref[s].v.data(), ref[s].v.size(),
                      std::string(v.name) + " hidden_state" + std::to_string(s));
        }
        check_shape(out.logits, {1, 5});
        check_close(out.logits.data(), ref_logits.data(), ref_logits.size(), std::string(v.name) + " logits");
      }
    }
  }

  TEST_CASE("resnet backbone checkpoint (ResNetModel / ResNetBackbone keys, no classifier)") {
    auto j = nlohmann::json::parse(R"({"model_type":"resnet","embedding_size":8,"hidden_sizes":[16,24],
    "depths":[1,2],"layer_type":"bottleneck","id2label":{"0":"LABEL_0","1":"LABEL_1"}})");
    const auto cfg = drt::parse_resnet_config(j, "config.json");
    const auto ck = make_checkpoint(cfg, "", false);
    const auto dir = write_model_dir("backbone", j, ck);
    const auto model = drt::resnet_model::from_dir(dir);
    CHECK_FALSE(model.has_classifier());
    drt::tensor4 x = drt::tensor4::from_shape({1, 3, 40, 24});
    const auto px = random_vector(x.size(), 5);
    std::copy(px.begin(), px.end(), x.data());
    const auto ref = ref_forward(cfg, ck, "", x, nullptr);
    const auto maps = model.features(x);
    REQUIRE(maps.size() == 3);
    for (std::size_t s = 0; s < 3; ++s) {
      REQUIRE(maps[s].size() == ref[s].v.size());
      check_close(maps[s].data(), ref[s].v.data(), ref[s].v.size(), "backbone feature " + std::to_string(s));
    }
    const auto out = model.forward(x);
    check_shape(out.logits, {1, 0});
    check_shape(out.pooled, {1, 24});
    CHECK(out.hidden_states.empty());
    // Without id2label the config has no classes either.
    j.erase("id2label");
    CHECK(drt::parse_resnet_config(j, "config.json").num_classes() == 0);
  }

  TEST_CASE("resnet config: fields read, defaults, real fixture config") {
    const auto c = drt::parse_resnet_config(narrow_json(), "config.json");
    CHECK(c.embedding_size == 16);
    CHECK(c.hidden_sizes == std::vector<int>{32, 64, 128, 256});
    CHECK(c.depths == std::vector<int>{3, 4, 6, 3});
    CHECK(c.layer_type == drt::resnet_layer_type::bottleneck);
    CHECK(c.num_classes() == 3);
    CHECK(c.class_names[1] == "LABEL_1");
    CHECK(c.feature_channels() == std::vector<std::size_t>{16, 32, 64, 128, 256});
    const auto d = drt::parse_resnet_config(nlohmann::json::parse(R"({"model_type":"resnet"})"), "c.json");
    CHECK(d.embedding_size == 64);  // ResNetConfig defaults
    CHECK(d.hidden_sizes == std::vector<int>{256, 512, 1024, 2048});
    CHECK(d.depths == std::vector<int>{3, 4, 6, 3});
    CHECK_FALSE(d.downsample_in_first_stage);
    CHECK_FALSE(d.downsample_in_bottleneck);
    CHECK(d.num_classes() == 0);
    const std::string p = shared_dir() + "/fixtures/resnet50-narrow/config.json";
    if (!require_file(p)) return;
    const auto f = drt::load_resnet_config(p);
    CHECK(f.num_classes() == 10);
    CHECK(f.embedding_size == 16);
    CHECK(drt::read_model_type(p) == "resnet");
  }

  TEST_CASE("resnet config: unsupported or inconsistent values are rejected with the field named") {
    auto j = narrow_json();
    SUBCASE("unknown model_type") {
      j["model_type"] = "convnext";
      CHECK_THROWS_WITH_AS(drt::parse_resnet_config(j, "c.json"),
                           "config 'c.json': model_type 'convnext' is not supported here, expected 'resnet'",
                           drt::invalid_input);
    }
    SUBCASE("layer_type") {
      j["layer_type"] = "preactivation";
      CHECK_THROWS_WITH_AS(drt::parse_resnet_config(j, "c.json"),
                           "config 'c.json': layer_type 'preactivation' is not supported (basic, bottleneck)",
                           drt::invalid_input);
    }
    SUBCASE("activation") {
      j["hidden_act"] = "gelu";
      CHECK_THROWS_WITH_AS(drt::parse_resnet_config(j, "c.json"),
                           "config 'c.json': hidden_act 'gelu' is not supported (relu)", drt::invalid_input);
    }
    SUBCASE("list lengths") {
      j["depths"] = {3, 4, 6};
      CHECK_THROWS_WITH_AS(
          drt::parse_resnet_config(j, "c.json"),
          "config 'c.json': field 'depths' has 3 entries, expected one per entry of 'hidden_sizes' (4)",
          drt::invalid_input);
    }
    SUBCASE("non-positive entry") {
      j["hidden_sizes"] = {32, 0, 128, 256};
      CHECK_THROWS_WITH_AS(drt::parse_resnet_config(j, "c.json"),
                           "config 'c.json': field 'hidden_sizes' must hold integers in [1, 2^30], got [32,0,128,256]",
                           drt::invalid_input);
    }
    SUBCASE("empty list") {
      j["depths"] = nlohmann::json::array();
      CHECK_THROWS_WITH_AS(drt::parse_resnet_config(j, "c.json"), "config 'c.json': field 'depths' must not be empty",
                           drt::invalid_input);
    }
    SUBCASE("bottleneck too narrow") {
      j["hidden_sizes"] = {2, 64, 128, 256};
      CHECK_THROWS_WITH_AS(
          drt::parse_resnet_config(j, "c.json"),
          "config 'c.json': stage 0 hidden size 2 is too small for a bottleneck layer (reduction 4 leaves no channels)",
          drt::invalid_input);
    }
    SUBCASE("flag not a boolean") {
      j["downsample_in_bottleneck"] = 1;
      CHECK_THROWS_WITH_AS(drt::parse_resnet_config(j, "c.json"),
                           "config 'c.json': field 'downsample_in_bottleneck' must be true or false, got 1",
                           drt::invalid_input);
    }
    SUBCASE("embedding_size") {
      j["embedding_size"] = -8;
      CHECK_THROWS_WITH_AS(drt::parse_resnet_config(j, "c.json"),
                           "config 'c.json': field 'embedding_size' must be an integer in [1, 2^30], got -8",
                           drt::invalid_input);
    }
    SUBCASE("id2label with a gap") {
      j["id2label"] = {{"0", "a"}, {"2", "b"}};
      CHECK_THROWS_WITH_AS(drt::parse_resnet_config(j, "c.json"),
                           "config 'c.json': id2label keys must be 0..1, got '2'", drt::invalid_input);
    }
    SUBCASE("id2label not an object") {
      j["id2label"] = {"a", "b"};
      CHECK_THROWS_WITH_AS(drt::parse_resnet_config(j, "c.json"),
                           "config 'c.json': field 'id2label' must be an object {\"0\": name, ...}, got [\"a\",\"b\"]",
                           drt::invalid_input);
    }
    SUBCASE("unknown standard architecture") {
      CHECK_THROWS_WITH_AS(
          drt::standard_resnet_config("resnet42"),
          "unknown ResNet architecture 'resnet42' (resnet18, resnet34, resnet50, resnet101, resnet152)",
          drt::invalid_input);
    }
  }

  TEST_CASE("resnet model: weights of the wrong shape, missing classifier and bad inputs are named") {
    const std::string dir = shared_dir() + "/fixtures/resnet50-narrow";
    if (!require_file(dir + "/model.safetensors")) return;
    auto cfg = drt::load_resnet_config(dir + "/config.json");
    const drt::safetensors_file st(dir + "/model.safetensors");
    const std::string file = "safetensors '" + dir + "/model.safetensors': ";
    SUBCASE("stem wider than the checkpoint") {
      cfg.embedding_size = 64;
      CHECK_THROWS_WITH_AS(drt::resnet_model(cfg, st),
                           (file + "tensor 'resnet.embedder.embedder.convolution.weight' has shape [16, 3, 7, 7], "
                                   "expected [64, 3, 7, 7]")
                               .c_str(),
                           drt::shape_error);
    }
    SUBCASE("stage width") {
      cfg.hidden_sizes[2] = 256;
      CHECK_THROWS_WITH_AS(drt::resnet_model(cfg, st),
                           (file + "tensor 'resnet.encoder.stages.2.layers.0.layer.0.convolution.weight' has shape "
                                   "[32, 64, 1, 1], expected [64, 64, 1, 1]")
                               .c_str(),
                           drt::shape_error);
    }
    SUBCASE("basic layers on a bottleneck checkpoint") {
      cfg.layer_type = drt::resnet_layer_type::basic;
      CHECK_THROWS_WITH_AS(drt::resnet_model(cfg, st),
                           (file + "tensor 'resnet.encoder.stages.0.layers.0.layer.0.convolution.weight' has shape "
                                   "[8, 16, 1, 1], expected [32, 16, 3, 3]")
                               .c_str(),
                           drt::shape_error);
    }
    SUBCASE("more classes than the classifier") {
      cfg.class_names.resize(12, "x");
      CHECK_THROWS_WITH_AS(drt::resnet_model(cfg, st),
                           (file + "tensor 'classifier.1.weight' has shape [10, 256], expected [12, 256]").c_str(),
                           drt::shape_error);
    }
    SUBCASE("deeper than the checkpoint") {
      cfg.depths[3] = 4;
      CHECK_THROWS_WITH_AS(
          drt::resnet_model(cfg, st),
          (file + "missing tensor 'resnet.encoder.stages.3.layers.3.layer.0.convolution.weight'").c_str(),
          drt::invalid_input);
    }
    SUBCASE("input channels") {
      const drt::resnet_model m(cfg, st);
      drt::tensor4 x = drt::tensor4::from_shape({1, 1, 64, 64});
      CHECK_THROWS_WITH_AS(m.forward(x),
                           "resnet: pixel_values has shape [1, 1, 64, 64], expected [N, 3, H, W] with N, H, W >= 1",
                           drt::shape_error);
    }
  }

  TEST_CASE("standard resnet50 builds from its config alone and runs 64x64 (batch 2)") {
    const auto cfg = drt::standard_resnet_config("resnet50");
    CHECK(cfg.embedding_size == 64);
    CHECK(cfg.hidden_sizes == std::vector<int>{256, 512, 1024, 2048});
    CHECK(cfg.depths == std::vector<int>{3, 4, 6, 3});
    CHECK(cfg.layer_type == drt::resnet_layer_type::bottleneck);
    CHECK(cfg.num_classes() == 1000);
    const auto model = drt::resnet_model::with_random_weights(cfg, 3);
    // ResNet-50 at 224x224: 4.09 GMACs (conv + fc), the published figure.
    CHECK(model.total_macs(224, 224) == doctest::Approx(4.089e9).epsilon(0.005));
    const auto layers = model.macs(224, 224);
    CHECK(layers.size() == 1 + 16 * 3 + 4 + 1);  // stem, 16 blocks x 3 convs, 4 shortcuts, classifier
    CHECK(layers.front().name == "embedder.embedder");
    CHECK(layers.front().macs == doctest::Approx(112.0 * 112 * 64 * 3 * 49));
    CHECK(layers.back().name == "classifier.1");
    drt::tensor4 x = drt::tensor4::from_shape({2, 3, 64, 64});
    const auto px = random_vector(x.size(), 11, -2.f, 2.f);
    std::copy(px.begin(), px.end(), x.data());
    const auto out = model.forward(x, true);
    check_shape(out.logits, {2, 1000});
    check_shape(out.pooled, {2, 2048});
    REQUIRE(out.hidden_states.size() == 5);
    check_shape(out.hidden_states[0], {2, 64, 16, 16});
    check_shape(out.hidden_states[1], {2, 256, 16, 16});
    check_shape(out.hidden_states[2], {2, 512, 8, 8});
    check_shape(out.hidden_states[3], {2, 1024, 4, 4});
    check_shape(out.hidden_states[4], {2, 2048, 2, 2});
    for (float v : out.logits) REQUIRE(std::isfinite(v));
    // Batch entries are independent: image 1 alone gives the same logits.
    drt::tensor4 x1 = drt::tensor4::from_shape({1, 3, 64, 64});
    std::copy(x.data() + x1.size(), x.data() + 2 * x1.size(), x1.data());
    const auto out1 = model.forward(x1);
    check_close(out1.logits.data(), out.logits.data() + 1000, 1000, "resnet50 batch entry 1");
    // The basic-layer standard configs build too.
    CHECK(drt::resnet_model::with_random_weights(drt::standard_resnet_config("resnet18", 0)).num_classes() == 0);
  }
}
