// Load generator: a bounded, deterministic on/off busy-spin load (the deadline benchmark's load trace).
#include <doctest/doctest.h>

#include <chrono>
#include <thread>

#include "../../benchmarks/load_generator.hpp"

namespace {
using clk = std::chrono::steady_clock;
double since(clk::time_point t0) { return std::chrono::duration<double>(clk::now() - t0).count(); }
void sleep_until_s(clk::time_point t0, double s) {
  std::this_thread::sleep_until(t0 + std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(s)));
}
}  // namespace

TEST_SUITE("engine") {
  TEST_CASE("load_schedule: on/off, parsing, lookup and errors") {
    const auto s = drt::load_schedule::on_off(3, 2, 2, 1);
    REQUIRE(s.phases.size() == 5);
    CHECK(s.total_seconds() == doctest::Approx(11));
    CHECK(s.busy_seconds() == doctest::Approx(6));
    CHECK_FALSE(s.busy_at(0.5));
    CHECK(s.busy_at(1.5));
    CHECK_FALSE(s.busy_at(4.5));
    CHECK(s.busy_at(6.5));
    CHECK_FALSE(s.busy_at(11.5));  // after the end: idle
    CHECK(s.describe() == "idle:1,busy:3,idle:2,busy:3,idle:2");

    const auto p = drt::load_schedule::parse("idle:5,busy:2.5,off:1,on:1");
    REQUIRE(p.phases.size() == 4);
    CHECK(p.busy_seconds() == doctest::Approx(3.5));
    CHECK(p.busy_at(6));
    CHECK_FALSE(p.busy_at(7.8));

    CHECK_THROWS_WITH_AS(drt::load_schedule::parse("busy:3,work:2"),
                         "load schedule 'busy:3,work:2': phase 'work:2' must be busy:SECONDS or idle:SECONDS "
                         "(e.g. idle:5,busy:3,idle:3)",
                         drt::invalid_input);
    CHECK_THROWS_WITH_AS(drt::load_schedule::parse("busy:-1"),
                         "load schedule 'busy:-1': phase 'busy:-1' needs a non-negative number of seconds",
                         drt::invalid_input);
    CHECK_THROWS_WITH_AS(drt::load_schedule::parse(""), "load schedule '': no phases", drt::invalid_input);
    CHECK_THROWS_WITH_AS(drt::load_schedule::on_off(-1, 1, 1),
                         "load schedule: phase length -1 s must be a non-negative, finite number", drt::invalid_input);
    CHECK_THROWS_WITH_AS(drt::load_generator(s, 0), "load_generator: threads must be at least 1", drt::invalid_input);
  }

  TEST_CASE("load_generator: follows its schedule and stops by itself") {
    // busy 0.3 s, idle 0.3 s, twice: 1.2 s in all, half of it busy.
    drt::load_generator load(drt::load_schedule::on_off(0.3, 0.3, 2));
    CHECK_FALSE(load.running());
    const auto t0 = clk::now();
    load.start();
    CHECK_THROWS_WITH_AS(load.start(), "load_generator: already started (a generator plays its schedule once)",
                         drt::invalid_input);
    // Sample the middle of each phase (0.15 s of slack either side for a busy machine).
    sleep_until_s(t0, 0.15);
    CHECK(load.busy_now());
    sleep_until_s(t0, 0.45);
    CHECK_FALSE(load.busy_now());
    sleep_until_s(t0, 0.75);
    CHECK(load.busy_now());
    CHECK(load.running());
    // It ends by itself shortly after 1.2 s.
    while (load.running() && since(t0) < 5) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    CHECK_FALSE(load.running());
    CHECK(since(t0) < 2.0);
    CHECK_FALSE(load.busy_now());
    CHECK(load.elapsed_seconds() == doctest::Approx(1.2).epsilon(0.01));
    CHECK(load.busy_seconds() == doctest::Approx(0.6).epsilon(0.1));
    CHECK(load.busy_fraction() == doctest::Approx(0.5).epsilon(0.1));
    CHECK(load.spins() > 0);
    load.stop();  // after the end: a no-op
    CHECK(load.busy_fraction() == doctest::Approx(0.5).epsilon(0.1));
  }

  TEST_CASE("load_generator: stop() and the destructor end a long schedule promptly") {
    SUBCASE("destructor during a busy phase, two threads") {
      const auto t0 = clk::now();
      {
        drt::load_generator load(drt::load_schedule::on_off(60, 60, 10), 2);
        load.start();
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        CHECK(load.running());
      }  // joins here
      CHECK(since(t0) < 2.0);
    }
    SUBCASE("stop() during an idle phase") {
      drt::load_generator load(drt::load_schedule::on_off(0.05, 60, 10));
      const auto t0 = clk::now();
      load.start();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      CHECK_FALSE(load.busy_now());
      load.stop();
      CHECK_FALSE(load.running());
      CHECK(since(t0) < 2.0);
      CHECK(load.elapsed_seconds() == doctest::Approx(since(t0)).epsilon(0.5));
      CHECK(load.busy_seconds() == doctest::Approx(0.05).epsilon(0.5));
      CHECK(load.busy_fraction() < 0.5);
    }
    SUBCASE("never started: the destructor has nothing to join") {
      drt::load_generator load(drt::load_schedule::on_off(1, 1, 1));
      CHECK(load.busy_fraction() == 0);
      load.stop();
      CHECK_FALSE(load.running());
    }
  }
}
