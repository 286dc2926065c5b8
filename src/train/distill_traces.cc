// Trace generation, top to bottom: prompts in batches -> teacher samples on the engine -> rule
// rewards on the CPU pool -> keep correct, finished samples, each (question, answer) once ->
// chat jsonl + run store.
#include "train/distill_traces.h"

#include <fmt/core.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/json_struct.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "datasets/task.h"
#include "engine/rollout_engine.h"
#include "model/chat_template.h"
#include "store/report.h"
#include "store/run_store.h"
#include "train/run_setup.h"

namespace ponder::train {

std::vector<datasets::Example> distill_prompts(const DistillRecipe& r) {
  std::vector<datasets::Example> out = load_task_data(r.data, r.seed).train;
  const bool synthetic = r.data.task == "arithmetic" || r.data.task == "countdown";
  const std::int64_t limit = r.max_prompts > 0 ? r.max_prompts : synthetic ? 1000 : 0;
  if (limit > 0 && static_cast<std::int64_t>(out.size()) > limit) out.resize(limit);
  return out;
}

namespace {

// Whitespace runs collapsed and ends trimmed: two traces equal under this are duplicates.
std::string normalized(const std::string& text) {
  std::istringstream words(text);
  std::string word, out;
  while (words >> word) out += (out.empty() ? "" : " ") + word;
  return out;
}

struct Scorer {
  std::vector<std::pair<std::string, std::unique_ptr<rewards::Reward>>> rewards;
  std::vector<double> weights;
  std::pair<double, nlohmann::json> operator()(const rewards::Sample& sample) const {
    double total = 0;
    nlohmann::json details = nlohmann::json::object();
    for (std::size_t i = 0; i < rewards.size(); ++i) {
      const auto result = rewards[i].second->score(sample);
      details[rewards[i].first] = {{"value", result.value}, {"details", result.details}};
      total += weights[i] * result.value;
    }
    return {total, details};
  }
};

struct Run {
  const DistillRecipe& recipe;
  std::string teacher;
  engine::RolloutEngine& engine;
  const model::Tokenizer& tokenizer;
  model::ChatFormat format;
  const Scorer& scorer;
  ThreadPool& pool;
  store::RunStore& store;
  std::ofstream& output;
  std::map<std::string, std::set<std::string>> kept;  // question -> normalised kept answers
  TraceSummary summary;
};

void write_trace(Run& run, const datasets::Example& e, const engine::Completion& c, double reward,
                 const nlohmann::json& details, std::uint64_t seed) {
  const auto& s = run.recipe.sampling;
  const nlohmann::json record = {
      {"messages",
       {{{"role", "user"}, {"content", e.question}}, {{"role", "assistant"}, {"content", c.text}}}},
      {"provenance",
       {{"teacher", run.teacher},
        {"example_id", e.id},
        {"sample", c.sample},
        {"reward", reward},
        {"rewards", details},
        {"tokens", c.ids.size()},
        {"temperature", s.temperature},
        {"top_p", s.top_p},
        {"seed", seed},
        {"run_dir", run.recipe.run_dir}}}};
  run.output << record.dump() << "\n";
}

// Generates, scores and filters one batch of prompts; `batch` numbers it in the run store.
void process(Run& run, std::span<const datasets::Example> examples, std::int64_t batch) {
  const auto& s = run.recipe.sampling;
  const auto seed =
      static_cast<std::uint64_t>(run.recipe.seed) * 1000003 + static_cast<std::uint64_t>(batch);
  std::vector<engine::Request> requests;
  for (const auto& e : examples)
    requests.push_back(
        {run.tokenizer.encode(model::render_chat(run.format, {{"user", e.question}}, true)),
         s.n,
         {.temperature = s.temperature,
          .top_p = s.top_p,
          .max_tokens = s.max_tokens,
          .seed = seed}});
  const auto completions = run.engine.generate(requests);
  std::vector<std::future<std::pair<double, nlohmann::json>>> scored;
  for (const auto& c : completions)
    scored.push_back(run.pool.submit([&run, &c, e = &examples[c.request]] {
      return run.scorer({e->question, c.text, e->reference, {{"finish_reason", c.finish_reason}}});
    }));
  std::vector<store::RolloutRecord> records;
  for (std::size_t i = 0; i < completions.size(); ++i) {
    const auto& c = completions[i];
    auto [reward, details] = scored[i].get();
    const bool accepted = reward >= run.recipe.min_reward && c.finish_reason == "stop";
    std::string verdict = accepted ? "kept" : "rejected";
    if (accepted) {
      ++run.summary.accepted;
      auto& distinct = run.kept[examples[c.request].question];
      const bool full = run.recipe.max_per_prompt > 0 &&
                        static_cast<std::int64_t>(distinct.size()) >= run.recipe.max_per_prompt;
      if (!distinct.insert(normalized(c.text)).second) {
        ++run.summary.duplicates;
        verdict = "duplicate";
      } else if (full) {
        distinct.erase(normalized(c.text));
        verdict = "over max_per_prompt";
      } else {
        write_trace(run, examples[c.request], c, reward, details, seed);
        ++run.summary.kept;
      }
    }
    details["distill"] = verdict;
    records.push_back({.step = batch,
                       .group = static_cast<std::int64_t>(c.request),
                       .prompt = examples[c.request].question,
                       .completion = c.text,
                       .reward = reward,
                       .reward_details = details,
                       .tokens = static_cast<std::int64_t>(c.ids.size()),
                       .finish_reason = c.finish_reason});
  }
  run.store.log_rollouts(records);
  run.summary.samples += static_cast<std::int64_t>(completions.size());
  run.summary.prompts += static_cast<std::int64_t>(examples.size());
}

}  // namespace

TraceSummary generate_traces(const DistillRecipe& original) {
  DistillRecipe recipe = original;
  recipe.run_dir = fresh_run_dir(original.run_dir);
  std::filesystem::create_directories(recipe.run_dir);
  store::RunStore store(recipe.run_dir);
  store.begin_run({.kind = "distill-traces",
                   .recipe = json_struct::write(recipe),
                   .seed = recipe.seed,
                   .versions = {{"ponder", "0.1.0"}}});
  const ModelFiles files = resolve_model(recipe.teacher, recipe.run_dir, recipe.seed);
  const auto teacher = model::load_causal_lm(files.weights, at::kCPU, at::kFloat);
  const auto tokenizer = model::Tokenizer::from_directory(files.tokenizer);
  Scorer scorer;
  for (const auto& spec : recipe.rewards) {
    scorer.rewards.emplace_back(spec.name, training_rewards().create(spec.name, spec.options));
    scorer.weights.push_back(spec.weight);
  }
  const auto examples = distill_prompts(recipe);
  engine::RolloutEngine engine(*teacher, &tokenizer,
                               {.block_size = 16, .num_blocks = 4096, .show_progress = false});
  ThreadPool pool;
  const std::filesystem::path output = recipe.output.empty()
                                           ? std::filesystem::path(recipe.run_dir) / "traces.jsonl"
                                           : std::filesystem::path(recipe.output);
  std::ofstream out(output);
  if (!out) throw Error(output.string() + ": cannot write the traces file");
  Run run{recipe,
          files.weights.string(),
          engine,
          tokenizer,
          model::parse_chat_format(recipe.data.chat_format),
          scorer,
          pool,
          store,
          out,
          {}};
  Progress progress("distill", static_cast<std::int64_t>(examples.size()), "prompt");
  const auto per_batch = static_cast<std::size_t>(recipe.sampling.prompts_per_batch);
  for (std::size_t start = 0, batch = 0; start < examples.size(); start += per_batch, ++batch) {
    const std::span<const datasets::Example> part(examples.data() + start,
                                                  std::min(per_batch, examples.size() - start));
    process(run, part, static_cast<std::int64_t>(batch));
    progress.set_note(fmt::format("kept {} of {} samples", run.summary.kept, run.summary.samples));
    progress.advance(static_cast<std::int64_t>(part.size()));
  }
  progress.finish();
  run.summary.prompts_with_trace = static_cast<std::int64_t>(run.kept.size());
  const auto& s = run.summary;
  store.log_metrics(0, {{"distill/prompts", static_cast<double>(s.prompts)},
                        {"distill/samples", static_cast<double>(s.samples)},
                        {"distill/accepted_fraction",
                         static_cast<double>(s.accepted) / std::max<double>(1, s.samples)},
                        {"distill/duplicates", static_cast<double>(s.duplicates)},
                        {"distill/kept", static_cast<double>(s.kept)},
                        {"distill/prompts_with_trace", static_cast<double>(s.prompts_with_trace)}});
  store.flush();
  run.summary.output = output;
  run.summary.report = store::write_report(recipe.run_dir);
  return run.summary;
}

}  // namespace ponder::train
