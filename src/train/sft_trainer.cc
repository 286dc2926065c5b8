// The SFT loop in one file: tokenize chats -> plan packed batches for every epoch -> per step one
// packed forward, masked NLL, AdamW -> held-out loss, checkpoints and metrics in the run store.
// Data parallel: each rank packs its share of every batch's conversations, divides its NLL sum by
// the whole batch's target count and gradients are summed over ranks (ZeRO-1); rank 0 alone
// writes the run directory.
#include "train/sft_trainer.h"

#include <c10/core/GradMode.h>
#include <fmt/core.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "core/error.h"
#include "core/json_struct.h"
#include "core/log.h"
#include "core/progress.h"
#include "dist/data_parallel.h"
#include "dist/gather.h"
#include "store/report.h"
#include "store/run_store.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/parallel.h"
#include "train/run_setup.h"
#include "train/sft_data.h"

namespace ponder::train {
namespace {

using Clock = std::chrono::steady_clock;
using Chats = std::vector<std::vector<model::ChatMessage>>;

struct Context {
  dist::ProcessGroup& group;
  const SftRecipe& recipe;
  at::Device device;  // this rank's: the CPU or cuda:LOCAL_RANK
  std::unique_ptr<model::CausalLM> model;
  std::filesystem::path tokenizer_dir;
  std::vector<ChatTokens> train, eval;
  std::vector<std::vector<std::size_t>> batches;  // every epoch's batches, in training order
  std::vector<at::Tensor> trainable;
  std::vector<std::string> trainable_names;
  std::unique_ptr<store::RunStore> store;  // rank 0's; none on the other ranks
};

// Tokenized and cut to max_seq_len; conversations left with no assistant token to predict are
// dropped (and counted).
std::vector<ChatTokens> tokenize_all(const Chats& chats, const model::Tokenizer& tokenizer,
                                     model::ChatFormat format, std::int64_t eos,
                                     std::int64_t max_len, const std::string& what) {
  const std::string bos = tokenizer.bos_id() ? tokenizer.id_to_token(*tokenizer.bos_id()) : "";
  std::vector<ChatTokens> out;
  for (const auto& chat : chats) {
    ChatTokens t = tokenize_chat(tokenizer, format, chat, bos, eos);
    if (static_cast<std::int64_t>(t.ids.size()) > max_len) {
      t.ids.resize(max_len);
      t.trained.resize(max_len);
    }
    if (std::find(t.trained.begin() + 1, t.trained.end(), 1) != t.trained.end())
      out.push_back(std::move(t));
  }
  if (out.size() < chats.size())
    log::warn("{}: {} of {} conversations have no assistant token within {} tokens; skipped", what,
              chats.size() - out.size(), chats.size(), max_len);
  return out;
}

void load_data(Context& c, const model::Tokenizer& tokenizer) {
  const auto& d = c.recipe.data;
  const auto format = resolve_chat_format(d.chat_format, c.tokenizer_dir);
  const std::int64_t eos = resolve_eos(tokenizer, c.model->config().eos_token_id);
  Chats train = read_chat_jsonl(under_data(d.train_file)), eval;
  if (!d.eval_file.empty()) {
    eval = read_chat_jsonl(under_data(d.eval_file));
  } else if (d.eval_fraction > 0) {
    const auto held = std::max<std::size_t>(
        1,
        static_cast<std::size_t>(std::round(d.eval_fraction * static_cast<double>(train.size()))));
    if (held >= train.size()) throw Error(d.train_file + ": too few conversations to hold out");
    eval.assign(train.end() - static_cast<std::ptrdiff_t>(held), train.end());
    train.resize(train.size() - held);
  }
  c.train = tokenize_all(train, tokenizer, format, eos, d.max_seq_len, d.train_file);
  c.eval = tokenize_all(eval, tokenizer, format, eos, d.max_seq_len, "held-out data");
  if (c.train.empty()) throw Error(d.train_file + ": no conversation to train on");
}

std::vector<std::int64_t> lengths_of(const std::vector<ChatTokens>& data) {
  std::vector<std::int64_t> lengths;
  for (const auto& t : data) lengths.push_back(static_cast<std::int64_t>(t.ids.size()));
  return lengths;
}

void plan(Context& c) {
  const auto lengths = lengths_of(c.train);
  for (std::int64_t epoch = 0; epoch < c.recipe.epochs; ++epoch) {
    std::vector<std::size_t> order(c.train.size());
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(static_cast<std::uint64_t>(c.recipe.seed) * 1000003 +
                        static_cast<std::uint64_t>(epoch));
    std::shuffle(order.begin(), order.end(), rng);
    for (auto& b : plan_batches(lengths, order, c.recipe.batch_tokens))
      c.batches.push_back(std::move(b));
  }
  if (c.recipe.max_steps > 0 && static_cast<std::int64_t>(c.batches.size()) > c.recipe.max_steps)
    c.batches.resize(c.recipe.max_steps);
}

PackedBatch batch_of(const std::vector<ChatTokens>& data, const std::vector<std::size_t>& items) {
  std::vector<const ChatTokens*> sequences;
  for (const std::size_t i : items) sequences.push_back(&data[i]);
  return pack(sequences);
}

// Collective: mean NLL per held-out assistant token (nats), in packed batches without gradients,
// the batches dealt out to the ranks in turn.
double eval_loss(Context& c) {
  c10::NoGradGuard no_grad;
  std::vector<std::size_t> order(c.eval.size());
  std::iota(order.begin(), order.end(), 0);
  const auto batches = plan_batches(lengths_of(c.eval), order, c.recipe.batch_tokens);
  double total = 0, count = 0;
  for (std::size_t i = static_cast<std::size_t>(c.group.rank()); i < batches.size();
       i += static_cast<std::size_t>(c.group.world_size())) {
    const PackedBatch b = batch_of(c.eval, batches[i]);
    total += packed_nll_sum(*c.model, b).item<double>();
    count += static_cast<double>(b.targets.numel());
  }
  const auto sums = dist::global_sums(c.group, {total, count});
  return sums[0] / sums[1];
}

}  // namespace
}  // namespace ponder::train

namespace ponder::train {
namespace {

// Collective: one optimizer step on the batch, of which this rank packs its share.
std::map<std::string, double> train_step(Context& c, dist::DataParallel& optimizer,
                                         std::int64_t step) {
  const auto begin = Clock::now();
  const auto& items = c.batches[step];
  const auto [first, last] = dist::shard_range(static_cast<std::int64_t>(items.size()),
                                               c.group.rank(), c.group.world_size());
  std::optional<PackedBatch> b;
  if (last > first) b = batch_of(c.train, {items.begin() + first, items.begin() + last});
  const auto counts = dist::global_sums(c.group, {b ? static_cast<double>(b->targets.numel()) : 0.0,
                                                  b ? static_cast<double>(b->tokens) : 0.0});
  double loss = 0;
  if (b) {
    const at::Tensor share = packed_nll_sum(*c.model, *b) / counts[0];
    share.backward();
    loss = share.item<double>();
  }
  const auto& o = c.recipe.optim;
  const double lr = scheduled_lr(o.lr, step, o.warmup_steps,
                                 static_cast<std::int64_t>(c.batches.size()), o.schedule);
  const double norm = optimizer.step(lr, o.grad_clip);
  const double seconds = std::chrono::duration<double>(Clock::now() - begin).count();
  return {{"train/loss", dist::global_sum(c.group, loss)},
          {"train/lr", lr},
          {"train/grad_norm", norm},
          {"train/sequences", static_cast<double>(items.size())},
          {"train/assistant_tokens", counts[0]},
          {"train/packing_fill", counts[1] / static_cast<double>(c.recipe.batch_tokens)},
          {"time/tokens_per_s", counts[1] / seconds}};
}

std::filesystem::path save(Context& c, dist::DataParallel& optimizer, const TrainerState& state) {
  return save_checkpoint(c.group, optimizer, c.recipe.run_dir,
                         {*c.model, c.trainable_names, state, c.tokenizer_dir}, c.store.get());
}

void load_model(Context& c, const std::optional<std::filesystem::path>& checkpoint) {
  ModelSection section = c.recipe.model;
  if (checkpoint) section.path = checkpoint->string();
  const ModelFiles files = resolve_model(c.group, section, c.recipe.run_dir, c.recipe.seed);
  c.model = model::load_causal_lm(files.weights, c.device, at::kFloat);
  c.model->set_linear_precision(linear_precision(c.recipe.train));
  c.tokenizer_dir = files.tokenizer;
  for (auto& [name, tensor] : c.model->named_parameters()) {
    if (name.ends_with("e_score_correction_bias")) continue;  // set by load balancing
    tensor.requires_grad_(true);
    c.trainable.push_back(tensor);
    c.trainable_names.push_back(name);
  }
}

SftSummary train(dist::ProcessGroup& group, const SftRecipe& recipe,
                 const std::optional<std::filesystem::path>& checkpoint, bool new_run) {
  at::manual_seed(static_cast<std::uint64_t>(recipe.seed));
  Context c{group, recipe,
            group.local_device(resolve_device(recipe.train.device, "train.device").type())};
  c.store = open_store_on_main(group, recipe.run_dir);
  if (new_run && c.store)
    c.store->begin_run({.kind = "sft",
                        .recipe = json_struct::write(recipe),
                        .seed = recipe.seed,
                        .versions = {{"ponder", "0.1.0"}}});
  load_model(c, checkpoint);
  load_data(c, model::Tokenizer::from_directory(c.tokenizer_dir));
  plan(c);
  const auto& o = recipe.optim;
  dist::DataParallel optimizer(group, c.trainable,
                               {.lr = o.lr,
                                .beta1 = o.beta1,
                                .beta2 = o.beta2,
                                .eps = o.eps,
                                .weight_decay = o.weight_decay});
  TrainerState state;
  if (checkpoint) state = load_checkpoint(*checkpoint, c.trainable_names, c.trainable, optimizer);
  if (c.store)
    c.store->truncate_after(checkpoint ? state.step : std::numeric_limits<std::int64_t>::min());
  const auto total = static_cast<std::int64_t>(c.batches.size());
  log::info("sft: {} conversations, {} held out, {} steps of <= {} tokens", c.train.size(),
            c.eval.size(), total, recipe.batch_tokens);
  SftSummary summary{.eval_loss = std::nan(""), .run_dir = recipe.run_dir};
  Progress progress("sft", total, "step");
  progress.resume_at(state.step);
  while (state.step < total) {
    auto metrics = train_step(c, optimizer, state.step);
    state.cursor = static_cast<std::uint64_t>(++state.step);
    const bool last = state.step == total;
    if (!c.eval.empty() && (state.step % recipe.eval_every == 0 || last))
      metrics["eval/loss"] = summary.eval_loss = eval_loss(c);
    if (c.store) c.store->log_metrics(state.step, metrics);
    summary.train_loss = metrics["train/loss"];
    if (last || (recipe.checkpoint_every > 0 && state.step % recipe.checkpoint_every == 0))
      summary.checkpoint = save(c, optimizer, state);
    progress.set_note(fmt::format("loss {:.3f}", summary.train_loss));
    progress.advance();
  }
  progress.finish();
  summary.steps = state.step;
  if (!c.store) return summary;
  c.store->flush();
  summary.report = store::write_report(recipe.run_dir);
  return summary;
}

}  // namespace

SftSummary run_sft(const SftRecipe& recipe, dist::ProcessGroup& group) {
  SftRecipe fresh = recipe;
  fresh.run_dir = fresh_run_dir(group, recipe.run_dir);
  return train(group, fresh, std::nullopt, true);
}

SftSummary resume_sft(const std::filesystem::path& run_dir, dist::ProcessGroup& group) {
  std::string stored;  // rank 0 reads the run store
  if (group.is_main()) {
    std::optional<store::RunInfo> info;
    if (std::filesystem::exists(run_dir / "run.db")) info = store::RunStore(run_dir).run_info();
    if (!info || info->kind != "sft")
      throw Error(run_dir.string() + ": not a ponder sft run directory");
    stored = info->recipe.dump();
  }
  SftRecipe recipe;
  json_struct::read(nlohmann::json::parse(dist::from_main(group, stored)), recipe, "");
  recipe.run_dir = run_dir.string();
  const auto checkpoint = latest_checkpoint(group, run_dir);
  if (!checkpoint) log::info("{}: no complete checkpoint yet; starting over", run_dir.string());
  return train(group, recipe, checkpoint, false);
}

}  // namespace ponder::train
