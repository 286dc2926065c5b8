// Test helper: logs one step at a time to a run store and prints each step number on stdout
// only after flush() says it is committed, so the parent knows what must survive a SIGKILL.
#include <cstdio>
#include <string>

#include "store/run_store.h"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  ponder::store::RunStore store(argv[1]);
  store.begin_run({.kind = "crash-test", .seed = 7});
  for (std::int64_t step = 0;; ++step) {
    store.log_metrics(step, {{"reward", step * 0.5}, {"loss", -1.0 * step}});
    std::vector<ponder::store::RolloutRecord> rows(8);
    for (std::size_t i = 0; i < rows.size(); ++i) {
      rows[i].step = step;
      rows[i].group = static_cast<std::int64_t>(i / 4);
      rows[i].completion = std::string(200, 'x') + std::to_string(i);
      rows[i].reward = static_cast<double>(i);
    }
    store.log_rollouts(rows);
    store.flush();
    std::printf("%lld\n", static_cast<long long>(step));
    std::fflush(stdout);
  }
}
