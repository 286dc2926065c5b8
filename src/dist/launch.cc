#include "dist/launch.h"

#include <fmt/core.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <map>

#include "core/error.h"
#include "dist/process_group.h"

extern char** environ;

namespace ponder::dist {
namespace {

// A port the kernel reports free on the loopback interface (rank 0's TCPStore binds it next).
std::uint16_t free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error(fmt::format("--nproc: socket(): {}", std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof addr;
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &size) == 0;
  close(fd);
  if (!ok) throw Error(fmt::format("--nproc: no free local port: {}", std::strerror(errno)));
  return ntohs(addr.sin_port);
}

// This process's environment with the rank variables replaced.
std::vector<std::string> rank_environment(int rank, int nproc, std::uint16_t port) {
  const std::map<std::string, std::string> set = {
      {"RANK", std::to_string(rank)},        {"LOCAL_RANK", std::to_string(rank)},
      {"WORLD_SIZE", std::to_string(nproc)}, {"LOCAL_WORLD_SIZE", std::to_string(nproc)},
      {"MASTER_ADDR", "127.0.0.1"},          {"MASTER_PORT", std::to_string(port)}};
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    const std::string entry = *e;
    if (!set.contains(entry.substr(0, entry.find('=')))) env.push_back(entry);
  }
  for (const auto& [name, value] : set) env.push_back(name + "=" + value);
  return env;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

std::string describe(int status) {
  if (WIFSIGNALED(status)) return fmt::format("was killed by signal {}", WTERMSIG(status));
  return fmt::format("exited with status {}", WEXITSTATUS(status));
}

}  // namespace

bool launched_as_rank() { return launch_env().world_size > 1; }

void run_local_ranks(const std::vector<std::string>& args, int nproc) {
  if (nproc < 1) throw Error(fmt::format("--nproc {}: expected at least 1", nproc));
  const std::uint16_t port = free_port();
  std::vector<std::string> argv_strings = args;
  const std::vector<char*> argv = pointers(argv_strings);
  std::map<pid_t, int> ranks;  // running children
  for (int rank = 0; rank < nproc; ++rank) {
    std::vector<std::string> env_strings = rank_environment(rank, nproc, port);
    const std::vector<char*> env = pointers(env_strings);
    pid_t pid = -1;
    if (const int err = posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), env.data())) {
      for (const auto& [running, r] : ranks) kill(running, SIGTERM);
      throw Error(
          fmt::format("--nproc: cannot start rank {} ({}): {}", rank, args[0], std::strerror(err)));
    }
    ranks[pid] = rank;
  }
  std::string failure;
  while (!ranks.empty()) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      throw Error(fmt::format("--nproc: waitpid(): {}", std::strerror(errno)));
    }
    const auto it = ranks.find(pid);
    if (it == ranks.end()) continue;
    const int rank = it->second;
    ranks.erase(it);
    if ((WIFEXITED(status) && WEXITSTATUS(status) == 0) || !failure.empty()) continue;
    failure = fmt::format("rank {} of {} {}", rank, nproc, describe(status));
    for (const auto& [running, r] : ranks) kill(running, SIGTERM);
  }
  if (!failure.empty()) throw Error("--nproc: " + failure);
}

}  // namespace ponder::dist
