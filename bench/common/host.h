// What the CPU benchmarks print as their device: the CPU model, core count and load average, so a
// result from a shared machine says how shared it was.
#pragma once

#include <fmt/core.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace ponder::bench {

inline std::string cpu_description() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line, model = "unknown CPU";
  while (std::getline(cpuinfo, line))
    if (line.starts_with("model name")) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  std::ifstream loadavg("/proc/loadavg");
  double one = 0, five = 0;
  loadavg >> one >> five;
  return fmt::format("{}, {} cores, load average {:.1f} (1 min) {:.1f} (5 min)", model,
                     sysconf(_SC_NPROCESSORS_ONLN), one, five);
}

}  // namespace ponder::bench
