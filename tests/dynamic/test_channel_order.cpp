// Channel orders (dynamic/channel_order.hpp): permuting a group's units is an exact rewrite of the
// full model (logits equal within float rounding, 1e-5 rel L2), the permuted tensors hold the
// checkpoint's slices in the new order, a prefix path under an order equals the full-width model of
// the chosen units, orders are permutations (bad ones are refused naming the group), calibration
// statistics cover every group, and the JSON form and fingerprint round-trip.
#include <doctest/doctest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

#include <drt/core/observer.hpp>
#include <drt/dynamic/channel_order.hpp>
#include <drt/models/segformer.hpp>
#include <drt/models/upernet_swin.hpp>

#include "test_support.hpp"

namespace {

drt::segformer_config small_config() {
  auto c = drt::standard_segformer_config("segformer-b0", 5);
  c.depths = {1, 2, 1, 1};
  return c;
}

/// Build options packing the model in `order` ("checkpoint": as stored).
drt::segformer_options packed(const drt::channel_order& order) {
  drt::segformer_options o;
  o.order = order;
  return o;
}
drt::segformer_options checkpoint_order() {
  drt::channel_order c;
  c.method = "checkpoint";
  return packed(c);
}

drt::tensor4 input(unsigned seed) {
  drt::tensor4 x = drt::tensor4::from_shape({1, 3, 64, 96});
  std::mt19937 g(seed);
  std::normal_distribution<float> nd;
  for (auto& v : x) v = nd(g);
  return x;
}

}  // namespace

TEST_SUITE("dynamic") {
  TEST_CASE("channel order: a permutation of the Mix-FFN hidden units is an exact rewrite") {
    const auto cfg = small_config();
    const auto base = drt::random_source(7);
    const auto groups = drt::segformer_model::channel_groups(cfg);
    REQUIRE(groups.size() == 11);  // per block its Mix-FFN's units and its heads, and the classifier's inputs
    CHECK(groups[10].name == "decode_head.classifier");
    CHECK(groups[10].refit);
    CHECK(!groups[1].refit);
    CHECK(groups[1].name == "segformer.encoder.block.1.0.mlp");
    CHECK(groups[1].units == 64 * 4);
    CHECK(groups[5].name == "segformer.encoder.block.0.0.attention");
    CHECK(groups[5].units == 1);
    CHECK(groups[9].name == "segformer.encoder.block.3.0.attention");
    CHECK(groups[9].units == 8);
    CHECK(drt::group_unit_size(groups[9]) == 256 / 8);

    const drt::segformer_model plain(cfg, base, checkpoint_order());
    CHECK(plain.order().is_identity());
    const auto order = drt::weight_order(base, groups);
    CHECK(order.method == "weight");
    CHECK(!order.is_identity());
    CHECK(order.groups.count("decode_head.classifier") == 0);  // refit groups: calibrated orders only
    const drt::segformer_model ordered(cfg, base, packed(order));
    // the default build computes the same weight order at load
    CHECK(drt::segformer_model(cfg, base).order().fingerprint() == order.fingerprint());
    const auto x = input(3);
    const auto a = plain.forward(x).logits, b = ordered.forward(x).logits;
    drt_test::check_close(b.data(), a.data(), a.size(), "logits, weight order vs checkpoint order", 1e-5, 1e-4);

    // The permuted tensors hold the checkpoint's slices in the new order: dense1 rows, dense2 columns.
    const auto& g = groups[2];
    const auto& p = order.groups.at(g.name);
    const auto src = drt::permuted_source(base, order, groups);
    const auto d1 = base(g.tensors[0].name, g.tensors[0].shape), d1p = src(g.tensors[0].name, g.tensors[0].shape);
    const auto d2 = base(g.tensors[4].name, g.tensors[4].shape), d2p = src(g.tensors[4].name, g.tensors[4].shape);
    const std::size_t C = std::size_t(g.tensors[0].shape[1]), H = g.units;
    for (std::size_t u : {std::size_t{0}, std::size_t{5}, H - 1}) {
      CHECK(d1p[u * C + 3] == d1[p[u] * C + 3]);
      CHECK(d2p[7 * H + u] == d2[7 * H + p[u]]);
    }
    // weight order: the units' weight-norm product descends along the order
    auto norm_product = [&](std::size_t unit) {
      double r = 0, c = 0;
      for (std::size_t i = 0; i < C; ++i) r += double(d1[unit * C + i]) * d1[unit * C + i];
      for (std::size_t o = 0; o < C; ++o) c += double(d2[o * H + unit]) * d2[o * H + unit];
      const auto dw = base(g.tensors[2].name, g.tensors[2].shape);
      double w = 0;
      for (std::size_t t = 0; t < 9; ++t) w += double(dw[unit * 9 + t]) * dw[unit * 9 + t];
      return std::sqrt(r * c * w);
    };
    CHECK(norm_product(p[0]) >= norm_product(p[1]));
    CHECK(norm_product(p[1]) >= norm_product(p[H - 1]));
  }

  TEST_CASE("channel order: a prefix path keeps exactly the units the order puts first") {
    // Under an order whose first units are those the checkpoint order would keep, mlp=0.5 is the
    // same computation: the reversed-then-reversed order is the identity on the kept half.
    const auto cfg = small_config();
    const auto base = drt::random_source(9);
    const auto groups = drt::segformer_model::channel_groups(cfg);
    drt::channel_order swap;  // swap the halves of every Mix-FFN, then keep the first half
    swap.method = "test";
    for (const auto& g : groups) {
      if (g.name.size() < 4 || g.name.compare(g.name.size() - 4, 4, ".mlp") != 0) continue;
      std::vector<std::uint32_t> p(g.units);
      for (std::size_t i = 0; i < g.units; ++i) p[i] = std::uint32_t((i + g.units / 2) % g.units);
      swap.groups[g.name] = p;
    }
    const drt::segformer_model plain(cfg, base, checkpoint_order()), swapped(cfg, base, packed(swap));
    const auto x = input(4);
    const auto half = drt::segformer_path::parse("mlp=0.5");
    const auto a = plain.forward(x, half).logits, b = swapped.forward(x, half).logits;
    // the two keep complementary halves: different outputs, neither equal to the full model
    CHECK(drt_test::compare(a.data(), b.data(), a.size()).rel_l2 > 1e-3);
    // swapping twice is the identity
    drt::channel_order twice = swap;
    for (auto& [name, p] : twice.groups)
      for (auto& v : p) v = std::uint32_t((v + p.size() / 2) % p.size());
    CHECK(twice.is_identity());
    const drt::segformer_model back(cfg, base, packed(twice));
    const auto c = back.forward(x, half).logits;
    drt_test::check_close(c.data(), a.data(), a.size(), "identity order, mlp=0.5", 1e-6, 1e-5);
    // the layer list counts the kept units
    const auto exec = plain.compile(half);
    for (const auto& l : plain.layers(64, 96, exec))
      if (l.name == "Stage2 Block1 mlp.dense1") CHECK(l.k == 128);
  }

  TEST_CASE("channel order: attention heads move as whole units; heads=e keeps the heads the order puts first") {
    const auto cfg = small_config();
    const auto base = drt::random_source(17);
    const auto groups = drt::segformer_model::channel_groups(cfg);
    drt::channel_order reversed;  // every block's heads in reverse, the other groups as stored
    reversed.method = "test";
    for (const auto& g : groups)
      if (g.name.size() > 10 && g.name.compare(g.name.size() - 10, 10, ".attention") == 0) {
        std::vector<std::uint32_t> p(g.units);
        for (std::size_t i = 0; i < g.units; ++i) p[i] = std::uint32_t(g.units - 1 - i);
        reversed.groups[g.name] = p;
      }
    REQUIRE(reversed.groups.size() == 5);
    const drt::segformer_model plain(cfg, base, checkpoint_order()), rev(cfg, base, packed(reversed));
    const auto x = input(6);
    const auto full = plain.forward(x).logits, full_rev = rev.forward(x).logits;
    drt_test::check_close(full_rev.data(), full.data(), full.size(), "logits, heads reversed", 1e-5, 1e-4);

    // whole heads move: query rows and output-projection columns in blocks of head_dim
    const std::string a = "segformer.encoder.block.3.0.attention";
    const std::size_t C = 256, d = 32;
    const auto src = drt::permuted_source(base, reversed, groups);
    const auto qw = base(a + ".self.query.weight", {256, 256}), qwp = src(a + ".self.query.weight", {256, 256});
    const auto ow = base(a + ".output.dense.weight", {256, 256}), owp = src(a + ".output.dense.weight", {256, 256});
    for (std::size_t i : {std::size_t{0}, std::size_t{5}, d + 3, C - 1}) {
      const std::size_t from = (7 - i / d) * d + i % d;  // head h <- head 7 - h, same channel within the head
      CHECK(qwp[i * C + 9] == qw[from * C + 9]);
      CHECK(owp[4 * C + i] == ow[4 * C + from]);
    }

    // heads=0.5 under the reversed order = the checkpoint model whose output projections ignore the
    // heads the reversed order puts last (their columns zeroed)
    const auto half = drt::segformer_path::parse("heads=0.5");
    std::map<std::string, std::size_t> kept_first;  // the checkpoint head index below which heads are dropped
    for (std::size_t s = 0, g = 0; s < cfg.depths.size(); ++s)
      for (int j = 0; j < cfg.depths[s]; ++j, ++g) {
        const std::size_t h = drt::segformer_path::attention_heads(cfg, s), k = half.heads_kept(cfg, s, g);
        kept_first[drt::segformer_model::head_group_name(s, std::size_t(j)) + ".output.dense.weight"] = h - k;
      }
    CHECK(kept_first.at(a + ".output.dense.weight") == 4);
    const drt::weight_source zeroed = [&](const std::string& name, const std::vector<std::int64_t>& shape) {
      auto v = base(name, shape);
      auto it = kept_first.find(name);
      if (it == kept_first.end()) return v;
      const std::size_t c = std::size_t(shape[1]), hd = c / (c == 256 ? 8 : c == 160 ? 5 : c == 64 ? 2 : 1);
      for (std::size_t o = 0; o < std::size_t(shape[0]); ++o)
        for (std::size_t i = 0; i < it->second * hd; ++i) v[o * c + i] = 0.f;
      return v;
    };
    const auto pruned = rev.forward(x, half).logits;
    const auto ref = drt::segformer_model(cfg, zeroed, checkpoint_order()).forward(x).logits;
    drt_test::check_close(pruned.data(), ref.data(), ref.size(), "heads=0.5, reversed order vs zeroed heads", 1e-5,
                          1e-4);
    CHECK(drt_test::compare(pruned.data(), full.data(), full.size()).rel_l2 > 1e-3);
    // the layer list counts the kept heads' channels
    for (const auto& l : rev.layers(64, 96, rev.compile(half))) {
      if (l.name == "Stage4 Block1 attention.query") CHECK(l.k == 4 * d);
      if (l.name == "Stage4 Block1 attention.output") CHECK(l.c == 4 * d);
      if (l.name == "Stage1 Block1 attention.query") CHECK(l.k == 32);  // a single head stays
    }
    // the data-free weight order ranks heads too
    CHECK(drt::weight_order(base, groups).groups.count(a) == 1);
  }

  TEST_CASE("channel order: calibration statistics, refusals, JSON and fingerprint") {
    const auto cfg = small_config();
    const auto base = drt::random_source(11);
    const auto groups = drt::segformer_model::channel_groups(cfg);
    const drt::segformer_model m(cfg, base, checkpoint_order());
    const auto stats = drt::collect_unit_statistics(
        m.group_layers(),
        [&] {
          (void)m.forward(input(1));
          (void)m.forward(input(2));
        },
        drt::refit_group_names(groups));
    (void)m.forward(input(5));  // no session: nothing observed
    REQUIRE(stats.sum_sq.size() == groups.size() - 5);  // not the heads: calibration keeps their weight order
    CHECK(stats.rows.at("segformer.encoder.block.0.0.mlp") == 2 * 16 * 24);  // two images, stage 0 tokens
    // the statistics are the activations' sums of squares: positive for every unit
    for (double v : stats.sum_sq.at("segformer.encoder.block.3.0.mlp")) CHECK(v > 0);
    const auto order = drt::calibrated_order(base, groups, stats, "two random images");
    CHECK(order.method == "calibrated");
    for (const auto& g : groups) {
      auto p = order.groups.at(g.name);
      std::sort(p.begin(), p.end());
      for (std::size_t i = 0; i < p.size(); ++i) REQUIRE(p[i] == i);
    }
    // means, in the new order, for every group: what a prefix path's compensation reads
    for (const auto& g : groups)
      if (!g.refit && drt::group_unit_size(g) == 1) REQUIRE(order.means.at(g.name).size() == g.units);
    CHECK(order.means.count("segformer.encoder.block.3.0.attention") == 0);  // heads: no compensation
    CHECK(order.groups.at("segformer.encoder.block.3.0.attention") ==
          drt::weight_order(base, groups).groups.at("segformer.encoder.block.3.0.attention"));
    // moments of the classifier's inputs, in the new order, over every decoder pixel of both images
    const auto& mo = order.moments.at("decode_head.classifier");
    CHECK(mo.dim == 256);
    CHECK(mo.rows == doctest::Approx(2 * 16 * 24));
    CHECK(mo.moment(1, 0) == doctest::Approx(stats.moments.at("decode_head.classifier")
                                                 .moment(order.groups.at("decode_head.classifier")[0] + 1, 0)));
    const auto& g0 = groups[0].name;
    CHECK(order.means.at(g0)[0] ==
          doctest::Approx(stats.sum.at(g0)[order.groups.at(g0)[0]] / double(stats.rows.at(g0))));
    {  // a model packed in it compensates prefix paths, and not the full one
      const drt::segformer_model packed_model(cfg, base, packed(order));
      const auto e = packed_model.compile(drt::segformer_path::parse("mlp=0.5"));
      CHECK(e.mlp.bias_at(1, 1) != nullptr);
      CHECK(packed_model.compile(drt::segformer_path{}).mlp.bias_at(1, 1) == nullptr);
      auto no_means = order;
      no_means.means.clear();
      const drt::segformer_model plain_packed(cfg, base, packed(no_means));
      const auto a = packed_model.forward(input(1), drt::segformer_path::parse("mlp=0.5")).logits;
      const auto b = plain_packed.forward(input(1), drt::segformer_path::parse("mlp=0.5")).logits;
      CHECK(drt_test::compare(a.data(), b.data(), a.size()).rel_l2 > 1e-4);
    }
    const auto j = order.to_json();
    const auto back = drt::channel_order::from_json(j, "order.json");
    CHECK(back.groups == order.groups);
    CHECK(back.means == order.means);
    CHECK(back.moments.at("decode_head.classifier").moment(3, 4) ==
          doctest::Approx(order.moments.at("decode_head.classifier").moment(3, 4)).epsilon(1e-6));
    CHECK(back.calibration == "two random images");
    CHECK(back.fingerprint() == order.fingerprint());
    CHECK(order.fingerprint().rfind("calibrated-", 0) == 0);
    CHECK(drt::channel_order{}.fingerprint() == "checkpoint");

    drt::unit_statistics missing = stats;
    missing.sum_sq.erase("segformer.encoder.block.3.0.mlp");
    CHECK_THROWS_WITH_AS(drt::calibrated_order(base, groups, missing, "x"),
                         "calibrated channel order: no activation statistics for group "
                         "'segformer.encoder.block.3.0.mlp'",
                         drt::invalid_input);
    auto bad = order;
    bad.groups["segformer.encoder.block.1.1.mlp"][3] = bad.groups["segformer.encoder.block.1.1.mlp"][4];
    CHECK_THROWS_WITH_AS(drt::permuted_source(base, bad, groups),
                         "channel order (calibrated): the permutation of group 'segformer.encoder.block.1.1.mlp' "
                         "has 256 entries, expected a permutation of 256 units",
                         drt::invalid_input);
    CHECK_THROWS_AS(drt::channel_order::from_json(nlohmann::json{{"method", 3}}, "o.json"), drt::invalid_input);
  }
}

TEST_SUITE("dynamic") {
  TEST_CASE("channel order: the classifier's inputs, greedily ordered and refit by least squares (pred_in)") {
    const auto cfg = small_config();
    const auto base = drt::random_source(13);
    const auto groups = drt::segformer_model::channel_groups(cfg);
    const drt::segformer_model plain(cfg, base, checkpoint_order());
    const auto stats = drt::collect_unit_statistics(
        plain.group_layers(), [&] { (void)plain.forward(input(1)); }, drt::refit_group_names(groups));
    const auto order = drt::calibrated_order(base, groups, stats, "one random image");
    REQUIRE(order.moments.count("decode_head.classifier") == 1);
    const drt::segformer_model refit(cfg, base, packed(order));
    auto no_moments = order;
    no_moments.moments.clear();
    const drt::segformer_model greedy_only(cfg, base, packed(no_moments));
    const auto x = input(1);
    const auto full = plain.forward(x).logits;
    // the full path: an exact rewrite (Conv2DFuse rows, BatchNorm and classifier columns permuted)
    const auto f2 = refit.forward(x).logits;
    drt_test::check_close(f2.data(), full.data(), full.size(), "logits, classifier inputs reordered", 1e-5, 1e-4);
    CHECK(refit.compile(drt::segformer_path{}).head.classifier == nullptr);
    const auto half = drt::segformer_path::parse("pred_in=64");
    const auto e = refit.compile(half);
    REQUIRE(e.head.classifier != nullptr);
    CHECK(e.head.classifier->in_features() == 64);
    CHECK(greedy_only.compile(half).head.classifier == nullptr);
    // on the calibration image the refit is the least-squares optimum for its kept inputs: closer to
    // the full model than the same inputs with their own weights, and than the checkpoint's prefix
    const auto r = refit.forward(x, half).logits, g = greedy_only.forward(x, half).logits,
               c = plain.forward(x, half).logits;
    const double er = drt_test::compare(r.data(), full.data(), full.size()).rel_l2;
    const double eg = drt_test::compare(g.data(), full.data(), full.size()).rel_l2;
    const double ec = drt_test::compare(c.data(), full.data(), full.size()).rel_l2;
    CHECK(er < 0.7 * eg);
    CHECK(er < 0.7 * ec);
    // unfolded decoder: the same refit classifier
    drt::segformer_options unfolded = packed(order);
    unfolded.fold_decoder = false;
    const auto u = drt::segformer_model(cfg, base, unfolded).forward(x, half).logits;
    drt_test::check_close(u.data(), r.data(), r.size(), "refit classifier, unfolded vs folded decoder", 1e-4, 1e-3);
  }

  TEST_CASE("channel order: Swin MLP hidden units (fixture upernet-swin-mini)") {
    const std::string dir = drt_test::shared_dir() + "/fixtures/upernet-swin-mini";
    if (!drt_test::require_file(dir + "/model.safetensors")) return;
    const auto cfg = drt::load_upernet_config(dir + "/config.json");
    const drt::safetensors_file st(dir + "/model.safetensors");
    const auto base = drt::safetensors_source(st);
    const auto groups = drt::upernet_swin_model::channel_groups(cfg);
    std::size_t blocks = 0;
    for (int d : cfg.backbone.depths) blocks += std::size_t(d);
    REQUIRE(groups.size() == 2 * blocks + 1);  // MLP units and heads per block, and the classifier's inputs
    CHECK(groups[0].name == "backbone.encoder.layers.0.blocks.0.intermediate");
    CHECK(groups[0].units == cfg.backbone.mlp_hidden(0));
    CHECK(groups[blocks].name == "backbone.encoder.layers.0.blocks.0.attention");
    CHECK(groups[blocks].units == std::size_t(cfg.backbone.num_heads[0]));

    const drt::upernet_swin_model plain(cfg, base, {}, drt::channel_order{});  // checkpoint order
    const drt::upernet_swin_model ordered(cfg, base);                          // default: weight order
    CHECK(ordered.order().method == "weight");
    drt::tensor4 x = drt::tensor4::from_shape({1, 3, 72, 100});
    std::mt19937 g(2);
    std::normal_distribution<float> nd;
    for (auto& v : x) v = nd(g);
    const auto a = plain.forward(x).logits, b = ordered.forward(x).logits;
    drt_test::check_close(b.data(), a.data(), a.size(), "swin logits, weight order vs checkpoint order", 1e-5, 1e-4);

    const auto half = drt::upernet_path::parse("mlp=0.5");
    const auto exec = ordered.compile(half);
    for (const auto& l : ordered.layers(72, 100, exec))
      if (l.name == "Stage1 Block1 mlp.fc1") CHECK(l.k == cfg.backbone.mlp_hidden(0) / 2);
    const auto pa = plain.forward(x, half).logits, pb = ordered.forward(x, half).logits;
    CHECK(drt_test::compare(pa.data(), pb.data(), pa.size()).rel_l2 > 1e-4);  // the orders keep different units

    // calibrated: statistics from fc1's outputs, means for compensation, a SegFormer order refused
    const auto stats = drt::collect_unit_statistics(
        plain.group_layers(), [&] { (void)plain.forward(x); }, drt::refit_group_names(groups));
    REQUIRE(stats.sum_sq.size() == blocks + 1);  // not the heads: they keep their weight order
    const auto cal = drt::calibrated_order(base, groups, stats, "one random image");
    const drt::upernet_swin_model calibrated(cfg, base, {}, cal);
    CHECK(calibrated.compile(half).mlp.bias_at(0, 0) != nullptr);
    // the classifier's inputs: greedy order and refit (pred_in)
    const auto pred = drt::upernet_path::parse("pred_in=" + std::to_string(cfg.hidden_size / 2));
    const auto ep = calibrated.compile(pred);
    REQUIRE(ep.classifier != nullptr);
    CHECK(ep.classifier->in_features() == std::size_t(cfg.hidden_size / 2));
    const auto full = plain.forward(x).logits, pr = calibrated.forward(x, pred).logits,
               pc = plain.forward(x, pred).logits;
    CHECK(drt_test::compare(pr.data(), full.data(), full.size()).rel_l2 <
          0.7 * drt_test::compare(pc.data(), full.data(), full.size()).rel_l2);

    // heads: reversed in every block with more than one, an exact rewrite (q/k/v rows, the bias
    // table's columns, output columns); heads=0.5 under it equals the checkpoint model whose output
    // projections ignore the heads the reversed order puts last
    drt::channel_order reversed;
    reversed.method = "test";
    std::map<std::string, std::size_t> dropped_below;  // output.dense.weight -> checkpoint heads dropped: [0, n)
    const auto hpath = drt::upernet_path::parse("heads=0.5");
    std::size_t multi = 0;
    for (std::size_t st = 0, gi = 0; st < cfg.backbone.depths.size(); ++st)
      for (int j = 0; j < cfg.backbone.depths[st]; ++j, ++gi) {
        const std::size_t h = std::size_t(cfg.backbone.num_heads[st]);
        std::vector<std::uint32_t> p(h);
        for (std::size_t i = 0; i < h; ++i) p[i] = std::uint32_t(h - 1 - i);
        const std::string a = drt::upernet_swin_model::head_group_name(st, std::size_t(j));
        reversed.groups[a] = p;
        dropped_below[a + ".output.dense.weight"] = h - hpath.heads_kept(cfg, st, gi);
        multi += h > 1;
      }
    REQUIRE(multi > 0);
    const drt::upernet_swin_model rev(cfg, base, {}, reversed);
    const auto fr = rev.forward(x).logits;
    drt_test::check_close(fr.data(), full.data(), full.size(), "swin logits, heads reversed", 1e-5, 1e-4);
    const drt::weight_source zeroed = [&](const std::string& name, const std::vector<std::int64_t>& shape) {
      auto v = base(name, shape);
      auto it = dropped_below.find(name);
      if (it == dropped_below.end()) return v;
      const std::size_t c = std::size_t(shape[1]);
      std::size_t heads = 0;
      for (std::size_t st = 0; st < cfg.backbone.depths.size(); ++st)
        if (cfg.backbone.stage_channels(st) == c) heads = std::size_t(cfg.backbone.num_heads[st]);
      for (std::size_t o = 0; o < std::size_t(shape[0]); ++o)
        for (std::size_t i = 0; i < it->second * (c / heads); ++i) v[o * c + i] = 0.f;
      return v;
    };
    const auto ph = rev.forward(x, hpath).logits;
    const auto pz = drt::upernet_swin_model(cfg, zeroed, {}, drt::channel_order{}).forward(x).logits;
    drt_test::check_close(ph.data(), pz.data(), pz.size(), "swin heads=0.5, reversed order vs zeroed heads", 1e-5,
                          1e-4);
    CHECK(drt_test::compare(ph.data(), full.data(), full.size()).rel_l2 > 1e-4);
    for (const auto& l : rev.layers(72, 100, rev.compile(hpath)))
      if (l.name == "Stage2 Block1 attention.qkv")  // stage 1's first block: 1 of its 2 heads
        CHECK(l.k == 3 * cfg.backbone.stage_channels(1) / 2);

    const auto seg_groups = drt::segformer_model::channel_groups(small_config());
    const auto seg_order = drt::weight_order(drt::random_source(1), seg_groups);
    CHECK_THROWS_WITH_AS(drt::upernet_swin_model(cfg, base, {}, seg_order),
                         "channel order (weight): none of its 10 groups (first: 'segformer.encoder.block.0.0.attention') is "
                         "a group of this model (first: 'backbone.encoder.layers.0.blocks.0.intermediate')",
                         drt::invalid_input);
  }
}
