// The `ponder` command table: every sub-command and option is declared once (CLI11), with its
// help text and default, so `--help` is generated from the same declarations.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "dist/process_group.h"

namespace ponder::cli {

int run(int argc, char** argv);
// The arguments `run` was called with (argv[0] first).
const std::vector<std::string>& command_line();

// Data-parallel commands (ranks.cc): `--nproc N` relaunches the command as N local ranks (CPU,
// Gloo) and waits for them; otherwise `body` runs on this process's rank of the group torchrun's
// environment describes (a group of one without it). Ranks other than 0 print errors only; an
// error on one rank releases the group at once, so the others fail fast instead of waiting.
void add_nproc_option(CLI::App& cmd, int& nproc);
void run_ranks(int nproc, const std::function<void(dist::ProcessGroup&)>& body);

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
