#include <fmt/core.h>

#include "cli/commands.h"
#include "core/error.h"
#include "store/report.h"

namespace ponder::cli {

void add_report_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "report",
      "Write RUN_DIR/report.html: charts of every metric and a rollout browser; with several run "
      "directories, one page overlaying their metrics (one chart per metric, a line per run)");
  static std::vector<std::string> run_dirs;
  static std::string out;
  cmd->add_option("run_dir", run_dirs, "Run directories (each holds run.db)")->required();
  cmd->add_option("-o,--out", out, "Comparison page of several runs (default: compare.html)");
  cmd->callback([] {
    if (run_dirs.size() == 1 && !out.empty())
      throw Error(
          "report: -o names the comparison page of several runs; one run's report is "
          "RUN_DIR/report.html");
    const auto path = run_dirs.size() == 1
                          ? store::write_report(run_dirs[0])
                          : store::write_comparison({run_dirs.begin(), run_dirs.end()},
                                                    out.empty() ? "compare.html" : out);
    fmt::print("report: {}\n", path.string());
  });
}

}  // namespace ponder::cli
