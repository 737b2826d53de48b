// Executor: a graph composed with a policy, on a fake graph with a fake clock, on SegFormer and on
// one table mixing SegFormer, Swin + UPerNet and ResNet entries.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include <drt/engine/executor.hpp>

#include "test_support.hpp"

namespace {
drt::lut_entry entry(const std::string& model, const std::string& path, double ms, double miou) {
  drt::lut_entry e;
  e.model = model;
  e.path = path;
  e.latency_ms = ms;
  e.latency_p95_ms = ms;
  e.miou = miou;
  return e;
}

/// Time stands still except when the fake graph runs: a path takes its table latency x speed.
struct fake_clock {
  const double* t;
  double now_ms() const { return *t; }
};
struct fake_graph {
  using input_type = int;
  using output_type = std::string;
  struct plan_type {
    double ms;
    std::string path;
  };
  double* t;
  const double* speed;
  mutable int planned = 0;
  plan_type plan(const drt::lut_entry& e) const {
    ++planned;
    if (e.path == "bad") throw drt::invalid_input("fake: path 'bad' does not apply");
    return {e.latency_ms, e.path};
  }
  output_type run(const int& x, const plan_type& p) const {
    *t += p.ms * *speed;
    return p.path + "/" + std::to_string(x);
  }
};
}  // namespace

TEST_SUITE("engine") {
  TEST_CASE("executor: plans once, runs the chosen path, returns it with the accuracy estimate") {
    drt::lookup_table t;
    t.entries = {entry("m", "small", 10, 0.4), entry("m", "mid", 20, 0.5), entry("m", "big", 40, 0.6),
                 entry("m", "slow", 50, 0.55)};  // dominated: never planned
    double now = 0, speed = 1;
    fake_graph g{&now, &speed};
    drt::executor<fake_graph, drt::lut_policy, fake_clock> ex(g, drt::lut_policy(t), fake_clock{&now});
    CHECK(ex.graph().planned == 3);
    auto r = ex.run(7, 25);
    CHECK(r.output == "mid/7");
    CHECK(r.entry.path == "mid");
    CHECK(r.choice.expected_miou == 0.5);
    CHECK(r.choice.fits);
    CHECK(r.measured_ms == 20);
    CHECK_FALSE(r.missed);
    speed = 1.5;  // open loop: keeps choosing "mid" and misses
    r = ex.run(8, 25);
    CHECK(r.entry.path == "mid");
    CHECK(r.measured_ms == 30);
    CHECK(r.missed);
    r = ex.run(9, 5);
    CHECK_FALSE(r.choice.fits);
    CHECK(r.entry.path == "small");
    CHECK_THROWS_WITH_AS(ex.run(1, -2),
                         "budget -2 ms is impossible: a frame budget must be a positive, finite number of milliseconds",
                         drt::invalid_input);
    t.entries.push_back(entry("m", "bad", 5, 0.1));
    CHECK_THROWS_WITH_AS(
        (drt::executor<fake_graph, drt::lut_policy, fake_clock>(g, drt::lut_policy(t), fake_clock{&now})),
        "lookup table: entry 4 (m 'bad'): fake: path 'bad' does not apply", drt::invalid_input);
  }

  TEST_CASE("executor: with deadline_controller the loop adapts when the machine slows down") {
    drt::lookup_table t;
    for (int i = 1; i <= 8; ++i) t.entries.push_back(entry("m", "p" + std::to_string(i), 5.0 * i, 0.3 + 0.03 * i));
    double now = 0, speed = 1;
    fake_graph g{&now, &speed};
    drt::executor<fake_graph, drt::deadline_controller, fake_clock> ex(g, drt::deadline_controller(t),
                                                                       fake_clock{&now});
    int misses = 0;
    std::string before, after;
    for (int f = 0; f < 300; ++f) {
      speed = f < 150 ? 1.0 : 2.0;
      const auto r = ex.run(f, 33);
      misses += r.missed ? 1 : 0;
      if (f == 149) before = r.entry.path;
      if (f == 299) after = r.entry.path;
    }
    CHECK(before == "p6");  // 30 ms fits 33 ms (no noise: the margin is 1 after the warm-up frames)
    CHECK(after == "p3");   // 15 ms x 2 = 30 ms
    CHECK(misses <= 1);     // only the frame where the slowdown hits
  }

  TEST_CASE("executor: SegFormer graph with a lut_policy") {
    auto cfg = drt::standard_segformer_config("segformer-b0", 5);
    const auto model = drt::segformer_model::with_random_weights(cfg, 3);
    drt::lookup_table t;
    t.entries = {entry("b0", "full", 40, 0.6), entry("b0", "fuse_in=512 pred_in=128", 20, 0.5)};
    drt::executor<drt::model_graph, drt::lut_policy> ex(drt::model_graph("b0", model), drt::lut_policy(t));
    drt::tensor4 x = drt::tensor4::from_shape({1, 3, 64, 96});
    const auto v = drt_test::random_vector(x.size(), 11);
    std::copy(v.begin(), v.end(), x.begin());
    const auto r = ex.run(x, 30);
    CHECK(r.entry.path == "fuse_in=512 pred_in=128");
    CHECK(r.output.shape(1) == 5);
    CHECK(r.output.shape(2) == 16);
    CHECK(r.output.shape(3) == 24);
    CHECK(r.measured_ms > 0);
    const auto ref = model.forward(x, drt::segformer_path::parse("fuse_in=512 pred_in=128")).logits;
    CHECK(r.output == ref);
    drt::lookup_table other;
    other.entries = {entry("b2", "full", 40, 0.6)};
    CHECK_THROWS_WITH_AS((drt::executor<drt::model_graph, drt::lut_policy>(drt::model_graph("b0", model),
                                                                               drt::lut_policy(other))),
                         "lookup table: entry 0 (b2 'full'): needs model 'b2', which is not loaded (loaded: b0)",
                         drt::invalid_input);
    other.entries = {entry("b0", "depths=3,2,2,2", 40, 0.6)};
    CHECK_THROWS_WITH_AS((drt::executor<drt::model_graph, drt::lut_policy>(drt::model_graph("b0", model),
                                                                               drt::lut_policy(other))),
                         "lookup table: entry 0 (b0 'depths=3,2,2,2'): path 'depths=3,2,2,2': stage 0 depth 3 exceeds "
                         "the model's 2",
                         drt::invalid_input);
    // An entry measured on the other decoder graph is refused: its latency belongs to that graph.
    other.entries = {entry("b0", "full", 40, 0.6)};
    other.entries[0].decoder_folded = false;
    CHECK_THROWS_WITH_AS((drt::executor<drt::model_graph, drt::lut_policy>(drt::model_graph("b0", model),
                                                                               drt::lut_policy(other))),
                         "lookup table: entry 0 (b0 'full'): was measured with the decoder unfolded but model 'b0' is "
                         "loaded folded (load it as the table says: lut_build)",
                         drt::invalid_input);
    CHECK_FALSE(drt::lut_decoder_folded(other, "b0", "lut"));
    CHECK(drt::lut_decoder_folded(t, "b0", "lut"));
    other.entries.push_back(entry("b0", "pred_in=128", 30, 0.5));  // folded: the two disagree
    CHECK_THROWS_WITH_AS(drt::lut_decoder_folded(other, "b0", "lut 'x.json'"),
                         "lut 'x.json': the entries of model 'b0' mix folded and unfolded decoders; a table is "
                         "measured on one graph per model",
                         drt::invalid_input);
    CHECK_THROWS_WITH_AS(drt::lut_decoder_folded(other, "b1", "lut 'x.json'"),
                         "lut 'x.json': no entry uses model 'b1'", drt::invalid_input);
    other.entries = {entry("b0", "depths=3,2,2,2", 40, 0.6)};
    other.source = "lut 'other.json'";  // as load_lut names a table read from a file
    CHECK_THROWS_WITH_AS((drt::executor<drt::model_graph, drt::lut_policy>(drt::model_graph("b0", model),
                                                                               drt::lut_policy(other))),
                         "lut 'other.json': entry 0 (b0 'depths=3,2,2,2'): path 'depths=3,2,2,2': stage 0 depth 3 "
                         "exceeds the model's 2",
                         drt::invalid_input);
  }

  TEST_CASE("executor: one model_graph runs SegFormer, Swin + UPerNet and ResNet entries of one table") {
    const auto seg = drt::segformer_model::with_random_weights(drt::standard_segformer_config("segformer-b0", 4), 1);
    auto ucfg = drt::standard_upernet_swin_config("swin-t-upernet", 4);
    ucfg.backbone.depths = {1, 1, 2, 1};
    ucfg.backbone.embed_dim = 16;
    ucfg.backbone.num_heads = {1, 1, 2, 2};
    ucfg.hidden_size = 32;
    const auto uper = drt::upernet_swin_model::with_random_weights(ucfg, 2);
    auto rcfg = drt::standard_resnet_config("resnet18", 7);
    const auto res = drt::resnet_model::with_random_weights(rcfg, 3);
    drt::lookup_table t;
    t.entries = {entry("seg", "pred_in=128", 50, 0.5), entry("uper", "depths=1,1,1,1 bottleneck_in=64", 30, 0.4),
                 entry("res", "depths=1,1,1,1 expand=0.5", 10, 0.3)};
    t.entries[1].family = "upernet";
    t.entries[2].family = "resnet";
    drt::model_graph g;
    g.add("seg", seg).add("uper", uper).add("res", res);
    drt::tensor4 x = drt::tensor4::from_shape({1, 3, 64, 64});
    const auto v = drt_test::random_vector(x.size(), 5);
    std::copy(v.begin(), v.end(), x.begin());
    // each plan runs its family's model under the compiled path, bit for bit as the model's forward
    const auto p_seg = g.plan(t.entries[0]);
    const auto p_uper = g.plan(t.entries[1]);
    const auto p_res = g.plan(t.entries[2]);
    CHECK(p_seg.family == "segformer");
    CHECK(p_uper.family == "upernet");
    CHECK(p_res.family == "resnet");
    CHECK(g.run(x, p_seg) == seg.forward(x, drt::segformer_path::parse("pred_in=128")).logits);
    const auto u = g.run(x, p_uper);
    CHECK(u == uper.forward(x, drt::upernet_path::parse("depths=1,1,1,1 bottleneck_in=64")).logits);
    CHECK(u.shape(2) == 64);  // UPerNet's logits are upsampled to the input
    const auto r = g.run(x, p_res);
    const auto rl = res.forward(x, drt::resnet_path::parse("depths=1,1,1,1 expand=0.5")).logits;
    REQUIRE(r.shape(0) == 1);
    REQUIRE(r.shape(1) == 7);
    CHECK(r.shape(2) == 1);
    CHECK(std::equal(rl.begin(), rl.end(), r.begin()));
    // the budget picks across families
    drt::executor<drt::model_graph, drt::lut_policy> ex(g, drt::lut_policy(t));
    CHECK(ex.run(x, 35).entry.model == "uper");
    CHECK(ex.run(x, 12).entry.model == "res");
    // a path of one family given to a model of another is refused with both named
    drt::lookup_table bad;
    bad.entries = {entry("uper", "pred_in=16", 30, 0.4)};  // written as a segformer entry
    CHECK_THROWS_WITH_AS((drt::executor<drt::model_graph, drt::lut_policy>(g, drt::lut_policy(bad))),
                         "lookup table: entry 0 (uper 'pred_in=16'): is a segformer path but model 'uper' is loaded "
                         "as a upernet model",
                         drt::invalid_input);
    bad.entries[0].family = "upernet";
    bad.entries[0].path = "bottleneck_in=5000";
    CHECK_THROWS_WITH_AS((drt::executor<drt::model_graph, drt::lut_policy>(g, drt::lut_policy(bad))),
                         "lookup table: entry 0 (uper 'bottleneck_in=5000'): path 'bottleneck_in=5000': "
                         "bottleneck_in=5000 must be between 1 and 128",
                         drt::invalid_input);
  }
}
