// One RL step, top to bottom: sample prompts -> generate n each -> rewards on the CPU pool ->
// group advantages -> clipped policy update -> log to the run store. SFT warm-up and held-out
// evaluation use the same model object as the engine (rollout.dtype fp32, the CPU default), or the
// engine generates with a BF16 copy of the policy refreshed in place after every optimizer step
// (bf16, the CUDA default: the decode kernels' path).
// Data parallel: each rank generates and scores its share of every step's prompts (whole groups,
// per-prompt seeds), trains on its rows of each minibatch with the whole minibatch's loss
// denominators, and sums gradients over ranks (ZeRO-1); rank 0 alone writes the run directory.
#include "train/grpo_trainer.h"

#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <fmt/core.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <limits>
#include <map>
#include <optional>
#include <random>

#include "core/error.h"
#include "core/json_struct.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "datasets/task.h"
#include "dist/data_parallel.h"
#include "dist/gather.h"
#include "engine/rollout_engine.h"
#include "eval/evaluator.h"
#include "kernels/binding.h"
#include "model/attention.h"
#include "model/chat_template.h"
#include "model/init_model.h"
#include "model/transformer.h"
#include "rewards/builtin.h"
#include "rewards/model_reward.h"
#include "store/report.h"
#include "store/run_store.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/grpo_loss.h"
#include "train/parallel.h"
#include "train/rollout_model.h"
#include "train/run_setup.h"

namespace ponder::train {
namespace {

using Clock = std::chrono::steady_clock;

struct Context {
  dist::ProcessGroup& group;
  const GrpoRecipe& recipe;
  at::Device device;
  std::unique_ptr<model::CausalLM> policy;
  at::ScalarType rollout_dtype;  // rollout.dtype resolved on `device`
  // the policy cast to rollout_dtype, which the engine generates with; null when that is FP32
  std::unique_ptr<model::CausalLM> rollout;
  std::unique_ptr<model::CausalLM> reference;  // frozen post-SFT policy, only when kl_coef > 0
  std::unique_ptr<model::Tokenizer> tokenizer;
  model::ChatFormat format;
  std::vector<datasets::Example> train, eval;
  std::string eval_reward;  // checks held-out answers
  nlohmann::json eval_reward_options;
  std::vector<std::pair<std::string, std::unique_ptr<rewards::Reward>>> rewards;
  std::vector<double> reward_weights;
  std::vector<at::Tensor> trainable;
  std::vector<std::string> trainable_names;
  std::filesystem::path tokenizer_dir;
  std::filesystem::path model_dir;         // the weights the policy was loaded from
  std::int64_t longest_sequence = 0;       // longest prompt + max_tokens, within the context
  std::unique_ptr<store::RunStore> store;  // rank 0's; none on the other ranks
};

// What the engine generates with: the policy or its rollout copy.
model::CausalLM& rollout_model(Context& c) { return c.rollout ? *c.rollout : *c.policy; }

std::vector<std::int64_t> prompt_ids(const Context& c, const datasets::Example& e) {
  return c.tokenizer->encode(model::render_chat(c.format, {{"user", e.question}}, true));
}

// The longest sequence any generate call holds: the longest training or held-out prompt +
// rollout.max_tokens, within the model's context.
std::int64_t longest_sequence(const Context& c) {
  std::size_t prompt = 1;
  for (const auto* set : {&c.train, &c.eval})
    for (const auto& e : *set) prompt = std::max(prompt, prompt_ids(c, e).size());
  return std::min(static_cast<std::int64_t>(prompt) + c.recipe.rollout.max_tokens,
                  c.policy->config().max_position_embeddings);
}

// Options of an engine that generates this rank's rollouts and/or held-out samples: its pages
// are capped at what the larger of its generate calls holds at once (a step's prompts x
// rollout.n; eval's items per call, at most EvalOptions::chunk_samples samples, x eval.n).
engine::EngineOptions engine_options(const Context& c, bool rollouts, bool eval) {
  const auto& r = c.recipe.rollout;
  const std::int64_t ranks = c.group.world_size();
  std::int64_t sequences = 1;
  if (rollouts) sequences = std::max(sequences, (r.prompts_per_step + ranks - 1) / ranks * r.n);
  if (eval) {
    const auto items = (static_cast<std::int64_t>(c.eval.size()) + ranks - 1) / ranks;
    const std::int64_t per_call =
        std::max<std::int64_t>(1, eval::EvalOptions{}.chunk_samples / c.recipe.eval.n);
    sequences = std::max(sequences, std::min(items, per_call) * c.recipe.eval.n);
  }
  return rollout_engine_options(r, c.rollout_dtype, c.device, sequences, c.longest_sequence);
}

// Runs a generation phase with the engine's KV pages held; rollout.release_kv_cache gives them
// back after it (to the update, SFT or the other engine), rollout.release_decode_graphs the
// decode graphs' memory pool.
template <class Phase>
auto generating(const Context& c, engine::RolloutEngine& engine, Phase&& phase) {
  engine.reserve_cache();
  auto result = phase();
  if (c.recipe.rollout.release_kv_cache) engine.release_cache();
  if (c.recipe.rollout.release_decode_graphs) engine.release_graphs();
  return result;
}

// From `checkpoint` when resuming, else the recipe's model (random init from the preset when it
// names no path).
void load_policy(Context& c, const std::optional<std::filesystem::path>& checkpoint) {
  ModelSection section = c.recipe.model;
  if (checkpoint) section.path = checkpoint->string();
  const ModelFiles files = resolve_model(c.group, section, c.recipe.run_dir, c.recipe.seed);
  c.model_dir = files.weights;
  c.policy = model::load_causal_lm(files.weights, c.device, at::kFloat);
  c.policy->set_training_options(
      {.activation_checkpointing = c.recipe.train.activation_checkpointing,
       .sequence_balance_loss = c.recipe.optim.balance_loss_coef > 0});
  c.policy->set_linear_precision(linear_precision(c.recipe.train));
  if (c.rollout_dtype != at::kFloat) {
    c.rollout = model::load_causal_lm(files.weights, c.device, c.rollout_dtype);
    c.rollout->set_linear_precision(linear_precision(c.recipe.train));
    copy_weights(*c.policy, *c.rollout);
  }
  c.tokenizer_dir = files.tokenizer;
  c.tokenizer =
      std::make_unique<model::Tokenizer>(model::Tokenizer::from_directory(c.tokenizer_dir));
  for (auto& [name, tensor] : c.policy->named_parameters()) {
    if (name.ends_with("e_score_correction_bias"))
      continue;  // updated by load balancing, not gradients
    tensor.requires_grad_(true);
    c.trainable.push_back(tensor);
    c.trainable_names.push_back(name);
  }
}

// Packs sequences, returns per-token log-probs of each sequence's response, padded [B, L];
// `entropy_sum` gets the policy entropy summed over the response tokens.
at::Tensor response_logprobs(model::CausalLM& model, at::Device device,
                             const std::vector<std::vector<std::int64_t>>& prompts,
                             const std::vector<std::vector<std::int64_t>>& responses,
                             std::int64_t max_len, at::Tensor* entropy_sum = nullptr) {
  const auto on_device = [&](const std::vector<std::int64_t>& v) {
    return at::tensor(v, at::kLong).to(device);
  };
  std::vector<std::int64_t> ids, positions, cu = {0}, rows, targets;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const auto base = static_cast<std::int64_t>(ids.size());
    ids.insert(ids.end(), prompts[i].begin(), prompts[i].end());
    ids.insert(ids.end(), responses[i].begin(), responses[i].end());
    for (std::int64_t p = 0; p < static_cast<std::int64_t>(prompts[i].size() + responses[i].size());
         ++p)
      positions.push_back(p);
    cu.push_back(static_cast<std::int64_t>(ids.size()));
    for (std::size_t t = 0; t < responses[i].size(); ++t) {
      rows.push_back(base + static_cast<std::int64_t>(prompts[i].size() + t) - 1);
      targets.push_back(responses[i][t]);
    }
  }
  const at::Tensor hidden =
      model.forward_hidden(on_device(ids), on_device(positions), on_device(cu));
  const at::Tensor selected = hidden.index_select(0, on_device(rows));
  const at::Tensor flat = model.token_logprobs(selected, on_device(targets));
  if (entropy_sum) {
    const at::Tensor logp = model.logits(selected.detach()).log_softmax(-1);
    *entropy_sum = -(logp.exp() * logp).sum();
  }
  std::int64_t offset = 0;
  std::vector<at::Tensor> pieces;
  for (std::size_t i = 0; i < responses.size(); ++i) {
    const auto n = static_cast<std::int64_t>(responses[i].size());
    pieces.push_back(at::constant_pad_nd(flat.narrow(0, offset, n), {0, max_len - n}));
    offset += n;
  }
  return at::stack(pieces);
}

// Collective: sum gradients over ranks, clip, step, then rebalance the MoE routing biases on the
// experts' load summed over ranks and refresh the rollout copy; returns the gradient norm and the
// experts' load balance (max load / mean load, averaged over MoE layers; absent for dense models).
std::map<std::string, double> optimizer_step(Context& c, dist::DataParallel& optimizer, double lr) {
  std::map<std::string, double> metrics = {
      {"train/grad_norm", optimizer.step(lr, c.recipe.optim.grad_clip)}};
  for (at::Tensor& load : c.policy->routing_loads()) c.group.all_reduce_sum(load);
  const at::Tensor load = c.policy->update_routing_bias(c.recipe.optim.routing_bias_rate);
  if (load.defined())
    metrics["moe/max_over_mean_load"] =
        (std::get<0>(load.max(1)) / load.mean(1).clamp_min(1)).mean().item<double>();
  if (c.rollout) copy_weights(*c.policy, *c.rollout);
  return metrics;
}

// Collective: one warm-up step on this rank's share of the batch; returns the batch's loss.
double sft_step(Context& c, dist::DataParallel& optimizer,
                const std::vector<const datasets::Example*>& batch, double lr) {
  const auto [begin, end] = dist::shard_range(static_cast<std::int64_t>(batch.size()),
                                              c.group.rank(), c.group.world_size());
  std::vector<std::vector<std::int64_t>> prompts, responses;
  std::int64_t longest = 1;
  for (std::int64_t b = begin; b < end; ++b) {
    prompts.push_back(prompt_ids(c, *batch[b]));
    responses.push_back(c.tokenizer->encode(batch[b]->solution));
    responses.back().push_back(resolve_eos(*c.tokenizer, c.policy->config().eos_token_id));
    longest = std::max<std::int64_t>(longest, static_cast<std::int64_t>(responses.back().size()));
  }
  at::Tensor mask = at::zeros({end - begin, longest});
  for (std::int64_t b = 0; b < end - begin; ++b)
    mask[b].narrow(0, 0, static_cast<std::int64_t>(responses[b].size())).fill_(1);
  const double tokens = std::max(1.0, dist::global_sum(c.group, mask.sum().item<double>()));
  double loss = 0;
  if (end > begin) {
    const at::Tensor share =
        -aggregate_sum(response_logprobs(*c.policy, c.device, prompts, responses, longest),
                       mask.to(c.device), "token_mean") /
        tokens;
    share.backward();
    loss = share.item<double>();
  }
  optimizer_step(c, optimizer, lr);
  return dist::global_sum(c.group, loss);
}

void run_sft(Context& c) {
  const auto& s = c.recipe.sft;
  if (s.steps <= 0) return;
  dist::DataParallel optimizer(c.group, c.trainable,
                               {.lr = s.lr,
                                .beta1 = c.recipe.optim.beta1,
                                .beta2 = c.recipe.optim.beta2,
                                .eps = c.recipe.optim.eps});
  std::mt19937_64 rng(static_cast<std::uint64_t>(c.recipe.seed) * 31 + 1);
  Progress progress("sft", s.steps, "step");
  for (std::int64_t step = 0; step < s.steps; ++step) {
    std::vector<const datasets::Example*> batch;  // every rank draws all, then takes its share
    for (std::int64_t b = 0; b < s.batch_size; ++b)
      batch.push_back(&c.train[rng() % c.train.size()]);
    const double loss =
        sft_step(c, optimizer, batch, scheduled_lr(s.lr, step, s.steps / 10, s.steps, "cosine"));
    if (c.store) c.store->log_metrics(step - s.steps, {{"sft/loss", loss}});
    progress.set_note(fmt::format("loss {:.3f}", loss));
    progress.advance();
  }
}

bool scored_in_batches(const Context& c, std::size_t r) {
  return dynamic_cast<const rewards::ModelReward*>(c.rewards[r].second.get()) != nullptr;
}

// Rewards that score a whole batch in packed forwards (the reward model) run once over all
// samples; result[r] is empty for the rewards scored per sample on the pool.
std::vector<std::vector<rewards::RewardResult>> batched_rewards(
    const Context& c, std::span<const rewards::Sample> samples) {
  std::vector<std::vector<rewards::RewardResult>> results(c.rewards.size());
  for (std::size_t r = 0; r < c.rewards.size(); ++r)
    if (scored_in_batches(c, r))
      results[r] =
          static_cast<const rewards::ModelReward&>(*c.rewards[r].second).score_batch(samples);
  return results;
}

// The results of the rewards scored one sample at a time (entries of batched rewards stay empty).
std::vector<rewards::RewardResult> per_sample_rewards(const Context& c,
                                                      const rewards::Sample& sample) {
  std::vector<rewards::RewardResult> results(c.rewards.size());
  for (std::size_t r = 0; r < c.rewards.size(); ++r)
    if (!scored_in_batches(c, r)) results[r] = c.rewards[r].second->score(sample);
  return results;
}

// The weighted sum of sample i's rewards, taking batched results where there are any.
double total_reward(const Context& c, std::vector<rewards::RewardResult> results,
                    const std::vector<std::vector<rewards::RewardResult>>& batched, std::size_t i,
                    nlohmann::json& details) {
  double total = 0;
  for (std::size_t r = 0; r < c.rewards.size(); ++r) {
    const auto& result = !batched[r].empty() ? batched[r][i] : results[r];
    details[c.rewards[r].first] = {{"value", result.value}, {"details", result.details}};
    total += c.reward_weights[r] * result.value;
  }
  return total;
}

nlohmann::json responses_json(const std::vector<eval::ItemResult>& items) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& item : items) {
    nlohmann::json samples = nlohmann::json::array();
    for (const auto& s : item.samples)
      samples.push_back({s.response.text, *s.response.tokens, s.response.finish_reason});
    out.push_back(std::move(samples));
  }
  return out;
}

// Collective: every rank generates the held-out samples of its share of the items; rank 0 scores
// them all (and logs them) as a one-process evaluation would.
std::optional<eval::TaskResult> evaluate_sharded(Context& c, engine::RolloutEngine& engine,
                                                 ThreadPool& pool, const eval::EvalTask& task,
                                                 eval::EvalOptions options) {
  const auto [begin, end] = dist::shard_range(static_cast<std::int64_t>(task.items.size()),
                                              c.group.rank(), c.group.world_size());
  std::vector<eval::ItemResult> mine;
  if (end > begin) {
    eval::EvalTask shard = task;
    shard.items = task.items.subspan(begin, end - begin);
    eval::EvalOptions shard_options = options;
    shard_options.first_item = static_cast<std::size_t>(begin);
    mine =
        eval::evaluate({engine, *c.tokenizer, c.format}, shard, shard_options, pool, nullptr).items;
  }
  const auto pieces = dist::all_gather_strings(c.group, responses_json(mine).dump());
  if (!c.group.is_main()) return std::nullopt;
  std::vector<std::vector<eval::Response>> responses;
  for (const auto& piece : pieces)
    for (const auto& item : nlohmann::json::parse(piece)) {
      responses.emplace_back();
      for (const auto& s : item)
        responses.back().push_back(
            {s[0].get<std::string>(), s[1].get<std::int64_t>(), s[2].get<std::string>()});
    }
  return eval::evaluate_responses(task, responses, options, pool, c.store.get());
}

// Held-out pass@1 averaged over eval.n samples (and maj@k), through the same code as `ponder eval`.
double evaluate(Context& c, engine::RolloutEngine& engine, ThreadPool& pool, std::int64_t step) {
  const auto& ev = c.recipe.eval;
  const auto reward = rewards::builtin_rewards().create(c.eval_reward, c.eval_reward_options);
  const eval::EvalTask task{"heldout", c.eval, reward.get(),
                            /*majority=*/c.eval_reward == "math"};
  const eval::EvalOptions options{
      .n = ev.n,
      .sampling = {.temperature = ev.temperature,
                   .top_p = ev.top_p,
                   .max_tokens = c.recipe.rollout.max_tokens,
                   .seed = static_cast<std::uint64_t>(c.recipe.seed) * 7919 + 17},
      .step = step};  // with progress: a large held-out set takes minutes on a CPU
  const auto result = generating(c, engine, [&] {
    return c.group.world_size() == 1
               ? std::optional(eval::evaluate({engine, *c.tokenizer, c.format}, task, options, pool,
                                              c.store.get()))
               : evaluate_sharded(c, engine, pool, task, options);
  });
  const double accuracy =
      dist::global_sum(c.group, result ? result->metrics.at("pass@1") : 0.0);  // rank 0's
  if (c.store) c.store->log_metrics(step, {{"eval/accuracy", accuracy}});
  return accuracy;
}

struct Rollouts {
  std::vector<std::vector<std::int64_t>> prompts, responses;
  std::vector<std::vector<double>> old_logprobs;
  std::vector<bool> truncated;
  at::Tensor advantages;  // [B]
  std::map<std::string, double> metrics;
};

// One prompt's n samples with their rewards.
struct Group {
  const datasets::Example* example;
  std::vector<std::int64_t> prompt;
  std::vector<engine::Completion> samples;
  std::vector<double> rewards;
  bool informative() const {
    return std::any_of(rewards.begin(), rewards.end(), [&](double r) { return r != rewards[0]; });
  }
};

// Collective: every rank's rollout records into rank 0's run store.
void log_rollouts(Context& c, const std::vector<store::RolloutRecord>& records) {
  if (c.group.world_size() == 1) {
    c.store->log_rollouts(records);
    return;
  }
  nlohmann::json local = nlohmann::json::array();
  for (const auto& r : records)
    local.push_back({r.step, r.group, r.prompt, r.completion, r.reward, r.reward_details, r.tokens,
                     r.finish_reason});
  const auto pieces = dist::all_gather_strings(c.group, local.dump());
  if (!c.store) return;
  std::vector<store::RolloutRecord> all;
  for (const auto& piece : pieces)
    for (const auto& r : nlohmann::json::parse(piece))
      all.push_back({.step = r[0],
                     .group = r[1],
                     .prompt = r[2],
                     .completion = r[3],
                     .reward = r[4],
                     .reward_details = r[5],
                     .tokens = r[6],
                     .finish_reason = r[7]});
  c.store->log_rollouts(all);
}

rewards::Sample reward_sample(const std::vector<Group>& groups, const engine::Completion& comp) {
  const datasets::Example& e = *groups[comp.request].example;
  return {e.question,
          comp.text,
          e.reference,
          {{"completion_tokens", comp.ids.size()}, {"finish_reason", comp.finish_reason}}};
}

// Generates `count` groups from the training prompts at `cursor` on and scores them on the pool;
// every sample goes to rank 0's run store (collective).
std::vector<Group> sample_groups(Context& c, engine::RolloutEngine& engine, ThreadPool& pool,
                                 std::int64_t step, std::uint64_t cursor, std::int64_t count,
                                 std::int64_t first_group) {
  const auto& r = c.recipe.rollout;
  std::vector<Group> groups;
  std::vector<engine::Request> requests;
  for (std::int64_t i = 0; i < count; ++i, ++cursor) {
    const auto& example = c.train[cursor % c.train.size()];
    groups.push_back({&example, prompt_ids(c, example), {}, {}});
    const auto seed =
        (static_cast<std::uint64_t>(c.recipe.seed) * 1000003 + static_cast<std::uint64_t>(step)) *
            65537 +
        cursor;
    requests.push_back({groups.back().prompt,
                        r.n,
                        {.temperature = r.temperature,
                         .top_p = r.top_p,
                         .max_tokens = r.max_tokens,
                         .seed = seed}});
  }
  // Per-sample rewards (rules, code) run on the pool as soon as each completion finishes, while
  // the rest still generate; batched ones (the reward model) run once generation is done.
  std::map<std::pair<std::size_t, std::int64_t>, std::future<std::vector<rewards::RewardResult>>>
      scored;
  const auto score_when_done = [&](const engine::Completion& comp) {
    scored.emplace(std::pair{comp.request, comp.sample},
                   pool.submit([&c, sample = reward_sample(groups, comp)] {
                     return per_sample_rewards(c, sample);
                   }));
  };
  auto completions = requests.empty() ? std::vector<engine::Completion>()
                                      : engine.generate(requests, {}, score_when_done);
  std::vector<rewards::Sample> samples;
  for (const auto& comp : completions) samples.push_back(reward_sample(groups, comp));
  const auto batched = batched_rewards(c, samples);
  std::vector<store::RolloutRecord> records;
  for (std::size_t i = 0; i < completions.size(); ++i) {
    nlohmann::json details;
    const double value = total_reward(
        c, scored.at({completions[i].request, completions[i].sample}).get(), batched, i, details);
    Group& g = groups[completions[i].request];
    records.push_back({.step = step,
                       .group = first_group + static_cast<std::int64_t>(completions[i].request),
                       .prompt = g.example->question,
                       .completion = completions[i].text,
                       .reward = value,
                       .reward_details = details,
                       .tokens = static_cast<std::int64_t>(completions[i].ids.size()),
                       .finish_reason = completions[i].finish_reason});
    g.rewards.push_back(value);
    g.samples.push_back(std::move(completions[i]));
  }
  log_rollouts(c, records);
  return groups;
}

Rollouts to_rollouts(const Context& c, const std::vector<Group>& groups) {
  Rollouts out;
  at::Tensor table =
      at::zeros({static_cast<std::int64_t>(groups.size()), c.recipe.rollout.n}, at::kDouble);
  for (std::size_t g = 0; g < groups.size(); ++g)
    for (std::size_t k = 0; k < groups[g].samples.size(); ++k) {
      const auto& sample = groups[g].samples[k];
      table[static_cast<std::int64_t>(g)][static_cast<std::int64_t>(k)] = groups[g].rewards[k];
      out.prompts.push_back(groups[g].prompt);
      out.responses.push_back(sample.ids);
      out.old_logprobs.push_back(sample.raw_logprobs);
      out.truncated.push_back(sample.finish_reason == "length");
    }
  out.advantages =
      groups.empty()
          ? at::zeros({0})  // nothing kept (on this rank)
          : group_advantages(table, c.recipe.grpo.scale_by_std).reshape(-1).to(at::kFloat);
  return out;
}

// Samples prompts_per_step groups, each rank its share; with dynamic sampling (DAPO), groups
// whose rewards are all equal carry no signal and are replaced by fresh prompts for up to
// max_sampling_rounds rounds. The groups kept are the first prompts_per_step informative ones in
// the one-process order (round by round, rank by rank), each on the rank that generated it.
Rollouts collect(Context& c, engine::RolloutEngine& engine, ThreadPool& pool, std::int64_t step,
                 std::uint64_t& cursor) {
  const auto& g = c.recipe.grpo;
  const std::int64_t wanted = c.recipe.rollout.prompts_per_step;
  const auto [begin, end] = dist::shard_range(wanted, c.group.rank(), c.group.world_size());
  std::vector<Group> kept;
  std::int64_t kept_globally = 0, rounds = 0;
  double reward_sum = 0, length_sum = 0, samples = 0, seconds = 0, tokens = 0, preemptions = 0;
  while (kept_globally < wanted && rounds < (g.dynamic_sampling ? g.max_sampling_rounds : 1)) {
    std::vector<Group> informative;
    for (auto& group : sample_groups(c, engine, pool, step, cursor + begin, end - begin,
                                     rounds * wanted + begin)) {
      for (std::size_t k = 0; k < group.samples.size(); ++k, ++samples) {
        reward_sum += group.rewards[k];
        length_sum += static_cast<double>(group.samples[k].ids.size());
      }
      if (!g.dynamic_sampling || group.informative()) informative.push_back(std::move(group));
    }
    ++rounds;
    cursor += wanted;
    auto [position, found] =
        dist::global_offset(c.group, static_cast<std::int64_t>(informative.size()));
    for (auto& group : informative)
      if (kept_globally + position++ < wanted) kept.push_back(std::move(group));
    kept_globally += found;
    if (end > begin) {
      seconds += engine.last_metrics().seconds;
      tokens += static_cast<double>(engine.last_metrics().generated_tokens);
      preemptions += static_cast<double>(engine.last_metrics().preemptions);
    }
  }
  Rollouts out = to_rollouts(c, kept);
  const auto sums =
      dist::global_sums(c.group, {reward_sum, length_sum, samples, tokens, preemptions});
  out.metrics = {
      {"reward/mean", sums[0] / sums[2]},
      {"response/length_tokens", sums[1] / sums[2]},
      {"rollout/tokens_per_s", sums[3] / std::max(dist::global_max(c.group, seconds), 1e-9)},
      {"rollout/sampling_rounds", static_cast<double>(rounds)},
      {"rollout/preemptions", sums[4]},
      {"rollout/informative_groups", static_cast<double>(std::min(kept_globally, wanted)) /
                                         static_cast<double>(rounds * wanted)}};
  return out;
}

// One-step off-policy generation (rollout.off_policy_steps = 1): step t+1's batch is generated
// by a copy of the weights from before step t's update, on a side thread (and a side stream on
// GPU), while step t trains. The batch's collectives would interleave with the update's, so this
// runs in one process; the copy is checkpointed so that a resume regenerates the pending batch.
class RolloutAhead {
 public:
  RolloutAhead(Context& c, ThreadPool& pool, const std::optional<std::filesystem::path>& checkpoint,
               std::int64_t step)
      : c_(c),
        pool_(pool),
        generator_(model::load_causal_lm(c.model_dir, c.device, c.rollout_dtype)),
        engine_(*generator_, c.tokenizer.get(), engine_options(c, true, false)) {
    generator_->set_linear_precision(linear_precision(c.recipe.train));
    if (checkpoint && load_generator_weights(*checkpoint, *generator_))
      generator_step_ = step - 1;  // what step `step`'s checkpoint was generating with
    else
      copy_weights(step);
  }

  ~RolloutAhead() {
    if (pending_.valid()) pending_.wait();
  }

  // The batch for `step`: the one generated ahead, or (nothing pending) one generated now.
  Rollouts take(std::int64_t step, std::uint64_t& cursor) {
    if (!pending_.valid()) launch(step, cursor);
    const auto begin = Clock::now();
    auto [batch, next_cursor] = pending_.get();
    batch.metrics["time/rollout_wait_s"] =
        std::chrono::duration<double>(Clock::now() - begin).count();
    cursor = next_cursor;
    return std::move(batch);
  }

  // Copies the policy as it is before `step - 1`'s update and starts generating `step`'s batch.
  void start(std::int64_t step, std::uint64_t cursor) {
    copy_weights(step - 2);
    launch(step, cursor);
  }

  std::int64_t cache_bytes() const { return engine_.cache_bytes(); }

  // The generation weights of the pending batch, for the checkpoint; null when none is pending.
  model::CausalLM* pending_generator() { return pending_.valid() ? generator_.get() : nullptr; }

 private:
  void copy_weights(std::int64_t policy_step) {
    train::copy_weights(*c_.policy, *generator_);
    if (c_.device.is_cuda())  // the side stream must see the copy
      c10::impl::VirtualGuardImpl(c_.device.type()).synchronizeDevice(c_.device.index());
    generator_step_ = policy_step;
  }

  void launch(std::int64_t step, std::uint64_t cursor) {
    const double lag = static_cast<double>(step - 1 - generator_step_);
    pending_ =
        std::async(std::launch::async, [this, step, cursor, lag, threads = at::get_num_threads()] {
          at::set_num_threads(threads);
          std::optional<c10::StreamGuard> side_stream;
          if (c_.device.is_cuda())
            side_stream.emplace(
                c10::impl::VirtualGuardImpl(c_.device.type()).getStreamFromGlobalPool(c_.device));
          std::uint64_t next = cursor;
          Rollouts batch = collect(c_, engine_, pool_, step, next);
          batch.metrics["rollout/policy_lag_steps"] = lag;
          if (side_stream) side_stream->current_stream().synchronize();
          return std::pair{std::move(batch), next};
        });
  }

  Context& c_;
  ThreadPool& pool_;
  std::unique_ptr<model::CausalLM> generator_;
  engine::RolloutEngine engine_;
  std::int64_t generator_step_ = 0;  // the policy step whose weights the generator holds
  std::future<std::pair<Rollouts, std::uint64_t>> pending_;
};

struct Minibatch {
  std::vector<std::vector<std::int64_t>> prompts, responses;
  at::Tensor rollout_logprobs, mask;  // [B, max_tokens]
  at::Tensor advantages;              // [B]
};

Minibatch slice(const Context& c, const Rollouts& batch, std::int64_t start, std::int64_t count) {
  const std::int64_t max_tokens = c.recipe.rollout.max_tokens;
  std::vector<std::int64_t> lengths;
  std::vector<bool> truncated(batch.truncated.begin() + start,
                              batch.truncated.begin() + start + count);
  at::Tensor rollout_logprobs = at::zeros({count, max_tokens});
  for (std::int64_t i = 0; i < count; ++i) {
    const auto& lp = batch.old_logprobs[start + i];
    lengths.push_back(static_cast<std::int64_t>(lp.size()));
    rollout_logprobs[i]
        .narrow(0, 0, lengths.back())
        .copy_(at::tensor(lp, at::kDouble).to(at::kFloat));
  }
  return {{batch.prompts.begin() + start, batch.prompts.begin() + start + count},
          {batch.responses.begin() + start, batch.responses.begin() + start + count},
          rollout_logprobs.to(c.device),
          response_mask(lengths, truncated, max_tokens, c.recipe.grpo.overlong_filter).to(c.device),
          batch.advantages.narrow(0, start, count).to(c.device)};
}

Minibatch rows_of(const Minibatch& mb, std::int64_t start, std::int64_t count) {
  return {{mb.prompts.begin() + start, mb.prompts.begin() + start + count},
          {mb.responses.begin() + start, mb.responses.begin() + start + count},
          mb.rollout_logprobs.narrow(0, start, count),
          mb.mask.narrow(0, start, count),
          mb.advantages.narrow(0, start, count)};
}

// This rank's share of a minibatch's loss (+ KL, entropy bonus, TIS weights, MoE balance loss)
// and of its metrics' numerators, every term divided by the whole minibatch's denominators (so
// shares add up over micro-batches and ranks).
struct LossShare {
  at::Tensor loss;
  // loss, clip fraction, ratio mean, KL, entropy, log-prob gap, sequence-wise balance loss
  std::vector<double> sums = std::vector<double>(7, 0.0);
  double gap_max = 0;
};

LossShare loss_share(Context& c, const Minibatch& mb, const LossDenominators& d,
                     double response_tokens, double rows) {
  const auto& g = c.recipe.grpo;
  const std::int64_t max_tokens = c.recipe.rollout.max_tokens;
  at::Tensor entropy_sum;
  const at::Tensor logprobs =
      response_logprobs(*c.policy, c.device, mb.prompts, mb.responses, max_tokens, &entropy_sum);
  at::Tensor balance = c.policy->last_balance_loss();
  const at::Tensor gap = (logprobs.detach() - mb.rollout_logprobs).abs() * mb.mask;
  at::Tensor weights;
  if (g.tis_cap > 0)
    weights = truncated_importance_weights(logprobs.detach(), mb.rollout_logprobs, g.tis_cap);
  const PolicyLoss policy =
      clipped_policy_loss(logprobs, mb.rollout_logprobs, mb.advantages, mb.mask, g.clip_low,
                          g.clip_high, g.loss_aggregation, d, weights);
  const at::Tensor entropy = entropy_sum / response_tokens;
  at::Tensor loss = policy.loss, kl = at::zeros({});
  if (g.entropy_coef > 0) loss = loss - g.entropy_coef * entropy;
  if (c.reference) {
    at::Tensor reference;
    {
      c10::NoGradGuard no_grad;
      reference = response_logprobs(*c.reference, c.device, mb.prompts, mb.responses, max_tokens);
    }
    kl = aggregate_sum(kl_estimate(logprobs, reference, g.kl_estimator), mb.mask,
                       g.loss_aggregation) /
         d.loss;
    loss = loss + g.kl_coef * kl;
  }
  balance = balance.defined() ? balance * (static_cast<double>(mb.prompts.size()) / rows)
                              : at::zeros({}, logprobs.options());
  loss = loss + c.recipe.optim.balance_loss_coef * balance;
  return {loss,
          {loss.item<double>(), policy.clip_fraction.item<double>(),
           policy.ratio_mean.item<double>(), kl.item<double>(), entropy.item<double>(),
           gap.sum().item<double>() / d.tokens, balance.item<double>()},
          gap.max().item<double>()};
}

// This rank's rows of a minibatch, forward and backward in micro-batches of
// train.micro_batch_size rows: the gradients accumulate to those of one pass over all of them.
LossShare accumulate_gradients(Context& c, const Minibatch& mb, const LossDenominators& d,
                               double response_tokens, double rows) {
  LossShare total;
  const auto local = static_cast<std::int64_t>(mb.prompts.size());
  const std::int64_t micro =
      c.recipe.train.micro_batch_size > 0 ? c.recipe.train.micro_batch_size : local;
  for (std::int64_t start = 0; start < local; start += micro) {
    const LossShare part =
        loss_share(c, rows_of(mb, start, std::min(micro, local - start)), d, response_tokens, rows);
    part.loss.backward();
    for (std::size_t i = 0; i < total.sums.size(); ++i) total.sums[i] += part.sums[i];
    total.gap_max = std::max(total.gap_max, part.gap_max);
  }
  return total;
}

// Collective: one optimizer step on one minibatch, of which this rank holds `mb` (maybe none).
void minibatch_step(Context& c, dist::DataParallel& optimizer, const Minibatch& mb, double lr,
                    std::map<std::string, double>& metrics) {
  const auto& g = c.recipe.grpo;
  double response_tokens = 0;
  for (const auto& r : mb.responses) response_tokens += static_cast<double>(r.size());
  const auto counts = dist::global_sums(
      c.group,
      {aggregate_count(mb.mask, g.loss_aggregation, c.recipe.rollout.max_tokens),
       mb.mask.sum().item<double>(), response_tokens, static_cast<double>(mb.prompts.size())});
  const LossDenominators d{std::max(1.0, counts[0]), std::max(1.0, counts[1])};
  const LossShare share =
      accumulate_gradients(c, mb, d, std::max(1.0, counts[2]), std::max(1.0, counts[3]));
  for (const auto& [name, value] : optimizer_step(c, optimizer, lr)) metrics[name] = value;
  const auto sums = dist::global_sums(c.group, share.sums);
  metrics["train/loss"] = sums[0];
  metrics["train/clip_fraction"] = sums[1];
  metrics["train/ratio_mean"] = sums[2];
  if (c.reference) metrics["train/kl"] = sums[3];
  metrics["train/entropy"] = sums[4];
  metrics["rollout/logprob_mismatch_mean"] = sums[5];
  metrics["rollout/logprob_mismatch_max"] = dist::global_max(c.group, share.gap_max);
  if (c.recipe.optim.balance_loss_coef > 0) metrics["moe/sequence_balance_loss"] = sums[6];
}

// Collective: the epochs x minibatches of optimizer steps on the step's global batch (every
// rank's rollouts in rank order), each rank training on its rows of each minibatch.
std::map<std::string, double> update(Context& c, dist::DataParallel& optimizer,
                                     const Rollouts& batch, double lr) {
  const auto& g = c.recipe.grpo;
  const auto local = static_cast<std::int64_t>(batch.responses.size());
  const auto [offset, total] = dist::global_offset(c.group, local);
  const std::int64_t per_minibatch = (total + g.minibatches - 1) / g.minibatches;
  std::map<std::string, double> metrics;
  if (total == 0) return metrics;  // dynamic sampling found no group with a learning signal
  for (std::int64_t epoch = 0; epoch < g.epochs; ++epoch)
    for (std::int64_t start = 0; start < total; start += per_minibatch) {
      const std::int64_t lo = std::clamp<std::int64_t>(start - offset, 0, local);
      const std::int64_t hi = std::clamp<std::int64_t>(start + per_minibatch - offset, 0, local);
      minibatch_step(c, optimizer, slice(c, batch, lo, hi - lo), lr, metrics);
    }
  return metrics;
}

void save(Context& c, dist::DataParallel& optimizer, const TrainerState& state,
          model::CausalLM* generator = nullptr) {
  save_checkpoint(c.group, optimizer, c.recipe.run_dir,
                  {*c.policy, c.trainable_names, state, c.tokenizer_dir, generator}, c.store.get());
}

// SFT warm-up and the first held-out evaluation, or the state of the checkpoint resumed from.
TrainerState start(Context& c, engine::RolloutEngine& engine, ThreadPool& pool,
                   dist::DataParallel& optimizer,
                   const std::optional<std::filesystem::path>& checkpoint) {
  if (checkpoint) {
    TrainerState state = load_checkpoint(*checkpoint, c.trainable_names, c.trainable, optimizer);
    if (c.rollout) copy_weights(*c.policy, *c.rollout);
    if (c.store) c.store->truncate_after(state.step);
    log::info("resuming from {} (step {})", checkpoint->string(), state.step);
    return state;
  }
  if (c.store)  // a restart keeps nothing
    c.store->truncate_after(std::numeric_limits<std::int64_t>::min());
  run_sft(c);
  TrainerState state;
  state.accuracy_before_rl = state.accuracy = evaluate(c, engine, pool, 0);
  log::info("held-out accuracy before GRPO: {:.1f}%", 100 * state.accuracy_before_rl);
  save(c, optimizer, state);
  return state;
}

// GiB of GPU memory at the peak since the caching allocator's peak was reset: its peak plus
// `held` bytes outside it (KV pages) or reserved by it but not counted as allocated (the decode
// graphs' memory pool).
double peak_gib(const at::Device& device, std::int64_t held) {
  return static_cast<double>(kernels::peak_allocated_bytes(device) + held) / (1 << 30);
}

// What the engine holds besides the caching allocator's peak: its KV pages and its decode graphs'
// memory pool.
std::int64_t held_bytes(const engine::RolloutEngine& engine) {
  return engine.cache_bytes() + engine.graph_pool_bytes();
}

// Collective: one RL step; returns its metrics. With `ahead`, the step trains on the batch
// generated ahead and starts generating the next step's. On a GPU it logs the peak memory of the
// rollout and of the update phase (memory/*_peak_gib) and, on-policy, the decode graphs' pool
// after the rollouts and the graphs recorded during them.
std::map<std::string, double> rl_step(Context& c, engine::RolloutEngine& engine, ThreadPool& pool,
                                      dist::DataParallel& optimizer, TrainerState& state,
                                      RolloutAhead* ahead) {
  const auto& recipe = c.recipe;
  const auto begin = Clock::now();
  const bool gpu = c.device.is_cuda();
  if (gpu) kernels::reset_peak_allocated_bytes(c.device);
  std::int64_t held = ahead ? ahead->cache_bytes() : 0, graph_pool = 0;
  const std::int64_t recordings = engine.graph_recordings();
  const Rollouts batch = ahead ? ahead->take(state.step, state.cursor) : generating(c, engine, [&] {
    Rollouts out = collect(c, engine, pool, state.step, state.cursor);
    held = held_bytes(engine);
    graph_pool = engine.graph_pool_bytes();
    return out;
  });
  const double rollout_peak = gpu ? peak_gib(c.device, held) : 0;
  if (ahead && state.step < recipe.steps) ahead->start(state.step + 1, state.cursor);
  const double lr = scheduled_lr(recipe.optim.lr, state.step - 1, recipe.optim.warmup_steps,
                                 recipe.steps, recipe.optim.schedule);
  if (gpu) kernels::reset_peak_allocated_bytes(c.device);
  auto metrics = update(c, optimizer, batch, lr);
  if (gpu) {
    metrics["memory/rollout_peak_gib"] = rollout_peak;
    metrics["memory/update_peak_gib"] =
        peak_gib(c.device, held_bytes(engine) + (ahead ? ahead->cache_bytes() : 0));
  }
  if (gpu && !ahead) {  // the generator ahead records on its own thread
    metrics["memory/decode_graphs_gib"] = static_cast<double>(graph_pool) / (1 << 30);
    metrics["rollout/decode_graph_recordings"] =
        static_cast<double>(engine.graph_recordings() - recordings);
  }
  metrics.insert(batch.metrics.begin(), batch.metrics.end());
  metrics["train/lr"] = lr;
  metrics["time/step_s"] = std::chrono::duration<double>(Clock::now() - begin).count();
  if (c.store) c.store->log_metrics(state.step, metrics);
  return metrics;
}

// What can differ between ranks, for log_rank_facts: the device type, the MLA decode attention
// taken, the KV cache and, on a GPU, the decode graphs held (after the engine's last generate).
std::string rank_facts(const Context& c, const engine::RolloutEngine& engine) {
  const auto paths = model::decode_attention_paths();
  const auto& m = engine.last_metrics();
  std::string facts = fmt::format(
      "{}, MLA decode attention: {}; KV cache {} x {} tokens, {:.3f} GiB",
      c10::DeviceTypeName(c.device.type(), /*lower_case=*/true),
      paths.empty() ? std::string("none") : fmt::format("{}", fmt::join(paths, " + ")),
      m.num_blocks, engine.block_size(), static_cast<double>(m.cache_bytes) / (1 << 30));
  if (c.device.is_cuda())
    facts += fmt::format("; {} decode graphs, {:.3f} GiB pool", engine.captured_graphs(),
                         static_cast<double>(engine.graph_pool_bytes()) / (1 << 30));
  return facts;
}

TrainSummary train(dist::ProcessGroup& group, const GrpoRecipe& recipe,
                   const std::optional<std::filesystem::path>& checkpoint, bool new_run) {
  if (recipe.rollout.off_policy_steps == 1 && group.world_size() > 1)
    throw Error("rollout.off_policy_steps: 1 needs a single process (got " +
                std::to_string(group.world_size()) + " ranks); use 0 with data parallelism");
  at::manual_seed(static_cast<std::uint64_t>(recipe.seed));
  const at::Device device =
      group.local_device(resolve_device(recipe.train.device, "train.device").type());
  Context c{group,
            recipe,
            device,
            nullptr,
            rollout_dtype(recipe.rollout.dtype, device),
            nullptr,
            nullptr,
            nullptr,
            model::parse_chat_format(recipe.data.chat_format)};
  c.store = open_store_on_main(group, recipe.run_dir);
  if (new_run && c.store)
    c.store->begin_run({.kind = "train",
                        .recipe = recipe_to_json(recipe),
                        .seed = recipe.seed,
                        .versions = {{"ponder", "0.1.0"}}});
  load_policy(c, checkpoint);
  TaskData data = load_task_data(recipe.data, recipe.seed);
  require_heldout(data, recipe.data);
  c.train = std::move(data.train);
  c.eval = std::move(data.eval);
  c.eval_reward = data.reward;
  c.eval_reward_options = data.reward_options;
  for (const auto& spec : recipe.rewards) {
    c.rewards.emplace_back(spec.name, training_rewards().create(spec.name, spec.options));
    c.reward_weights.push_back(spec.weight);
  }
  c.longest_sequence = longest_sequence(c);
  // Off-policy, this engine only evaluates; the generator ahead has its own.
  engine::RolloutEngine engine(rollout_model(c), c.tokenizer.get(),
                               engine_options(c, recipe.rollout.off_policy_steps == 0, true));
  if (recipe.rollout.release_kv_cache) engine.release_cache();
  dist::DataParallel optimizer(group, c.trainable,
                               {.lr = recipe.optim.lr,
                                .beta1 = recipe.optim.beta1,
                                .beta2 = recipe.optim.beta2,
                                .eps = recipe.optim.eps,
                                .weight_decay = recipe.optim.weight_decay});
  ThreadPool pool;
  TrainerState state = start(c, engine, pool, optimizer, checkpoint);
  if (recipe.grpo.kl_coef > 0) {  // step 0 is the policy GRPO starts from
    c.reference = model::load_causal_lm(
        std::filesystem::path(recipe.run_dir) / "checkpoints" / "step-0", c.device, at::kFloat);
    c.reference->set_linear_precision(linear_precision(recipe.train));
  }
  std::optional<RolloutAhead> ahead;
  if (recipe.rollout.off_policy_steps == 1) ahead.emplace(c, pool, checkpoint, state.step);
  Progress progress("grpo", recipe.steps, "step");
  progress.resume_at(state.step);
  const std::int64_t first_step = state.step + 1;
  while (state.step < recipe.steps) {
    const std::int64_t step = ++state.step;
    auto metrics = rl_step(c, engine, pool, optimizer, state, ahead ? &*ahead : nullptr);
    if (step == first_step) log_rank_facts(group, rank_facts(c, engine));
    if (step % recipe.eval_every == 0 || step == recipe.steps)
      state.accuracy = evaluate(c, engine, pool, step);
    if ((recipe.checkpoint_every > 0 && step % recipe.checkpoint_every == 0) ||
        step == recipe.steps)
      save(c, optimizer, state, ahead ? ahead->pending_generator() : nullptr);
    progress.set_note(
        fmt::format("reward {:.2f} acc {:.0f}%", metrics["reward/mean"], 100 * state.accuracy));
    progress.advance();
  }
  progress.finish();
  if (!c.store) return {state.accuracy_before_rl, state.accuracy, {}};
  c.store->flush();
  return {state.accuracy_before_rl, state.accuracy, store::write_report(recipe.run_dir)};
}

}  // namespace

TrainSummary run_grpo(const GrpoRecipe& recipe, dist::ProcessGroup& group) {
  GrpoRecipe fresh = recipe;
  fresh.run_dir = fresh_run_dir(group, recipe.run_dir);
  return train(group, fresh, std::nullopt, true);
}

TrainSummary resume_grpo(const std::filesystem::path& run_dir, dist::ProcessGroup& group) {
  std::string stored;  // rank 0 reads the run store
  if (group.is_main()) {
    if (!std::filesystem::exists(run_dir / "run.db"))
      throw Error(run_dir.string() + ": not a ponder run directory (no run.db)");
    const auto info = store::RunStore(run_dir).run_info();
    if (!info || info->recipe.is_discarded())
      throw Error((run_dir / "run.db").string() + ": holds no recipe to resume from");
    stored = info->recipe.dump();
  }
  GrpoRecipe recipe;
  json_struct::read(nlohmann::json::parse(dist::from_main(group, stored)), recipe, "");
  recipe.run_dir = run_dir.string();
  const auto checkpoint = latest_checkpoint(group, run_dir);
  if (!checkpoint)
    log::info("{}: no complete checkpoint yet; starting the run over", run_dir.string());
  return train(group, recipe, checkpoint, false);
}

}  // namespace ponder::train
