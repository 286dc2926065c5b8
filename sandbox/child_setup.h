// The part of a sandbox run that executes inside the forked child, between fork and execve:
// namespaces, the private root, the supervising init process, rlimits and seccomp.
#pragma once

#include <linux/filter.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ponder::sandbox::detail {

// What init reports on the status pipe when the program has ended; `collected_size` bytes of
// the collected file follow it.
struct InitReport {
  std::uint32_t magic = 0;
  std::int32_t wait_status = 0;
  std::int32_t timed_out = 0;
  std::int32_t collect_errno = 0;
  std::int64_t wall_us = 0;
  std::int64_t cpu_us = 0;
  std::int64_t max_rss_kb = 0;
  std::uint64_t collected_size = 0;
  std::uint64_t pid_namespace = 0;
};
inline constexpr std::uint32_t kInitReportMagic = 0x706f6e64;

// What any process of the sandbox reports instead when setting it up failed; `length` bytes
// of message follow. Nothing was run.
struct SetupFailure {
  std::uint32_t magic = 0;
  std::int32_t error = 0;
  std::uint32_t length = 0;
};
inline constexpr std::uint32_t kSetupFailureMagic = 0x6661696c;

enum class MountKind {
  kDir,
  kWritableDir,  // bound onto itself, so it stays writable once the root is read-only
  kBindReadOnly,
  kBindDevice,
  kEmptyFile,
  kSymlink,
  kProc
};

// One step building the new root; paths are absolute host paths under the staging mount.
struct MountStep {
  MountKind kind;
  std::string target;
  std::string source;              // bind source or symlink text
  unsigned long locked_flags = 0;  // flags of the source mount a remount must keep
  unsigned mode = 0755;
};

struct PlannedFile {
  std::string path;  // absolute (inside the new root once pivoted)
  const std::string* content;
  unsigned mode;
};

struct ChildPlan {
  bool isolate = true;
  pid_t parent_pid = 0;  // the process running the sandbox: if it dies, the run dies with it
  int status_write_fd = -1;
  int lifeline_read_fd = -1;
  int lifeline_write_fd = -1;
  uid_t outer_uid = 0;
  gid_t outer_gid = 0;
  bool drop_root = false;
  std::string uid_map, gid_map;
  std::string staging_root;  // where the new root's tmpfs is mounted before pivot_root
  std::string tmpfs_options;
  const std::vector<MountStep>* mounts = nullptr;
  std::vector<PlannedFile> files;
  std::string work_dir;    // cwd of the program
  std::string stdin_path;  // created, filled, opened and unlinked by init
  const std::string* stdin_data = nullptr;
  std::string collect_path;  // empty: collect nothing
  std::uint64_t collect_cap = 0;
  std::int64_t wall_us = 0;
  std::int64_t cpu_seconds = 0;
  std::int64_t memory_bytes = 0;
  std::int64_t max_processes = 0;
  std::int64_t max_file_bytes = 0;
  std::int64_t max_open_files = 0;
  const sock_fprog* seccomp = nullptr;
};

// Called in the process Boost.Process forked. Returns only in the process that must go on to
// execve the program; every supervising process (the outer child, init) stays here and
// _exits, and any failure is written to the status pipe as a SetupFailure before _exit.
void enter_sandbox(const ChildPlan& plan) noexcept;

}  // namespace ponder::sandbox::detail
