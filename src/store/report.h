// `ponder report`: turns a run directory's run.db into one self-contained HTML file — a chart for
// every logged metric and a rollout browser — or overlays several runs' metrics in one page.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "store/run_store.h"

namespace ponder::store {

std::string render_report(const RunStore& store, const std::string& title);
// Writes RUN_DIR/report.html and returns its path.
std::filesystem::path write_report(const std::filesystem::path& run_dir);

// A run of a comparison: its label in legends and tables, and its store.
struct ComparedRun {
  std::string label;
  const RunStore* store;
};
// One chart per metric of any run with a line per run (shared axes), the recipe fields that
// differ between the runs, and each metric's mean over its last values per run with the change
// against the first run.
std::string render_comparison(const std::vector<ComparedRun>& runs, const std::string& title);
// Writes the comparison of `run_dirs` (at least two) to `out` and returns `out`.
std::filesystem::path write_comparison(const std::vector<std::filesystem::path>& run_dirs,
                                       const std::filesystem::path& out);

}  // namespace ponder::store
