// Maps a llama-architecture GGUF file to the Hugging Face layout: config.json, tokenizer.json and
// tokenizer_config.json from its metadata, and HF tensor names with the rotary layout undone.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/gguf.h"

namespace ponder::model {

nlohmann::json gguf_llama_config(const GgufFile& file);
nlohmann::json gguf_tokenizer_json(const GgufFile& file);
nlohmann::json gguf_tokenizer_config(const GgufFile& file);

struct HfTensor {
  std::string name;
  std::vector<std::int64_t> shape;
  std::vector<float> values;
};

// Dequantises one GGUF tensor and returns it under its HF name, undoing llama.cpp's interleaved
// rotary permutation of q/k projections. Fails naming the tensor if it has no HF counterpart.
HfTensor gguf_to_hf_tensor(const GgufFile& file, const GgufTensor& tensor);

}  // namespace ponder::model
