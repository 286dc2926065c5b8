#include "eval/evaluator.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <memory>

#include "core/error.h"
#include "core/progress.h"
#include "rewards/math_answer.h"
#include "train/eval_metrics.h"

namespace ponder::eval {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// Scores samples on the pool as they are submitted; collect() gathers the finished ones.
class Scorer {
 public:
  Scorer(const EvalTask& task, ThreadPool& pool, std::vector<ItemResult>& results,
         Progress* progress)
      : task_(task), pool_(pool), results_(results), progress_(progress) {}

  void submit(std::size_t item, std::size_t sample, Response response) {
    SampleResult& slot = results_[item].samples.at(sample);
    slot.response = std::move(response);
    const datasets::Example& e = task_.items[item];
    rewards::Sample input{e.question, slot.response.text, e.reference,
                          json{{"finish_reason", slot.response.finish_reason}}};
    if (slot.response.tokens) input.metadata["completion_tokens"] = *slot.response.tokens;
    pending_.push_back(
        {item, sample, pool_.submit([reward = task_.reward, input = std::move(input)] {
           return reward->score(input);
         })});
  }

  // Moves finished scores into the results; with wait, blocks until every one is in.
  void collect(bool wait) {
    std::erase_if(pending_, [&](Pending& p) {
      if (!wait && p.result.wait_for(std::chrono::seconds(0)) != std::future_status::ready)
        return false;
      store(p);
      return true;
    });
  }

  void set_note(const std::string& extra) {
    if (!progress_) return;
    progress_->set_note(fmt::format("pass@1 {:.1f}%{}", scored_ ? 100.0 * correct_ / scored_ : 0.0,
                                    extra.empty() ? "" : ", " + extra));
  }

 private:
  struct Pending {
    std::size_t item, sample;
    std::future<rewards::RewardResult> result;
  };

  void store(Pending& p) {
    SampleResult& slot = results_[p.item].samples[p.sample];
    try {
      rewards::RewardResult r = p.result.get();
      slot.reward = r.value;
      slot.details = std::move(r.details);
    } catch (const std::exception& e) {
      rethrow_with_context("task " + task_.name + ", item " + results_[p.item].id, e);
    }
    slot.correct = slot.reward >= 1.0;
    ++scored_;
    correct_ += slot.correct;
    if (progress_) {
      set_note("");
      progress_->advance();
    }
  }

  const EvalTask& task_;
  ThreadPool& pool_;
  std::vector<ItemResult>& results_;
  Progress* progress_;
  std::vector<Pending> pending_;
  std::int64_t scored_ = 0, correct_ = 0;
};

void check_task(const EvalTask& task) {
  if (!task.reward) throw Error("eval: task '" + task.name + "' has no reward");
  if (task.items.empty()) throw Error("eval: task '" + task.name + "' has no items");
}

std::vector<ItemResult> empty_results(const EvalTask& task,
                                      const std::function<std::size_t(std::size_t)>& samples) {
  std::vector<ItemResult> results(task.items.size());
  for (std::size_t i = 0; i < results.size(); ++i) {
    results[i].id = task.items[i].id;
    results[i].samples.resize(samples(i));
  }
  return results;
}

std::unique_ptr<Progress> make_progress(const EvalTask& task, std::size_t samples,
                                        const EvalOptions& options) {
  if (!options.show_progress) return nullptr;
  return std::make_unique<Progress>("eval " + task.name, static_cast<std::int64_t>(samples),
                                    "sample");
}

TaskResult finish(const EvalTask& task, std::vector<ItemResult> items, const EvalOptions& options,
                  double seconds, store::RunStore* store) {
  TaskResult result{task.name, std::move(items), {}};
  result.metrics = task_metrics(result.items, options.ks, task.majority);
  result.metrics["seconds"] = seconds;
  if (!store) return result;
  std::map<std::string, double> logged;
  for (const auto& [name, value] : result.metrics) logged["eval/" + task.name + "/" + name] = value;
  store->log_metrics(options.step, logged);
  std::vector<store::RolloutRecord> records;
  for (std::size_t i = 0; i < result.items.size(); ++i)
    for (std::size_t s = 0; s < result.items[i].samples.size(); ++s) {
      const SampleResult& sample = result.items[i].samples[s];
      records.push_back({.step = options.step,
                         .split = "eval",
                         .group = static_cast<std::int64_t>(i),
                         .prompt = task.items[i].question,
                         .completion = sample.response.text,
                         .reward = sample.reward,
                         .reward_details = {{"task", task.name},
                                            {"id", result.items[i].id},
                                            {"sample", s},
                                            {"correct", sample.correct},
                                            {"details", sample.details}},
                         .tokens = sample.response.tokens.value_or(0),
                         .finish_reason = sample.response.finish_reason});
    }
  store->log_rollouts(records);
  return result;
}

// Answers grouped by equivalence: each answer maps to the first earlier answer it equals, so
// "0.5" and "\frac{1}{2}" vote together.
std::vector<train::Vote> votes(const ItemResult& item, std::size_t k) {
  std::vector<train::Vote> out;
  std::vector<std::pair<std::string, std::string>> seen;  // (answer, normalised)
  for (std::size_t s = 0; s < k; ++s) {
    const SampleResult& sample = item.samples[s];
    train::Vote vote{.correct = sample.correct};
    const auto extracted = sample.details.find("extracted");
    if (extracted != sample.details.end() && extracted->is_string()) {
      const std::string answer = *extracted, normalized = rewards::normalize_answer(answer);
      auto same = std::find_if(seen.begin(), seen.end(), [&](const auto& other) {
        return other.second == normalized ||
               rewards::answers_equivalent(answer, other.first).equivalent;
      });
      if (same == seen.end()) same = seen.insert(seen.end(), {answer, normalized});
      vote.answer = same->first;
    }
    out.push_back(std::move(vote));
  }
  return out;
}

std::vector<std::size_t> metric_ks(std::vector<std::int64_t> ks, std::size_t samples) {
  if (ks.empty())
    for (std::int64_t k = 1; k < static_cast<std::int64_t>(samples); k *= 2) ks.push_back(k);
  ks.push_back(1);
  ks.push_back(static_cast<std::int64_t>(samples));
  std::vector<std::size_t> out;
  for (const std::int64_t k : ks) {
    if (k < 1 || k > static_cast<std::int64_t>(samples))
      throw Error(fmt::format("eval: k={} needs 1 <= k <= n={} samples per item", k, samples));
    out.push_back(static_cast<std::size_t>(k));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace

std::map<std::string, double> task_metrics(std::span<const ItemResult> items,
                                           std::vector<std::int64_t> ks, bool majority) {
  if (items.empty()) throw Error("eval: no items to compute metrics over");
  std::size_t min_samples = items[0].samples.size(), total = 0, truncated = 0, counted = 0;
  double reward = 0, length = 0;
  for (const ItemResult& item : items) {
    min_samples = std::min(min_samples, item.samples.size());
    for (const SampleResult& s : item.samples) {
      ++total;
      reward += s.reward;
      truncated += s.response.finish_reason == "length";
      if (!s.response.tokens) continue;
      ++counted;
      length += static_cast<double>(*s.response.tokens);
    }
  }
  if (min_samples == 0) throw Error("eval: every item needs at least one sample");
  const std::size_t n_items = items.size();
  std::map<std::string, double> m = {
      {"items", static_cast<double>(n_items)},
      {"samples", static_cast<double>(total)},
      {"reward_mean", reward / static_cast<double>(total)},
      {"truncated", static_cast<double>(truncated) / static_cast<double>(total)}};
  if (counted == total) m["length_tokens"] = length / static_cast<double>(total);
  for (const std::size_t k : metric_ks(std::move(ks), min_samples)) {
    double pass = 0, maj = 0;
    for (const ItemResult& item : items) {
      const auto correct = static_cast<std::size_t>(std::count_if(
          item.samples.begin(), item.samples.end(), [](const auto& s) { return s.correct; }));
      pass += train::pass_at_k(item.samples.size(), correct, k);
      if (majority && k > 1) maj += train::majority_at_k(votes(item, k), k);
    }
    m[fmt::format("pass@{}", k)] = pass / static_cast<double>(n_items);
    if (majority && k > 1) m[fmt::format("maj@{}", k)] = maj / static_cast<double>(n_items);
  }
  return m;
}

TaskResult evaluate(const Generator& generator, const EvalTask& task, const EvalOptions& options,
                    ThreadPool& pool, store::RunStore* store) {
  check_task(task);
  if (options.n < 1) throw Error("eval: n must be at least 1");
  const auto start = Clock::now();
  const auto n = static_cast<std::size_t>(options.n);
  std::vector<ItemResult> results = empty_results(task, [n](std::size_t) { return n; });
  const auto progress = make_progress(task, results.size() * n, options);
  Scorer scorer(task, pool, results, progress.get());
  const std::size_t chunk = std::max<std::size_t>(1, options.chunk_samples / options.n);
  std::int64_t pieces = 0;
  const engine::StreamCallback tick = [&](std::size_t, std::int64_t, const std::string&) {
    if (!progress || ++pieces % 64) return;
    scorer.set_note(fmt::format("~{} tokens generated", pieces));
    progress->advance(0);
  };
  for (std::size_t first = 0; first < task.items.size(); first += chunk) {
    const std::size_t last = std::min(task.items.size(), first + chunk);
    std::vector<engine::Request> requests;
    for (std::size_t i = first; i < last; ++i) {
      engine::SamplingParams params = options.sampling;
      params.seed = options.sampling.seed + 0x9E3779B97F4A7C15ULL * (options.first_item + i + 1);
      const std::string prompt =
          model::render_chat(generator.format, {{"user", task.items[i].question}}, true);
      requests.push_back({generator.tokenizer.encode(prompt), options.n, params});
    }
    for (engine::Completion& c : generator.engine.generate(requests, tick))
      scorer.submit(
          first + c.request, static_cast<std::size_t>(c.sample),
          {std::move(c.text), static_cast<std::int64_t>(c.ids.size()), std::move(c.finish_reason)});
    scorer.collect(false);
  }
  scorer.collect(true);
  if (progress) progress->finish();
  return finish(task, std::move(results), options,
                std::chrono::duration<double>(Clock::now() - start).count(), store);
}

TaskResult evaluate_responses(const EvalTask& task,
                              const std::vector<std::vector<Response>>& responses,
                              const EvalOptions& options, ThreadPool& pool,
                              store::RunStore* store) {
  check_task(task);
  if (responses.size() != task.items.size())
    throw Error(fmt::format("eval: task '{}' has {} items but {} response lists", task.name,
                            task.items.size(), responses.size()));
  const auto start = Clock::now();
  std::size_t total = 0;
  for (std::size_t i = 0; i < responses.size(); ++i) {
    if (responses[i].empty())
      throw Error("eval: task '" + task.name + "', item " + task.items[i].id + " has no samples");
    total += responses[i].size();
  }
  std::vector<ItemResult> results =
      empty_results(task, [&](std::size_t i) { return responses[i].size(); });
  const auto progress = make_progress(task, total, options);
  Scorer scorer(task, pool, results, progress.get());
  for (std::size_t i = 0; i < responses.size(); ++i)
    for (std::size_t s = 0; s < responses[i].size(); ++s) scorer.submit(i, s, responses[i][s]);
  scorer.collect(true);
  if (progress) progress->finish();
  return finish(task, std::move(results), options,
                std::chrono::duration<double>(Clock::now() - start).count(), store);
}

}  // namespace ponder::eval
