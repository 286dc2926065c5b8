#include "sandbox/seccomp_filter.h"

#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"

namespace ponder::sandbox::detail {
namespace {

// System calls a test program never needs and that reach beyond the program: tracing other
// processes, (un)mounting and namespaces, kernel keyrings/modules/BPF, clocks, raw I/O.
constexpr const char* kDeniedSyscalls[] = {
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "kexec_load",
    "kexec_file_load",
    "bpf",
    "perf_event_open",
    "keyctl",
    "add_key",
    "request_key",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "syslog",
    "userfaultfd",
    "open_by_handle_at",
    "name_to_handle_at",
    "iopl",
    "ioperm",
    "quotactl",
    "fanotify_init",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "sethostname",
    "setdomainname",
    "lookup_dcookie",
    "vhangup",
    "personality",
};

constexpr unsigned long kNamespaceFlags[] = {CLONE_NEWUSER,  CLONE_NEWNS,  CLONE_NEWPID,
                                             CLONE_NEWNET,   CLONE_NEWIPC, CLONE_NEWUTS,
                                             CLONE_NEWCGROUP};

void check(int rc, const std::string& what) {
  if (rc < 0) throw Error("sandbox: building the seccomp filter: " + what + ": " + strerror(-rc));
}

void add_rules(scmp_filter_ctx ctx) {
  const uint32_t deny = SCMP_ACT_ERRNO(EPERM);
  for (const char* name : kDeniedSyscalls) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr != __NR_SCMP_ERROR) check(seccomp_rule_add(ctx, deny, nr, 0), name);
  }
  for (unsigned long flag : kNamespaceFlags) {
    check(seccomp_rule_add(ctx, deny, SCMP_SYS(clone), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag)),
          "clone namespace flags");
  }
  // clone3 passes its flags in memory, out of BPF's reach: ENOSYS makes libc fall back to clone.
  check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0), "clone3");
  // Only Unix sockets (multiprocessing, socketpair); no inet, raw, packet or netlink sockets.
  check(seccomp_rule_add(ctx, deny, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_NE, AF_UNIX)), "socket");
}

std::vector<sock_filter> compile_filter() {
  std::unique_ptr<void, decltype(&seccomp_release)> ctx(seccomp_init(SCMP_ACT_ALLOW),
                                                        &seccomp_release);
  if (!ctx) throw Error("sandbox: seccomp_init failed");
  // The child sets no_new_privs itself, right before installing the program.
  check(seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0), "attribute NNP");
  add_rules(ctx.get());
  int fd = memfd_create("ponder-seccomp", MFD_CLOEXEC);
  if (fd < 0) throw Error(std::string("sandbox: memfd_create: ") + strerror(errno));
  check(seccomp_export_bpf(ctx.get(), fd), "export");
  off_t size = lseek(fd, 0, SEEK_END);
  std::vector<sock_filter> program(static_cast<std::size_t>(size) / sizeof(sock_filter));
  bool ok = size > 0 && pread(fd, program.data(), static_cast<std::size_t>(size), 0) == size;
  close(fd);
  if (!ok) throw Error("sandbox: reading back the exported seccomp filter failed");
  return program;
}

}  // namespace

const sock_fprog& seccomp_program() {
  static const std::vector<sock_filter> filter = compile_filter();
  static const sock_fprog program{static_cast<unsigned short>(filter.size()),
                                  const_cast<sock_filter*>(filter.data())};
  return program;
}

}  // namespace ponder::sandbox::detail
