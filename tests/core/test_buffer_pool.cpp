// buffer_pool: reuse of freed large blocks, best fit, capacity, trim, alignment, the NaN poison of
// the test build, and concurrent use from OpenMP threads.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <drt/core/buffer_pool.hpp>
#include <drt/core/tensor.hpp>

namespace {

/// Sets the pool's capacity for one test case (the sanitizer build starts with the cache off).
struct capacity_guard {
  std::size_t saved;
  explicit capacity_guard(std::size_t bytes) : saved(drt::buffer_pool::instance().capacity_bytes()) {
    drt::buffer_pool::instance().trim();
    drt::buffer_pool::instance().set_capacity(bytes);
  }
  ~capacity_guard() { drt::buffer_pool::instance().set_capacity(saved); }
};

bool aligned64(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 64 == 0; }

}  // namespace

TEST_SUITE("core") {
  TEST_CASE("buffer_pool: a freed large block is handed out again, best fit within 1/4") {
    capacity_guard g(std::size_t(64) << 20);
    auto& pool = drt::buffer_pool::instance();
    const std::size_t n = (std::size_t(3) << 20) + 4096 * 7;  // a size no other test uses
    const auto before = pool.stats();
    void* a = pool.allocate(n);
    CHECK(aligned64(a));
    CHECK(pool.stats().misses == before.misses + 1);
    CHECK(pool.stats().live_bytes >= before.live_bytes + n);
    pool.deallocate(a, n);
    CHECK(pool.stats().cached_blocks == 1);
    CHECK(pool.stats().cached_bytes == n);

    void* b = pool.allocate(n - 1000);  // smaller request, within 1/4: the same block
    CHECK(b == a);
    CHECK(pool.stats().hits == before.hits + 1);
    CHECK(pool.stats().cached_blocks == 0);
    pool.deallocate(b, n - 1000);  // the block keeps its real size
    CHECK(pool.stats().cached_bytes == n);

    void* c = pool.allocate(n / 2);  // the cached block is too large (more than 1/4 waste)
    CHECK(c != a);
    void* d = pool.allocate(n + 1);  // too small
    CHECK(d != a);
    pool.deallocate(c, n / 2);
    pool.deallocate(d, n + 1);
    CHECK(pool.stats().cached_blocks == 3);
    pool.trim();
    CHECK(pool.stats().cached_blocks == 0);
    CHECK(pool.stats().cached_bytes == 0);
  }

  TEST_CASE("buffer_pool: capacity bounds the cache; 0 turns it off; small blocks bypass it") {
    auto& pool = drt::buffer_pool::instance();
    const std::size_t n = std::size_t(5) << 20;
    {
      capacity_guard g(n + n / 2);  // room for one block
      void* a = pool.allocate(n);
      void* b = pool.allocate(n);
      pool.deallocate(a, n);
      pool.deallocate(b, n);  // over capacity: freed
      CHECK(pool.stats().cached_blocks == 1);
      CHECK(pool.stats().cached_bytes == n);
      pool.set_capacity(n / 2);  // lowering below the cached bytes trims
      CHECK(pool.stats().cached_blocks == 0);
    }
    {
      capacity_guard g(0);
      void* a = pool.allocate(n);
      pool.deallocate(a, n);
      CHECK(pool.stats().cached_blocks == 0);
    }
    {
      capacity_guard g(std::size_t(64) << 20);
      const auto before = pool.stats();
      void* s = pool.allocate(1000);  // below min_block_bytes: plain aligned heap
      CHECK(aligned64(s));
      pool.deallocate(s, 1000);
      CHECK(pool.stats().hits == before.hits);
      CHECK(pool.stats().misses == before.misses);
      CHECK(pool.stats().cached_blocks == 0);
    }
  }

  TEST_CASE("buffer_pool: tensors recycle their storage; the test build poisons it with NaN") {
    capacity_guard g(std::size_t(256) << 20);
    const float* first = nullptr;
    {
      drt::tensor4 t = drt::tensor4::from_shape({1, 97, 101, 64});  // 2.5 MB
      CHECK(aligned64(t.data()));
#ifdef DRT_BUFFER_POOL_POISON
      CHECK(std::isnan(t.data()[0]));
      CHECK(std::isnan(t.data()[t.size() - 1]));
#endif
      std::fill(t.begin(), t.end(), 1.0f);
      first = t.data();
    }
    drt::tensor4 u = drt::tensor4::from_shape({1, 101, 97, 64});  // the same byte count
    CHECK(u.data() == first);
#ifdef DRT_BUFFER_POOL_POISON
    CHECK(std::isnan(u.data()[12345]));  // not the 1.0 left behind
#endif
    std::vector<float, drt::pool_allocator<float>> v(1 << 17);
    CHECK(aligned64(v.data()));
  }

  TEST_CASE("buffer_pool: concurrent allocations from OpenMP threads") {
    capacity_guard g(std::size_t(512) << 20);
    auto& pool = drt::buffer_pool::instance();
    const auto before = pool.stats();
    int bad = 0;
#pragma omp parallel for reduction(+ : bad)
    for (int i = 0; i < 64; ++i) {
      const std::size_t n = (std::size_t(1) << 20) + std::size_t(i % 4) * (std::size_t(1) << 18);
      auto* p = static_cast<float*>(pool.allocate(n));
      for (std::size_t k = 0; k < n / sizeof(float); k += 1024) p[k] = float(i);
      for (std::size_t k = 0; k < n / sizeof(float); k += 1024) bad += p[k] != float(i);
      pool.deallocate(p, n);
    }
    CHECK(bad == 0);
    const auto after = pool.stats();
    CHECK(after.hits + after.misses == before.hits + before.misses + 64);
    CHECK(after.live_bytes == before.live_bytes);
  }
}
