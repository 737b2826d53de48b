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
    run_rows<false>(m, x, ldx, y, ldy, allow_parallel, nullptr);
  }

  /// As run, and ranges[g] = the [min, max] of output rows [g * group_rows, (g + 1) * group_rows)
  /// (NaN, NaN where a group holds a non-finite value): the input range an int8 layer reading y
  /// would otherwise find in a pass of its own (`detail::value_range`, same values, same result),
  /// taken here from the values while they are in registers. Groups: e.g. one per image.
  void run_with_ranges(std::size_t m, const float* x, std::size_t ldx, float* y, std::size_t ldy,
                       std::size_t group_rows, std::pair<float, float>* ranges) const {
    std::vector<std::pair<float, float>> rows(m);
    run_rows<true>(m, x, ldx, y, ldy, true, rows.data());
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (std::size_t g = 0; group_rows && g * group_rows < m; ++g) {
      float lo = std::numeric_limits<float>::infinity(), hi = -lo;
      bool bad = false;
      for (std::size_t i = g * group_rows; i < std::min(m, (g + 1) * group_rows); ++i) {
        bad = bad || std::isnan(rows[i].first);
        lo = std::min(lo, rows[i].first);
        hi = std::max(hi, rows[i].second);
      }
      ranges[g] = bad ? std::pair<float, float>{nan, nan} : std::pair<float, float>{lo, hi};
    }
  }

private:
  /// The rows; with Range, row_range[i] = [min, max] of output row i (NaN, NaN if not finite).
  template <bool Range>
  void run_rows(std::size_t m, const float* x, std::size_t ldx, float* y, std::size_t ldy, bool allow_parallel,
                std::pair<float, float>* row_range) const noexcept {
    const std::size_t c = channels();
    auto row = [&](std::size_t i) {
      using simd = xsimd::batch<float>;
      constexpr std::size_t W = simd::size;
      const float* xr = x + i * ldx;
      float* yr = y + i * ldy;
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
      simd lo(std::numeric_limits<float>::infinity()), hi(-std::numeric_limits<float>::infinity()), bad(0.f);
      for (; j + W <= c; j += W) {
        const simd d = (simd::load_unaligned(xr + j) - simd(mean) - simd(shift)) * simd(inv);
        const simd o =
            xsimd::fma(d, simd::load_unaligned(gamma_.data() + j), simd::load_unaligned(beta_.data() + j));
        o.store_unaligned(yr + j);
        if constexpr (Range) {
          lo = xsimd::min(lo, o);
          hi = xsimd::max(hi, o);
          bad = bad + o * 0.f;  // NaN where a value is not finite (min / max drop NaNs)
        }
      }
      float l = std::numeric_limits<float>::infinity(), h = -l, nonfinite = 0.f;
      for (; j < c; ++j) {
        yr[j] = ((xr[j] - mean) - shift) * inv * gamma_[j] + beta_[j];
        if constexpr (Range) {
          l = std::min(l, yr[j]);
          h = std::max(h, yr[j]);
          nonfinite += yr[j] * 0.f;
        }
      }
      if constexpr (Range) {
        nonfinite += xsimd::hadd(bad);
        alignas(64) float a[W], b[W];  // xsimd 8.1 has no horizontal min / max
        lo.store_aligned(a);
        hi.store_aligned(b);
        for (std::size_t e = 0; e < W; ++e) {
          l = std::min(l, a[e]);
          h = std::max(h, b[e]);
        }
        const float nan = std::numeric_limits<float>::quiet_NaN();
        row_range[i] = std::isfinite(nonfinite) ? std::pair<float, float>{l, h} : std::pair<float, float>{nan, nan};
      }
    };
    if (allow_parallel) parallel_for(m, row, 8.0 * static_cast<double>(m) * c);
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
