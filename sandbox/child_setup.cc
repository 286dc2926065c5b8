#include "sandbox/child_setup.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

// Everything here runs after fork() in a child of a multi-threaded process, so it sticks to
// async-signal-safe system calls: no allocation, no locks, no exceptions, no glibc fork().
namespace ponder::sandbox::detail {
namespace {

// errno and a static description (no allocation after fork).
struct ChildFailure {
  int error = 0;
  const char* what = nullptr;
};

ChildFailure failure(const char* what) { return {errno == 0 ? EINVAL : errno, what}; }

// fork() without glibc's atfork handlers, whose locks may be held by threads that do not exist
// in this child.
pid_t raw_fork() {
  return static_cast<pid_t>(syscall(SYS_clone, SIGCHLD, nullptr, nullptr, nullptr, nullptr));
}

std::int64_t now_us() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1000000 + ts.tv_nsec / 1000;
}

bool write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    ssize_t n = write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

bool write_proc_file(const char* path, const std::string& text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = write_all(fd, text.data(), text.size());
  close(fd);
  return ok;
}

void close_all_except(int keep) {
  if (keep > 0) close_range(0, static_cast<unsigned>(keep) - 1, 0);
  close_range(static_cast<unsigned>(keep) + 1, ~0U, 0);
}

void wait_for(pid_t pid, int* status, rusage* usage) {
  while (wait4(pid, status, 0, usage) < 0 && errno == EINTR) {
  }
}

// Root could read every root-owned host file that is visible; the sandbox runs as nobody.
ChildFailure drop_root(const ChildPlan& plan) {
  if (setgroups(0, nullptr) != 0) return failure("setgroups([])");
  if (setresgid(plan.outer_gid, plan.outer_gid, plan.outer_gid) != 0) return failure("setresgid");
  if (setresuid(plan.outer_uid, plan.outer_uid, plan.outer_uid) != 0) return failure("setresuid");
  // Changing uid made us non-dumpable, which would make /proc/self/uid_map unwritable.
  if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) return failure("prctl(PR_SET_DUMPABLE)");
  return {};
}

ChildFailure enter_namespaces(const ChildPlan& plan) {
  if (plan.drop_root) {
    if (ChildFailure f = drop_root(plan); f.what) return f;
  }
  // Armed after the uid change, which clears it; the parent may already be gone by then.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) return failure("prctl(PR_SET_PDEATHSIG)");
  if (getppid() != plan.parent_pid) _exit(1);
  constexpr int kFlags =
      CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS;
  if (unshare(kFlags) != 0) {
    return failure("unshare(user, mount, pid, net, ipc, uts namespaces) was refused by the kernel");
  }
  if (!write_proc_file("/proc/self/setgroups", "deny")) return failure("write setgroups");
  if (!write_proc_file("/proc/self/uid_map", plan.uid_map)) return failure("write uid_map");
  if (!write_proc_file("/proc/self/gid_map", plan.gid_map)) return failure("write gid_map");
  return {};
}

// The outer child only waits: init is its child, and killing the outer child kills init
// (PR_SET_PDEATHSIG), which tears down the whole PID namespace.
[[noreturn]] void wait_for_init(const ChildPlan& plan, pid_t init) {
  close_all_except(plan.lifeline_write_fd);
  int status = 0;
  wait_for(init, &status, nullptr);
  _exit(0);
}

ChildFailure become_init(const ChildPlan& plan) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) return failure("prctl(PR_SET_PDEATHSIG)");
  // The outer child holds the write end: a hang-up means it died before PDEATHSIG was armed.
  close(plan.lifeline_write_fd);
  pollfd lifeline{.fd = plan.lifeline_read_fd, .events = POLLIN, .revents = 0};
  if (poll(&lifeline, 1, 0) != 0) _exit(1);
  close(plan.lifeline_read_fd);
  if (sethostname("sandbox", 7) != 0) return failure("sethostname");
  // init is a copy of the host process (its memory, its environment): the program, same uid,
  // must not read it through /proc/1/{mem,environ}. execve makes the program dumpable again.
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return failure("prctl(PR_SET_DUMPABLE, 0)");
  return {};
}

ChildFailure apply_mount_step(const MountStep& step) {
  const char* target = step.target.c_str();
  switch (step.kind) {
    case MountKind::kDir:
      if (mkdir(target, step.mode) != 0 || chmod(target, step.mode) != 0) return failure("mkdir");
      return {};
    case MountKind::kWritableDir:
      if (mkdir(target, step.mode) != 0 || chmod(target, step.mode) != 0 ||
          mount(target, target, nullptr, MS_BIND, nullptr) != 0) {
        return failure("writable dir");
      }
      return {};
    case MountKind::kEmptyFile: {
      int fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, step.mode);
      if (fd < 0) return failure("create mount point file");
      close(fd);
      return {};
    }
    case MountKind::kSymlink:
      if (symlink(step.source.c_str(), target) != 0) return failure("symlink");
      return {};
    case MountKind::kBindReadOnly:
    case MountKind::kBindDevice: {
      if (mount(step.source.c_str(), target, nullptr, MS_BIND | MS_REC, nullptr) != 0) {
        return failure("bind mount of a host path");
      }
      unsigned long flags = MS_REMOUNT | MS_BIND | MS_NOSUID | step.locked_flags;
      flags |= step.kind == MountKind::kBindDevice ? MS_NOEXEC : MS_RDONLY | MS_NODEV;
      if (mount(nullptr, target, nullptr, flags, nullptr) != 0) {
        return failure("read-only remount of a host path");
      }
      return {};
    }
    case MountKind::kProc:
      if (mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
        return failure("mount proc");
      }
      return {};
  }
  return {EINVAL, "unknown mount step"};
}

ChildFailure build_root(const ChildPlan& plan) {
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return failure("make mounts private");
  }
  const char* root = plan.staging_root.c_str();
  if (mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, plan.tmpfs_options.c_str()) != 0) {
    return failure("mount tmpfs root");
  }
  for (const MountStep& step : *plan.mounts) {
    if (ChildFailure f = apply_mount_step(step); f.what) return f;
  }
  // pivot_root(".", ".") stacks the old root on the new one; detaching it leaves only ours.
  if (chdir(root) != 0) return failure("chdir to new root");
  if (syscall(SYS_pivot_root, ".", ".") != 0) return failure("pivot_root");
  if (umount2(".", MNT_DETACH) != 0) return failure("detach old root");
  if (chdir("/") != 0) return failure("chdir /");
  return {};
}

bool create_file(const char* path, const std::string& content, unsigned mode) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return false;
  bool ok = write_all(fd, content.data(), content.size());
  return close(fd) == 0 && ok;
}

ChildFailure write_files(const ChildPlan& plan, int* stdin_fd) {
  for (const PlannedFile& file : plan.files) {
    if (!create_file(file.path.c_str(), *file.content, file.mode)) {
      return failure("write program file (disk limit too small?)");
    }
  }
  // stdin is an unlinked file rather than a pipe: no writer to keep alive, no deadlock.
  // Opened read-only, so the root can still be remounted read-only.
  const char* stdin_path = plan.stdin_path.c_str();
  if (!create_file(stdin_path, *plan.stdin_data, 0600)) return failure("write stdin file");
  *stdin_fd = open(stdin_path, O_RDONLY | O_CLOEXEC);
  if (*stdin_fd < 0 || unlink(stdin_path) != 0) return failure("open stdin file");
  return {};
}

ChildFailure set_limit(int resource, std::int64_t soft, std::int64_t hard) {
  rlimit limit{static_cast<rlim_t>(soft), static_cast<rlim_t>(hard)};
  if (setrlimit(resource, &limit) != 0) return failure("setrlimit");
  return {};
}

ChildFailure set_limits(const ChildPlan& plan) {
  const std::pair<int, std::int64_t> limits[] = {
      {RLIMIT_AS, plan.memory_bytes},
      {RLIMIT_NPROC, plan.max_processes},
      {RLIMIT_FSIZE, plan.max_file_bytes},
      {RLIMIT_NOFILE, plan.max_open_files},
      {RLIMIT_CORE, 0},
      {RLIMIT_MEMLOCK, 0},
      {RLIMIT_MSGQUEUE, 0},
  };
  for (auto [resource, value] : limits) {
    if (ChildFailure f = set_limit(resource, value, value); f.what) return f;
  }
  // SIGXCPU at the limit, SIGKILL a second later if it is caught.
  return set_limit(RLIMIT_CPU, plan.cpu_seconds, plan.cpu_seconds + 1);
}

// The program's own process, just before Boost.Process calls execve.
ChildFailure prepare_program(const ChildPlan& plan, int stdin_fd) {
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &default_action, nullptr);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  if (setsid() < 0) return failure("setsid");
  if (dup2(stdin_fd, STDIN_FILENO) < 0) return failure("dup2 stdin");
  if (chdir(plan.work_dir.c_str()) != 0) return failure("chdir to the work dir");
  if (ChildFailure f = set_limits(plan); f.what) return f;
  close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
  if (!plan.isolate) return {};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return failure("prctl(PR_SET_NO_NEW_PRIVS)");
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, plan.seccomp) != 0) {
    return failure("installing the seccomp filter was refused by the kernel");
  }
  return {};
}

void kill_everything(const ChildPlan& plan, pid_t program) {
  // Inside the PID namespace, -1 is every process but init; unconfined, the program's session.
  kill(plan.isolate ? -1 : -program, SIGKILL);
}

InitReport supervise(const ChildPlan& plan, pid_t program, const sigset_t& sigchld) {
  InitReport report;
  report.magic = kInitReportMagic;
  struct stat pid_namespace {};
  if (plan.isolate && stat("/proc/self/ns/pid", &pid_namespace) == 0) {
    report.pid_namespace = pid_namespace.st_ino;
  }
  const std::int64_t start = now_us();
  rusage usage{};
  for (bool done = false; !done;) {
    for (pid_t pid; !done && (pid = wait4(-1, &report.wait_status, WNOHANG, &usage)) > 0;) {
      done = pid == program;
    }
    if (done) break;
    std::int64_t left = start + plan.wall_us - now_us();
    if (left <= 0) {
      report.timed_out = 1;
      kill_everything(plan, program);
      wait_for(program, &report.wait_status, &usage);
      break;
    }
    timespec timeout{left / 1000000, (left % 1000000) * 1000};
    sigtimedwait(&sigchld, nullptr, &timeout);
  }
  report.wall_us = now_us() - start;
  kill_everything(plan, program);
  report.cpu_us = (std::int64_t{usage.ru_utime.tv_sec} + usage.ru_stime.tv_sec) * 1000000 +
                  usage.ru_utime.tv_usec + usage.ru_stime.tv_usec;
  report.max_rss_kb = usage.ru_maxrss;
  // Children reaped by the program (a compiler's cc1plus) count towards its CPU time too.
  const int status = report.wait_status;
  if (report.cpu_us >= plan.cpu_seconds * 1000000 ||
      (WIFSIGNALED(status) && WTERMSIG(status) == SIGXCPU)) {
    report.timed_out = 1;
  }
  return report;
}

[[noreturn]] void report_and_exit(const ChildPlan& plan, InitReport report) {
  const int out = plan.status_write_fd;
  const bool succeeded = WIFEXITED(report.wait_status) && WEXITSTATUS(report.wait_status) == 0;
  int collect_fd = -1;
  if (!plan.collect_path.empty() && succeeded && !report.timed_out) {
    collect_fd = open(plan.collect_path.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat info {};
    if (collect_fd < 0 || fstat(collect_fd, &info) != 0) {
      report.collect_errno = errno;
    } else if (static_cast<std::uint64_t>(info.st_size) > plan.collect_cap) {
      report.collect_errno = EFBIG;
    } else {
      report.collected_size = static_cast<std::uint64_t>(info.st_size);
    }
  }
  write_all(out, reinterpret_cast<const char*>(&report), sizeof(report));
  char buffer[65536];
  for (std::uint64_t left = report.collected_size; left > 0;) {
    ssize_t n = read(collect_fd, buffer, sizeof(buffer));
    if (n <= 0 || !write_all(out, buffer, static_cast<std::size_t>(n))) break;
    left -= static_cast<std::uint64_t>(n);
  }
  _exit(0);
}

[[noreturn]] void report_failure(const ChildPlan& plan, ChildFailure failure) {
  SetupFailure header{kSetupFailureMagic, failure.error,
                      static_cast<std::uint32_t>(std::strlen(failure.what))};
  write_all(plan.status_write_fd, reinterpret_cast<const char*>(&header), sizeof(header));
  write_all(plan.status_write_fd, failure.what, header.length);
  _exit(127);
}

ChildFailure set_up(const ChildPlan& plan) {
  umask(022);
  if (plan.isolate) {
    if (ChildFailure f = enter_namespaces(plan); f.what) return f;
    pid_t init = raw_fork();
    if (init < 0) return failure("fork of the sandbox init");
    if (init > 0) wait_for_init(plan, init);
    if (ChildFailure f = become_init(plan); f.what) return f;
    if (ChildFailure f = build_root(plan); f.what) return f;
  }
  int stdin_fd = -1;
  if (ChildFailure f = write_files(plan, &stdin_fd); f.what) return f;
  // Only the writable dirs (their own mounts) stay writable; they share the tmpfs size.
  if (plan.isolate &&
      mount(nullptr, "/", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV,
            nullptr) != 0) {
    return failure("read-only remount of the sandbox root");
  }
  sigset_t sigchld;
  sigemptyset(&sigchld);
  sigaddset(&sigchld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &sigchld, nullptr);
  pid_t program = raw_fork();
  if (program == 0) return prepare_program(plan, stdin_fd);
  if (program < 0) return failure("fork of the program");
  // Drop Boost.Process's exec-error pipe and the program's stdio: EOF on them now tracks the
  // program alone.
  close_all_except(plan.status_write_fd);
  report_and_exit(plan, supervise(plan, program, sigchld));
}

}  // namespace

void enter_sandbox(const ChildPlan& plan) noexcept {
  if (ChildFailure failure = set_up(plan); failure.what) report_failure(plan, failure);
}

}  // namespace ponder::sandbox::detail
