// SFT data: the assistant-token mask against HF apply_chat_template and hand-computed spans, and
// the packed loss against the same sequences run one by one.
#include <c10/core/GradMode.h>
#include <gtest/gtest.h>

#include <fstream>

#include "core/error.h"
#include "model/init_model.h"
#include "model/transformer.h"
#include "tests/common/test_util.h"
#include "train/sft_data.h"

namespace ponder::train {
namespace {

using model::ChatFormat;
using model::ChatMessage;
using Chat = std::vector<ChatMessage>;

const model::Tokenizer& minimind() {
  static const model::Tokenizer tokenizer =
      model::Tokenizer::from_directory(testing_util::data_root() / "tokenizers" / "minimind");
  return tokenizer;
}

ChatTokens tokenize(ChatFormat format, const Chat& chat) {
  return tokenize_chat(minimind(), format, chat, "", *minimind().eos_id());
}

std::pair<std::string, std::string> split_text(const ChatTokens& t) {
  std::vector<std::int64_t> trained, other;
  for (std::size_t i = 0; i < t.ids.size(); ++i)
    (t.trained[i] ? trained : other).push_back(t.ids[i]);
  return {minimind().decode(trained), minimind().decode(other)};
}

const std::vector<Chat> kChats = {
    {{"user", "hi"}, {"assistant", "Hello there"}},
    {{"system", "Be brief."}, {"user", "What is 12 + 30?"}, {"assistant", "12 + 30 = 42."}},
    {{"user", "hi"},
     {"assistant", "<think>\nThe user greets me.\n</think>\n\nHello!"},
     {"user", "2+2?"},
     {"assistant", "4"}},
    {{"user", "  spaces\n\n"}, {"assistant", "\n\nleading newlines and trailing spaces   "}},
    {{"user", "Say nothing more"}, {"assistant", "ok"}, {"user", "a trailing user turn"}},
};

TEST(ChatTokens, HandComputedSpansInChatML) {
  const auto [trained, other] = split_text(tokenize(ChatFormat::kChatML, kChats[0]));
  EXPECT_EQ(trained, "Hello there<|im_end|>");
  EXPECT_EQ(other, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  const auto [trained2, other2] = split_text(tokenize(ChatFormat::kChatML, kChats[2]));
  EXPECT_EQ(trained2, "<think>\nThe user greets me.\n</think>\n\nHello!<|im_end|>4<|im_end|>");
  EXPECT_EQ(other2,
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n\n<|im_start|>user\n2+2?"
            "<|im_end|>\n<|im_start|>assistant\n");
  // Qwen3 style: the empty think block is part of the generation prompt, so it is not trained.
  const auto [trained3, other3] = split_text(tokenize(ChatFormat::kQwen3, kChats[0]));
  EXPECT_EQ(trained3, "Hello there<|im_end|>");
  EXPECT_EQ(other3,
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
  // R1-Zero has no end marker: EOS is appended and trained.
  const ChatTokens r1 =
      tokenize(ChatFormat::kR1Zero, {{"user", "1+1?"}, {"assistant", "<think>x</think> 2"}});
  EXPECT_EQ(split_text(r1).first, "x</think> 2<|im_end|>");
}

// Every conversation and format against the oracle built on HF apply_chat_template + tokenizers.
TEST(ChatTokens, MaskMatchesHfApplyChatTemplate) {
  testing_util::ScratchDir dir("chat_mask");
  nlohmann::json chats = nlohmann::json::array();
  for (const auto& chat : kChats) {
    nlohmann::json messages = nlohmann::json::array();
    for (const auto& m : chat) messages.push_back({{"role", m.role}, {"content", m.content}});
    chats.push_back(messages);
  }
  std::ofstream(dir / "chats.json") << chats.dump();
  for (const auto& [name, format] :
       {std::pair{"qwen3", ChatFormat::kQwen3}, std::pair{"chatml", ChatFormat::kChatML}}) {
    testing_util::run_checked(testing_util::python() + " " + CHAT_MASK_ORACLE + " " +
                              (testing_util::data_root() / "tokenizers" / "minimind").string() +
                              " " + name + " " + (dir / "chats.json").string() + " " +
                              (dir / "out.json").string());
    std::ifstream in(dir / "out.json");
    const nlohmann::json expected = nlohmann::json::parse(in);
    ASSERT_EQ(expected.size(), kChats.size());
    for (std::size_t i = 0; i < kChats.size(); ++i) {
      const ChatTokens got = tokenize(format, kChats[i]);
      EXPECT_EQ(got.ids, expected[i]["ids"].get<std::vector<std::int64_t>>()) << name << " " << i;
      EXPECT_EQ(std::vector<int>(got.trained.begin(), got.trained.end()),
                expected[i]["trained"].get<std::vector<int>>())
          << name << " chat " << i;
    }
  }
}

TEST(Packing, PlansConsecutiveBatchesWithinTheTokenBudget) {
  const std::vector<std::int64_t> lengths = {5, 3, 4, 2, 6};
  const std::vector<std::size_t> order = {4, 0, 1, 2, 3};
  const auto batches = plan_batches(lengths, order, 8);
  EXPECT_EQ(batches, (std::vector<std::vector<std::size_t>>{{4}, {0, 1}, {2, 3}}));
  EXPECT_THROW(plan_batches({9}, {0}, 8), Error);
}

struct Model {
  testing_util::ScratchDir dir;
  std::unique_ptr<model::CausalLM> lm;
  explicit Model(const std::string& preset) : dir("sft_model_" + preset) {
    model::init_model(model::preset_config(preset), dir.path(), {.seed = 3});
    lm = model::load_causal_lm(dir.path(), at::kCPU, at::kFloat);
    for (auto& [name, t] : lm->named_parameters()) t.requires_grad_(true);
  }
  at::Tensor grad(const std::string& name) {
    for (auto& [n, t] : lm->named_parameters())
      if (n == name) return t.grad().clone();
    return {};
  }
  void zero_grad() {
    for (auto& [n, t] : lm->named_parameters()) t.mutable_grad() = at::Tensor();
  }
};

// Packed loss (mean over every assistant token of the batch) == sum_i n_i * loss_i / sum_i n_i,
// loss_i the mean over sequence i's assistant tokens run alone; the same for the gradients.
void check_packing(const std::string& preset) {
  Model m(preset);
  std::vector<ChatTokens> data;
  for (const auto& chat : kChats) data.push_back(tokenize(ChatFormat::kQwen3, chat));
  std::vector<const ChatTokens*> all;
  for (const auto& t : data) all.push_back(&t);
  const PackedBatch packed = pack(all);
  const double n_total = static_cast<double>(packed.targets.numel());
  const at::Tensor packed_loss = packed_nll_sum(*m.lm, packed) / n_total;
  packed_loss.backward();
  const std::string probe = "model.layers.0.self_attn.o_proj.weight";
  const at::Tensor packed_grad = m.grad(probe);
  m.zero_grad();
  double combined = 0;
  at::Tensor combined_grad = at::zeros_like(packed_grad);
  for (const auto& t : data) {
    const PackedBatch one = pack({&t});
    const double n = static_cast<double>(one.targets.numel());
    const at::Tensor loss = packed_nll_sum(*m.lm, one) / n;
    loss.backward();
    combined += n / n_total * loss.item<double>();
    combined_grad += m.grad(probe) * (n / n_total);
    m.zero_grad();
  }
  EXPECT_NEAR(packed_loss.item<double>(), combined, 1e-6) << preset;
  EXPECT_LT((packed_grad - combined_grad).abs().max().item<double>(), 1e-6) << preset;
  // Sanity check that the comparison can fail: one causal sequence over the whole batch leaks
  // context across the boundaries and changes the loss.
  PackedBatch leaky = packed;
  leaky.cu_seqlens = at::tensor(std::vector<std::int64_t>{0, packed.tokens}, at::kLong);
  leaky.positions = at::arange(packed.tokens, at::kLong);
  c10::NoGradGuard no_grad;
  EXPECT_GT(std::abs((packed_nll_sum(*m.lm, leaky) / n_total).item<double>() - combined), 1e-4);
}

TEST(Packing, PackedLossEqualsTokenWeightedSequenceLossesLlama) { check_packing("tiny-llama"); }
TEST(Packing, PackedLossEqualsTokenWeightedSequenceLossesMla) { check_packing("tiny-mla"); }

}  // namespace
}  // namespace ponder::train
