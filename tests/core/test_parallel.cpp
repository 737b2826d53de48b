// parallel_for (core/parallel.hpp): every index once, and an exception thrown by the body on a
// worker thread reaches the caller (leaving an OpenMP region would terminate the program).
#include <doctest/doctest.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <vector>

#include <drt/core/parallel.hpp>

TEST_SUITE("core") {
  TEST_CASE("parallel_for visits every index once and rethrows a body's exception on the caller") {
    std::vector<std::atomic<int>> seen(1000);
    drt::parallel_for(seen.size(), [&](std::size_t i) { seen[i].fetch_add(1); }, 1e9);
    int wrong = 0;
    for (const auto& s : seen) wrong += s.load() != 1;
    CHECK(wrong == 0);
    for (const std::size_t bad : {std::size_t(0), std::size_t(517), std::size_t(999)}) {
      CAPTURE(bad);
      CHECK_THROWS_WITH_AS(drt::parallel_for(
                               1000,
                               [&](std::size_t i) {
                                 if (i == bad) throw std::runtime_error("item " + std::to_string(i));
                               },
                               1e9),
                           ("item " + std::to_string(bad)).c_str(), std::runtime_error);
    }
    // serial (too little work to split): the same
    CHECK_THROWS_AS(drt::parallel_for(3, [](std::size_t i) { if (i == 1) throw std::logic_error("x"); }, 1.0),
                    std::logic_error);
  }
}
