#include <fmt/core.h>

#include <fstream>

#include "cli/commands.h"
#include "core/error.h"
#include "core/json_file.h"
#include "engine/rollout_engine.h"
#include "model/chat_template.h"

namespace ponder::cli {
namespace {

struct GenerateArgs {
  std::string model, prompt, prompts_file, out, chat_format, kv_cache_dtype = "auto";
  std::int64_t n = 1;
  engine::SamplingParams params{.temperature = 0.6, .top_p = 0.95, .max_tokens = 256};
  bool chat = false;
};

std::vector<std::string> read_prompts(const GenerateArgs& a) {
  if (!a.prompt.empty()) return {a.prompt};
  std::vector<std::string> prompts;
  for_each_jsonl(a.prompts_file, [&](const nlohmann::json& r, std::size_t line) {
    if (!r.contains("prompt") || !r["prompt"].is_string())
      throw Error(a.prompts_file + ":" + std::to_string(line) +
                  ": expected a string field \"prompt\"");
    prompts.push_back(r["prompt"]);
  });
  return prompts;
}

void run_generate(const GenerateArgs& a) {
  const model::Tokenizer tokenizer = model::Tokenizer::from_directory(a.model);
  auto lm = model::load_causal_lm(a.model, at::kCPU, at::kFloat);
  const auto texts = read_prompts(a);
  model::ChatFormat format = model::ChatFormat::kChatML;
  if (a.chat)
    format = a.chat_format.empty() ? model::detect_chat_format(read_json_file(
                                         std::filesystem::path(a.model) / "tokenizer_config.json"))
                                   : model::parse_chat_format(a.chat_format);
  std::vector<engine::Request> requests;
  for (const auto& text : texts) {
    const std::string prompt = a.chat ? model::render_chat(format, {{"user", text}}, true) : text;
    requests.push_back({tokenizer.encode(prompt), a.n, a.params});
  }
  engine::RolloutEngine engine(
      *lm, &tokenizer,
      {.show_progress = a.out.empty() ? false : true,
       .kv_cache_dtype = model::parse_kv_cache_dtype(a.kv_cache_dtype, "--kv-cache-dtype")});
  const bool streaming = requests.size() == 1 && a.n == 1;
  const auto completions = engine.generate(
      requests,
      streaming ? engine::StreamCallback([](std::size_t, std::int64_t, const std::string& piece) {
        fmt::print("{}", piece);
        std::fflush(stdout);
      })
                : engine::StreamCallback());
  if (streaming) fmt::print("\n");
  std::ofstream file;
  if (!a.out.empty()) file.open(a.out);
  for (const auto& c : completions) {
    const nlohmann::json record = {{"prompt", texts[c.request]},
                                   {"sample", c.sample},
                                   {"text", c.text},
                                   {"ids", c.ids},
                                   {"logprobs", c.logprobs},
                                   {"raw_logprobs", c.raw_logprobs},
                                   {"finish_reason", c.finish_reason}};
    if (file.is_open())
      file << record.dump() << "\n";
    else if (!streaming)
      fmt::print("{}\n", record.dump());
  }
  const auto& m = engine.last_metrics();
  fmt::print(stderr, "generate: {} tokens in {:.2f} s ({:.1f} tokens/s), {} preemptions\n",
             m.generated_tokens, m.seconds, m.tokens_per_second, m.preemptions);
}

}  // namespace

void add_generate_command(CLI::App& app) {
  static GenerateArgs a;
  auto* cmd = app.add_subcommand("generate",
                                 "Sample completions from a checkpoint (streams a single prompt)");
  cmd->add_option("--model", a.model, "Model directory (HF layout with tokenizer.json)")
      ->required();
  auto* prompt = cmd->add_option("--prompt", a.prompt, "Prompt text");
  auto* prompts =
      cmd->add_option("--prompts", a.prompts_file, "JSONL file with a \"prompt\" field per line");
  prompt->excludes(prompts);
  cmd->add_option("--n", a.n, "Samples per prompt")->capture_default_str();
  cmd->add_option("--temperature", a.params.temperature, "0 = greedy")->capture_default_str();
  cmd->add_option("--top-p", a.params.top_p, "Nucleus mass")->capture_default_str();
  cmd->add_option("--top-k", a.params.top_k, "Keep the k most likely tokens (0 = off)")
      ->capture_default_str();
  cmd->add_option("--min-p", a.params.min_p, "Drop tokens below min_p x the top probability")
      ->capture_default_str();
  cmd->add_option("--max-tokens", a.params.max_tokens, "Tokens to generate at most")
      ->capture_default_str();
  cmd->add_option("--stop", a.params.stop, "Stop string (repeatable)");
  cmd->add_option("--seed", a.params.seed, "Sampling seed")->capture_default_str();
  cmd->add_flag("--chat", a.chat, "Wrap prompts in the model's chat template");
  cmd->add_option("--chat-format", a.chat_format,
                  "chatml | qwen3 | smollm2 | deepseek_v3 | llama3 | r1_zero (default: detect)");
  cmd->add_option("--kv-cache-dtype", a.kv_cache_dtype,
                  "auto (the model's dtype) | fp8 (MLA models: FP8 latent cache, ~half the memory)")
      ->capture_default_str();
  cmd->add_option("--out", a.out,
                  "Write completions as JSONL (ids, text, logprobs, finish reason)");
  cmd->callback([] {
    if (a.prompt.empty() && a.prompts_file.empty())
      throw Error("generate: give --prompt TEXT or --prompts FILE.jsonl");
    run_generate(a);
  });
}

}  // namespace ponder::cli
