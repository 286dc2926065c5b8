// `ponder report`: turns a run directory's run.db into one self-contained HTML file — a chart for
// every logged metric and a rollout browser (best and worst samples of each step with details).
#pragma once

#include <filesystem>
#include <string>

#include "store/run_store.h"

namespace ponder::store {

std::string render_report(const RunStore& store, const std::string& title);
// Writes RUN_DIR/report.html and returns its path.
std::filesystem::path write_report(const std::filesystem::path& run_dir);

}  // namespace ponder::store
