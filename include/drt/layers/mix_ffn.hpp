#pragma once
/// @file mix_ffn.hpp
/// Mix-FFN (ref: transformers modeling_segformer.py, SegformerMixFFN): dense1 (C -> rC), 3x3
/// depthwise conv with bias, activation, dense2 (rC -> C). The activation is fused into the
/// depthwise conv and the residual add into dense2.

#include <algorithm>
#include <cstddef>
#include <vector>

#include "../core/observer.hpp"
#include "../core/parallel.hpp"
#include "../core/profiler.hpp"
#include "conv2d.hpp"
#include "gemm.hpp"
#include "linear.hpp"
#include "token_merge.hpp"

namespace drt {

struct mix_ffn_weights {
  const float *dense1_w, *dense1_b;  ///< [rC, C], [rC]
  const float *dw_w, *dw_b;          ///< [rC, 1, 3, 3], [rC]
  const float *dense2_w, *dense2_b;  ///< [C, rC], [C]
};

class mix_ffn {
public:
  mix_ffn() = default;
  mix_ffn(const mix_ffn_weights& w, std::size_t channels, std::size_t hidden, activation act = activation::gelu)
      : dense1_(w.dense1_w, w.dense1_b, hidden, channels), dw_(w.dw_w, w.dw_b, hidden),
        dense2_(w.dense2_w, w.dense2_b, channels, hidden), act_(act) {}

  std::size_t channels() const noexcept { return dense1_.in_features(); }
  std::size_t hidden() const noexcept { return dense1_.out_features(); }
  double macs(std::size_t h, std::size_t w) const noexcept {
    const double t = double(h) * w;
    return 2 * t * channels() * hidden() + t * hidden() * 9;
  }

  /// x: layer-normed tokens [N, H*W, C]; out holds the residual on entry and receives residual + ffn(x).
  /// `kept` (0: all) computes only the first `kept` hidden units: dense1's first outputs, the
  /// depthwise conv on those channels, dense2's first inputs (a prefix of every packed panel: the
  /// same weights serve every width).
  /// `bias2` (optional, C floats) replaces dense2's bias: the compensated bias of a prefix
  /// (`dense2().compensated_bias`).
  /// `p`: dense1's and dense2's arithmetic (the depthwise conv stays fp32).
  ///
  /// The three layers run fused, a band of `band_rows` image rows at a time, so that the hidden
  /// units (4x the channels) stay in the core's cache instead of crossing memory three times
  /// (dense1 writes them, the conv reads and writes them, dense2 reads them): the band's dense1 rows
  /// (with one row of halo above and below, kept from the previous band), its conv rows, then dense2
  /// on the band. Each thread sweeps its own run of bands; the rows on either side of a boundary
  /// between two runs are computed once, before, and shared. int8: dense1 quantizes with one range
  /// for the whole input and dense2 per band of `band_rows` rows (a function of the shape only), so
  /// the result does not depend on the number of threads.
  /// `x_range` (optional): the [min, max] of all of x from its producer (`layer_norm::run_with_ranges`),
  /// which int8 dense1 takes instead of a pass of its own (the same values, the same quantization).
  void run(const float* x, std::size_t n, std::size_t h, std::size_t w, float* out, std::size_t kept = 0,
           const float* bias2 = nullptr, precision p = precision::fp32,
           const std::pair<float, float>* x_range = nullptr) const {
    const std::size_t r = kept ? std::min(kept, hidden()) : hidden(), c = channels(), row = w * r;
    if (n * h * w == 0) return;
    profile_scope ps("mlp");
    quant_params q1;
    if (p == precision::int8)
      q1 = x_range ? dense1_.int8_input_quant(*x_range, c, r) : dense1_.int8_input_quant(x, n * h * w, c, c, r);
    const quant_params* q1p = p == precision::int8 ? &q1 : nullptr;
    const std::size_t R = band_rows(h, w, r), bands = (h + R - 1) / R;
    // Runs of whole bands per image: one per thread (none shared across images).
    const std::size_t threads = in_parallel() ? 1 : static_cast<std::size_t>(std::max(1, max_threads()));
    const std::size_t want = std::min(bands, std::max<std::size_t>(1, (threads + n - 1) / n));
    const std::size_t per_run = (bands + want - 1) / want, runs = (bands + per_run - 1) / per_run;
    const bool single = n * runs == 1;  // one run: the layers parallelize inside instead
    auto first_row = [&](std::size_t k) { return std::min(h, k * per_run * R); };

    // dense1 of rows [y0, y1) of image `img` into dst (rows contiguous).
    auto dense1_rows = [&](std::size_t img, std::size_t y0, std::size_t y1, float* dst, bool par) {
      if (y1 > y0)
        dense1_.run_prefix((y1 - y0) * w, r, c, x + ((img * h + y0) * w) * c, c, dst, r, activation::none, nullptr, 0,
                           nullptr, p, par, q1p);
    };
    // Boundary rows: for the boundary at row yb between runs k-1 and k, rows yb-1 and yb.
    detail::aligned_vector<float> edges(runs > 1 ? n * (runs - 1) * 2 * row : 0);
    auto edge = [&](std::size_t img, std::size_t k) { return edges.data() + (img * (runs - 1) + (k - 1)) * 2 * row; };
    if (runs > 1)
      parallel_for(n * (runs - 1), [&](std::size_t i) {
        const std::size_t img = i / (runs - 1), k = i % (runs - 1) + 1, yb = first_row(k);
        dense1_rows(img, yb - 1, yb + 1, edge(img, k), false);
      });

    auto sweep = [&](std::size_t img, std::size_t k) {
      const std::size_t y0 = first_row(k), y1 = first_row(k + 1);
      // dense1's rows of a band and its halo live in a ring of R + 2 rows, row y in slot y % (R + 2):
      // the halo rows a band shares with the previous one stay where they are (moving them to the
      // front of a window cost 2 of every R + 2 rows' bytes again).
      const std::size_t slots = R + 2;
      // Each thread's own buffers, kept between calls (allocated afresh, their megabytes moved the
      // allocator's limits under the GEMMs' buffers: ~6 % of the int8 B2 Mix-FFN time, `drt profile`).
      thread_local detail::aligned_vector<float> ring_buf, conv_buf;
      if (ring_buf.size() < slots * row) ring_buf.resize(slots * row);
      if (conv_buf.size() < R * row) conv_buf.resize(R * row);
      float* const ring = ring_buf.data();
      float* const conv = conv_buf.data();
      auto slot = [&](std::size_t y) { return ring + (y % slots) * row; };
      std::size_t have1 = 0;  // the previous band's rows end here
      // Rows [a, b) into `dst`: the boundary rows from the edge store, the others computed.
      auto fetch = [&](std::size_t a, std::size_t b, float* dst) {
        std::size_t y = a;
        while (y < b) {
          const bool top = k > 0 && y + 1 >= y0 && y <= y0, bottom = k + 1 < runs && y + 1 >= y1 && y <= y1;
          if (top || bottom) {
            const float* e = top ? edge(img, k) + (y + 1 - y0) * row : edge(img, k + 1) + (y + 1 - y1) * row;
            std::copy(e, e + row, dst + (y - a) * row);
            ++y;
            continue;
          }
          std::size_t e = y + 1;
          while (e < b && !(k + 1 < runs && e + 1 >= y1)) ++e;
          dense1_rows(img, y, e, dst + (y - a) * row, single);
          y = e;
        }
      };
      for (std::size_t yy = y0; yy < y1; yy += R) {
        const std::size_t ye = std::min(y1, yy + R);
        const std::size_t lo = yy ? yy - 1 : 0, hi = std::min(h, ye + 1);
        // Rows [lo, have1) are still in the ring (the previous band began at or before lo); the
        // others are fetched in runs of slots that do not wrap.
        for (std::size_t a = std::max(lo, have1); a < hi;) {
          const std::size_t e = std::min(hi, a + (slots - a % slots));
          fetch(a, e, slot(a));
          a = e;
        }
        have1 = hi;
        // int8: each conv row's outputs are ranged as they are stored, for dense2's quantization of
        // the band (the values of its own range pass: the same quantization).
        std::pair<float, float> row_range[64];
        const bool ranged = p == precision::int8 && ye - yy <= 64;
        auto conv_row = [&](std::size_t i) {
          const std::size_t oy = yy + i;
          const float* rows[3];
          for (std::size_t ky = 0; ky < 3; ++ky)
            rows[ky] = oy + ky >= 1 && oy + ky - 1 < h ? slot(oy + ky - 1) : nullptr;
          float* o = conv + i * row;
          detail::range_accumulator acc;
          detail::range_accumulator* a = ranged ? &acc : nullptr;
          switch (act_) {  // the kernel is compiled per activation; one branch per row
            case activation::gelu: dw_.run_row<activation::gelu>(rows, w, r, o, a); break;
            case activation::relu: dw_.run_row<activation::relu>(rows, w, r, o, a); break;
            case activation::none: dw_.run_row<activation::none>(rows, w, r, o, a); break;
          }
          if (ranged) row_range[i] = acc.result();
        };
        if (single) parallel_for(ye - yy, conv_row, 18.0 * (ye - yy) * row);
        else
          for (std::size_t i = 0; i < ye - yy; ++i) conv_row(i);
        quant_params q2;
        if (ranged) {
          std::pair<float, float> band = row_range[0];
          for (std::size_t i = 1; i < ye - yy; ++i) band = detail::merge_ranges(band, row_range[i]);
          q2 = dense2_.int8_input_quant(band, r, c);
        }
        float* o = out + (img * h + yy) * w * c;
        dense2_.run_prefix((ye - yy) * w, c, r, conv, r, o, c, activation::none, o, c, bias2, p, single,
                           ranged ? &q2 : nullptr);
      }
    };
    parallel_for(n * runs, [&](std::size_t i) { sweep(i / runs, i % runs); }, 1e9);
  }

  /// The Mix-FFN of one image whose tokens are merged (`tm`, layers/token_merge.hpp; path knob
  /// `tokens`): x holds its layer-normed tokens [h*w, C], averaged per merged token for dense1.
  /// The depthwise conv and activation run at every grid position, each tap reading its token's
  /// merged dense1 output (the grid is never written out: its 4C-wide rows would cross memory three
  /// times), and are averaged over each merged token's members for dense2; `out` ([h*w, C], the
  /// residual) receives each token's merged result. dense1 and dense2 do tm.kept() rows of work
  /// instead of h*w. kept, bias2, p: as `run`.
  void run_merged(const float* x, const token_merge& tm, std::size_t h, std::size_t w, float* out,
                  std::size_t kept = 0, const float* bias2 = nullptr, precision p = precision::fp32) const {
    const std::size_t r = kept ? std::min(kept, hidden()) : hidden(), c = channels(), t = h * w, m = tm.kept();
    if (tm.tokens() != t)
      throw shape_error("mix_ffn: a token merge plan of " + std::to_string(tm.tokens()) + " tokens for a " +
                        std::to_string(h) + "x" + std::to_string(w) + " grid");
    if (t == 0) return;
    profile_scope ps("mlp");
    detail::aligned_vector<float> merged(m * c), hidden_m(m * r), conv_m(m * r), y(m * c);
    tm.merge(x, c, c, merged.data(), c);
    dense1_.run_prefix(m, r, c, merged.data(), c, hidden_m.data(), r, activation::none, nullptr, 0, nullptr, p);
    switch (act_) {  // the kernel is compiled per activation
      case activation::gelu: merged_conv<activation::gelu>(tm, h, w, r, hidden_m.data(), conv_m.data()); break;
      case activation::relu: merged_conv<activation::relu>(tm, h, w, r, hidden_m.data(), conv_m.data()); break;
      case activation::none: merged_conv<activation::none>(tm, h, w, r, hidden_m.data(), conv_m.data()); break;
    }
    dense2_.run_prefix(m, c, r, conv_m.data(), r, y.data(), c, activation::none, nullptr, 0, bias2, p);
    tm.unmerge_add(y.data(), c, c, out, c);
  }

  /// Image rows per band: enough that a band's hidden units (R + 2 rows of dense1's outputs, R of the
  /// conv's) stay within about 1 MiB (Zen 5's L2 per core; Intel's recent cores have 2), at least 64
  /// pixels per GEMM, at most half the image (so two threads share even a small one).
  static std::size_t band_rows(std::size_t h, std::size_t w, std::size_t r) noexcept {
    const std::size_t row_bytes = std::max<std::size_t>(1, w * r * sizeof(float));
    std::size_t R = (std::size_t(1) << 20) / (2 * row_bytes);
    R = R > 1 ? R - 1 : 1;
    R = std::max(R, (64 + w - 1) / std::max<std::size_t>(1, w));
    return std::max<std::size_t>(1, std::min(R, (h + 1) / 2));
  }

  /// The consumer of the hidden units (its compensated_bias keeps a prefix unbiased).
  const linear& dense2() const noexcept { return dense2_; }
  /// dense1 and dense2 with their checkpoint module names (relative to the mlp module).
  template <class F>
  void for_each_linear(F&& f) {
    f("dense1", dense1_), f("dense2", dense2_);
  }
  template <class F>
  void for_each_linear(F&& f) const {
    f("dense1", dense1_), f("dense2", dense2_);
  }

private:
  /// out[k] = the mean over merged token k's members of act(depthwise conv) at the member's grid
  /// position, each tap reading the merged row of the token under it (hidden: [tm.kept(), r]).
  template <activation A>
  void merged_conv(const token_merge& tm, std::size_t h, std::size_t w, std::size_t r, const float* hidden,
                   float* out) const {
    parallel_for(tm.kept(), [&](std::size_t k) {
      thread_local detail::aligned_vector<float> point;
      if (point.size() < r) point.resize(r);
      float* o = out + k * r;
      const std::size_t size = tm.size(k);
      for (std::size_t t = 0; t < size; ++t) {
        const std::size_t i = tm.members(k)[t], y = i / w, xq = i % w;
        const float* taps[9];
        for (std::size_t ky = 0; ky < 3; ++ky)
          for (std::size_t kx = 0; kx < 3; ++kx) {
            const bool in = y + ky >= 1 && y + ky - 1 < h && xq + kx >= 1 && xq + kx - 1 < w;
            taps[ky * 3 + kx] = in ? hidden + std::size_t(tm.representative((y + ky - 1) * w + xq + kx - 1)) * r : nullptr;
          }
        dw_.run_point<A>(taps, r, t == 0 ? o : point.data());
        if (t > 0)
          for (std::size_t j = 0; j < r; ++j) o[j] += point[j];
      }
      if (size > 1) {
        const float s = 1.f / static_cast<float>(size);
        for (std::size_t j = 0; j < r; ++j) o[j] *= s;
      }
    }, 18.0 * double(h) * w * r);
  }

  linear dense1_;
  conv2d_dw<3> dw_;
  linear dense2_;
  activation act_ = activation::gelu;
};

}  // namespace drt
