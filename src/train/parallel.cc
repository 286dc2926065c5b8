#include "train/parallel.h"

#include <c10/util/Exception.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "core/log.h"
#include "dist/gather.h"

namespace ponder::train {

namespace {

// Drops LibTorch's warnings (TORCH_WARN), which rank 0 prints for every rank.
class SilentWarnings : public c10::WarningHandler {
 public:
  void process(const c10::Warning&) override {}
};

}  // namespace

void quiet_unless_main(const dist::ProcessGroup& group) {
  if (group.is_main()) return;
  log::set_level(log::Level::kError);
  static SilentWarnings silent;
  c10::WarningUtils::set_warning_handler(&silent);
}

std::vector<std::string> group_rank_facts(const std::vector<std::string>& facts) {
  std::vector<std::pair<std::string, std::vector<std::size_t>>> groups;  // facts, their ranks
  for (std::size_t r = 0; r < facts.size(); ++r) {
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](const auto& g) { return g.first == facts[r]; });
    if (it == groups.end()) it = groups.insert(groups.end(), {facts[r], {}});
    it->second.push_back(r);
  }
  std::vector<std::string> lines;
  for (const auto& [text, ranks] : groups) {
    std::vector<std::string> runs;  // consecutive ranks as "a-b"
    for (std::size_t i = 0; i < ranks.size();) {
      std::size_t j = i;
      while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
      runs.push_back(j == i ? fmt::format("{}", ranks[i])
                            : fmt::format("{}-{}", ranks[i], ranks[j]));
      i = j + 1;
    }
    lines.push_back(fmt::format("{} {}: {}", ranks.size() == 1 ? "rank" : "ranks",
                                fmt::join(runs, ", "), text));
  }
  return lines;
}

void log_rank_facts(dist::ProcessGroup& group, const std::string& facts) {
  if (group.world_size() == 1) return;
  const auto all = dist::all_gather_strings(group, facts);
  if (group.is_main())
    for (const auto& line : group_rank_facts(all)) log::info("{}", line);
}

std::string fresh_run_dir(dist::ProcessGroup& group, const std::string& run_dir) {
  return dist::from_main(group, group.is_main() ? fresh_run_dir(run_dir) : std::string());
}

std::optional<std::filesystem::path> latest_checkpoint(dist::ProcessGroup& group,
                                                       const std::filesystem::path& run_dir) {
  std::string path;
  if (group.is_main())
    if (const auto found = latest_checkpoint(run_dir)) path = found->string();
  path = dist::from_main(group, path);
  return path.empty() ? std::nullopt : std::optional<std::filesystem::path>(path);
}

ModelFiles resolve_model(dist::ProcessGroup& group, const ModelSection& model,
                         const std::filesystem::path& run_dir, std::int64_t seed) {
  std::optional<ModelFiles> files;
  if (group.is_main() || !model.path.empty()) files = resolve_model(model, run_dir, seed);
  group.barrier();
  if (!files) {  // rank 0 has written the random init
    ModelSection written = model;
    written.path = (run_dir / "init").string();
    files = resolve_model(written, run_dir, seed);
  }
  return *files;
}

std::unique_ptr<store::RunStore> open_store_on_main(const dist::ProcessGroup& group,
                                                    const std::filesystem::path& run_dir) {
  if (!group.is_main()) return nullptr;
  std::filesystem::create_directories(run_dir);
  return std::make_unique<store::RunStore>(run_dir);
}

std::filesystem::path save_checkpoint(dist::ProcessGroup& group, dist::DataParallel& optimizer,
                                      const std::filesystem::path& run_dir,
                                      const ParallelCheckpoint& contents, store::RunStore* store) {
  const AdamWState full = optimizer.full_state();
  std::string dir;
  if (group.is_main()) {
    store->flush();  // everything up to this step is committed before the checkpoint exists
    dir = save_checkpoint(run_dir, {contents.policy, contents.trainable_names, full, contents.state,
                                    contents.tokenizer_dir, contents.generator})
              .string();
    store->log_checkpoint({.step = contents.state.step, .path = dir});
  }
  return dist::from_main(group, dir);  // after rank 0 wrote it
}

TrainerState load_checkpoint(const std::filesystem::path& checkpoint,
                             const std::vector<std::string>& trainable_names,
                             const std::vector<at::Tensor>& trainable,
                             dist::DataParallel& optimizer) {
  AdamWState full = adamw_state_like(trainable);
  const TrainerState state = load_trainer_state(checkpoint, trainable_names, full);
  optimizer.load_state(full);
  return state;
}

}  // namespace ponder::train
