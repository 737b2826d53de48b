#pragma once
/// @file simd.hpp
/// xsimd (and the compiler's intrinsics under it), included once for every drt header.
///
/// GCC 12's AVX-512 intrinsics start some operations from `_mm512_undefined_*()`, which
/// -Wmaybe-uninitialized reports wherever they are inlined into our kernels (GCC bug 105593,
/// fixed in GCC 13): 46 warnings in a build that are not about our code. The intrinsics headers
/// are read here, first, with that warning (and -Wuninitialized, which the same bug raises where
/// the operands are constants) off for their text only; the kernels themselves
/// keep every warning.

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"  // the same bug where the operands are constants
#endif
#include <immintrin.h>
#include <xsimd/xsimd.hpp>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
