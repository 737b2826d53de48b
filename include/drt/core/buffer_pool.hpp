#pragma once
/// @file buffer_pool.hpp
/// A process-wide cache of large, 64-byte aligned activation buffers.
///
/// Why: one forward pass of SegFormer-B2 at 512x512 allocates and frees ~1 GB of activations, a few
/// buffers of 50-200 MB. glibc serves blocks above its mmap threshold (at most 32 MB) with fresh
/// mmap()s, so every frame pays a page fault and a kernel zero-fill per 4 KB page: ~150 ms of the
/// B2 decoder's ~740 ms on the 2-core machine. Frames of a video allocate the same sizes again and
/// again, so keeping freed blocks and handing them out again removes that cost entirely; the
/// peak resident memory stays the peak of one frame (a block is only cached after it was freed).
///
/// Blocks below `min_block_bytes` go straight to the aligned heap. A request takes the smallest
/// cached block that is large enough and at most 1/4 larger (best fit); freed blocks are cached while
/// the cache holds less than `capacity_bytes()` (default 2 GiB, env `DRT_BUFFER_POOL_MB`, 0 turns
/// the cache off). `trim()` returns every cached block to the system. Under AddressSanitizer the
/// cache is off by default (a recycled block would hide a use-after-free).
///
/// Recycled blocks hold stale data (as `malloc` may): a buffer must be written before it is read.
/// Defining `DRT_BUFFER_POOL_POISON` fills every handed-out block with NaN, which the test build
/// does to catch code that relies on fresh pages being zero.

#include <cstddef>
#include <algorithm>
#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>

namespace drt {

class buffer_pool {
public:
  static constexpr std::size_t alignment = 64;
  static constexpr std::size_t min_block_bytes = std::size_t(1) << 18;  ///< 256 KiB

  struct statistics {
    std::size_t hits = 0;           ///< requests served from the cache
    std::size_t misses = 0;         ///< pooled-size requests that had to allocate
    std::size_t cached_blocks = 0;  ///< blocks waiting in the cache
    std::size_t cached_bytes = 0;
    std::size_t live_bytes = 0;     ///< pooled-size blocks handed out and not yet freed
    std::size_t peak_live_bytes = 0;
  };

  /// The process-wide pool. Never destroyed, so tensors with static storage may outlive main().
  static buffer_pool& instance() {
    static buffer_pool* pool = new buffer_pool();
    return *pool;
  }

  void* allocate(std::size_t bytes) {
    if (bytes == 0) bytes = 1;
    if (bytes < min_block_bytes) return raw_allocate(bytes);
    void* p = nullptr;
    std::size_t size = bytes;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.lower_bound(bytes);
      if (it != free_.end() && it->first - bytes <= bytes / 4) {
        size = it->first;
        p = it->second;
        free_.erase(it);
        cached_bytes_ -= size;
        ++stats_.hits;
      } else {
        ++stats_.misses;
      }
    }
    if (!p) p = raw_allocate(bytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      sizes_[p] = size;
      stats_.live_bytes += size;
      if (stats_.live_bytes > stats_.peak_live_bytes) stats_.peak_live_bytes = stats_.live_bytes;
    }
#ifdef DRT_BUFFER_POOL_POISON
    float* f = static_cast<float*>(p);
    for (std::size_t i = 0; i < size / sizeof(float); ++i) f[i] = std::numeric_limits<float>::quiet_NaN();
#endif
    return p;
  }

  void deallocate(void* p, std::size_t bytes) noexcept {
    if (!p) return;
    if (bytes == 0) bytes = 1;
    if (bytes < min_block_bytes) return raw_deallocate(p);
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = sizes_.find(p);
    const std::size_t size = it != sizes_.end() ? it->second : bytes;
    if (it != sizes_.end()) sizes_.erase(it);
    stats_.live_bytes -= std::min(stats_.live_bytes, size);
    if (cached_bytes_ + size <= capacity_) {
      try {
        free_.emplace(size, p);
        cached_bytes_ += size;
        return;
      } catch (...) {  // no memory for the map node: just free the block
      }
    }
    raw_deallocate(p);
  }

  /// Returns every cached block to the system.
  void trim() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [size, p] : free_) raw_deallocate(p);
    free_.clear();
    cached_bytes_ = 0;
  }

  /// Most bytes kept in the cache (0: off). Lowering it trims.
  void set_capacity(std::size_t bytes) noexcept {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      capacity_ = bytes;
      if (cached_bytes_ <= capacity_) return;
    }
    trim();
  }
  std::size_t capacity_bytes() const noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    return capacity_;
  }

  /// Restarts peak_live_bytes from the bytes live now (to measure the peak of one call).
  void reset_peak() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_live_bytes = stats_.live_bytes;
  }

  statistics stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    statistics s = stats_;
    s.cached_blocks = free_.size();
    s.cached_bytes = cached_bytes_;
    return s;
  }

  buffer_pool(const buffer_pool&) = delete;
  buffer_pool& operator=(const buffer_pool&) = delete;

private:
  buffer_pool() : capacity_(default_capacity()) {}

  static std::size_t default_capacity() noexcept {
    if (const char* env = std::getenv("DRT_BUFFER_POOL_MB")) {
      char* end = nullptr;
      const unsigned long long mb = std::strtoull(env, &end, 10);
      if (end != env && *end == '\0') return static_cast<std::size_t>(mb) << 20;
    }
#if defined(__SANITIZE_ADDRESS__)
    return 0;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return 0;
#endif
#endif
    return std::size_t(2) << 30;
  }

  static void* raw_allocate(std::size_t bytes) {
    const std::size_t rounded = (bytes + alignment - 1) / alignment * alignment;
    void* p = std::aligned_alloc(alignment, rounded);
    if (!p) throw std::bad_alloc();
    return p;
  }
  static void raw_deallocate(void* p) noexcept { std::free(p); }

  mutable std::mutex mutex_;
  std::multimap<std::size_t, void*> free_;
  std::unordered_map<void*, std::size_t> sizes_;
  std::size_t cached_bytes_ = 0;
  std::size_t capacity_;
  statistics stats_;
};

/// Standard allocator over buffer_pool. Elements are default-initialized (no zero-fill for
/// floats): activation buffers are always written before they are read.
template <class T>
struct pool_allocator {
  using value_type = T;
  template <class U>
  struct rebind {
    using other = pool_allocator<U>;
  };
  pool_allocator() noexcept = default;
  template <class U>
  pool_allocator(const pool_allocator<U>&) noexcept {}

  T* allocate(std::size_t n) {
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_alloc();
    return static_cast<T*>(buffer_pool::instance().allocate(n * sizeof(T)));
  }
  void deallocate(T* p, std::size_t n) noexcept { buffer_pool::instance().deallocate(p, n * sizeof(T)); }

  template <class U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible<U>::value) {
    ::new (static_cast<void*>(p)) U;  // default-initialization: no zeroing for floats
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};
template <class T, class U>
bool operator==(const pool_allocator<T>&, const pool_allocator<U>&) noexcept { return true; }
template <class T, class U>
bool operator!=(const pool_allocator<T>&, const pool_allocator<U>&) noexcept { return false; }

}  // namespace drt
