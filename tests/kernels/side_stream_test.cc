// kernels::run_beside: the two results equal the same work run one after the other, eagerly and
// replayed from a CUDA graph that recorded the fork and join; on the CPU it runs both in turn.
#include "kernels/side_stream.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "kernels/cuda_graph.h"
#include "tests/kernels/kernel_test_util.h"

namespace ponder::kernels {
namespace {

struct Work {
  at::Tensor x, a, b;
  at::Tensor main() const { return at::matmul(x, a).relu(); }
  at::Tensor side() const { return at::matmul(x, b) + 1; }
};

Work random_work(const at::Device& device) {
  const auto options = at::TensorOptions().device(device);
  return {at::randn({512, 1024}, options), at::randn({1024, 2048}, options),
          at::randn({1024, 512}, options)};
}

TEST(RunBeside, EqualsTheSameWorkInTurnOnTheCpu) {
  const Work w = random_work(at::kCPU);
  const auto [main, side] =
      run_beside([&] { return w.main(); }, [&] { return w.side(); }, at::kCPU);
  EXPECT_TRUE(at::equal(main, w.main()));
  EXPECT_TRUE(at::equal(side, w.side()));
}

TEST(RunBeside, EqualsTheSameWorkInTurnOnTheGpuAlsoFromAGraph) {
  PONDER_REQUIRE_GPU();
  const Work w = random_work(at::kCUDA);
  const at::Tensor want_main = w.main(), want_side = w.side();
  for (int repeat = 0; repeat < 3; ++repeat) {
    const auto [main, side] =
        run_beside([&] { return w.main(); }, [&] { return w.side(); }, at::kCUDA);
    EXPECT_TRUE(at::equal(main, want_main)) << repeat;
    EXPECT_TRUE(at::equal(side, want_side)) << repeat;
  }
  at::Tensor got_main = at::empty_like(want_main), got_side = at::empty_like(want_side);
  CudaGraph graph;
  graph.capture(
      [&] {
        const auto [main, side] =
            run_beside([&] { return w.main(); }, [&] { return w.side(); }, at::kCUDA);
        got_main.copy_(main);
        got_side.copy_(side);
      },
      CudaGraph::new_pool());
  w.x.normal_();  // the replay must read the inputs' new values
  got_main.zero_();
  got_side.zero_();
  graph.replay();
  EXPECT_TRUE(at::equal(got_main, w.main()));
  EXPECT_TRUE(at::equal(got_side, w.side()));
}

}  // namespace
}  // namespace ponder::kernels
