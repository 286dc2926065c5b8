#include "model/safetensors.h"

#include <gtest/gtest.h>

#include <fstream>

#include "core/error.h"
#include "tests/common/test_util.h"

namespace ponder::model {
namespace {

using testing_util::ScratchDir;

TEST(Safetensors, ShardedRoundTripIsBitExact) {
  ScratchDir dir("st_shards");
  std::vector<std::pair<std::string, at::Tensor>> tensors = {
      {"a", at::randn({64, 32})},
      {"b", at::randn({17}).to(at::kBFloat16)},
      {"c", at::randn({8, 8}).to(at::kHalf)},
      {"d", at::arange(10)}};
  save_safetensors(dir.path(), tensors, /*max_shard_bytes=*/4096);
  EXPECT_TRUE(std::filesystem::exists(dir / "model.safetensors.index.json"));
  const Checkpoint checkpoint(dir.path());
  ASSERT_EQ(checkpoint.names().size(), tensors.size());
  for (const auto& [name, tensor] : tensors) {
    const at::Tensor loaded = checkpoint.load(name, tensor.scalar_type());
    EXPECT_TRUE(at::equal(loaded, tensor)) << name;
  }
}

TEST(Safetensors, Fp8BlocksAreDequantisedWithTheirScales) {
  ScratchDir dir("st_fp8");
  const at::Tensor weight = at::randn({200, 130}).to(at::kFloat8_e4m3fn);
  const at::Tensor scales = at::rand({2, 2}) + 0.5;
  save_safetensors(dir.path(), {{"w.weight", weight}, {"w.weight_scale_inv", scales}});
  const Checkpoint checkpoint(dir.path());
  EXPECT_EQ(checkpoint.names(), std::vector<std::string>{"w.weight"});
  const at::Tensor loaded = checkpoint.load("w.weight", at::kFloat);
  const at::Tensor w = weight.to(at::kFloat);
  EXPECT_FLOAT_EQ(loaded[0][0].item<float>(), w[0][0].item<float>() * scales[0][0].item<float>());
  EXPECT_FLOAT_EQ(loaded[199][129].item<float>(),
                  w[199][129].item<float>() * scales[1][1].item<float>());
  EXPECT_FLOAT_EQ(loaded[127][128].item<float>(),
                  w[127][128].item<float>() * scales[0][1].item<float>());
}

TEST(Safetensors, TruncatedFileNamesTheTensor) {
  ScratchDir dir("st_trunc");
  save_safetensors(dir.path(), {{"first", at::randn({4})}, {"second.weight", at::randn({1000})}});
  const auto file = dir / "model.safetensors";
  std::filesystem::resize_file(file, std::filesystem::file_size(file) - 100);
  try {
    Checkpoint{dir.path()};
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor second.weight: data runs past the end"),
              std::string::npos)
        << e.what();
  }
}

TEST(Safetensors, GarbageHeaderIsAClearError) {
  ScratchDir dir("st_garbage");
  std::ofstream(dir / "model.safetensors", std::ios::binary)
      << std::string(8, '\x10') << "{not json";
  EXPECT_THROW(Checkpoint{dir.path()}, Error);
  EXPECT_THROW(Checkpoint{dir / "missing"}, Error);
}

}  // namespace
}  // namespace ponder::model
