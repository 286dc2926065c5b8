#include "model/gguf.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "core/error.h"
#include "model/gguf_convert.h"
#include "tests/common/test_util.h"

namespace ponder::model {
namespace {

// Builds GGUF bytes by hand so the expected dequantised values are known exactly.
class GgufBuilder {
 public:
  template <class T>
  void put(T value) {
    const auto* p = reinterpret_cast<const char*>(&value);
    bytes_.append(p, sizeof(T));
  }
  void put_string(const std::string& s) {
    put<std::uint64_t>(s.size());
    bytes_ += s;
  }
  std::string& bytes() { return bytes_; }

 private:
  std::string bytes_;
};

constexpr std::uint16_t kHalfOne = 0x3C00, kHalfHalf = 0x3800, kHalfMinusTwo = 0xC000;

std::string build_file() {
  GgufBuilder b;
  b.bytes() = "GGUF";
  b.put<std::uint32_t>(3);
  b.put<std::uint64_t>(3);  // tensors
  b.put<std::uint64_t>(2);  // metadata
  b.put_string("general.architecture");
  b.put<std::uint32_t>(8);
  b.put_string("llama");
  b.put_string("llama.block_count");
  b.put<std::uint32_t>(4);
  b.put<std::uint32_t>(30);
  // q41: 1 block [32]; q80: 1 block [32]; f16: [2, 2]
  b.put_string("q41");
  b.put<std::uint32_t>(1);
  b.put<std::uint64_t>(32);
  b.put<std::uint32_t>(3);
  b.put<std::uint64_t>(0);
  b.put_string("q80");
  b.put<std::uint32_t>(1);
  b.put<std::uint64_t>(32);
  b.put<std::uint32_t>(8);
  b.put<std::uint64_t>(32);
  b.put_string("f16");
  b.put<std::uint32_t>(2);
  b.put<std::uint64_t>(2);  // ne0 = columns
  b.put<std::uint64_t>(2);
  b.put<std::uint32_t>(1);
  b.put<std::uint64_t>(96);
  while (b.bytes().size() % 32) b.bytes() += '\0';
  std::string q41(32, '\0');  // d = 0.5, m = -2, nibbles: low = j % 16, high = 15 - j % 16
  std::memcpy(&q41[0], &kHalfHalf, 2);
  std::memcpy(&q41[2], &kHalfMinusTwo, 2);
  for (int j = 0; j < 16; ++j) q41[4 + j] = static_cast<char>((j & 0xF) | ((15 - j) << 4));
  std::string q80(64, '\0');  // d = 1, values j - 16
  std::memcpy(&q80[0], &kHalfOne, 2);
  for (int j = 0; j < 32; ++j) q80[2 + j] = static_cast<char>(j - 16);
  std::string f16(32, '\0');
  const std::uint16_t halves[4] = {kHalfOne, kHalfHalf, kHalfMinusTwo, 0};
  std::memcpy(&f16[0], halves, 8);
  return b.bytes() + q41 + q80 + f16;
}

std::filesystem::path write_temp(const std::string& name, const std::string& bytes) {
  const auto path = std::filesystem::temp_directory_path() / (name + std::to_string(getpid()));
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

TEST(Gguf, ReadsMetadataAndDequantisesKnownBlocks) {
  const auto path = write_temp("ponder_gguf_", build_file());
  GgufFile file(path);
  EXPECT_EQ(file.at("general.architecture"), "llama");
  EXPECT_EQ(file.at("llama.block_count"), 30);
  const auto q41 = file.dequantize(file.tensor("q41"));
  for (int j = 0; j < 16; ++j) {
    EXPECT_FLOAT_EQ(q41[j], 0.5f * j - 2.0f);
    EXPECT_FLOAT_EQ(q41[j + 16], 0.5f * (15 - j) - 2.0f);
  }
  const auto q80 = file.dequantize(file.tensor("q80"));
  for (int j = 0; j < 32; ++j) EXPECT_FLOAT_EQ(q80[j], static_cast<float>(j - 16));
  const auto& f16_info = file.tensor("f16");
  EXPECT_EQ(f16_info.shape, (std::vector<std::int64_t>{2, 2}));
  EXPECT_EQ(file.dequantize(f16_info), (std::vector<float>{1.0f, 0.5f, -2.0f, 0.0f}));
  std::filesystem::remove(path);
}

TEST(Gguf, TruncatedAndForeignFilesFailClearly) {
  const std::string full = build_file();
  const auto truncated = write_temp("ponder_gguf_trunc_", full.substr(0, full.size() - 40));
  GgufFile file(truncated);
  try {
    file.dequantize(file.tensor("f16"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor f16: data runs past the end"), std::string::npos)
        << e.what();
  }
  const auto header_cut = write_temp("ponder_gguf_cut_", full.substr(0, 60));
  EXPECT_THROW(GgufFile{header_cut}, Error);
  const auto foreign = write_temp("ponder_gguf_foreign_", "PK\x03\x04 this is a zip file");
  EXPECT_THROW(GgufFile{foreign}, Error);
  for (const auto& p : {truncated, header_cut, foreign}) std::filesystem::remove(p);
}

std::string run_oracle(const std::string& command) {
  FILE* pipe = popen(command.c_str(), "r");
  std::string output;
  char buffer[65536];
  while (std::fgets(buffer, sizeof buffer, pipe)) output += buffer;
  EXPECT_EQ(pclose(pipe), 0) << "oracle failed: " << command;
  return output;
}

TEST(Gguf, RealSmolLM2MatchesGgufPackage) {
  const std::string python = testing_util::python();
  const auto path = testing_util::smollm2_gguf();
  if (path.empty())
    GTEST_SKIP() << "SmolLM2 GGUF not installed (scripts/bootstrap --with-real-model installs it)";
  GgufFile file(path);
  const std::vector<std::string> names = {"token_embd.weight", "blk.0.attn_q.weight",
                                          "blk.0.attn_norm.weight"};
  std::string command = python + " " + GGUF_ORACLE_SCRIPT + " " + path.string();
  for (const auto& n : names) command += " " + n;
  const auto oracle = nlohmann::json::parse(run_oracle(command));
  for (const auto& name : names) {
    const auto& expected = oracle.at(name);
    const auto& tensor = file.tensor(name);
    EXPECT_EQ(ggml_type_name(tensor.type), expected["type"]);
    EXPECT_EQ(nlohmann::json(tensor.shape), expected["shape"]);
    const auto values = file.dequantize(tensor);
    double sum = 0;
    for (float v : values) sum += v;
    EXPECT_NEAR(sum, expected["sum"].get<double>(), 1e-6 * values.size()) << name;
    for (int i = 0; i < 64; ++i) {
      EXPECT_FLOAT_EQ(values[i], expected["head"][i].get<float>()) << name << " " << i;
      EXPECT_FLOAT_EQ(values[values.size() - 64 + i], expected["tail"][i].get<float>()) << name;
    }
  }
}

TEST(Gguf, RealSmolLM2ConversionMatchesTransformersGgufImport) {
  const std::string python = testing_util::python();
  const auto path = testing_util::smollm2_gguf();
  if (path.empty())
    GTEST_SKIP() << "SmolLM2 GGUF not installed (scripts/bootstrap --with-real-model installs it)";
  GgufFile file(path);
  const auto dir =
      std::filesystem::temp_directory_path() / ("ponder_gguf_conv_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << gguf_tokenizer_json(file).dump();
  std::ofstream(dir / "config.json") << gguf_llama_config(file).dump();
  for (const char* name : {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"}) {
    const auto hf = gguf_to_hf_tensor(file, file.tensor(name));
    std::ofstream(dir / (hf.name + ".f32"), std::ios::binary)
        .write(reinterpret_cast<const char*>(hf.values.data()), hf.values.size() * sizeof(float));
  }
  const char* data = std::getenv("PONDER_DATA");
  const std::string texts =
      std::string(data ? data : PONDER_SOURCE_DIR "/../shared/data") + "/gsm8k/test.jsonl";
  const auto oracle = nlohmann::json::parse(run_oracle(
      python + " " + GGUF_CONVERT_ORACLE + " " + path.string() + " " + dir.string() + " " + texts));
  EXPECT_GT(oracle["texts"].get<int>(), 400);
  EXPECT_EQ(oracle["mismatch_count"], 0) << oracle["mismatches"].dump(2);
  EXPECT_TRUE(oracle["config_diff"].empty()) << oracle["config_diff"].dump();
  for (const auto& [name, diff] : oracle["tensor_max_abs_diff"].items())
    EXPECT_EQ(diff.get<double>(), 0.0) << name;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ponder::model
