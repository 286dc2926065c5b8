// ReleasableBuffer on a GPU: release() gives its pages to the driver (free memory rises by its
// size), restore() maps fresh zeroed pages at the same address, and a CUDA graph recorded over
// the buffer before the release writes into it after the restore.
#include "kernels/releasable_buffer.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "kernels/binding.h"
#include "kernels/cuda_graph.h"
#include "tests/kernels/kernel_test_util.h"

namespace ponder::kernels {
namespace {

TEST(ReleasableBufferOnGpu, ReleaseFreesPagesAndRestoreKeepsAddressAndGraphs) {
  PONDER_REQUIRE_GPU();
  const at::Device gpu(at::kCUDA, 0);
  const std::int64_t bytes = 256LL << 20;
  ReleasableBuffer buffer(bytes, gpu);
  ASSERT_GE(buffer.bytes().numel(), bytes);
  const void* address = buffer.bytes().data_ptr();
  EXPECT_EQ(buffer.bytes().sum().item<std::int64_t>(), 0);
  at::Tensor floats = buffer.bytes().view(at::kFloat);
  CudaGraph graph;
  graph.capture([&] { floats.add_(1.0); }, CudaGraph::new_pool());
  floats = at::Tensor();

  const std::int64_t held = free_device_memory(gpu);
  buffer.release();
  EXPECT_TRUE(buffer.released());
  EXPECT_GE(free_device_memory(gpu) - held, bytes);
  buffer.restore();
  EXPECT_LE(free_device_memory(gpu), held + bytes / 2) << "pages mapped again";
  ASSERT_EQ(buffer.bytes().data_ptr(), address);
  EXPECT_EQ(buffer.bytes().sum().item<std::int64_t>(), 0) << "restored pages are zeroed";
  graph.replay();
  const at::Tensor values = buffer.bytes().view(at::kFloat);
  EXPECT_EQ(values.min().item<float>(), 1.0f);
  EXPECT_EQ(values.max().item<float>(), 1.0f);
  EXPECT_THROW(ReleasableBuffer(0, gpu), Error);
}

}  // namespace
}  // namespace ponder::kernels
