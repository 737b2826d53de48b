#pragma once
/// @file layer_norm.hpp
/// LayerNorm over the channel (last) dimension of token rows (ref: torch.nn.LayerNorm, biased variance).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <utility>
#include <vector>

#include "../core/simd.hpp"

#include "../core/parallel.hpp"
#include "../core/value_range.hpp"

namespace drt {

class layer_norm {
public:
  layer_norm() = default;
  layer_norm(const float* gamma, const float* beta, std::size_t channels, float eps)
      : gamma_(gamma, gamma + channels), beta_(beta, beta + channels), eps_(eps) {}

  std::size_t channels() const noexcept { return gamma_.size(); }

  /// x: [m, C] rows of stride ldx; y: [m, C] rows of stride ldy (may alias x).
  void run(std::size_t m, const float* x, std::size_t ldx, float* y, std::size_t ldy,
           bool allow_parallel = true) const noexcept {
    run_rows(m, x, ldx, y, ldy, allow_parallel);
  }

  /// As run, and ranges[g] = the [min, max] of output rows [g * group_rows, (g + 1) * group_rows)
  /// (NaN, NaN where a group holds a non-finite value): the input range an int8 layer reading y
  /// would otherwise find in a pass of its own (`detail::value_range`, same values, same result),
  /// taken here from the values while they are in registers. Groups: e.g. one per image.
  void run_with_ranges(std::size_t m, const float* x, std::size_t ldx, float* y, std::size_t ldy,
                       std::size_t group_rows, std::pair<float, float>* ranges) const {
    // Blocks of up to `block` rows inside one group each: a block's range is kept in vectors across
    // its rows and reduced once (a per-row horizontal min / max costs as much as a 64-wide row).
    constexpr std::size_t block = 32;
    if (group_rows == 0) return run(m, x, ldx, y, ldy);  // no groups: no ranges
    const std::size_t groups = (m + group_rows - 1) / group_rows;
    const std::size_t per_group = (group_rows + block - 1) / block;
    std::vector<std::pair<float, float>> block_range(groups * per_group);
    auto run_block = [&](std::size_t t) {
      const std::size_t g = t / per_group, r0 = g * group_rows + (t % per_group) * block;
      const std::size_t r1 = std::min({m, (g + 1) * group_rows, r0 + block});
      detail::range_accumulator acc;
      for (std::size_t i = r0; i < r1; ++i) normalize_row<true>(x + i * ldx, y + i * ldy, &acc);
      block_range[t] = acc.result();
    };
    if (groups) parallel_for(groups * per_group, run_block, 8.0 * static_cast<double>(m) * channels());
    for (std::size_t g = 0; g < groups; ++g) {
      std::pair<float, float> r = block_range[g * per_group];
      for (std::size_t t = g * per_group + 1; t < (g + 1) * per_group; ++t) r = detail::merge_ranges(r, block_range[t]);
      ranges[g] = r;
    }
  }

private:
  using simd = xsimd::batch<float>;
  static constexpr std::size_t W = simd::size;

  /// One row: yr = LayerNorm(xr); with Range, its outputs join `acc`.
  template <bool Range>
  void normalize_row(const float* xr, float* yr, detail::range_accumulator* acc) const noexcept {
    const std::size_t c = channels();
    simd s(0.f);
    std::size_t j = 0;
    for (; j + W <= c; j += W) s += simd::load_unaligned(xr + j);
    float sum = xsimd::hadd(s);
    for (; j < c; ++j) sum += xr[j];
    const float mean = sum / static_cast<float>(c);
    // Second pass around the first mean; its residual sum corrects the mean (rows with a large
    // common offset would otherwise lose digits in the float sum).
    simd v(0.f), r(0.f);
    j = 0;
    for (; j + W <= c; j += W) {
      const simd d = simd::load_unaligned(xr + j) - simd(mean);
      r += d;
      v = xsimd::fma(d, d, v);
    }
    float var = xsimd::hadd(v), res = xsimd::hadd(r);
    for (; j < c; ++j) {
      res += xr[j] - mean;
      var += (xr[j] - mean) * (xr[j] - mean);
    }
    // mean + shift is the true mean in more than float precision: x - mean is exact for x near
    // the mean, so subtracting the small shift afterwards keeps the digits a float mean would lose.
    const float shift = res / static_cast<float>(c);
    var = std::max(0.f, var / static_cast<float>(c) - shift * shift);
    const float inv = 1.0f / std::sqrt(var + eps_);
    j = 0;
    for (; j + W <= c; j += W) {
      const simd d = (simd::load_unaligned(xr + j) - simd(mean) - simd(shift)) * simd(inv);
      const simd o = xsimd::fma(d, simd::load_unaligned(gamma_.data() + j), simd::load_unaligned(beta_.data() + j));
      o.store_unaligned(yr + j);
      if constexpr (Range) acc->add(o);
    }
    for (; j < c; ++j) {
      yr[j] = ((xr[j] - mean) - shift) * inv * gamma_[j] + beta_[j];
      if constexpr (Range) acc->add(yr[j]);
    }
  }

  void run_rows(std::size_t m, const float* x, std::size_t ldx, float* y, std::size_t ldy,
                bool allow_parallel) const noexcept {
    auto row = [&](std::size_t i) { normalize_row<false>(x + i * ldx, y + i * ldy, nullptr); };
    if (allow_parallel) parallel_for(m, row, 8.0 * static_cast<double>(m) * channels());
    else
      for (std::size_t i = 0; i < m; ++i) row(i);
  }

  std::vector<float> gamma_, beta_;
  float eps_ = 1e-5f;
};

/// Plain-loop reference (double accumulation). x, y: [m, C] contiguous.
inline void layer_norm_ref(std::size_t m, std::size_t c, const float* x, const float* gamma, const float* beta,
                           float eps, float* y) {
  for (std::size_t i = 0; i < m; ++i) {
    double mean = 0, var = 0;
    for (std::size_t j = 0; j < c; ++j) mean += x[i * c + j];
    mean /= static_cast<double>(c);
    for (std::size_t j = 0; j < c; ++j) var += (x[i * c + j] - mean) * (x[i * c + j] - mean);
    var /= static_cast<double>(c);
    for (std::size_t j = 0; j < c; ++j)
      y[i * c + j] = static_cast<float>((x[i * c + j] - mean) / std::sqrt(var + eps) * gamma[j] + beta[j]);
  }
}

}  // namespace drt
