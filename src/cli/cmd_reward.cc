#include <fmt/core.h>

#include "cli/commands.h"
#include "core/error.h"
#include "core/json_file.h"
#include "rewards/builtin.h"
#include "rewards/reward_eval.h"

namespace ponder::cli {
namespace {

struct RewardEvalArgs {
  rewards::RewardEvalOptions eval;
  std::string options = "{}", compare, compare_options = "{}", out;
  std::size_t show = 20;
};

nlohmann::json json_option(const std::string& text, const std::string& flag) {
  auto j = parse_json_text(text, flag);
  if (!j.is_object()) throw Error(flag + ": expected a JSON object, e.g. '{\"key\": 1}'");
  return j;
}

void run_reward_eval(RewardEvalArgs& a) {
  if (!std::filesystem::is_regular_file(a.eval.data))
    throw Error(a.eval.data.string() + ": no such data file");
  a.eval.reward.options = json_option(a.options, "--options");
  if (!a.compare.empty())
    a.eval.compare =
        rewards::RewardSpec{a.compare, json_option(a.compare_options, "--compare-options")};
  const auto result = rewards::run_reward_eval(a.eval, rewards::builtin_rewards());
  fmt::print("{}", rewards::format_reward_eval(result, a.show));
  if (!a.out.empty()) {
    rewards::write_reward_eval_run(result, a.eval, a.out);
    fmt::print("\nrun: {} (render with `ponder report {}`)\n", a.out, a.out);
  }
}

}  // namespace

void add_reward_command(CLI::App& app) {
  auto* group = app.add_subcommand("reward", "Evaluate rewards on data sets");
  auto* cmd = group->add_subcommand(
      "eval", "Score every JSONL row with a reward: accuracy vs a label, latency, disagreements");
  static RewardEvalArgs a;
  cmd->add_option("--reward", a.eval.reward.name, "Reward name: math, format, overlong, code")
      ->required();
  cmd->add_option("--options", a.options, "Reward options as a JSON object");
  cmd->add_option("--data", a.eval.data, "JSONL file, one sample per row")->required();
  cmd->add_option("--pred-field", a.eval.pred_field,
                  "Field with the model output (default: completion/prediction/response/output)");
  cmd->add_option("--gold-field", a.eval.gold_field,
                  "Field passed as the reference (default: the whole row)");
  cmd->add_option("--label-field", a.eval.label_field,
                  "0/1 field the verdicts are checked against (default: label/expected/correct)");
  cmd->add_option("--category-field", a.eval.category_field,
                  "Field to break results down by (default: category/type/level/subject)");
  cmd->add_option("--compare", a.compare, "A second reward to run side by side");
  cmd->add_option("--compare-options", a.compare_options, "Options of the --compare reward");
  cmd->add_option("--out", a.out, "Run directory to write rows and metrics into");
  cmd->add_option("--limit", a.eval.limit, "Score only the first N rows (0: all)");
  cmd->add_option("--threads", a.eval.threads, "Worker threads (0: one per core)");
  cmd->add_option("--show", a.show, "Disagreements to list")->capture_default_str();
  cmd->callback([] { run_reward_eval(a); });
  group->require_subcommand(1);
}

}  // namespace ponder::cli
