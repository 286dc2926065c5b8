// `ponder eval`: benchmarks a checkpoint on built-in or JSON-defined tasks (or scores given
// predictions), prints a results table and writes the run store and report.
#include <fmt/core.h>

#include <chrono>
#include <ctime>
#include <set>

#include "cli/commands.h"
#include "core/error.h"
#include "core/json_file.h"
#include "core/json_struct.h"
#include "datasets/eval_tasks.h"
#include "eval/evaluator.h"
#include "model/transformer.h"
#include "rewards/builtin.h"
#include "store/report.h"
#include "train/run_setup.h"

namespace ponder::cli {
namespace {

using nlohmann::json;

struct EvalArgs {
  std::string model, out, chat_format, predictions, device = "auto";
  std::vector<std::string> tasks;
  std::int64_t limit = 0, kv_blocks = 0;
  eval::EvalOptions options;
};

// One line of a --predictions file.
struct Prediction {
  std::string task, id, completion, finish_reason = "stop";
  std::optional<std::int64_t> tokens;

  template <class V>
  void fields(V& v) {
    v("task", task, "task name (optional when one task is evaluated)");
    v("id", id, "item id (the task's id field)");
    v("completion", completion, "the model's output for the item");
    v("finish_reason", finish_reason, "stop | length (truncated)");
    v("tokens", tokens, "response length in tokens");
  }
};

struct LoadedTask {
  datasets::EvalTaskSpec spec;
  std::unique_ptr<rewards::Reward> reward;
  std::vector<datasets::Example> items;

  eval::EvalTask task() const { return {spec.name, items, reward.get(), spec.reward == "math"}; }
};

std::vector<LoadedTask> load_tasks(const EvalArgs& a) {
  std::vector<LoadedTask> out;
  std::set<std::string> names;
  for (const std::string& name : a.tasks) {
    LoadedTask t{datasets::find_eval_task(name), nullptr, {}};
    if (!names.insert(t.spec.name).second) throw Error("eval: task '" + name + "' given twice");
    t.reward = rewards::builtin_rewards().create(t.spec.reward, t.spec.reward_options);
    // Predictions may cover any item, so --limit applies after matching them.
    const auto limit = a.limit > 0 && a.predictions.empty()
                           ? std::optional<std::size_t>(static_cast<std::size_t>(a.limit))
                           : std::nullopt;
    t.items = datasets::load_eval_task(t.spec, limit);
    out.push_back(std::move(t));
  }
  return out;
}

using PredictionTable = std::map<std::string, std::map<std::string, std::vector<eval::Response>>>;

PredictionTable read_predictions(const EvalArgs& a, const model::Tokenizer* tokenizer) {
  PredictionTable table;
  for_each_jsonl(a.predictions, [&](const json& record, std::size_t line) {
    const std::string where = a.predictions + ":" + std::to_string(line);
    Prediction p;
    try {
      json_struct::read(record, p, "");
    } catch (const Error& e) {
      rethrow_with_context(where, e);
    }
    if (p.task.empty() && a.tasks.size() == 1) p.task = a.tasks[0];
    if (p.task.empty()) throw Error(where + ": 'task' is required when several tasks are given");
    if (p.id.empty()) throw Error(where + ": 'id' is required");
    if (p.finish_reason != "stop" && p.finish_reason != "length")
      throw Error(where + ": finish_reason '" + p.finish_reason + "' (expected stop | length)");
    if (!p.tokens && tokenizer)
      p.tokens = static_cast<std::int64_t>(tokenizer->encode(p.completion).size());
    table[p.task][p.id].push_back({p.completion, p.tokens, p.finish_reason});
  });
  return table;
}

// Keeps the task's items that have predictions (at most --limit) and returns their responses.
std::vector<std::vector<eval::Response>> match_predictions(
    const EvalArgs& a, LoadedTask& task,
    std::map<std::string, std::vector<eval::Response>>& given) {
  const std::string& name = task.spec.name;
  std::vector<datasets::Example> kept;
  std::vector<std::vector<eval::Response>> responses;
  std::set<std::string> ids;
  for (auto& item : task.items) {
    if (!ids.insert(item.id).second)
      throw Error("eval: task '" + name + "' has two items with id '" + item.id + "'");
    auto it = given.find(item.id);
    if (it == given.end() || (a.limit > 0 && static_cast<std::int64_t>(kept.size()) >= a.limit))
      continue;
    responses.push_back(std::move(it->second));
    kept.push_back(std::move(item));
  }
  for (const auto& [id, unused] : given)
    if (!ids.count(id))
      throw Error(a.predictions + ": id '" + id + "' is not an item of task '" + name + "'");
  if (kept.empty()) throw Error(a.predictions + ": no predictions for task '" + name + "'");
  if (kept.size() < task.items.size())
    fmt::print(stderr, "eval: {}: scoring the {} of {} items that have predictions\n", name,
               kept.size(), task.items.size());
  task.items = std::move(kept);
  return responses;
}

std::vector<eval::TaskResult> score_predictions(const EvalArgs& a, std::vector<LoadedTask>& tasks,
                                                ThreadPool& pool, store::RunStore& store) {
  std::optional<model::Tokenizer> tokenizer;
  if (!a.model.empty()) tokenizer = model::Tokenizer::from_directory(a.model);
  PredictionTable table = read_predictions(a, tokenizer ? &*tokenizer : nullptr);
  for (const auto& [name, unused] : table)
    if (std::none_of(tasks.begin(), tasks.end(), [&](auto& t) { return t.spec.name == name; }))
      throw Error(a.predictions + ": task '" + name + "' is not among --task");
  std::vector<eval::TaskResult> results;
  for (LoadedTask& t : tasks) {
    const auto responses = match_predictions(a, t, table[t.spec.name]);
    results.push_back(eval::evaluate_responses(t.task(), responses, a.options, pool, &store));
  }
  return results;
}

model::ChatFormat chat_format(const EvalArgs& a) {
  if (!a.chat_format.empty()) return model::parse_chat_format(a.chat_format);
  const auto config = std::filesystem::path(a.model) / "tokenizer_config.json";
  if (!std::filesystem::exists(config))
    throw Error("eval: " + config.string() + " is missing; give --chat-format");
  return model::detect_chat_format(read_json_file(config));
}

std::vector<eval::TaskResult> generate_and_score(const EvalArgs& a,
                                                 const std::vector<LoadedTask>& tasks,
                                                 ThreadPool& pool, store::RunStore& store) {
  const at::Device device = train::resolve_device(a.device, "eval: --device");
  const model::Tokenizer tokenizer = model::Tokenizer::from_directory(a.model);
  auto lm = model::load_causal_lm(a.model, device, device.is_cuda() ? at::kBFloat16 : at::kFloat);
  engine::RolloutEngine engine(*lm, &tokenizer,
                               {.num_blocks = a.kv_blocks, .show_progress = false});
  const eval::Generator generator{engine, tokenizer, chat_format(a)};
  std::vector<eval::TaskResult> results;
  for (const LoadedTask& t : tasks)
    results.push_back(eval::evaluate(generator, t.task(), a.options, pool, &store));
  return results;
}

std::string cell(const std::map<std::string, double>& m, const std::string& name) {
  const auto it = m.find(name);
  if (it == m.end()) return "-";
  if (name == "length_tokens") return fmt::format("{:.1f} tokens", it->second);
  if (name == "seconds") return fmt::format("{:.2f} s", it->second);
  if (name == "items" || name == "samples") return fmt::format("{:.0f}", it->second);
  return fmt::format("{:.1f}%", 100 * it->second);
}

void print_table(const std::vector<eval::TaskResult>& results) {
  std::vector<std::string> pass, maj;
  for (const auto& r : results)
    for (const auto& [name, unused] : r.metrics) {
      auto& list = name.starts_with("pass@") ? pass : maj;
      if ((name.starts_with("pass@") || name.starts_with("maj@")) &&
          std::find(list.begin(), list.end(), name) == list.end())
        list.push_back(name);
    }
  const auto by_k = [](const std::string& x, const std::string& y) {
    return std::stoi(x.substr(x.find('@') + 1)) < std::stoi(y.substr(y.find('@') + 1));
  };
  std::sort(pass.begin(), pass.end(), by_k);
  std::sort(maj.begin(), maj.end(), by_k);
  std::vector<std::string> columns = {"items", "samples"};
  columns.insert(columns.end(), pass.begin(), pass.end());
  columns.insert(columns.end(), maj.begin(), maj.end());
  columns.insert(columns.end(), {"length_tokens", "truncated", "seconds"});
  std::string header = fmt::format("{:<16}", "task");
  for (const auto& c : columns)
    header += fmt::format("{:>15}", c == "seconds"         ? "time"
                                    : c == "length_tokens" ? "mean length"
                                                           : c);
  fmt::print("{}\n", header);
  for (const auto& r : results) {
    std::string row = fmt::format("{:<16}", r.task);
    for (const auto& c : columns) row += fmt::format("{:>15}", cell(r.metrics, c));
    fmt::print("{}\n", row);
  }
}

json run_config(const EvalArgs& a, const std::vector<LoadedTask>& tasks) {
  json specs = json::array();
  for (const auto& t : tasks) specs.push_back(json_struct::write(t.spec));
  const auto& s = a.options.sampling;
  return {{"model", a.model},
          {"predictions", a.predictions},
          {"tasks", specs},
          {"n", a.options.n},
          {"k", a.options.ks},
          {"temperature", s.temperature},
          {"top_p", s.top_p},
          {"max_tokens", s.max_tokens},
          {"seed", s.seed},
          {"limit", a.limit},
          {"chat_format", a.chat_format}};
}

std::string default_run_dir() {
  const std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
  return std::string("runs/eval-") + stamp;
}

void run_eval(EvalArgs& a) {
  if (a.model.empty() && a.predictions.empty())
    throw Error("eval: give --model DIR (or --predictions FILE.jsonl to score given outputs)");
  if (a.limit < 0 || a.kv_blocks < 0) throw Error("eval: --limit and --kv-blocks must be >= 0");
  if (a.out.empty()) a.out = default_run_dir();
  std::vector<LoadedTask> tasks = load_tasks(a);
  std::filesystem::create_directories(a.out);
  store::RunStore store(a.out);
  store.begin_run({.kind = "eval",
                   .recipe = run_config(a, tasks),
                   .seed = static_cast<std::int64_t>(a.options.sampling.seed),
                   .versions = {{"ponder", PONDER_VERSION}}});
  ThreadPool pool;
  const auto results = a.predictions.empty() ? generate_and_score(a, tasks, pool, store)
                                             : score_predictions(a, tasks, pool, store);
  store.flush();
  print_table(results);
  fmt::print("report: {}\n", store::write_report(a.out).string());
}

}  // namespace

void add_eval_command(CLI::App& app) {
  static EvalArgs a;
  auto* cmd = app.add_subcommand(
      "eval", "Benchmark a checkpoint: pass@1 over k samples, pass@k, maj@k, length, truncation");
  cmd->add_option("--model", a.model, "Model directory (HF layout with tokenizer.json)");
  std::string names;
  for (const auto& t : datasets::builtin_eval_tasks())
    names += (names.empty() ? "" : ", ") + t.name;
  cmd->add_option("--task", a.tasks, "Tasks, comma separated: " + names + ", or FILE.json")
      ->required()
      ->delimiter(',');
  cmd->add_option("--n", a.options.n, "Samples per item (k)")->capture_default_str();
  cmd->add_option("--k", a.options.ks, "pass@k/maj@k values (default 1, 2, 4, ... and n)")
      ->delimiter(',');
  cmd->add_option("--temperature", a.options.sampling.temperature, "0 = greedy")
      ->capture_default_str();
  cmd->add_option("--top-p", a.options.sampling.top_p, "Nucleus mass")->capture_default_str();
  cmd->add_option("--max-tokens", a.options.sampling.max_tokens, "Response tokens at most")
      ->capture_default_str();
  cmd->add_option("--limit", a.limit, "First N items of each task (0 = all)")
      ->capture_default_str();
  cmd->add_option("--seed", a.options.sampling.seed, "Sampling seed")->capture_default_str();
  cmd->add_option("--out", a.out, "Run directory (default runs/eval-DATE-TIME)");
  cmd->add_option("--chat-format", a.chat_format,
                  "chatml | qwen3 | smollm2 | deepseek_v3 | llama3 | r1_zero (default: detect)");
  cmd->add_option("--device", a.device, "auto | cpu | cuda")->capture_default_str();
  cmd->add_option("--kv-blocks", a.kv_blocks,
                  "KV cache blocks of 64 tokens (0 = sized from free device memory)")
      ->capture_default_str();
  cmd->add_option("--predictions", a.predictions,
                  "Score given outputs instead of generating: JSONL, one sample per line with "
                  "id, completion and optional task, finish_reason (stop|length), tokens");
  cmd->callback([] { run_eval(a); });
}

}  // namespace ponder::cli
