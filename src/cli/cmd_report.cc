#include <fmt/core.h>

#include "cli/commands.h"
#include "store/report.h"

namespace ponder::cli {

void add_report_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "report", "Write RUN_DIR/report.html: charts of every metric and a rollout browser");
  static std::string run_dir;
  cmd->add_option("run_dir", run_dir, "Run directory (holds run.db)")->required();
  cmd->callback([] {
    const auto path = store::write_report(run_dir);
    fmt::print("report: {}\n", path.string());
  });
}

}  // namespace ponder::cli
