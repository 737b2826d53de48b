#pragma once
// Resident-memory figures for the whole-model benchmarks, read from /proc/self/status.
#include <malloc.h>

#include <fstream>
#include <string>

#include <drt/core/buffer_pool.hpp>

namespace drt_bench {
/// A "VmRSS:"/"VmHWM:" line of /proc/self/status in MiB (0 where unavailable).
inline double proc_status_mib(const char* key) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key, 0) == 0) return std::stod(line.substr(line.find(':') + 1)) / 1024.0;  // kB
  return 0;
}

/// VmRSS in MiB after handing the free blocks of drt's buffer pool and of the allocator back to the
/// system (buffer_pool::trim, glibc malloc_trim), so that the difference across a model's load is
/// what the model holds, not what an earlier benchmark freed or the load's temporaries left behind.
inline double trimmed_rss_mib() {
  drt::buffer_pool::instance().trim();
  malloc_trim(0);
  return proc_status_mib("VmRSS:");
}
}  // namespace drt_bench
