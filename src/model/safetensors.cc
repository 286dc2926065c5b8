#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_file.h"
#include "kernels/fp8.h"

namespace ponder::model {
namespace {

constexpr const char* kScaleSuffix = "_scale_inv";

const std::map<std::string, at::ScalarType>& dtype_table() {
  static const std::map<std::string, at::ScalarType> table = {{"F64", at::kDouble},
                                                              {"F32", at::kFloat},
                                                              {"F16", at::kHalf},
                                                              {"BF16", at::kBFloat16},
                                                              {"I64", at::kLong},
                                                              {"I32", at::kInt},
                                                              {"I16", at::kShort},
                                                              {"I8", at::kChar},
                                                              {"U8", at::kByte},
                                                              {"BOOL", at::kBool},
                                                              {"F8_E4M3", at::kFloat8_e4m3fn}};
  return table;
}

std::string dtype_name(at::ScalarType type) {
  for (const auto& [name, t] : dtype_table())
    if (t == type) return name;
  throw Error(std::string("safetensors: cannot store dtype ") + c10::toString(type));
}

TensorInfo parse_info(const std::string& where, const nlohmann::json& j, std::size_t data_size) {
  TensorInfo info;
  if (!j.is_object() || !j.contains("dtype") || !j.contains("shape") || !j.contains("data_offsets"))
    throw Error(where + ": expected {dtype, shape, data_offsets}");
  auto it = dtype_table().find(j["dtype"].get<std::string>());
  if (it == dtype_table().end()) throw Error(where + ": unsupported dtype " + j["dtype"].dump());
  info.dtype = it->second;
  info.shape = j["shape"].get<std::vector<std::int64_t>>();
  info.begin = j["data_offsets"][0].get<std::uint64_t>();
  info.end = j["data_offsets"][1].get<std::uint64_t>();
  std::uint64_t numel = 1;
  for (auto d : info.shape) numel *= static_cast<std::uint64_t>(d);
  if (info.end < info.begin || info.end - info.begin != numel * c10::elementSize(info.dtype))
    throw Error(where + ": data_offsets do not match shape and dtype");
  if (info.end > data_size)
    throw Error(where + ": data runs past the end of the file (truncated?)");
  return info;
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw Error(path.string() + ": cannot open safetensors file");
  struct stat st {};
  fstat(fd, &st);
  size_ = static_cast<std::size_t>(st.st_size);
  void* mapped = size_ >= 8 ? mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
  ::close(fd);
  if (mapped == MAP_FAILED) throw Error(path.string() + ": not a safetensors file (too short)");
  data_ = static_cast<std::uint8_t*>(mapped);
  std::uint64_t header_size = 0;
  std::memcpy(&header_size, data_, 8);
  if (header_size > size_ - 8) throw Error(path.string() + ": corrupt safetensors header length");
  data_start_ = 8 + header_size;
  const auto header = nlohmann::json::parse(data_ + 8, data_ + data_start_, nullptr, false);
  if (!header.is_object()) throw Error(path.string() + ": corrupt safetensors header (not JSON)");
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") continue;
    infos_[name] = parse_info(path.string() + ": tensor " + name, value, size_ - data_start_);
  }
}

SafetensorsFile::~SafetensorsFile() { munmap(data_, size_); }

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> result;
  for (const auto& [name, _] : infos_) result.push_back(name);
  return result;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = infos_.find(name);
  if (it == infos_.end()) throw Error(path_.string() + ": no tensor named " + name);
  return it->second;
}

at::Tensor SafetensorsFile::view(const std::string& name) const {
  const TensorInfo& i = info(name);
  return at::from_blob(data_ + data_start_ + i.begin, i.shape, at::TensorOptions().dtype(i.dtype));
}

at::Tensor SafetensorsFile::load(const std::string& name, at::ScalarType dtype) const {
  const TensorInfo& i = info(name);
  at::Tensor owned = view(name).to(dtype, /*non_blocking=*/false, /*copy=*/true);
  const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto first = reinterpret_cast<std::uintptr_t>(data_ + data_start_ + i.begin) / page * page;
  const auto last = reinterpret_cast<std::uintptr_t>(data_ + data_start_ + i.end);
  madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
  return owned;
}

Checkpoint::Checkpoint(const std::filesystem::path& dir) : dir_(dir) {
  const auto index = dir / "model.safetensors.index.json";
  std::vector<std::string> shards;
  if (std::filesystem::exists(index)) {
    const auto j = read_json_file(index);
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw Error(index.string() + ": weight_map: expected an object of tensor -> shard file");
    std::map<std::string, std::size_t> shard_ids;
    for (const auto& [name, file] : j["weight_map"].items())
      if (!shard_ids.count(file)) shard_ids[file] = shard_ids.size();
    for (const auto& [file, _] : shard_ids) shards.push_back(file);
  } else if (std::filesystem::exists(dir / "model.safetensors")) {
    shards.push_back("model.safetensors");
  } else {
    throw Error(dir.string() + ": no model.safetensors or model.safetensors.index.json");
  }
  for (const auto& shard : shards) {
    files_.push_back(std::make_unique<SafetensorsFile>(dir / shard));
    for (const auto& name : files_.back()->names()) file_of_[name] = files_.back().get();
  }
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> result;
  for (const auto& [name, _] : file_of_)
    if (!name.ends_with(kScaleSuffix)) result.push_back(name);
  return result;
}

at::Tensor Checkpoint::load(const std::string& name, at::ScalarType dtype) const {
  auto it = file_of_.find(name);
  if (it == file_of_.end()) throw Error(dir_.string() + ": checkpoint has no tensor " + name);
  const SafetensorsFile& file = *it->second;
  if (!is_fp8(name) || dtype == at::kFloat8_e4m3fn) return file.load(name, dtype);
  const std::string scale_name = name + kScaleSuffix;
  auto scale = file_of_.find(scale_name);
  if (scale == file_of_.end())
    throw Error(dir_.string() + ": FP8 tensor " + name + " has no " + scale_name);
  return dequantize_fp8_blocks(file.view(name), scale->second->load(scale_name, at::kFloat), dtype);
}

bool Checkpoint::is_fp8(const std::string& name) const {
  auto it = file_of_.find(name);
  return it != file_of_.end() && it->second->info(name).dtype == at::kFloat8_e4m3fn;
}

std::int64_t Checkpoint::total_bytes() const {
  std::int64_t total = 0;
  for (const auto& f : files_)
    total += static_cast<std::int64_t>(std::filesystem::file_size(f->path()));
  return total;
}

at::Tensor dequantize_fp8_blocks(const at::Tensor& weight, const at::Tensor& scale_inv,
                                 at::ScalarType dtype) {
  constexpr std::int64_t kBlock = kernels::kFp8Tile;
  const std::int64_t rows = weight.size(0), cols = weight.size(1);
  const std::int64_t block_rows = (rows + kBlock - 1) / kBlock,
                     block_cols = (cols + kBlock - 1) / kBlock;
  if (scale_inv.dim() != 2 || scale_inv.size(0) != block_rows || scale_inv.size(1) != block_cols)
    throw Error("weight_scale_inv: expected shape [" + std::to_string(block_rows) + ", " +
                std::to_string(block_cols) + "] for a [" + std::to_string(rows) + ", " +
                std::to_string(cols) + "] FP8 weight");
  return kernels::dequantize_fp8({weight, scale_inv, kernels::Fp8Scaling::kBlock128x128}, dtype);
}

void write_safetensors_file(const std::filesystem::path& path,
                            const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  nlohmann::json header = {{"__metadata__", {{"format", "pt"}}}};
  std::uint64_t offset = 0;
  std::vector<at::Tensor> contiguous;
  for (const auto& [name, tensor] : tensors) {
    contiguous.push_back(tensor.detach().to(at::kCPU).contiguous());
    const std::uint64_t bytes = contiguous.back().nbytes();
    header[name] = {{"dtype", dtype_name(tensor.scalar_type())},
                    {"shape", tensor.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');
  std::ofstream out(path, std::ios::binary);
  const std::uint64_t header_size = header_text.size();
  out.write(reinterpret_cast<const char*>(&header_size), 8);
  out << header_text;
  for (const auto& t : contiguous) out.write(static_cast<const char*>(t.data_ptr()), t.nbytes());
  if (!out) throw Error(path.string() + ": write failed (disk full?)");
}

void save_safetensors(const std::filesystem::path& dir,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      std::int64_t max_shard_bytes) {
  std::vector<std::vector<std::pair<std::string, at::Tensor>>> shards(1);
  std::int64_t shard_bytes = 0;
  for (const auto& named : tensors) {
    const std::int64_t bytes = named.second.nbytes();
    if (!shards.back().empty() && shard_bytes + bytes > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(named);
    shard_bytes += bytes;
  }
  std::filesystem::create_directories(dir);
  nlohmann::json weight_map = nlohmann::json::object();
  for (std::size_t s = 0; s < shards.size(); ++s) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
    const std::string file = shards.size() == 1 ? "model.safetensors" : name;
    write_safetensors_file(dir / file, shards[s]);
    for (const auto& named : shards[s]) weight_map[named.first] = file;
  }
  if (shards.size() > 1)
    std::ofstream(dir / "model.safetensors.index.json")
        << nlohmann::json{{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}.dump(2);
}

}  // namespace ponder::model
