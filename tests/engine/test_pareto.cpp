// Pareto front: hand-made sets with ties, duplicates, dominated and non-finite points.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <utility>
#include <vector>

#include <drt/engine/pareto.hpp>

#include "test_support.hpp"

namespace {
using point = std::pair<double, double>;  // (cost, value)
auto cost = [](const point& p) { return p.first; };
auto value = [](const point& p) { return p.second; };
}  // namespace

TEST_SUITE("engine") {
  TEST_CASE("pareto front: hand-made set") {
    //                         0         1         2         3         4          5         6
    const std::vector<point> pts{{10, 0.5}, {5, 0.4}, {7, 0.4}, {5, 0.4}, {20, 0.9}, {15, 0.5}, {1, 0.1}};
    // 2 is dominated by 1 (cheaper, as good); 3 duplicates 1 (first kept); 5 dominated by 0.
    const auto f = drt::pareto_front(pts, cost, value);
    CHECK(f == std::vector<std::size_t>{6, 1, 0, 4});
    CHECK(drt::is_dominated(pts, 2, cost, value));
    CHECK(drt::is_dominated(pts, 5, cost, value));
    CHECK_FALSE(drt::is_dominated(pts, 4, cost, value));
    CHECK_FALSE(drt::is_dominated(pts, 6, cost, value));
  }

  TEST_CASE("pareto front: equal cost keeps the most valuable, non-finite points never qualify") {
    const std::vector<point> pts{{3, 0.2}, {3, 0.7}, {NAN, 1.0}, {2, INFINITY}, {4, 0.6}, {1, 0.1}};
    CHECK(drt::pareto_front(pts, cost, value) == std::vector<std::size_t>{5, 1});
    CHECK(drt::pareto_front(std::vector<point>{}, cost, value).empty());
  }

  TEST_CASE("pareto front: agrees with the pairwise definition on random sets") {
    std::mt19937 gen(7);
    std::uniform_int_distribution<int> d(0, 20);  // small range: many ties
    for (int trial = 0; trial < 50; ++trial) {
      std::vector<point> pts(30);
      for (auto& p : pts) p = {d(gen), d(gen) / 20.0};
      const auto f = drt::pareto_front(pts, cost, value);
      std::vector<bool> on(pts.size(), false);
      for (auto i : f) on[i] = true;
      for (std::size_t i = 0; i < pts.size(); ++i) {
        const bool dom = drt::is_dominated(pts, i, cost, value);
        if (on[i]) CHECK_FALSE(dom);
        // an off-front point is dominated or duplicates an earlier point
        bool dup = false;
        for (std::size_t j = 0; j < i; ++j) dup = dup || pts[j] == pts[i];
        if (!on[i]) CHECK((dom || dup));
      }
      for (std::size_t k = 1; k < f.size(); ++k) {
        CHECK(pts[f[k]].first > pts[f[k - 1]].first);
        CHECK(pts[f[k]].second > pts[f[k - 1]].second);
      }
    }
  }
}
