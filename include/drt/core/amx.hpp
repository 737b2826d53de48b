#pragma once
/// @file amx.hpp
/// Intel AMX (Advanced Matrix Extensions: eight 1 KB tile registers and the `tdpbusd` / `tdpbf16ps`
/// tile dot products, Sapphire Rapids and later): whether this build and this process may use it,
/// and the one tile configuration drt's low-precision kernels use.
///
/// Compiled in where the compiler targets AMX-TILE, AMX-INT8 and AMX-BF16 (`-march=native` on such
/// a CPU: GCC 12 defines __AMX_TILE__ / __AMX_INT8__ / __AMX_BF16__). Linux hands out the tile
/// state (8 KB per thread) only to a process that asks for it (arch_prctl ARCH_REQ_XCOMP_PERM,
/// Linux 5.16+, Documentation/arch/x86/xstate.rst); `amx_usable()` asks once, and answers false
/// where the kernel refuses, so the GEMMs fall back to the AVX-512 kernels. DRT_AMX=0 in the
/// environment turns AMX off for the process (to compare kernels, or where another library owns
/// the tiles).

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "simd.hpp"

#if defined(__AMX_TILE__) && defined(__AMX_INT8__) && defined(__AMX_BF16__) && defined(__linux__) && \
    defined(__AVX512BW__) && defined(__AVX512VNNI__) && defined(__AVX512BF16__)
#define DRT_HAVE_AMX 1
#include <sys/syscall.h>
#include <unistd.h>
#else
#define DRT_HAVE_AMX 0
#endif

namespace drt {

/// Whether the low-precision GEMMs run on AMX tiles in this process: compiled in, granted by the
/// kernel, and not turned off with DRT_AMX=0. Decided once (thread-safe).
inline bool amx_usable() noexcept {
#if DRT_HAVE_AMX
  static const bool usable = [] {
    const char* env = std::getenv("DRT_AMX");
    if (env && std::strcmp(env, "0") == 0) return false;
    constexpr long arch_req_xcomp_perm = 0x1023;  // asm/prctl.h
    constexpr long xfeature_xtiledata = 18;       // the tile data state component
    return syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) == 0;
  }();
  return usable;
#else
  return false;
#endif
}

namespace detail {

#if DRT_HAVE_AMX
/// The tile configuration of every drt AMX kernel (palette 1): all eight tiles 16 rows x 64 bytes
/// (tiles 0-3 the int32 / fp32 accumulators of a 32 x 32 output block, 4-5 two 16-row blocks of A,
/// 6-7 two 16-column panels of B).
struct alignas(64) amx_tile_config {
  std::uint8_t palette = 1;
  std::uint8_t start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t colsb[16] = {};
  std::uint8_t rows[16] = {};
  amx_tile_config() noexcept {
    for (int t = 0; t < 8; ++t) {
      colsb[t] = 64;
      rows[t] = 16;
    }
  }
};

/// Loads the configuration on the calling thread (about 50 ns: once per GEMM task, not per tile).
/// Callers choose the AMX kernels only where `amx_usable()`; asking here too keeps a direct use of
/// a kernel (tests, benchmarks) from faulting before the process has asked for the tiles.
inline void amx_begin() noexcept {
  (void)amx_usable();
  static const amx_tile_config config;
  _tile_loadconfig(&config);
}
/// Returns the tiles to their initial state (cheaper context switches; the next task reloads).
inline void amx_end() noexcept { _tile_release(); }
#endif

}  // namespace detail
}  // namespace drt
