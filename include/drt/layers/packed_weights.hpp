#pragma once
/// @file packed_weights.hpp
/// The weights of one GEMM-based layer in every precision a path may ask for: the fp32 panels packed
/// at construction, the bf16 and int8 panels packed once on first use (or ahead, when a path that
/// needs them is compiled), each serving every channel prefix (layers/gemm.hpp, gemm_bf16.hpp,
/// gemm_int8.hpp). The one place where a precision chooses its GEMM: `linear` and `conv2d` hold these.

#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

#include "../core/precision.hpp"
#include "gemm.hpp"
#include "gemm_bf16.hpp"
#include "gemm_int8.hpp"

namespace drt {

class packed_weights {
public:
  packed_weights() = default;
  /// w: [n, k] (PyTorch [out, in]) with row stride ld.
  packed_weights(const float* w, std::size_t n, std::size_t k, std::size_t ld) : w_(packed_matrix::from_nk(w, n, k, ld)) {}

  std::size_t k() const noexcept { return w_.k(); }
  std::size_t n() const noexcept { return w_.n(); }
  /// The fp32 panels (always packed).
  const packed_matrix& fp32() const noexcept { return w_; }
  /// Bytes of the fp32 panels.
  std::size_t bytes() const noexcept { return w_.bytes(); }

  /// Packs the weights for `p` once (thread-safe; fp32 is always packed).
  void prepare(precision p) const {
    if (p == precision::bf16)
      std::call_once(lowp_->bf16_once, [&] {
        const auto w = weight_nk();
        lowp_->bf16 = packed_matrix_bf16::from_nk(w.data(), n(), k(), k());
      });
    else if (p == precision::int8)
      std::call_once(lowp_->s8_once, [&] {
        const auto w = weight_nk();
        lowp_->s8 = packed_matrix_s8::from_nk(w.data(), n(), k(), k());
      });
  }

  /// The weights as [n, k] floats (unpacked).
  std::vector<float> weight_nk() const {
    const std::size_t nn = n(), kk = k(), nr = packed_matrix::nr;
    std::vector<float> w(nn * kk);
    for (std::size_t j = 0; j < nn; ++j)
      for (std::size_t i = 0; i < kk; ++i) w[j * kk + i] = w_.panel(j / nr)[i * nr + j % nr];
    return w;
  }

  /// y[m, :outputs] (row stride ldy) = epilogue(x[m, :inputs] (row stride ldx) x W[:inputs, :outputs])
  /// in `p`; int8 quantizes x with `q` (required for int8, ignored otherwise).
  void gemm(precision p, std::size_t m, std::size_t outputs, std::size_t inputs, const float* x, std::size_t ldx,
            float* y, std::size_t ldy, const gemm_epilogue& ep, bool allow_parallel,
            const quant_params* q = nullptr) const {
    switch (p) {
      case precision::fp32: drt::gemm(m, outputs, inputs, x, ldx, w_, y, ldy, ep, allow_parallel); return;
      case precision::bf16:
        prepare(p);
        gemm_bf16(m, outputs, inputs, x, ldx, lowp_->bf16, y, ldy, ep, allow_parallel);
        return;
      case precision::int8:
        prepare(p);
        gemm_s8(m, outputs, inputs, x, ldx, *q, lowp_->s8, y, ldy, ep, allow_parallel);
        return;
    }
  }

  /// As gemm in int8 with x already quantized: u8 x[m, :inputs] (row stride ldx) of parameters q.
  void gemm_u8(std::size_t m, std::size_t outputs, std::size_t inputs, const std::uint8_t* x, std::size_t ldx,
               const quant_params& q, float* y, std::size_t ldy, const gemm_epilogue& ep, bool allow_parallel) const {
    prepare(precision::int8);
    gemm_s8_u8(m, outputs, inputs, x, ldx, q, lowp_->s8, y, ldy, ep, allow_parallel);
  }

private:
  /// Packed copies in the low precisions, made on first use and shared by copies of the layer (the
  /// weights never change after construction).
  struct lowp_copies {
    std::once_flag bf16_once, s8_once;
    packed_matrix_bf16 bf16;
    packed_matrix_s8 s8;
  };
  packed_matrix w_;
  std::shared_ptr<lowp_copies> lowp_ = std::make_shared<lowp_copies>();
};

}  // namespace drt
