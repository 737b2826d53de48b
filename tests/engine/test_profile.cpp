// Profiler: every layer that does work is timed under the name the layer list gives it; paper MAC checks.
#include <doctest/doctest.h>

#include <random>
#include <set>

#include <drt/engine/profile.hpp>
#include <drt/models/segformer.hpp>

#include "test_support.hpp"

TEST_SUITE("engine") {
TEST_CASE("profile: every layer scope is timed, joined with the layer list, and reported") {
  auto cfg = drt::standard_segformer_config("segformer-b0", 11);
  const auto model = drt::segformer_model::with_random_weights(cfg, 3);
  const auto exec = model.compile(drt::segformer_path::parse("depths=2,1,2,2 fuse_in=640"));
  drt::tensor4 x = drt::tensor4::from_shape({2, 3, 96, 128});
  std::mt19937 g(5);
  std::normal_distribution<float> nd;
  for (auto& v : x) v = nd(g);
  const auto layers = model.layers(96, 128, exec, 2);
  std::size_t calls = 0;
  auto r = drt::profile_layers(layers, [&] { (void)model.forward(x, false, exec); }, 3, 1,
                               [&](std::size_t, std::size_t) { ++calls; });
  CHECK(calls == 4);
  CHECK(r.repeat == 3);
  CHECK(r.total_macs() == doctest::Approx(drt::total_macs(layers)));
  std::set<std::string> names;
  for (const auto& row : r.rows) {
    names.insert(row.name);
    if (row.macs > 0) CHECK_MESSAGE(row.seconds > 0, row.name);
  }
  // Only the catch-all row may be absent from the layer list; block 2 of stage 2 is skipped.
  for (const auto& row : r.rows) {
    bool listed = row.name == "other (layout, buffers)";
    for (const auto& l : layers) listed = listed || l.timing_name() == row.name;
    CHECK_MESSAGE(listed, row.name);
  }
  CHECK(names.count("Stage1 Block1 attention.qk_softmax_pv") == 1);
  CHECK(names.count("Stage2 Block2 attention.query") == 0);
  CHECK(names.count("DecodeLinear0") == 0);  // fuse_in=640 drops stage 0's whole slice [768, 1024)
  CHECK(names.count("Conv2DFuse") == 1);
  double sum = 0;
  for (const auto& row : r.rows) sum += row.seconds;
  CHECK(sum == doctest::Approx(r.total_seconds).epsilon(0.05));
  const auto kinds = r.by_kind();
  CHECK(kinds.size() >= 5);
  CHECK(r.to_csv().find("\"Conv2DFuse\",conv,decoder") != std::string::npos);
  CHECK(r.to_json()["layers"].size() == r.rows.size());
  CHECK(r.to_table().find("by region:") != std::string::npos);
  CHECK(r.to_chart().to_svg().find("<svg") == 0);
}

TEST_CASE("profile MAC checks against the paper (Section II)") {
  const auto b2 = drt::segformer_model::with_random_weights(drt::standard_segformer_config("segformer-b2", 150));
  drt::profile_result r;  // MAC bookkeeping only: no timing needed
  for (const auto& l : b2.layers(512, 512)) r.rows.push_back({l.name, l.kind, l.region, l.params, l.macs, 0});
  CHECK(r.conv_mac_share() == doctest::Approx(0.68).epsilon(0.02));  // "68% of MACs in convolutions"
  const auto city = drt::segformer_model::with_random_weights(drt::standard_segformer_config("segformer-b2", 19));
  const double macs = drt::total_macs(city.layers(1024, 2048));
  CHECK(macs > 703e9);
  CHECK(macs < 705e9);
}
}
