// The `ponder` command table: every sub-command and option is declared once (CLI11), with its
// help text and default, so `--help` is generated from the same declarations.
#pragma once

#include <CLI/CLI.hpp>

namespace ponder::cli {

int run(int argc, char** argv);

// Each adds one sub-command (or group) to the app; defined in cmd_*.cc next to this file.
void add_version_command(CLI::App& app);
void add_report_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_model_commands(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_sandbox_command(CLI::App& app);
void add_reward_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_sft_command(CLI::App& app);
void add_rm_command(CLI::App& app);
void add_distill_command(CLI::App& app);

}  // namespace ponder::cli
