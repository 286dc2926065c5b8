// Logit and on-policy distillation, top to bottom: load teacher and student (same tokenizer) ->
// held-out accuracy of both -> per step a batch of sequences with the teacher's top-k at every
// response token (from the cache, or the student's samples scored by the teacher) -> divergence
// -> AdamW step -> held-out accuracy -> student checkpoint, run store, report.
#include "train/distill_trainer.h"

#include <c10/core/GradMode.h>
#include <fmt/core.h>

#include <functional>
#include <random>

#include "core/error.h"
#include "core/json_struct.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "engine/rollout_engine.h"
#include "eval/evaluator.h"
#include "rewards/builtin.h"
#include "store/report.h"
#include "store/run_store.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/distill_traces.h"
#include "train/logit_cache.h"
#include "train/run_setup.h"

namespace ponder::train {
namespace {

using Sequences = std::vector<std::vector<std::int64_t>>;

// Bounds the teacher's packed forward (dense attention over the pack) and its [rows, vocab] logits.
constexpr std::int64_t kTeacherTokensPerForward = 4096;

struct Setup {
  const DistillRecipe& recipe;
  std::unique_ptr<model::CausalLM> teacher, student;
  std::unique_ptr<model::Tokenizer> tokenizer;
  std::filesystem::path teacher_dir, tokenizer_dir;
  std::string tokenizer_fingerprint;
  model::ChatFormat format;
  std::vector<datasets::Example> prompts, heldout;
  std::unique_ptr<rewards::Reward> math;
  std::unique_ptr<engine::RolloutEngine> teacher_engine, student_engine;
  std::vector<at::Tensor> trainable;
  std::vector<std::string> trainable_names;
  store::RunStore& store;
  ThreadPool& pool;
};

// Prompt + response sequences packed for forward_hidden; rows are the positions whose next token
// is a response token, in sequence order.
struct Packed {
  at::Tensor ids, positions, cu, rows, targets;  // targets: the response tokens, row by row
};

Packed pack(const Sequences& prompts, const Sequences& responses) {
  std::vector<std::int64_t> ids, positions, cu = {0}, rows, targets;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const auto base = static_cast<std::int64_t>(ids.size());
    const auto prompt = static_cast<std::int64_t>(prompts[i].size());
    ids.insert(ids.end(), prompts[i].begin(), prompts[i].end());
    ids.insert(ids.end(), responses[i].begin(), responses[i].end());
    for (std::int64_t p = 0; p < static_cast<std::int64_t>(ids.size()) - base; ++p)
      positions.push_back(p);
    cu.push_back(static_cast<std::int64_t>(ids.size()));
    for (std::size_t t = 0; t < responses[i].size(); ++t)
      rows.push_back(base + prompt - 1 + static_cast<std::int64_t>(t));
    targets.insert(targets.end(), responses[i].begin(), responses[i].end());
  }
  return {at::tensor(ids, at::kLong), at::tensor(positions, at::kLong), at::tensor(cu, at::kLong),
          at::tensor(rows, at::kLong), at::tensor(targets, at::kLong)};
}

// The teacher's top-k at every response token of the sequences, from packed forwards of at most
// kTeacherTokensPerForward tokens; `sampled` (when given) receives the teacher's log-prob of each
// response token.
TeacherTopK teacher_topk(model::CausalLM& teacher, const Sequences& prompts,
                         const Sequences& responses, std::int64_t k,
                         at::Tensor* sampled = nullptr) {
  c10::NoGradGuard no_grad;
  std::vector<at::Tensor> ids, logprobs, tails, token_logprobs;
  for (std::size_t start = 0; start < prompts.size();) {
    std::size_t end = start;
    for (std::int64_t tokens = 0; end < prompts.size(); ++end) {
      tokens += static_cast<std::int64_t>(prompts[end].size() + responses[end].size());
      if (end > start && tokens > kTeacherTokensPerForward) break;
    }
    const Packed p = pack({prompts.begin() + start, prompts.begin() + end},
                          {responses.begin() + start, responses.begin() + end});
    const at::Tensor hidden =
        teacher.forward_hidden(p.ids, p.positions, p.cu).index_select(0, p.rows);
    const auto top = top_k_of(teacher.logits(hidden).log_softmax(-1), k);
    ids.push_back(top.ids);
    logprobs.push_back(top.logprobs);
    tails.push_back(top.tail);
    if (sampled) token_logprobs.push_back(teacher.token_logprobs(hidden, p.targets));
    start = end;
  }
  if (ids.empty()) return {at::zeros({0, k}, at::kLong), at::zeros({0, k}), at::zeros({0})};
  if (sampled) *sampled = at::cat(token_logprobs);
  return {at::cat(ids), at::cat(logprobs), at::cat(tails)};
}

// Mean per-token divergence of the student from the teacher over the batch's response tokens.
at::Tensor student_loss(model::CausalLM& student, const Sequences& prompts,
                        const Sequences& responses, const TeacherTopK& teacher, Divergence d) {
  const Packed p = pack(prompts, responses);
  const at::Tensor hidden = student.forward_hidden(p.ids, p.positions, p.cu);
  const at::Tensor logprobs = student.logits(hidden.index_select(0, p.rows)).log_softmax(-1);
  return distill_divergence(logprobs, teacher, d).mean();
}

std::vector<engine::Request> requests_for(const Setup& s,
                                          std::span<const datasets::Example> examples,
                                          std::uint64_t seed) {
  const auto& sp = s.recipe.sampling;
  std::vector<engine::Request> requests;
  for (const auto& e : examples)
    requests.push_back(
        {s.tokenizer->encode(model::render_chat(s.format, {{"user", e.question}}, true)),
         sp.n,
         {.temperature = sp.temperature,
          .top_p = sp.top_p,
          .max_tokens = sp.max_tokens,
          .seed = seed}});
  return requests;
}

// Held-out pass@1 of one model, logged as eval/<who>/... at `step`.
double evaluate(Setup& s, engine::RolloutEngine& engine, const std::string& who,
                std::int64_t step) {
  const auto& ev = s.recipe.eval;
  const auto result = eval::evaluate(
      {engine, *s.tokenizer, s.format}, {who, s.heldout, s.math.get(), /*majority=*/true},
      {.n = ev.n,
       .sampling = {.temperature = ev.temperature,
                    .top_p = ev.top_p,
                    .max_tokens = s.recipe.sampling.max_tokens,
                    .seed = static_cast<std::uint64_t>(s.recipe.seed) * 7919 + 17},
       .step = step,
       .show_progress = false},
      s.pool, &s.store);
  return result.metrics.at("pass@1");
}

void load_models(Setup& s) {
  const auto& r = s.recipe;
  if (r.teacher.path.empty()) throw Error("teacher.path: required for mode " + r.mode);
  const ModelFiles teacher = resolve_model(r.teacher, r.run_dir, r.seed);
  const ModelFiles student = resolve_model(r.student, r.run_dir, r.seed);
  s.teacher_dir = teacher.weights;
  s.tokenizer_dir = student.tokenizer;
  s.tokenizer_fingerprint = file_fingerprint(student.tokenizer / "tokenizer.json");
  if (file_fingerprint(teacher.tokenizer / "tokenizer.json") != s.tokenizer_fingerprint)
    throw Error(
        fmt::format("student: tokenizer {} differs from the teacher's {}; logit "
                    "distillation needs one shared tokenizer",
                    (student.tokenizer / "tokenizer.json").string(),
                    (teacher.tokenizer / "tokenizer.json").string()));
  s.teacher = model::load_causal_lm(teacher.weights, at::kCPU, at::kFloat);
  s.student = model::load_causal_lm(student.weights, at::kCPU, at::kFloat);
  if (s.teacher->config().vocab_size != s.student->config().vocab_size)
    throw Error(fmt::format("student: vocab_size {} differs from the teacher's {}",
                            s.student->config().vocab_size, s.teacher->config().vocab_size));
  s.tokenizer =
      std::make_unique<model::Tokenizer>(model::Tokenizer::from_directory(student.tokenizer));
  s.format = resolve_chat_format(r.data.chat_format, student.tokenizer);
  for (auto& [name, tensor] : s.student->named_parameters()) {
    if (name.ends_with("e_score_correction_bias")) continue;  // moved by load balancing
    tensor.requires_grad_(true);
    s.trainable.push_back(tensor);
    s.trainable_names.push_back(name);
  }
  const engine::EngineOptions options{.block_size = 16, .num_blocks = 4096, .show_progress = false};
  s.teacher_engine =
      std::make_unique<engine::RolloutEngine>(*s.teacher, s.tokenizer.get(), options);
  s.student_engine =
      std::make_unique<engine::RolloutEngine>(*s.student, s.tokenizer.get(), options);
}

// The teacher samples sampling.n answers per prompt; its top-k at every response token.
LogitCache build_cache(Setup& s) {
  const auto& r = s.recipe;
  LogitCache cache{.vocab_size = s.teacher->config().vocab_size,
                   .tokenizer = s.tokenizer_fingerprint,
                   .teacher = s.teacher_dir.string(),
                   .meta = {{"task", r.data.task},
                            {"prompts", s.prompts.size()},
                            {"n", r.sampling.n},
                            {"temperature", r.sampling.temperature},
                            {"top_p", r.sampling.top_p},
                            {"max_tokens", r.sampling.max_tokens},
                            {"seed", r.seed}}};
  std::vector<TeacherTopK> parts;
  Progress progress("teacher", static_cast<std::int64_t>(s.prompts.size()), "prompt");
  const auto per_batch = static_cast<std::size_t>(r.sampling.prompts_per_batch);
  for (std::size_t start = 0, batch = 0; start < s.prompts.size(); start += per_batch, ++batch) {
    const std::span<const datasets::Example> part(s.prompts.data() + start,
                                                  std::min(per_batch, s.prompts.size() - start));
    const auto requests =
        requests_for(s, part, static_cast<std::uint64_t>(r.seed) * 1000003 + batch);
    Sequences prompts, responses;
    for (auto& c : s.teacher_engine->generate(requests)) {
      if (c.ids.empty()) continue;
      prompts.push_back(requests[c.request].prompt_ids);
      responses.push_back(std::move(c.ids));
    }
    parts.push_back(teacher_topk(*s.teacher, prompts, responses, r.top_k));
    cache.prompts.insert(cache.prompts.end(), prompts.begin(), prompts.end());
    cache.responses.insert(cache.responses.end(), responses.begin(), responses.end());
    progress.advance(static_cast<std::int64_t>(part.size()));
  }
  progress.finish();
  if (cache.responses.empty()) throw Error("distill: the teacher produced no response tokens");
  std::vector<at::Tensor> ids, logprobs, tails;
  for (const auto& t : parts) {
    ids.push_back(t.ids);
    logprobs.push_back(t.logprobs);
    tails.push_back(t.tail);
  }
  cache.topk = {at::cat(ids), at::cat(logprobs), at::cat(tails)};
  return cache;
}

// The cache file when it exists (checked against the student), else built and written.
LogitCache load_or_build_cache(Setup& s, const std::filesystem::path& path, bool& reused) {
  reused = std::filesystem::exists(path);
  if (reused) {
    LogitCache cache = read_logit_cache(path);
    check_cache_matches(cache, path, s.student->config().vocab_size, s.tokenizer_fingerprint);
    if (cache.topk.ids.size(1) != s.recipe.top_k)
      throw Error(
          fmt::format("{}: logit cache holds the top {} tokens per position, the recipe "
                      "asks for top_k {}",
                      path.string(), cache.topk.ids.size(1), s.recipe.top_k));
    log::info("reusing the teacher's logit cache {} ({} sequences)", path.string(),
              cache.prompts.size());
    return cache;
  }
  LogitCache cache = build_cache(s);
  write_logit_cache(path, cache, s.recipe.cache_dtype);
  return read_logit_cache(path);  // train on exactly what was stored (float16 rounding included)
}

struct Batch {
  Sequences prompts, responses;
  TeacherTopK teacher;
  std::map<std::string, double> metrics;
};
using NextBatch = std::function<Batch(std::int64_t step)>;

// batch_size cached sequences drawn uniformly with replacement, with their teacher rows.
NextBatch cached_batches(const LogitCache& cache, std::int64_t batch_size, std::uint64_t seed) {
  auto rng = std::make_shared<std::mt19937_64>(seed);
  const auto offsets = cache.row_offsets();
  return [&cache, batch_size, rng, offsets](std::int64_t) {
    Batch b;
    std::vector<std::int64_t> rows;
    for (std::int64_t i = 0; i < batch_size; ++i) {
      const auto s = static_cast<std::size_t>((*rng)() % cache.prompts.size());
      b.prompts.push_back(cache.prompts[s]);
      b.responses.push_back(cache.responses[s]);
      for (auto row = offsets[s]; row < offsets[s + 1]; ++row) rows.push_back(row);
    }
    const at::Tensor index = at::tensor(rows, at::kLong);
    b.teacher = {cache.topk.ids.index_select(0, index), cache.topk.logprobs.index_select(0, index),
                 cache.topk.tail.index_select(0, index)};
    return b;
  };
}

// batch_size prompts (in order, cycling) sampled sampling.n times by the current student; the
// teacher scores every sampled token.
NextBatch on_policy_batches(Setup& s) {
  auto cursor = std::make_shared<std::size_t>(0);
  return [&s, cursor](std::int64_t step) {
    const auto& r = s.recipe;
    std::vector<datasets::Example> examples;
    for (std::int64_t i = 0; i < r.train.batch_size; ++i)
      examples.push_back(s.prompts[(*cursor)++ % s.prompts.size()]);
    const auto requests = requests_for(
        s, examples,
        static_cast<std::uint64_t>(r.seed) * 1000003 + static_cast<std::uint64_t>(step));
    Batch b;
    double tokens = 0, samples = 0;
    for (auto& c : s.student_engine->generate(requests)) {
      ++samples;
      tokens += static_cast<double>(c.ids.size());
      if (c.ids.empty()) continue;
      b.prompts.push_back(requests[c.request].prompt_ids);
      b.responses.push_back(std::move(c.ids));
    }
    at::Tensor sampled;
    b.teacher = teacher_topk(*s.teacher, b.prompts, b.responses, r.top_k, &sampled);
    b.metrics["on_policy/response_tokens"] = tokens / std::max(samples, 1.0);
    // How much the teacher likes what the student says: rises as the student imitates it.
    b.metrics["on_policy/teacher_logprob"] = sampled.numel() ? sampled.mean().item<double>() : 0;
    return b;
  };
}

// The student's optimizer loop; returns its final held-out accuracy and checkpoint.
std::pair<double, std::filesystem::path> train_student(Setup& s, const NextBatch& next) {
  const auto& r = s.recipe;
  const Divergence divergence = parse_divergence(resolved_divergence(r));
  AdamW optimizer(s.trainable, {.lr = r.optim.lr,
                                .beta1 = r.optim.beta1,
                                .beta2 = r.optim.beta2,
                                .eps = r.optim.eps,
                                .weight_decay = r.optim.weight_decay});
  double accuracy = 0;
  Progress progress("distill", r.train.steps, "step");
  for (std::int64_t step = 1; step <= r.train.steps; ++step) {
    Batch batch = next(step);
    const double lr =
        scheduled_lr(r.optim.lr, step - 1, r.optim.warmup_steps, r.train.steps, r.optim.schedule);
    const at::Tensor loss =
        student_loss(*s.student, batch.prompts, batch.responses, batch.teacher, divergence);
    loss.backward();
    batch.metrics["train/grad_norm"] = clip_grad_norm(s.trainable, r.optim.grad_clip);
    optimizer.step(lr);
    optimizer.zero_grad();
    s.student->update_routing_bias(r.optim.routing_bias_rate);
    batch.metrics["distill/loss_nats_per_token"] = loss.item<double>();
    batch.metrics["train/lr"] = lr;
    batch.metrics["distill/tokens"] = static_cast<double>(batch.teacher.ids.size(0));
    s.store.log_metrics(step, batch.metrics);
    if (step == r.train.steps || (r.train.eval_every > 0 && step % r.train.eval_every == 0))
      accuracy = evaluate(s, *s.student_engine, "student", step);
    progress.set_note(fmt::format("loss {:.3f} nats/token", loss.item<double>()));
    progress.advance();
  }
  progress.finish();
  s.store.flush();
  const AdamWState moments{optimizer.exp_avg(), optimizer.exp_avg_sq(), optimizer.steps()};
  const TrainerState state{.step = r.train.steps, .accuracy = accuracy};
  const auto dir =
      save_checkpoint(r.run_dir, {*s.student, s.trainable_names, moments, state, s.tokenizer_dir});
  s.store.log_checkpoint({.step = r.train.steps, .path = dir.string()});
  return {accuracy, dir};
}

}  // namespace

DistillSummary run_distill(const DistillRecipe& original) {
  DistillRecipe recipe = original;
  recipe.run_dir = fresh_run_dir(original.run_dir);
  std::filesystem::create_directories(recipe.run_dir);
  at::manual_seed(static_cast<std::uint64_t>(recipe.seed));
  store::RunStore store(recipe.run_dir);
  store.begin_run({.kind = "distill-" + recipe.mode,
                   .recipe = json_struct::write(recipe),
                   .seed = recipe.seed,
                   .versions = {{"ponder", "0.1.0"}}});
  ThreadPool pool;
  Setup s{.recipe = recipe, .store = store, .pool = pool};
  load_models(s);
  s.prompts = distill_prompts(recipe);
  s.heldout = heldout_examples(recipe.data, recipe.seed);
  s.math = rewards::builtin_rewards().create("math", nlohmann::json::object());
  DistillSummary summary;
  summary.teacher_accuracy = evaluate(s, *s.teacher_engine, "teacher", 0);
  summary.student_accuracy_before = evaluate(s, *s.student_engine, "student", 0);
  log::info("held-out accuracy before distillation: teacher {:.1f}%, student {:.1f}%",
            100 * summary.teacher_accuracy, 100 * summary.student_accuracy_before);
  LogitCache cache;
  NextBatch next;
  if (recipe.mode == "logits") {
    summary.cache = recipe.cache.empty()
                        ? std::filesystem::path(recipe.run_dir) / "teacher_topk.bin"
                        : std::filesystem::path(recipe.cache);
    cache = load_or_build_cache(s, summary.cache, summary.cache_reused);
    summary.cached_sequences = static_cast<std::int64_t>(cache.prompts.size());
    summary.cached_positions = cache.topk.ids.size(0);
    next = cached_batches(cache, recipe.train.batch_size,
                          static_cast<std::uint64_t>(recipe.seed) * 31 + 7);
  } else {
    next = on_policy_batches(s);
  }
  std::tie(summary.student_accuracy, summary.student) = train_student(s, next);
  store.log_metrics(recipe.train.steps,
                    {{"summary/teacher_accuracy", summary.teacher_accuracy},
                     {"summary/student_accuracy_before", summary.student_accuracy_before},
                     {"summary/student_accuracy", summary.student_accuracy},
                     {"summary/student_over_teacher",
                      summary.student_accuracy / std::max(summary.teacher_accuracy, 1e-9)}});
  store.flush();
  summary.report = store::write_report(recipe.run_dir);
  return summary;
}

}  // namespace ponder::train
