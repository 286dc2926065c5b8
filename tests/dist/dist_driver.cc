// One rank of the distributed tests, launched with torchrun's environment. Trains a small model
// on a fixed global batch, either one process on the whole batch with train::AdamW (the
// reference) or each rank on its share through dist::DataParallel; rank 0 writes the per-step
// losses and gradient norms, the initial and the final parameters to OUT (binary: a count and
// doubles, then twice a count and floats).
//   dist_driver mlp|mlp-reference OUT
//   dist_driver lm|lm-reference OUT MODEL_DIR     (packed causal LM, token-mean NLL)
//   dist_driver mlp-accumulate2|lm-accumulate2 ...  (one process, gradients of two shares summed)
//   dist_driver spin OUT                          (MLP steps until killed; writes OUT.ready.RANK)
//   dist_driver gather OUT                        (rank r contributes r + 1 rows and a string)
//   dist_driver moe OUT MODEL_DIR                 (expert-parallel MoE layer vs model::Moe)
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>
#include <fmt/core.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "dist/data_parallel.h"
#include "dist/expert_parallel.h"
#include "dist/gather.h"
#include "model/causal_lm.h"
#include "model/layers.h"
#include "train/adamw.h"

namespace {

using ponder::dist::ProcessGroup;

// A loss over the examples [begin, end) of the global batch, already divided by the global
// normaliser, so that the sum over ranks is the global-batch loss.
using ShareLoss = std::function<at::Tensor(std::int64_t begin, std::int64_t end)>;

struct Task {
  std::vector<at::Tensor> params;
  std::int64_t examples = 0;
  ShareLoss loss;
  ponder::train::AdamWOptions optim;
  double lr = 0, max_norm = 0;
  int steps = 0;
};

Task mlp_task() {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  const at::Tensor x = at::randn({8, 4}, gen), y = at::randn({8, 2}, gen);
  Task t;
  // w1, b1, w2, b2, then `extra` (used only by examples 6 and 7: no gradient on ranks without
  // them) and `unused` (never used: no gradient anywhere, so AdamW must leave it alone).
  for (const auto& shape :
       std::vector<std::vector<std::int64_t>>{{16, 4}, {16}, {2, 16}, {2}, {4, 2}, {3}})
    t.params.push_back((at::randn(shape, gen) * 0.5).requires_grad_(true));
  t.examples = 8;
  t.loss = [x, y, p = t.params](std::int64_t begin, std::int64_t end) {
    const at::Tensor xs = x.narrow(0, begin, end - begin);
    at::Tensor out = at::linear(at::tanh(at::linear(xs, p[0], p[1])), p[2], p[3]);
    if (end > 6) {
      const std::int64_t from = std::max<std::int64_t>(begin, 6);
      const at::Tensor extra = at::matmul(x.narrow(0, from, end - from), p[4]);
      out = at::cat(
          {out.narrow(0, 0, from - begin), out.narrow(0, from - begin, end - from) + extra});
    }
    return (out - y.narrow(0, begin, end - begin)).pow(2).sum() / 16.0;
  };
  t.optim = {.lr = 0.05, .weight_decay = 0.1};
  t.lr = 0.05;
  t.max_norm = 0.5;  // below the first steps' norms: clipping is exercised
  t.steps = 6;
  return t;
}

Task lm_task(const std::string& model_dir, std::shared_ptr<ponder::model::CausalLM>& keep) {
  keep = ponder::model::load_causal_lm(model_dir, at::kCPU, at::kFloat);
  Task t;
  for (auto& [name, tensor] : keep->named_parameters()) {
    if (name.ends_with("e_score_correction_bias")) continue;
    t.params.push_back(tensor.requires_grad_(true));
  }
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  const std::vector<std::int64_t> lengths = {5, 9, 3, 7, 6};
  std::vector<at::Tensor> sequences;
  double targets = 0;
  for (const std::int64_t n : lengths) {
    sequences.push_back(at::randint(keep->config().vocab_size, {n}, gen, at::kLong));
    targets += static_cast<double>(n - 1);
  }
  t.examples = static_cast<std::int64_t>(lengths.size());
  t.loss = [sequences, targets, model = keep.get()](std::int64_t begin, std::int64_t end) {
    std::vector<at::Tensor> ids, positions, rows, next;
    std::vector<std::int64_t> cu = {0};
    for (std::int64_t s = begin; s < end; ++s) {
      const std::int64_t n = sequences[s].size(0);
      ids.push_back(sequences[s]);
      positions.push_back(at::arange(n, at::kLong));
      rows.push_back(at::arange(cu.back(), cu.back() + n - 1, at::kLong));
      next.push_back(sequences[s].narrow(0, 1, n - 1));
      cu.push_back(cu.back() + n);
    }
    const at::Tensor hidden =
        model->forward_hidden(at::cat(ids), at::cat(positions), at::tensor(cu, at::kLong));
    return -model->token_logprobs(hidden.index_select(0, at::cat(rows)), at::cat(next)).sum() /
           targets;
  };
  t.optim = {.lr = 1e-3, .weight_decay = 0.01};
  t.lr = 1e-3;
  t.max_norm = 1.0;
  t.steps = 3;
  return t;
}

struct Trace {
  std::vector<double> values;  // loss, grad norm per step
};

// One process: the global batch's gradient accumulated over `parts` shares (1: one batch).
Trace train_reference(Task& t, int parts) {
  ponder::train::AdamW optimizer(t.params, t.optim);
  Trace trace;
  for (int step = 0; step < t.steps; ++step) {
    double loss = 0;
    for (int part = 0; part < parts; ++part) {
      const auto [begin, end] = ponder::dist::shard_range(t.examples, part, parts);
      const at::Tensor share = t.loss(begin, end);
      share.backward();
      loss += share.item<double>();
    }
    trace.values.push_back(loss);
    trace.values.push_back(ponder::train::clip_grad_norm(t.params, t.max_norm));
    optimizer.step(t.lr);
    optimizer.zero_grad();
  }
  return trace;
}

Trace train_parallel(Task& t, ProcessGroup& group, const std::string& ready_file = "") {
  if (group.rank() != 0) {
    // Start off rank 0's values: DataParallel must broadcast them.
    c10::NoGradGuard no_grad;
    for (auto& p : t.params) p.add_(1.0);
  }
  ponder::dist::DataParallel parallel(group, t.params, t.optim);
  const auto [begin, end] = ponder::dist::shard_range(t.examples, group.rank(), group.world_size());
  Trace trace;
  for (int step = 0; step < t.steps; ++step) {
    const at::Tensor loss = t.loss(begin, end);
    loss.backward();
    trace.values.push_back(ponder::dist::global_sum(group, loss.item<double>()));
    trace.values.push_back(parallel.step(t.lr, t.max_norm));
    if (step == 0 && !ready_file.empty()) std::ofstream(ready_file) << "ready\n";
    if (!ready_file.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return trace;
}

std::vector<float> flatten(const std::vector<at::Tensor>& params) {
  std::vector<float> flat;
  for (const auto& p : params) {
    const at::Tensor c = p.detach().contiguous();
    flat.insert(flat.end(), c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  }
  return flat;
}

template <typename T>
void write_array(std::ofstream& out, const std::vector<T>& values) {
  const std::uint64_t n = values.size();
  out.write(reinterpret_cast<const char*>(&n), sizeof n);
  out.write(reinterpret_cast<const char*>(values.data()),
            static_cast<std::streamsize>(n * sizeof(T)));
}

void write_result(const std::string& path, const Trace& trace, const std::vector<float>& initial,
                  const std::vector<at::Tensor>& params) {
  std::ofstream out(path, std::ios::binary);
  write_array(out, trace.values);
  write_array(out, initial);
  write_array(out, flatten(params));
  if (!out) throw ponder::Error("cannot write " + path);
}

// Rank 0 writes the gathered rows (one per line) and strings (one per line) to OUT.
void gather(ProcessGroup& group, const std::string& out) {
  const int r = group.rank();
  const at::Tensor rows = at::arange(2 * (r + 1), at::kFloat).reshape({r + 1, 2}) + 100 * r;
  const at::Tensor all = ponder::dist::all_gather_rows(group, rows);
  const auto strings =
      ponder::dist::all_gather_strings(group, fmt::format("rank {}:{}", r, std::string(r, 'x')));
  if (!group.is_main()) return;
  std::ofstream file(out);
  for (std::int64_t i = 0; i < all.size(0); ++i)
    file << all[i][0].item<float>() << " " << all[i][1].item<float>() << "\n";
  for (const auto& s : strings) file << s << "\n";
}

// Layer 1's MoE of a fresh load of the model (its own parameter tensors, gradients on).
struct MoeCopy {
  std::unique_ptr<ponder::model::CausalLM> model;
  ponder::model::Moe moe;
};

MoeCopy load_moe(const std::string& model_dir) {
  MoeCopy c{ponder::model::load_causal_lm(model_dir, at::kCPU, at::kFloat), {}};
  std::map<std::string, at::Tensor> by_name;
  for (auto& [name, tensor] : c.model->named_parameters())
    by_name[name] = tensor.requires_grad_(!name.ends_with("e_score_correction_bias"));
  const auto find = [&](const std::string& name) -> std::optional<at::Tensor> {
    const auto it = by_name.find(name);
    return it == by_name.end() ? std::nullopt : std::optional<at::Tensor>(it->second);
  };
  c.moe = ponder::model::make_moe(
      c.model->config(), [&](const std::string& name) { return *find(name); }, find,
      "model.layers.1.mlp");
  return c;
}

double max_grad_difference(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, (a[i].grad() - b[i].grad()).abs().max().item<double>());
  return worst;
}

std::vector<at::Tensor> mlp_weights(const ponder::model::Mlp& m) {
  return {m.gate.weight, m.up.weight, m.down.weight};
}

// Each rank: its tokens through ExpertParallelMoe against model::Moe on all tokens. Rank 0
// writes the largest differences over ranks (output, input gradient, local experts' gradients,
// summed router and shared-expert gradients) and the fewest assignments a rank sent elsewhere.
void moe(ProcessGroup& group, const std::string& out, const std::string& model_dir) {
  MoeCopy reference = load_moe(model_dir), parallel = load_moe(model_dir);
  const std::int64_t hidden = reference.model->config().hidden_size, tokens = 24;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const at::Tensor x = at::randn({tokens, hidden}, gen),
                   upstream = at::randn({tokens, hidden}, gen);
  const at::Tensor x_ref = x.clone().requires_grad_(true);
  (reference.moe(x_ref) * upstream).sum().backward();
  const auto [begin, end] = ponder::dist::shard_range(tokens, group.rank(), group.world_size());
  const at::Tensor x_local = x.narrow(0, begin, end - begin).clone().requires_grad_(true);
  const ponder::dist::ExpertParallelMoe layer(group, parallel.moe);
  const at::Tensor y = layer(x_local);
  (y * upstream.narrow(0, begin, end - begin)).sum().backward();
  const at::Tensor y_ref = reference.moe(x).narrow(0, begin, end - begin);
  std::vector<at::Tensor> ref_experts, par_experts, ref_replicated = {reference.moe.gate},
                                                    par_replicated = {parallel.moe.gate};
  const auto [first, last] = layer.local_experts();
  for (std::int64_t e = first; e < last; ++e) {
    for (const auto& w : mlp_weights(reference.moe.experts[e])) ref_experts.push_back(w);
    for (const auto& w : mlp_weights(parallel.moe.experts[e])) par_experts.push_back(w);
  }
  for (const auto& w : mlp_weights(*reference.moe.shared)) ref_replicated.push_back(w);
  for (const auto& w : mlp_weights(*parallel.moe.shared)) par_replicated.push_back(w);
  for (auto& w : par_replicated) group.all_reduce_sum(w.mutable_grad());
  const at::Tensor owner = at::floor_divide(
      reference.moe.route(x.narrow(0, begin, end - begin)).experts * group.world_size(),
      static_cast<std::int64_t>(reference.moe.experts.size()));
  const double remote = (owner != group.rank()).sum().item<double>();
  const at::Tensor row = at::tensor(
      {(y - y_ref).abs().max().item<double>(),
       (x_local.grad() - x_ref.grad().narrow(0, begin, end - begin)).abs().max().item<double>(),
       max_grad_difference(par_experts, ref_experts),
       max_grad_difference(par_replicated, ref_replicated), -remote},
      at::kDouble);
  const at::Tensor all = ponder::dist::all_gather_rows(group, row.unsqueeze(0));
  if (group.is_main()) {
    const at::Tensor worst = std::get<0>(all.max(0));
    std::ofstream(out) << fmt::format("{} {} {} {} {}\n", worst[0].item<double>(),
                                      worst[1].item<double>(), worst[2].item<double>(),
                                      worst[3].item<double>(), -worst[4].item<double>());
  }
}

int run(const std::string& mode, const std::string& out, const std::string& model_dir) {
  if (mode == "gather" || mode == "moe") {
    ProcessGroup group(ponder::dist::launch_env());
    mode == "gather" ? gather(group, out) : moe(group, out, model_dir);
    return 0;
  }
  std::shared_ptr<ponder::model::CausalLM> model;
  Task task = mode.starts_with("lm") ? lm_task(model_dir, model) : mlp_task();
  const std::vector<float> initial = flatten(task.params);
  if (mode.ends_with("-reference") || mode.ends_with("-accumulate2")) {
    const int parts = mode.ends_with("-accumulate2") ? 2 : 1;
    write_result(out, train_reference(task, parts), initial, task.params);
    return 0;
  }
  const ponder::dist::LaunchEnv env = ponder::dist::launch_env();
  ProcessGroup group(env);
  if (mode == "spin") task.steps = 100000;
  const std::string ready = mode == "spin" ? fmt::format("{}.ready.{}", out, env.rank) : "";
  const Trace trace = train_parallel(task, group, ready);
  group.shutdown();
  if (group.is_main()) write_result(out, trace, initial, task.params);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: dist_driver MODE OUT [MODEL_DIR]\n");
    return 2;
  }
  try {
    return run(argv[1], argv[2], argc > 3 ? argv[3] : "");
  } catch (const std::exception& e) {
    fmt::print(stderr, "ponder: error: {}\n", e.what());
    return 1;
  }
}
