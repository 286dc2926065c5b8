// safetensors checkpoints: zero-copy mmap reading (single file or sharded with an index), FP8
// E4M3 weights with 128x128 `weight_scale_inv` blocks dequantised on load, and sharded writing.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace ponder::model {

struct TensorInfo {
  at::ScalarType dtype = at::kFloat;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;  // byte offsets within the data section
  std::uint64_t end = 0;
};

// One .safetensors file mapped read-only. Tensors returned by view() alias the mapping.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return infos_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;
  // Zero-copy, read-only view of the mapped bytes.
  at::Tensor view(const std::string& name) const;
  // Owned copy converted to dtype; the source pages are dropped from memory afterwards so a
  // full load never holds the file and the weights at the same time.
  at::Tensor load(const std::string& name, at::ScalarType dtype) const;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t data_start_ = 0;
  std::map<std::string, TensorInfo> infos_;
};

// A Hugging Face checkpoint directory: model.safetensors or model.safetensors.index.json shards.
class Checkpoint {
 public:
  explicit Checkpoint(const std::filesystem::path& dir);
  std::vector<std::string> names() const;  // excludes FP8 `weight_scale_inv` companions
  bool contains(const std::string& name) const { return file_of_.count(name) != 0; }
  // Loads a tensor as dtype, dequantising FP8 E4M3 weights with their weight_scale_inv blocks
  // (dtype float8_e4m3fn returns an FP8 weight's data as stored).
  at::Tensor load(const std::string& name, at::ScalarType dtype) const;
  bool is_fp8(const std::string& name) const;
  std::int64_t total_bytes() const;

 private:
  std::filesystem::path dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> file_of_;
};

// Writes one .safetensors file holding `tensors` in order.
void write_safetensors_file(const std::filesystem::path& path,
                            const std::vector<std::pair<std::string, at::Tensor>>& tensors);
// Writes tensors in HF layout: one model.safetensors when it fits in max_shard_bytes, else
// model-0000i-of-0000n.safetensors shards plus model.safetensors.index.json.
void save_safetensors(const std::filesystem::path& dir,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      std::int64_t max_shard_bytes = 5LL << 30);

// Multiplies an FP8 weight [out, in] by its per-128x128-block inverse scales.
at::Tensor dequantize_fp8_blocks(const at::Tensor& weight, const at::Tensor& scale_inv,
                                 at::ScalarType dtype);

}  // namespace ponder::model
