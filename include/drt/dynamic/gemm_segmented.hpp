#pragma once
/// @file gemm_segmented.hpp
/// Transitional: the segmented GEMM wrapper that lived here was used only by the tests and moved to
/// tests/dynamic/gemm_segmented.hpp. The library's segmented reductions are `gemm_segment`
/// (layers/gemm.hpp), `conv2d_gemm` with `conv_segment`s (layers/conv2d.hpp) and the Winograd
/// runner (layers/winograd.hpp). models/resnet.hpp and models/upernet_swin.hpp still include this
/// header; once they include layers/gemm.hpp instead, delete it.

#include <xsimd/xsimd.hpp>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../layers/activation.hpp"
#include "../layers/gemm.hpp"
