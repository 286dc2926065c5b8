#include "sandbox/root_layout.h"

#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <filesystem>

namespace ponder::sandbox::detail {
namespace {

// Toolchain paths: binaries, libraries, headers, the dynamic loader's cache. Deliberately not
// /etc as a whole (shadow, credentials), /home, /root, /work, /var or /run.
constexpr const char* kHostPaths[] = {
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
};
constexpr const char* kDevices[] = {"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"};

std::string staged(const std::string& path) { return kStagingRoot + path; }

// A remount inside a user namespace must keep the flags the host mount was locked with.
unsigned long locked_flags(const std::string& path) {
  struct statvfs info {};
  if (statvfs(path.c_str(), &info) != 0) return 0;
  const std::pair<unsigned long, unsigned long> mapping[] = {
      {ST_NOSUID, MS_NOSUID},   {ST_NODEV, MS_NODEV},           {ST_NOEXEC, MS_NOEXEC},
      {ST_NOATIME, MS_NOATIME}, {ST_NODIRATIME, MS_NODIRATIME}, {ST_RELATIME, MS_RELATIME},
      {ST_RDONLY, MS_RDONLY}};
  unsigned long flags = 0;
  for (auto [st, ms] : mapping) {
    if (info.f_flag & st) flags |= ms;
  }
  return flags;
}

void add_host_path(std::vector<MountStep>& steps, const std::string& path) {
  struct stat info {};
  if (lstat(path.c_str(), &info) != 0) return;
  if (S_ISLNK(info.st_mode)) {
    steps.push_back({MountKind::kSymlink, staged(path), std::filesystem::read_symlink(path)});
    return;
  }
  const bool dir = S_ISDIR(info.st_mode);
  steps.push_back({dir ? MountKind::kDir : MountKind::kEmptyFile, staged(path), "", 0, 0755});
  steps.push_back({MountKind::kBindReadOnly, staged(path), path, locked_flags(path)});
}

std::vector<MountStep> build_layout() {
  std::vector<MountStep> steps;
  auto dir = [&](const std::string& path, unsigned mode) {
    steps.push_back({MountKind::kDir, staged(path), "", 0, mode});
  };
  dir("/etc", 0755);
  for (const char* path : kHostPaths) add_host_path(steps, path);
  dir("/dev", 0755);
  for (const char* device : kDevices) {
    steps.push_back({MountKind::kEmptyFile, staged(device), "", 0, 0666});
    steps.push_back({MountKind::kBindDevice, staged(device), device, locked_flags(device)});
  }
  const std::pair<const char*, const char*> dev_links[] = {{"/dev/fd", "/proc/self/fd"},
                                                           {"/dev/stdin", "/proc/self/fd/0"},
                                                           {"/dev/stdout", "/proc/self/fd/1"},
                                                           {"/dev/stderr", "/proc/self/fd/2"}};
  for (auto [link, target] : dev_links)
    steps.push_back({MountKind::kSymlink, staged(link), target});
  steps.push_back({MountKind::kWritableDir, staged("/dev/shm"), "", 0, 01777});
  dir("/proc", 0555);
  steps.push_back({MountKind::kProc, staged("/proc")});
  steps.push_back({MountKind::kWritableDir, staged("/tmp"), "", 0, 01777});
  steps.push_back({MountKind::kWritableDir, staged(kWorkDir), "", 0, 0755});
  return steps;
}

}  // namespace

const std::vector<MountStep>& root_layout() {
  static const std::vector<MountStep> layout = build_layout();
  return layout;
}

}  // namespace ponder::sandbox::detail
