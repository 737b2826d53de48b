// Least-squares refit on an input prefix (dynamic/refit.hpp): the moments equal a plain double sum
// and survive JSON and permutation; with nothing dropped the refit is the layer itself; a dropped
// input that is constant is compensated exactly; a dropped input that is a linear image of kept
// ones too; the greedy order's first choice is the best single input (checked by brute force), a
// redundant input comes after the ones it repeats, and the refit error falls with every input kept.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include <drt/dynamic/refit.hpp>

namespace {

struct layer_data {
  std::size_t rows, k, n;
  std::vector<float> x, w, b;  // x [rows, k], w [n, k], b [n]
};

layer_data random_layer(std::size_t rows, std::size_t k, std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.f, 1.f);
  layer_data d{rows, k, n, std::vector<float>(rows * k), std::vector<float>(n * k), std::vector<float>(n)};
  // correlated inputs: a random mix of k/2 sources plus noise and per-channel offsets
  std::vector<float> mix(k * (k / 2 + 1));
  for (auto& v : mix) v = g(rng);
  for (std::size_t r = 0; r < rows; ++r) {
    std::vector<float> src(k / 2 + 1);
    for (auto& v : src) v = g(rng);
    for (std::size_t c = 0; c < k; ++c) {
      float v = 0.3f * g(rng) + 0.1f * float(c);
      for (std::size_t s = 0; s < src.size(); ++s) v += mix[c * src.size() + s] * src[s];
      d.x[r * k + c] = std::max(v, 0.f);  // post-ReLU, like a classifier's inputs
    }
  }
  for (auto& v : d.w) v = g(rng);
  for (auto& v : d.b) v = g(rng);
  return d;
}

drt::input_moments moments_of(const layer_data& d) {
  drt::input_moments s(d.k);
  s.add(d.x.data(), d.rows / 3, d.k, d.k);  // two calls: blocks split anywhere
  s.add(d.x.data() + d.rows / 3 * d.k, d.rows - d.rows / 3, d.k, d.k);
  return s;
}

/// Mean squared error of (w2, b2) on the first k2 inputs of `order` against the full layer.
double refit_error(const layer_data& d, const std::vector<std::uint32_t>& order, std::size_t k2,
                   const std::vector<float>& w2, const std::vector<float>& b2) {
  double e = 0;
  for (std::size_t r = 0; r < d.rows; ++r)
    for (std::size_t o = 0; o < d.n; ++o) {
      double full = d.b[o], part = b2[o];
      for (std::size_t c = 0; c < d.k; ++c) full += double(d.w[o * d.k + c]) * d.x[r * d.k + c];
      for (std::size_t i = 0; i < k2; ++i) part += double(w2[o * k2 + i]) * d.x[r * d.k + order[i]];
      e += (full - part) * (full - part);
    }
  return e / double(d.rows);
}

/// The refit of the first k2 inputs of `order` (moments and weights permuted into it).
double prefix_error(const layer_data& d, const drt::input_moments& s, const std::vector<std::uint32_t>& order,
                    std::size_t k2) {
  std::vector<float> wp(d.n * d.k);
  for (std::size_t o = 0; o < d.n; ++o)
    for (std::size_t i = 0; i < d.k; ++i) wp[o * d.k + i] = d.w[o * d.k + order[i]];
  const drt::prefix_refit fit(s.permuted(order), wp.data(), d.b.data(), d.n);
  std::vector<float> w2, b2;
  fit.weights(k2, w2, b2);
  return refit_error(d, order, k2, w2, b2);
}

std::vector<std::uint32_t> identity(std::size_t k) {
  std::vector<std::uint32_t> p(k);
  for (std::size_t i = 0; i < k; ++i) p[i] = static_cast<std::uint32_t>(i);
  return p;
}

}  // namespace

TEST_SUITE("dynamic") {
  TEST_CASE("input moments: a plain double sum, through JSON and a permutation") {
    const auto d = random_layer(700, 9, 3, 1);
    const auto s = moments_of(d);
    CHECK(s.rows == doctest::Approx(700));
    for (std::size_t i = 0; i <= d.k; ++i)
      for (std::size_t j = 0; j <= d.k; ++j) {
        double ref = 0;
        for (std::size_t r = 0; r < d.rows; ++r)
          ref += (i ? double(d.x[r * d.k + i - 1]) : 1.0) * (j ? double(d.x[r * d.k + j - 1]) : 1.0);
        CHECK(s.moment(i, j) == doctest::Approx(ref / 700).epsilon(1e-5));
      }
    const auto back = drt::input_moments::from_json(s.to_json(), "test");
    CHECK(back.moment(3, 7) == doctest::Approx(s.moment(3, 7)).epsilon(1e-6));
    const std::vector<std::uint32_t> p = {4, 0, 8, 1, 2, 3, 5, 6, 7};
    const auto q = s.permuted(p);
    CHECK(q.moment(1, 3) == doctest::Approx(s.moment(5, 9)));
    CHECK(q.moment(0, 2) == doctest::Approx(s.moment(0, 1)));
    CHECK_THROWS_WITH_AS(drt::input_moments::from_json({{"inputs", 3}, {"rows", 5}, {"moments", {1.0, 2.0}}}, "f.json"),
                         doctest::Contains("f.json: 2 moments over 5 rows, expected 10"), drt::invalid_input);
    auto broken = s.to_json();
    broken["moments"][0] = -1.0;  // a negative mean square
    CHECK_THROWS_WITH_AS(drt::input_moments::from_json(broken, "g.json"),
                         doctest::Contains("g.json: moment (0, 0) is -1"), drt::invalid_input);
    std::vector<float> bad = {1.f, std::nanf("")};
    drt::input_moments m2(2);
    CHECK_THROWS_WITH_AS(m2.add(bad.data(), 1, 2, 2), "input moments: input 1 of row 0 is not finite",
                         drt::invalid_input);
  }

  TEST_CASE("least-squares refit: nothing dropped gives the layer back") {
    const auto d = random_layer(600, 10, 4, 2);
    const drt::prefix_refit fit(moments_of(d), d.w.data(), d.b.data(), d.n);
    std::vector<float> w2, b2;
    fit.weights(d.k, w2, b2);
    for (std::size_t i = 0; i < w2.size(); ++i) CHECK(w2[i] == doctest::Approx(d.w[i]).epsilon(1e-3).scale(1));
    for (std::size_t i = 0; i < b2.size(); ++i) CHECK(b2[i] == doctest::Approx(d.b[i]).epsilon(1e-3).scale(1));
    CHECK(refit_error(d, identity(d.k), d.k, w2, b2) < 1e-8);
    CHECK_THROWS_AS(fit.weights(0, w2, b2), drt::invalid_input);
    CHECK_THROWS_AS(fit.weights(d.k + 1, w2, b2), drt::invalid_input);
  }

  TEST_CASE("least-squares refit: a constant input and a linear image of kept inputs are compensated exactly") {
    auto d = random_layer(500, 8, 3, 3);
    for (std::size_t r = 0; r < d.rows; ++r) {
      d.x[r * d.k + 6] = 2.5f;                                                  // constant
      d.x[r * d.k + 7] = 0.5f * d.x[r * d.k + 1] - 1.25f * d.x[r * d.k + 2];  // a linear image of 1 and 2
    }
    const auto s = moments_of(d);
    double y2 = 0;  // the outputs' mean square, to state the error relative to it
    for (std::size_t r = 0; r < d.rows; ++r)
      for (std::size_t o = 0; o < d.n; ++o) {
        double v = d.b[o];
        for (std::size_t c = 0; c < d.k; ++c) v += double(d.w[o * d.k + c]) * d.x[r * d.k + c];
        y2 += v * v / double(d.rows);
      }
    CHECK(prefix_error(d, s, identity(d.k), 6) < 1e-9 * y2);
    CHECK(prefix_error(d, s, identity(d.k), 5) > 1e-3 * y2);  // a real input dropped: not exact
    // the greedy order puts both after every informative input
    const auto order = drt::greedy_refit_order(s, d.w.data(), d.b.data(), d.n);
    REQUIRE(order.size() == d.k);
    CHECK(((order[6] == 6 && order[7] == 7) || (order[6] == 7 && order[7] == 6)));
  }

  TEST_CASE("greedy refit order: the best single input first, errors falling with every input kept") {
    const auto d = random_layer(800, 12, 5, 4);
    const auto s = moments_of(d);
    const auto order = drt::greedy_refit_order(s, d.w.data(), d.b.data(), d.n);
    std::vector<char> seen(d.k, 0);
    for (auto v : order) CHECK(!seen[v]++);
    double best = 1e300;
    std::uint32_t best_c = 0;
    for (std::uint32_t c = 0; c < d.k; ++c) {
      auto p = identity(d.k);
      std::swap(p[0], p[c]);
      const double e = prefix_error(d, s, p, 1);
      if (e < best) best = e, best_c = c;
    }
    CHECK(order[0] == best_c);
    double prev = 1e300;
    for (std::size_t k2 = 1; k2 <= d.k; ++k2) {
      const double e = prefix_error(d, s, order, k2);
      CHECK(e <= prev * (1 + 1e-6));
      prev = e;
    }
    // at half the inputs, greedy + refit beats the checkpoint prefix with refit
    CHECK(prefix_error(d, s, order, d.k / 2) <= prefix_error(d, s, identity(d.k), d.k / 2));
  }
}
