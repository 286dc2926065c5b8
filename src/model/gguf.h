// GGUF reader (llama.cpp's model format): header, metadata, tensor index over an mmap of the
// file, and dequantisation of F32/F16/BF16/Q8_0/Q4_0/Q4_1 tensors to float32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ponder::model {

enum class GgmlType : std::uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ8_0 = 8,
  kBF16 = 30,
};

struct GgufTensor {
  std::string name;
  std::vector<std::int64_t> shape;  // row-major (outermost first), as PyTorch would see it
  std::uint32_t type = 0;
  std::uint64_t offset = 0;  // from the start of the data section
  std::int64_t numel() const;
};

class GgufFile {
 public:
  explicit GgufFile(const std::filesystem::path& path);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  // Metadata as JSON (arrays become JSON arrays). Missing keys throw naming the key.
  const nlohmann::json& metadata() const { return metadata_; }
  const nlohmann::json& at(const std::string& key) const;
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor& tensor(const std::string& name) const;
  // Dequantised values in row-major order; fails for unsupported types naming the tensor.
  std::vector<float> dequantize(const GgufTensor& tensor) const;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t data_start_ = 0;
  nlohmann::json metadata_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, std::size_t> by_name_;
};

std::string ggml_type_name(std::uint32_t type);

}  // namespace ponder::model
