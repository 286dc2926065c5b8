// Test helper: loads a checkpoint and prints resident memory before and at peak (kB) as JSON, so
// the test can bound what loading costs beyond the process's own baseline.
#include <cstdio>
#include <fstream>
#include <string>

#include "model/causal_lm.h"

namespace {

long status_kb(const std::string& key) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(key + ":", 0) == 0) return std::stol(line.substr(key.size() + 1));
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  at::empty({1});  // initialise LibTorch before the baseline
  const long baseline = status_kb("VmRSS");
  auto model = ponder::model::load_causal_lm(argv[1], at::kCPU, at::kFloat);
  std::printf("{\"baseline_kb\": %ld, \"peak_kb\": %ld, \"parameters\": %zu}\n", baseline,
              status_kb("VmHWM"), model->named_parameters().size());
  return 0;
}
