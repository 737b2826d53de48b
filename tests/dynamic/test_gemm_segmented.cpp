// gemm_segmented (tests/dynamic/gemm_segmented.hpp, a wrapper over the library's segmented GEMM) against its plain reference over the tile edges:
// m around the micro-tile and the row block, n around the panel width, segment lengths below, at and
// above the reduction block (detail::gemm_kc), empty segments, shifted A rows, bias / activation variants;
// and the segment merging.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "gemm_segmented.hpp"

#include "test_support.hpp"

using namespace drt_test;

TEST_SUITE("dynamic") {
  TEST_CASE("gemm_segmented matches the reference over tile edges") {
    const std::size_t nr = drt::packed_matrix::nr;
    struct shape {
      std::size_t m, n;
      std::vector<drt::gemm_segment> segs;  // a_offset, b_row, k
    };
    const std::size_t K = 2 * drt::detail::gemm_kc + 100;  // B's reduction rows
    const std::vector<shape> shapes = {
        {1, 1, {{0, 0, 1}}},
        {drt::detail::gemm_mr - 1, nr - 1, {{3, 5, 7}, {20, 100, 9}}},
        {drt::detail::gemm_mr, nr, {{0, 0, drt::detail::gemm_kc}}},
        {drt::detail::gemm_mr + 1, nr + 1, {{0, 0, drt::detail::gemm_kc + 1}, {300, 400, 3}}},
        {drt::detail::gemm_mc + 3, 2 * nr + 5, {{10, 600, 100}, {0, 0, 0}, {200, 17, 300}}},  // an empty segment in the middle
        {2 * drt::detail::gemm_mc + 7, 3 * nr, {{0, 0, 2 * drt::detail::gemm_kc + 13}, {600, 0, 60}}},      // segments read B rows twice
        {37, 45, {}},                                                           // no reduction: bias only
    };
    for (const auto& sh : shapes)
      for (int variant = 0; variant < 3; ++variant) {
        const std::size_t lda = K + 3, shift = 2;  // A rows read `shift` rows further down, as a conv tap does
        const auto a = random_vector((sh.m + shift + 1) * lda, 1);
        const auto b = random_vector(K * (sh.n + 3), 2);  // row-major [K][n + 3]
        const auto bias = random_vector(sh.n, 3);
        // pack B as a layer does: from [n][k] = transpose
        std::vector<float> bt((sh.n + 3) * K);
        for (std::size_t kk = 0; kk < K; ++kk)
          for (std::size_t j = 0; j < sh.n + 3; ++j) bt[j * K + kk] = b[kk * (sh.n + 3) + j];
        const auto packed =
            drt::packed_matrix::from_nk(bt.data(), sh.n + 3, K, K);  // wider than n: a prefix of outputs
        std::vector<drt::gemm_segment> segs = sh.segs;
        for (auto& s : segs) s.a_offset += shift * lda;
        const float* bp = variant == 0 ? nullptr : bias.data();
        const drt::activation act = variant == 2 ? drt::activation::relu : drt::activation::none;
        const std::size_t ldc = sh.n + 2;
        std::vector<float> c(sh.m * ldc, 7.f), ref(sh.m * ldc, 7.f);
        drt_test::gemm_segmented(sh.m, sh.n, a.data(), lda, segs, packed, c.data(), ldc, bp, act);
        drt_test::gemm_segmented_ref(sh.m, sh.n, a.data(), lda, segs, b.data(), sh.n + 3, ref.data(), ldc, bp, act);
        const std::string what = "m=" + std::to_string(sh.m) + " n=" + std::to_string(sh.n) +
                                 " segments=" + std::to_string(segs.size()) + " variant " + std::to_string(variant);
        check_close(c.data(), ref.data(), c.size(), what, 1e-5, 1e-5);  // the padding columns stay 7
      }
  }

  TEST_CASE("gemm_segmented: serial and parallel agree, bad segments are named") {
    const auto a = random_vector(300 * 64, 4);
    std::vector<float> bt(40 * 64);
    for (std::size_t i = 0; i < bt.size(); ++i) bt[i] = float(i % 13) * 0.1f - 0.6f;
    const auto packed = drt::packed_matrix::from_nk(bt.data(), 40, 64, 64);
    const std::vector<drt::gemm_segment> segs = {{0, 0, 10}, {32, 32, 20}};
    std::vector<float> c1(300 * 40), c2(300 * 40);
    drt_test::gemm_segmented(300, 40, a.data(), 64, segs, packed, c1.data(), 40, nullptr, drt::activation::none, true);
    drt_test::gemm_segmented(300, 40, a.data(), 64, segs, packed, c2.data(), 40, nullptr, drt::activation::none, false);
    CHECK(c1 == c2);
    CHECK_THROWS_WITH_AS(drt_test::gemm_segmented(1, 40, a.data(), 64, {{0, 60, 5}}, packed, c1.data(), 40),
                         "gemm_segmented: segment rows [60, 65) exceed the packed matrix's k=64", drt::shape_error);
    CHECK_THROWS_WITH_AS(drt_test::gemm_segmented(1, 41, a.data(), 64, segs, packed, c1.data(), 41),
                         "gemm_segmented: n=41 exceeds the packed matrix's n=40", drt::shape_error);
  }

  TEST_CASE("append_segment merges runs that continue in A and in B") {
    std::vector<drt::gemm_segment> segs;
    drt_test::append_segment(segs, {0, 0, 4});
    drt_test::append_segment(segs, {4, 4, 6});    // continues both: merged
    drt_test::append_segment(segs, {10, 12, 2});  // B jumps: new segment
    drt_test::append_segment(segs, {20, 14, 0});  // empty: dropped
    REQUIRE(segs.size() == 2);
    CHECK(segs[0].k == 10);
    CHECK((segs[1].a_offset == 10 && segs[1].b_row == 12 && segs[1].k == 2));
  }
}
