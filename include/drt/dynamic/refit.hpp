#pragma once
/// @file refit.hpp
/// Least-squares refit of a layer on a prefix of its inputs (issue #19's compensation), and the
/// greedy order that makes every prefix the best one for it.
///
/// A linear consumer y = W x + b (N outputs, K inputs) that keeps only the first k inputs can still
/// reproduce most of y when its weights are refit: min over (W', b') of E ||W' x_k + b' - (W x + b)||^2
/// on calibration rows. With z = [1, x] and the second moments S = E[z z^T] ((K+1) x (K+1), the
/// constant first), the target's cross moments are C = S [b W]^T, and the refit of the prefix
/// 0..k of z solves S_kk u = C_k: u[0] is the new bias, u[1..k] the new weights. Only S is needed,
/// so calibration stores S once per consumer and every prefix is refit from it when its path is
/// compiled (ref: the classic least-squares channel-pruning reconstruction, He et al., "Channel
/// Pruning for Accelerating Very Deep Neural Networks", ICCV 2017, step 2, without the LASSO).
///
/// - `input_moments` accumulates S from a layer's inputs (the observer of dynamic/channel_order.hpp).
/// - `greedy_refit_order` ranks the inputs by forward selection: each step keeps the input that most
///   reduces the refit's output error given those already kept (the output-error criterion, not an
///   energy proxy), so every prefix of the order is a greedy choice for its width.
/// - `prefix_refit` factors S once (Cholesky, in the order) and gives the refit weights of any prefix.
///
/// When nothing is dropped the refit is the layer itself; a dropped input that is constant on the
/// calibration rows is compensated exactly (through the bias); both are unit-tested.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../layers/gemm.hpp"
#include "../layers/linear.hpp"

namespace drt {

/// Second moments of a layer's inputs augmented with a constant 1 (index 0): sum over rows of
/// [1, x][1, x]^T, and the row count. `moment(i, j)` is the mean.
struct input_moments {
  std::size_t dim = 0;      ///< K: the layer's inputs
  double rows = 0;          ///< rows accumulated
  std::vector<double> sum;  ///< (K+1) x (K+1), row-major, symmetric

  explicit input_moments(std::size_t k = 0) : dim(k), sum((k + 1) * (k + 1), 0.0) {}

  double moment(std::size_t i, std::size_t j) const noexcept { return rows > 0 ? sum[i * (dim + 1) + j] / rows : 0.0; }

  /// Adds `m` rows of x (row stride ld); the first `dim` channels are used. A block's products run
  /// as one float GEMM (x^T x over at most 256 rows) accumulated in double.
  void add(const float* x, std::size_t m, std::size_t channels, std::size_t ld) {
    if (channels < dim)
      throw shape_error("input moments of " + std::to_string(dim) + " channels: a call reports " +
                        std::to_string(channels));
    const std::size_t d = dim + 1, block = 256;
    std::vector<float> zt(d * block), prod(d * d);
    for (std::size_t r0 = 0; r0 < m; r0 += block) {
      const std::size_t rb = std::min(block, m - r0);
      for (std::size_t r = 0; r < rb; ++r) {  // z^T: [d][rb]
        zt[r] = 1.f;
        for (std::size_t c = 0; c < dim; ++c) {
          const float v = x[(r0 + r) * ld + c];
          if (!std::isfinite(v))
            throw invalid_input("input moments: input " + std::to_string(c) + " of row " + std::to_string(r0 + r) +
                                " is not finite");
          zt[(c + 1) * rb + r] = v;
        }
      }
      const packed_matrix b = packed_matrix::from_nk(zt.data(), d, rb, rb);
      gemm(d, d, rb, zt.data(), rb, b, prod.data(), d, {}, false);
      for (std::size_t i = 0; i < d * d; ++i) sum[i] += prod[i];
      rows += static_cast<double>(rb);
    }
  }

  /// The moments with the inputs reordered: input i of the result is input p[i] of this one.
  input_moments permuted(const std::vector<std::uint32_t>& p) const {
    input_moments out(dim);
    out.rows = rows;
    const std::size_t d = dim + 1;
    auto src = [&](std::size_t i) { return i == 0 ? std::size_t{0} : std::size_t{p[i - 1]} + 1; };
    for (std::size_t i = 0; i < d; ++i)
      for (std::size_t j = 0; j < d; ++j) out.sum[i * d + j] = sum[src(i) * d + src(j)];
    return out;
  }

  /// {"inputs": K, "rows": n, "moments": [upper triangle of the means, row by row, as float]}.
  nlohmann::json to_json() const {
    const std::size_t d = dim + 1;
    std::vector<float> upper;
    upper.reserve(d * (d + 1) / 2);
    for (std::size_t i = 0; i < d; ++i)
      for (std::size_t j = i; j < d; ++j) upper.push_back(static_cast<float>(moment(i, j)));
    return {{"inputs", dim}, {"rows", rows}, {"moments", upper}};
  }
  static input_moments from_json(const nlohmann::json& j, const std::string& where) {
    input_moments m;
    try {
      m = input_moments(j.at("inputs").get<std::size_t>());
      m.rows = j.at("rows").get<double>();
      const auto upper = j.at("moments").get<std::vector<float>>();
      const std::size_t d = m.dim + 1;
      if (upper.size() != d * (d + 1) / 2 || !(m.rows > 0))
        throw invalid_input(where + ": " + std::to_string(upper.size()) + " moments over " + std::to_string(static_cast<long long>(m.rows)) +
                            " rows, expected " + std::to_string(d * (d + 1) / 2) + " (the upper triangle of " +
                            std::to_string(d) + " x " + std::to_string(d) + ") over at least one row");
      for (std::size_t i = 0, t = 0; i < d; ++i)
        for (std::size_t j = i; j < d; ++j, ++t) {
          if (!std::isfinite(upper[t]) || (i == j && upper[t] < 0))
            throw invalid_input(where + ": moment (" + std::to_string(i) + ", " + std::to_string(j) + ") is " +
                                std::to_string(upper[t]) + ", not a finite second moment");
          m.sum[i * d + j] = m.sum[j * d + i] = double(upper[t]) * m.rows;
        }
    } catch (const nlohmann::json::exception& e) {
      throw invalid_input(where + ": not input moments (" + e.what() + ")");
    }
    return m;
  }
};

namespace detail {
/// The ridge added to the moments' input diagonal: a small fraction of their mean, so that inputs
/// that are (nearly) linear combinations of others keep the factorization defined.
inline double refit_ridge(const input_moments& s) {
  double tr = 0;
  for (std::size_t i = 1; i <= s.dim; ++i) tr += s.moment(i, i);
  return 1e-6 * (s.dim ? tr / double(s.dim) : 0.0) + 1e-30;
}
/// C = S [b W]^T: (K+1) x N, the inputs' cross moments with the layer's outputs. w: [N, K] row-major.
inline std::vector<double> refit_cross(const input_moments& s, const float* w, const float* b, std::size_t n) {
  const std::size_t d = s.dim + 1;
  std::vector<double> c(d * n, 0.0);
  for (std::size_t i = 0; i < d; ++i)
    for (std::size_t o = 0; o < n; ++o) {
      double acc = s.moment(i, 0) * (b ? b[o] : 0.0);
      for (std::size_t j = 1; j < d; ++j) acc += s.moment(i, j) * w[o * s.dim + j - 1];
      c[i * n + o] = acc;
    }
  return c;
}
}  // namespace detail

/// Forward selection of the inputs of y = W x + b (w: [N, K], b: [N] or null) by the refit's output
/// error on the moments `s`: position i of the result is the input whose addition to the first i
/// most reduces E ||refit - y||^2. Inputs that add nothing (constant or dependent) come last, in
/// their own order. O(K^3 / 2) once per calibration.
inline std::vector<std::uint32_t> greedy_refit_order(const input_moments& s, const float* w, const float* b,
                                                     std::size_t n) {
  const std::size_t k = s.dim, d = k + 1;
  if (k == 0 || n == 0) return {};
  const double ridge = detail::refit_ridge(s);
  const std::vector<double> c0 = detail::refit_cross(s, w, b, n);
  // Candidates j = 1..K: L's row so far (lrow[j]), residual variance r[j] and residual cross moments
  // cres[j] after projecting out the selected (starting with the constant).
  std::vector<std::vector<double>> lrow(d);
  std::vector<double> r, cres;
  r.resize(d);
  cres.resize(d * n);
  const double s00 = std::max(s.moment(0, 0), 1e-30), l00 = std::sqrt(s00);
  std::vector<double> z0(n);
  for (std::size_t o = 0; o < n; ++o) z0[o] = c0[o] / l00;
  for (std::size_t j = 1; j < d; ++j) {
    const double l = s.moment(j, 0) / l00;
    lrow[j].push_back(l);
    r[j] = s.moment(j, j) + ridge - l * l;
    for (std::size_t o = 0; o < n; ++o) cres[j * n + o] = c0[j * n + o] - l * z0[o];
  }
  std::vector<char> taken(d, 0);
  std::vector<std::uint32_t> order;
  order.reserve(k);
  for (std::size_t step = 0; step < k; ++step) {
    std::size_t best = 0;
    double gain = -1;
    for (std::size_t j = 1; j < d; ++j) {
      if (taken[j]) continue;
      double e = 0;
      for (std::size_t o = 0; o < n; ++o) e += cres[j * n + o] * cres[j * n + o];
      const double g = r[j] > ridge * 1e-3 ? e / r[j] : 0.0;
      if (g > gain) gain = g, best = j;
    }
    taken[best] = 1;
    order.push_back(static_cast<std::uint32_t>(best - 1));
    const double lp = std::sqrt(std::max(r[best], 1e-300));
    std::vector<double> zp(n);
    for (std::size_t o = 0; o < n; ++o) zp[o] = cres[best * n + o] / lp;
    const auto& pr = lrow[best];
    for (std::size_t j = 1; j < d; ++j) {
      if (taken[j]) continue;
      double dot = 0;
      for (std::size_t t = 0; t < pr.size(); ++t) dot += lrow[j][t] * pr[t];
      const double l = (s.moment(j, best) - dot) / lp;
      lrow[j].push_back(l);
      r[j] -= l * l;
      for (std::size_t o = 0; o < n; ++o) cres[j * n + o] -= l * zp[o];
    }
  }
  return order;
}

/// The refit of y = W x + b on any prefix of its inputs (in the order of the moments and weights
/// given): S is factored once; `weights(k)` solves the leading (k+1) block by two triangular solves.
class prefix_refit {
public:
  prefix_refit() = default;
  /// s: the inputs' moments; w: [N, K] row-major; b: [N] or null; in the same input order.
  prefix_refit(const input_moments& s, const float* w, const float* b, std::size_t n) : k_(s.dim), n_(n) {
    const std::size_t d = k_ + 1;
    const double ridge = detail::refit_ridge(s);
    l_.assign(d * d, 0.0);
    for (std::size_t i = 0; i < d; ++i)
      for (std::size_t j = 0; j <= i; ++j) l_[i * d + j] = s.moment(i, j) + (i == j && i > 0 ? ridge : 0.0);
    for (std::size_t j = 0; j < d; ++j) {  // in-place Cholesky, lower triangle
      double diag = l_[j * d + j];
      for (std::size_t t = 0; t < j; ++t) diag -= l_[j * d + t] * l_[j * d + t];
      if (!(diag > 0)) diag = j == 0 ? 1e-30 : ridge;  // an input the earlier ones determine
      const double lj = std::sqrt(diag);
      l_[j * d + j] = lj;
      for (std::size_t i = j + 1; i < d; ++i) {
        double v = l_[i * d + j];
        for (std::size_t t = 0; t < j; ++t) v -= l_[i * d + t] * l_[j * d + t];
        l_[i * d + j] = v / lj;
      }
    }
    // Z = L^{-1} C, forward substitution; Z's first k+1 rows serve every prefix of k inputs.
    z_ = detail::refit_cross(s, w, b, n);
    for (std::size_t i = 0; i < d; ++i)
      for (std::size_t o = 0; o < n; ++o) {
        double v = z_[i * n + o];
        for (std::size_t t = 0; t < i; ++t) v -= l_[i * d + t] * z_[t * n + o];
        z_[i * n + o] = v / l_[i * d + i];
      }
  }

  std::size_t inputs() const noexcept { return k_; }
  std::size_t outputs() const noexcept { return n_; }

  /// The refit on the first `k` inputs: weights [N, k] row-major and the bias [N].
  void weights(std::size_t k, std::vector<float>& w, std::vector<float>& b) const {
    if (k == 0 || k > k_)
      throw invalid_input("least-squares refit of a layer with " + std::to_string(k_) + " inputs on " +
                          std::to_string(k) + " of them");
    const std::size_t d = k_ + 1, m = k + 1;
    std::vector<double> u(m * n_);
    for (std::size_t ii = m; ii-- > 0;)  // L_mm^T u = Z_m, back substitution
      for (std::size_t o = 0; o < n_; ++o) {
        double v = z_[ii * n_ + o];
        for (std::size_t t = ii + 1; t < m; ++t) v -= l_[t * d + ii] * u[t * n_ + o];
        u[ii * n_ + o] = v / l_[ii * d + ii];
      }
    for (double v : u)
      if (!std::isfinite(v))
        throw invalid_input("least-squares refit on " + std::to_string(k) + " of " + std::to_string(k_) +
                            " inputs: the solution is not finite (are the calibration moments broken?)");
    w.assign(n_ * k, 0.f);
    b.assign(n_, 0.f);
    for (std::size_t o = 0; o < n_; ++o) {
      b[o] = static_cast<float>(u[o]);
      for (std::size_t i = 0; i < k; ++i) w[o * k + i] = static_cast<float>(u[(i + 1) * n_ + o]);
    }
  }

private:
  std::size_t k_ = 0, n_ = 0;
  std::vector<double> l_, z_;
};

/// A linear layer's refits on prefixes of its inputs, for models whose channel order holds the
/// layer's input moments (built once at load; `on` once per path).
class linear_refit {
public:
  linear_refit() = default;
  /// s: the layer's input moments, in the order the layer is packed in.
  linear_refit(const input_moments& s, const linear& l) {
    if (s.dim != l.in_features())
      throw invalid_input("least-squares refit: moments of " + std::to_string(s.dim) + " inputs for a layer [" +
                          std::to_string(l.out_features()) + " x " + std::to_string(l.in_features()) + "]");
    const auto w = l.weight_nk();
    fit_ = std::make_shared<prefix_refit>(s, w.data(), l.bias(), l.out_features());
  }
  explicit operator bool() const noexcept { return fit_ != nullptr; }

  /// `original` refit on its first k inputs, packed for `p`, with its int8 input range: null when k
  /// keeps every input (0 or in_features) or no moments were given.
  std::shared_ptr<const linear> on(std::size_t k, const linear& original, precision p) const {
    if (!fit_ || k == 0 || k >= fit_->inputs()) return nullptr;
    std::vector<float> w, b;
    fit_->weights(k, w, b);
    auto out = std::make_shared<linear>(w.data(), b.data(), fit_->outputs(), k);
    if (const auto* q = original.input_quant()) {
      const float lo = -q->scale * float(q->zero_point);
      out->set_input_range(lo, lo + 255.f * q->scale);
    }
    out->prepare(p);
    return out;
  }

private:
  std::shared_ptr<const prefix_refit> fit_;
};

}  // namespace drt
