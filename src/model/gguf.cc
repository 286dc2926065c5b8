#include "model/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cstring>

#include "core/error.h"

namespace ponder::model {
namespace {

enum class ValueType : std::uint32_t {
  kU8 = 0,
  kI8,
  kU16,
  kI16,
  kU32,
  kI32,
  kF32,
  kBool,
  kString,
  kArray,
  kU64,
  kI64,
  kF64
};

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000) << 16;
  std::uint32_t exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF;
  if (exponent == 0x1F) return std::bit_cast<float>(sign | 0x7F800000 | (mantissa << 13));
  if (exponent == 0) {
    if (mantissa == 0) return std::bit_cast<float>(sign);
    const float value = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -value : value;
  }
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

// Sequential reader over the mapped header; every read is bounds-checked so a truncated or
// corrupt file fails with a clear error instead of reading past the end.
class Cursor {
 public:
  Cursor(const std::uint8_t* data, std::size_t size, const std::string& file)
      : data_(data), size_(size), file_(file) {}

  template <class T>
  T read() {
    need(sizeof(T));
    T value;
    std::memcpy(&value, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }

  std::string read_string() {
    const auto length = read<std::uint64_t>();
    need(length);
    std::string text(reinterpret_cast<const char*>(data_ + pos_), length);
    pos_ += length;
    return text;
  }

  nlohmann::json read_value(ValueType type) {
    switch (type) {
      case ValueType::kU8:
        return read<std::uint8_t>();
      case ValueType::kI8:
        return read<std::int8_t>();
      case ValueType::kU16:
        return read<std::uint16_t>();
      case ValueType::kI16:
        return read<std::int16_t>();
      case ValueType::kU32:
        return read<std::uint32_t>();
      case ValueType::kI32:
        return read<std::int32_t>();
      case ValueType::kF32:
        return read<float>();
      case ValueType::kBool:
        return read<std::uint8_t>() != 0;
      case ValueType::kString:
        return read_string();
      case ValueType::kU64:
        return read<std::uint64_t>();
      case ValueType::kI64:
        return read<std::int64_t>();
      case ValueType::kF64:
        return read<double>();
      case ValueType::kArray: {
        const auto element = static_cast<ValueType>(read<std::uint32_t>());
        const auto count = read<std::uint64_t>();
        if (count > size_) fail("array length " + std::to_string(count) + " exceeds the file");
        nlohmann::json array = nlohmann::json::array();
        for (std::uint64_t i = 0; i < count; ++i) array.push_back(read_value(element));
        return array;
      }
    }
    fail("unknown metadata value type " + std::to_string(static_cast<std::uint32_t>(type)));
  }

  std::size_t position() const { return pos_; }
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(file_ + ": corrupt GGUF at byte " + std::to_string(pos_) + ": " + what);
  }

 private:
  void need(std::uint64_t bytes) const {
    if (bytes > size_ - pos_) fail("truncated file (needed " + std::to_string(bytes) + " bytes)");
  }
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
  std::string file_;
};

struct BlockFormat {
  std::size_t values;  // per block
  std::size_t bytes;   // per block
};

BlockFormat block_format(std::uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kF32:
      return {1, 4};
    case GgmlType::kF16:
      return {1, 2};
    case GgmlType::kBF16:
      return {1, 2};
    case GgmlType::kQ8_0:
      return {32, 34};
    case GgmlType::kQ4_0:
      return {32, 18};
    case GgmlType::kQ4_1:
      return {32, 20};
  }
  return {0, 0};
}

std::uint16_t load_u16(const std::uint8_t* p) {
  std::uint16_t value;
  std::memcpy(&value, p, 2);
  return value;
}

void dequantize_blocks(std::uint32_t type, const std::uint8_t* src, std::size_t blocks,
                       float* out) {
  for (std::size_t b = 0; b < blocks; ++b, src += block_format(type).bytes, out += 32) {
    const float scale = half_to_float(load_u16(src));
    switch (static_cast<GgmlType>(type)) {
      case GgmlType::kQ8_0:
        for (int j = 0; j < 32; ++j) out[j] = scale * static_cast<std::int8_t>(src[2 + j]);
        break;
      case GgmlType::kQ4_0:
        for (int j = 0; j < 16; ++j) {
          out[j] = scale * ((src[2 + j] & 0x0F) - 8);
          out[j + 16] = scale * ((src[2 + j] >> 4) - 8);
        }
        break;
      case GgmlType::kQ4_1: {
        const float minimum = half_to_float(load_u16(src + 2));
        for (int j = 0; j < 16; ++j) {
          out[j] = scale * (src[4 + j] & 0x0F) + minimum;
          out[j + 16] = scale * (src[4 + j] >> 4) + minimum;
        }
        break;
      }
      default:
        break;
    }
  }
}

}  // namespace

std::int64_t GgufTensor::numel() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::string ggml_type_name(std::uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kF32:
      return "F32";
    case GgmlType::kF16:
      return "F16";
    case GgmlType::kBF16:
      return "BF16";
    case GgmlType::kQ8_0:
      return "Q8_0";
    case GgmlType::kQ4_0:
      return "Q4_0";
    case GgmlType::kQ4_1:
      return "Q4_1";
  }
  return "ggml type " + std::to_string(type);
}

GgufFile::GgufFile(const std::filesystem::path& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw Error(path.string() + ": cannot open GGUF file");
  struct stat info {};
  fstat(fd, &info);
  size_ = static_cast<std::size_t>(info.st_size);
  void* mapped = size_ ? mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
  ::close(fd);
  if (mapped == MAP_FAILED) throw Error(path.string() + ": cannot map GGUF file (empty?)");
  data_ = static_cast<const std::uint8_t*>(mapped);

  Cursor cursor(data_, size_, path.string());
  if (size_ < 4 || std::memcmp(data_, "GGUF", 4) != 0)
    throw Error(path.string() + ": not a GGUF file (missing 'GGUF' magic)");
  cursor.read<std::uint32_t>();
  const auto version = cursor.read<std::uint32_t>();
  if (version < 2 || version > 3)
    throw Error(path.string() + ": unsupported GGUF version " + std::to_string(version) +
                " (supported: 2, 3)");
  const auto tensor_count = cursor.read<std::uint64_t>();
  const auto kv_count = cursor.read<std::uint64_t>();
  metadata_ = nlohmann::json::object();
  for (std::uint64_t i = 0; i < kv_count; ++i) {
    const std::string key = cursor.read_string();
    metadata_[key] = cursor.read_value(static_cast<ValueType>(cursor.read<std::uint32_t>()));
  }
  for (std::uint64_t i = 0; i < tensor_count; ++i) {
    GgufTensor tensor;
    tensor.name = cursor.read_string();
    const auto dims = cursor.read<std::uint32_t>();
    if (dims > 8) cursor.fail("tensor " + tensor.name + " has " + std::to_string(dims) + " dims");
    for (std::uint32_t d = 0; d < dims; ++d)
      tensor.shape.insert(tensor.shape.begin(),
                          static_cast<std::int64_t>(cursor.read<std::uint64_t>()));
    tensor.type = cursor.read<std::uint32_t>();
    tensor.offset = cursor.read<std::uint64_t>();
    by_name_[tensor.name] = tensors_.size();
    tensors_.push_back(std::move(tensor));
  }
  const std::size_t alignment = metadata_.value("general.alignment", 32u);
  data_start_ = (cursor.position() + alignment - 1) / alignment * alignment;
}

GgufFile::~GgufFile() { munmap(const_cast<std::uint8_t*>(data_), size_); }

const nlohmann::json& GgufFile::at(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) throw Error(path_.string() + ": GGUF metadata lacks '" + key + "'");
  return *it;
}

const GgufTensor& GgufFile::tensor(const std::string& name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) throw Error(path_.string() + ": GGUF has no tensor '" + name + "'");
  return tensors_[it->second];
}

std::vector<float> GgufFile::dequantize(const GgufTensor& tensor) const {
  const BlockFormat format = block_format(tensor.type);
  const std::string where = path_.string() + ": tensor " + tensor.name;
  if (format.values == 0)
    throw Error(where + ": unsupported type " + ggml_type_name(tensor.type) +
                " (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)");
  const auto numel = static_cast<std::size_t>(tensor.numel());
  if (numel % format.values != 0) throw Error(where + ": size is not a whole number of blocks");
  const std::size_t bytes = numel / format.values * format.bytes;
  if (data_start_ + tensor.offset + bytes > size_)
    throw Error(where + ": data runs past the end of the file (truncated download?)");
  const std::uint8_t* src = data_ + data_start_ + tensor.offset;
  std::vector<float> out(numel);
  switch (static_cast<GgmlType>(tensor.type)) {
    case GgmlType::kF32:
      std::memcpy(out.data(), src, bytes);
      break;
    case GgmlType::kF16:
      for (std::size_t i = 0; i < numel; ++i) out[i] = half_to_float(load_u16(src + 2 * i));
      break;
    case GgmlType::kBF16:
      for (std::size_t i = 0; i < numel; ++i)
        out[i] = std::bit_cast<float>(static_cast<std::uint32_t>(load_u16(src + 2 * i)) << 16);
      break;
    default:
      dequantize_blocks(tensor.type, src, numel / 32, out.data());
  }
  return out;
}

}  // namespace ponder::model
