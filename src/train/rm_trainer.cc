// The reward-model loop in one file: tokenize pairs -> per step score chosen and rejected in one
// packed forward -> Bradley-Terry loss, AdamW -> held-out pairwise accuracy, checkpoints.
#include "train/rm_trainer.h"

#include <c10/core/GradMode.h>
#include <fmt/core.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <numeric>
#include <random>

#include "core/error.h"
#include "core/json_file.h"
#include "core/json_struct.h"
#include "core/log.h"
#include "core/progress.h"
#include "model/reward_model.h"
#include "model/tokenizer.h"
#include "store/report.h"
#include "store/run_store.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/run_setup.h"

namespace ponder::train {
namespace {

struct Pair {
  std::vector<std::int64_t> chosen, rejected;
};

struct Context {
  const RmRecipe& recipe;
  std::unique_ptr<model::RewardModel> model;
  std::filesystem::path tokenizer_dir;
  std::vector<Pair> train, eval;
  std::string chat_format;  // the recipe's format for pairs (empty: detected), saved with the model
  std::vector<at::Tensor> trainable;
  std::unique_ptr<store::RunStore> store;
};

std::string string_field(const nlohmann::json& record, const char* key, const std::string& where) {
  if (!record.is_object() || !record.contains(key) || !record[key].is_string())
    throw Error(where + ": expected a string field \"" + key + "\"");
  return record[key].get<std::string>();
}

// Pairs with a side longer than max_seq_len are skipped (and counted).
std::vector<Pair> read_pairs(const std::filesystem::path& path, const model::Tokenizer& tokenizer,
                             model::ChatFormat format, std::int64_t max_len) {
  std::vector<Pair> pairs;
  std::size_t skipped = 0;
  for_each_jsonl(path, [&](const nlohmann::json& record, std::size_t line) {
    const std::string where = path.string() + ":" + std::to_string(line);
    const std::string prompt = string_field(record, "prompt", where);
    Pair p{
        model::encode_scored_pair(tokenizer, format, prompt, string_field(record, "chosen", where)),
        model::encode_scored_pair(tokenizer, format, prompt,
                                  string_field(record, "rejected", where))};
    if (std::max(p.chosen.size(), p.rejected.size()) > static_cast<std::size_t>(max_len))
      ++skipped;
    else
      pairs.push_back(std::move(p));
  });
  if (skipped > 0)
    log::warn("{}: skipped {} pairs longer than {} tokens", path.string(), skipped, max_len);
  return pairs;
}

// The tokenizer's pad token (tokenizer_config.json), else its EOS: what HF pads with.
std::optional<std::int64_t> pad_token(const model::Tokenizer& tokenizer,
                                      const std::filesystem::path& dir) {
  const auto config_path = dir / "tokenizer_config.json";
  if (std::filesystem::exists(config_path)) {
    const nlohmann::json config = read_json_file(config_path);
    const auto it = config.find("pad_token");
    if (it != config.end() && (it->is_string() || it->is_object())) {
      const std::string token = it->is_string() ? it->get<std::string>() : it->value("content", "");
      if (const auto id = tokenizer.token_to_id(token)) return id;
    }
  }
  return tokenizer.eos_id();
}

void load(Context& c) {
  const auto& d = c.recipe.data;
  const ModelFiles files = resolve_model(c.recipe.model, c.recipe.run_dir, c.recipe.seed);
  c.model = model::load_reward_model(files.weights, at::kCPU, at::kFloat);
  c.tokenizer_dir = files.tokenizer;
  const auto tokenizer = model::Tokenizer::from_directory(c.tokenizer_dir);
  if (!c.model->pad_token_id()) c.model->set_pad_token_id(pad_token(tokenizer, c.tokenizer_dir));
  for (const auto& [name, tensor] : c.model->named_parameters()) {
    if (name.ends_with("e_score_correction_bias")) continue;  // set by load balancing
    tensor.requires_grad_(true);
    c.trainable.push_back(tensor);
  }
  const auto format = resolve_chat_format(d.chat_format, c.tokenizer_dir);
  c.chat_format = d.chat_format;
  c.train = read_pairs(under_data(d.train_file), tokenizer, format, d.max_seq_len);
  if (!d.eval_file.empty()) {
    c.eval = read_pairs(under_data(d.eval_file), tokenizer, format, d.max_seq_len);
  } else {
    const auto held = std::max<std::size_t>(
        1, static_cast<std::size_t>(
               std::round(d.eval_fraction * static_cast<double>(c.train.size()))));
    if (held >= c.train.size()) throw Error(d.train_file + ": too few pairs to hold out");
    c.eval.assign(c.train.end() - static_cast<std::ptrdiff_t>(held), c.train.end());
    c.train.resize(c.train.size() - held);
  }
}

}  // namespace
}  // namespace ponder::train

namespace ponder::train {
namespace {

struct PairStats {
  at::Tensor loss;  // mean -log sigmoid(margin), differentiable
  double accuracy = 0, margin = 0;
};

// Scores the chosen and rejected sides of `pairs` in one packed forward.
PairStats bradley_terry(model::RewardModel& model, const std::vector<Pair>& data,
                        std::span<const std::size_t> pairs) {
  std::vector<std::vector<std::int64_t>> sequences;
  for (const std::size_t i : pairs) sequences.push_back(data[i].chosen);
  for (const std::size_t i : pairs) sequences.push_back(data[i].rejected);
  const at::Tensor scores = model.scores(sequences);
  const auto n = static_cast<std::int64_t>(pairs.size());
  const at::Tensor margin = scores.narrow(0, 0, n) - scores.narrow(0, n, n);
  return {-at::log_sigmoid(margin).mean(), (margin > 0).to(at::kDouble).mean().item<double>(),
          margin.mean().item<double>()};
}

std::map<std::string, double> evaluate(Context& c) {
  c10::NoGradGuard no_grad;
  std::vector<std::size_t> order(c.eval.size());
  std::iota(order.begin(), order.end(), 0);
  double loss = 0, accuracy = 0, margin = 0;
  const auto chunk = static_cast<std::size_t>(c.recipe.pairs_per_step);
  for (std::size_t start = 0; start < order.size(); start += chunk) {
    const std::span<const std::size_t> part(order.data() + start,
                                            std::min(chunk, order.size() - start));
    const PairStats s = bradley_terry(*c.model, c.eval, part);
    const auto w = static_cast<double>(part.size());
    loss += w * s.loss.item<double>();
    accuracy += w * s.accuracy;
    margin += w * s.margin;
  }
  const auto n = static_cast<double>(order.size());
  return {{"eval/loss", loss / n}, {"eval/accuracy", accuracy / n}, {"eval/margin", margin / n}};
}

// Every epoch's shuffled pair order, cut into steps of pairs_per_step (capped at max_steps).
std::vector<std::vector<std::size_t>> plan_steps(const RmRecipe& r, std::size_t pairs) {
  std::vector<std::vector<std::size_t>> steps;
  const auto size = static_cast<std::size_t>(r.pairs_per_step);
  for (std::int64_t epoch = 0; epoch < r.epochs; ++epoch) {
    std::vector<std::size_t> order(pairs);
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(static_cast<std::uint64_t>(r.seed) * 1000003 +
                        static_cast<std::uint64_t>(epoch));
    std::shuffle(order.begin(), order.end(), rng);
    for (std::size_t start = 0; start < pairs; start += size)
      steps.emplace_back(
          order.begin() + static_cast<std::ptrdiff_t>(start),
          order.begin() + static_cast<std::ptrdiff_t>(std::min(pairs, start + size)));
  }
  if (r.max_steps > 0 && static_cast<std::int64_t>(steps.size()) > r.max_steps)
    steps.resize(r.max_steps);
  return steps;
}

std::filesystem::path save(Context& c, std::int64_t step) {
  const auto root = std::filesystem::path(c.recipe.run_dir) / "checkpoints";
  const auto final_dir = root / ("step-" + std::to_string(step));
  const auto temp_dir = root / (".tmp-step-" + std::to_string(step));
  std::filesystem::remove_all(temp_dir);
  model::save_reward_model(*c.model, temp_dir);
  copy_tokenizer_files(c.tokenizer_dir, temp_dir);
  if (!c.chat_format.empty())  // else detection on the copied tokenizer_config finds it again
    std::ofstream(temp_dir / model::kScoringFile)
        << nlohmann::json{{"chat_format", c.chat_format}}.dump(2) << "\n";
  std::filesystem::remove_all(final_dir);
  std::filesystem::rename(temp_dir, final_dir);
  c.store->log_checkpoint({.step = step, .path = final_dir.string()});
  return final_dir;
}

}  // namespace

RmSummary run_rm(const RmRecipe& original) {
  RmRecipe recipe = original;
  recipe.run_dir = fresh_run_dir(original.run_dir);
  at::manual_seed(static_cast<std::uint64_t>(recipe.seed));
  std::filesystem::create_directories(recipe.run_dir);
  Context c{recipe};
  c.store = std::make_unique<store::RunStore>(recipe.run_dir);
  c.store->begin_run({.kind = "rm",
                      .recipe = json_struct::write(recipe),
                      .seed = recipe.seed,
                      .versions = {{"ponder", "0.1.0"}}});
  load(c);
  const auto steps = plan_steps(recipe, c.train.size());
  const auto total = static_cast<std::int64_t>(steps.size());
  log::info("rm: {} training pairs, {} held out, {} steps", c.train.size(), c.eval.size(), total);
  const auto& o = recipe.optim;
  AdamW optimizer(c.trainable, {.lr = o.lr,
                                .beta1 = o.beta1,
                                .beta2 = o.beta2,
                                .eps = o.eps,
                                .weight_decay = o.weight_decay});
  RmSummary summary{.run_dir = recipe.run_dir};
  Progress progress("rm", total, "step");
  for (std::int64_t step = 1; step <= total; ++step) {
    const PairStats s = bradley_terry(*c.model, c.train, steps[step - 1]);
    s.loss.backward();
    const double norm = clip_grad_norm(c.trainable, o.grad_clip);
    const double lr = scheduled_lr(o.lr, step - 1, o.warmup_steps, total, o.schedule);
    optimizer.step(lr);
    optimizer.zero_grad();
    std::map<std::string, double> metrics = {
        {"train/loss", summary.train_loss = s.loss.item<double>()},
        {"train/accuracy", s.accuracy},
        {"train/margin", s.margin},
        {"train/grad_norm", norm},
        {"train/lr", lr}};
    if (step % recipe.eval_every == 0 || step == total) {
      const auto eval = evaluate(c);
      metrics.insert(eval.begin(), eval.end());
      summary.eval_accuracy = eval.at("eval/accuracy");
      summary.eval_loss = eval.at("eval/loss");
    }
    c.store->log_metrics(step, metrics);
    if (step == total || (recipe.checkpoint_every > 0 && step % recipe.checkpoint_every == 0))
      summary.checkpoint = save(c, step);
    progress.set_note(fmt::format("loss {:.3f} held-out acc {:.0f}%", summary.train_loss,
                                  100 * summary.eval_accuracy));
    progress.advance();
  }
  progress.finish();
  c.store->flush();
  summary.steps = total;
  summary.report = store::write_report(recipe.run_dir);
  return summary;
}

}  // namespace ponder::train
