// Hostile programs against the sandbox: each test checks what the program could do (from its
// own output), that the run ended within its limit, and that the host is unchanged: no process
// of the run's PID namespace survives, a canary directory and a sentinel process are intact.
#include <arpa/inet.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "sandbox/sandbox.h"

namespace ponder::sandbox {
namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Host processes still living in the given PID namespace.
int survivors(std::uint64_t pid_namespace) {
  int count = 0;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    struct stat info {};
    if (stat((entry.path() / "ns/pid").c_str(), &info) == 0 && info.st_ino == pid_namespace &&
        std::isdigit(entry.path().filename().string()[0])) {
      ++count;
    }
  }
  return count;
}

class Containment : public ::testing::Test {
 protected:
  void SetUp() override {
    canary_dir_ = fs::temp_directory_path() /
                  ("ponder-canary-" + std::to_string(getpid()) + "-" +
                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(canary_dir_);
    std::ofstream(canary_dir_ / "canary") << "untouched";
    sentinel_ = fork();
    if (sentinel_ == 0) {
      execl("/bin/sleep", "sleep", "600", nullptr);
      _exit(127);
    }
  }
  void TearDown() override {
    kill(sentinel_, SIGKILL);
    waitpid(sentinel_, nullptr, 0);
    fs::remove_all(canary_dir_);
  }

  // Runs the program, checks it ended within `max_seconds` and that the host is unchanged.
  RunResult contained(const Program& program, const Limits& limits, double max_seconds) {
    auto start = std::chrono::steady_clock::now();
    RunResult result = sandbox_.run(program, limits);
    double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_LT(elapsed, max_seconds) << "the run outlived its limit";
    expect_host_unchanged(result);
    return result;
  }

  void expect_host_unchanged(const RunResult& result) {
    EXPECT_NE(result.pid_namespace, 0u);
    EXPECT_EQ(survivors(result.pid_namespace), 0) << "a process of the run is still alive";
    EXPECT_EQ(read_file(canary_dir_ / "canary"), "untouched");
    EXPECT_EQ(std::distance(fs::directory_iterator(canary_dir_), fs::directory_iterator{}), 1);
    EXPECT_EQ(kill(sentinel_, 0), 0) << "the host sentinel process was killed";
    EXPECT_EQ(waitpid(sentinel_, nullptr, WNOHANG), 0);
  }

  static Program python(std::string source) { return {.language = "python", .source = source}; }
  static Program c(std::string source) { return {.language = "c", .source = source}; }

  Sandbox sandbox_;
  fs::path canary_dir_;
  pid_t sentinel_ = -1;
};

Limits quick(double wall_s = 3, double cpu_s = 2) {
  return {.wall_s = wall_s, .cpu_s = cpu_s, .memory_mb = 256, .max_processes = 32};
}

TEST_F(Containment, ForkBombIsCappedAndReaped) {
  RunResult r = contained(python("import os\n"
                                 "while True:\n"
                                 "    try:\n"
                                 "        os.fork()\n"
                                 "    except OSError:\n"
                                 "        pass\n"),
                          quick(2), 6);
  EXPECT_TRUE(r.timed_out);
}

TEST_F(Containment, ForkBombInC) {
  RunResult r = contained(c("#include <unistd.h>\nint main(){for(;;) fork();}"), quick(2), 8);
  EXPECT_TRUE(r.timed_out);
}

TEST_F(Containment, MemoryBombFailsAllocation) {
  RunResult r = contained(python("x = []\n"
                                 "while True:\n"
                                 "    x.append(bytearray(10**7))\n"),
                          quick(), 5);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.stderr_data.find("MemoryError"), std::string::npos) << r.stderr_data;
  EXPECT_LT(r.max_rss_kb, 300 * 1024);
}

TEST_F(Containment, MemoryBombInCTouchingPages) {
  RunResult r =
      contained(c("#include <stdlib.h>\n#include <string.h>\n#include <stdio.h>\n"
                  "int main(){for(long i=0;;++i){char*p=malloc(1<<20);"
                  "if(!p){printf(\"oom after %ld MB\\n\",i);return 3;}memset(p,1,1<<20);}}"),
                quick(), 8);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_LT(r.max_rss_kb, 300 * 1024);
}

TEST_F(Containment, InfiniteLoopHitsCpuLimit) {
  RunResult r = contained(python("while True:\n    pass\n"), quick(10, 1), 5);
  EXPECT_TRUE(r.timed_out);
  EXPECT_NE(r.signal, 0);
  EXPECT_GE(r.cpu_ms, 900);
}

TEST_F(Containment, CpuBurningThreadsAreKilled) {
  RunResult r = contained(c("#include <pthread.h>\n"
                            "void* spin(void* a){for(volatile long i=0;;++i);return a;}\n"
                            "int main(){pthread_t t[8];for(int i=0;i<8;++i)"
                            "pthread_create(&t[i],0,spin,0);spin(0);}"),
                          quick(10, 1), 8);
  EXPECT_TRUE(r.timed_out);
  EXPECT_NE(r.signal, 0);
}

TEST_F(Containment, SleepPastWallTimeIsKilled) {
  RunResult r = contained(python("import time\ntime.sleep(60)\n"), quick(1), 4);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_LT(r.cpu_ms, 500);
}

TEST_F(Containment, GigabyteOfStdoutIsTruncated) {
  Limits limits = quick(10);
  limits.max_output_bytes = 1 << 16;
  RunResult r = contained(python("import sys\n"
                                 "chunk = 'x' * 65536\n"
                                 "for _ in range(16384):\n"
                                 "    sys.stdout.write(chunk)\n"),
                          limits, 5);
  EXPECT_TRUE(r.truncated);
  EXPECT_EQ(r.stdout_data.size(), 1u << 16);
}

TEST_F(Containment, StderrFloodIsTruncated) {
  Limits limits = quick(10);
  limits.max_output_bytes = 1 << 16;
  RunResult r = contained(c("#include <unistd.h>\nint main(){char b[65536]={0};"
                            "for(int i=0;i<16384;++i) write(2,b,sizeof b);}"),
                          limits, 8);
  EXPECT_TRUE(r.truncated);
  EXPECT_EQ(r.stderr_data.size(), 1u << 16);
}

TEST_F(Containment, DiskFillStopsAtTheTmpfsSize) {
  Limits limits = quick(10, 5);
  limits.disk_mb = 32;
  limits.max_file_mb = 1024;
  RunResult r = contained(python("import os\n"
                                 "written = 0\n"
                                 "try:\n"
                                 "    for i in range(1000):\n"
                                 "        with open(f'/work/fill{i}', 'wb') as f:\n"
                                 "            for _ in range(64):\n"
                                 "                f.write(b'x' * (1 << 20)); written += 1\n"
                                 "except OSError as e:\n"
                                 "    print('stopped', e.errno, written)\n"),
                          limits, 8);
  EXPECT_EQ(r.stdout_data.rfind("stopped 28 ", 0), 0u) << r.stdout_data << r.stderr_data;
  EXPECT_LE(std::stoi(r.stdout_data.substr(11)), 32);
}

TEST_F(Containment, FileSizeLimit) {
  Limits limits = quick();
  limits.max_file_mb = 4;
  RunResult r = contained(python("import signal\n"
                                 "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
                                 "try:\n"
                                 "    open('big', 'wb').write(b'x' * (8 << 20))\n"
                                 "except OSError as e:\n"
                                 "    print('refused', e.errno)\n"),
                          limits, 5);
  EXPECT_EQ(r.stdout_data, "refused 27\n") << r.stderr_data;
}

TEST_F(Containment, WritesOutsideWorkDirFail) {
  const std::string host_target = (canary_dir_ / "planted").string();
  RunResult r = contained(python("import os\n"
                                 "for p in ['/usr/planted', '/etc/ld.so.cache', '/usr/bin/python3',"
                                 " '" +
                                 host_target +
                                 "', '/proc/sys/kernel/hostname',"
                                 " '/dev/planted', '/planted', '/proc/planted']:\n"
                                 "    try:\n"
                                 "        open(p, 'w').write('x'); print('WROTE', p)\n"
                                 "    except OSError as e:\n"
                                 "        print('denied', p)\n"
                                 "for d in ['/work', '/tmp', '/dev/shm']:\n"
                                 "    open(d + '/mine', 'w').write('ok')\n"),
                          quick(), 5);
  EXPECT_EQ(r.stdout_data.find("WROTE"), std::string::npos) << r.stdout_data;
  EXPECT_EQ(r.exit_code, 0) << r.stderr_data;
  EXPECT_FALSE(fs::exists(host_target));
}

TEST_F(Containment, HostSecretsAreNotVisible) {
  const char* home = std::getenv("HOME");
  const std::string checkout = std::string(PONDER_SOURCE_DIR) + "/CMakeLists.txt";
  RunResult r = contained(python("import os\n"
                                 "for p in ['/etc/shadow', '/etc/passwd', '/root/.bashrc', '" +
                                 std::string(home ? home : "/root") + "', '" + checkout +
                                 "', '/work/CMakeLists.txt', '/home']:\n"
                                 "    print(p, os.path.exists(p))\n"),
                          quick(), 5);
  EXPECT_EQ(r.stdout_data.find("True"), std::string::npos) << r.stdout_data;
  EXPECT_EQ(std::count(r.stdout_data.begin(), r.stdout_data.end(), '\n'), 7);
}

TEST_F(Containment, ConnectToHostLoopbackFails) {
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{.sin_family = AF_INET, .sin_port = 0, .sin_addr = {htonl(INADDR_LOOPBACK)}};
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(listen(listener, 4), 0);
  socklen_t length = sizeof(address);
  getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length);
  const int port = ntohs(address.sin_port);
  RunResult r = contained(python("import socket\n"
                                 "try:\n"
                                 "    socket.create_connection(('127.0.0.1', " +
                                 std::to_string(port) +
                                 "), timeout=1); print('CONNECTED')\n"
                                 "except OSError as e:\n"
                                 "    print('refused', e.errno)\n"),
                          quick(), 5);
  EXPECT_EQ(r.stdout_data, "refused 1\n") << r.stderr_data;
  pollfd pending{.fd = listener, .events = POLLIN, .revents = 0};
  EXPECT_EQ(poll(&pending, 1, 100), 0) << "the host listener saw a connection";
  close(listener);
}

TEST_F(Containment, NoDnsAndNoInetSockets) {
  RunResult r = contained(
      python("import socket\n"
             "try:\n"
             "    socket.getaddrinfo('example.com', 80); print('RESOLVED')\n"
             "except OSError:\n"
             "    print('no dns')\n"
             "for family, kind in [(socket.AF_INET, socket.SOCK_DGRAM),"
             " (socket.AF_INET6, socket.SOCK_STREAM), (socket.AF_INET, "
             "socket.SOCK_RAW), (socket.AF_PACKET, socket.SOCK_RAW),"
             " (socket.AF_NETLINK, socket.SOCK_RAW)]:\n"
             "    try:\n"
             "        socket.socket(family, kind); print('SOCKET', family)\n"
             "    except OSError:\n"
             "        print('denied')\n"
             "a, b = socket.socketpair(); a.send(b'unix ok'); print(b.recv(9).decode())\n"),
      quick(), 5);
  EXPECT_EQ(r.stdout_data, "no dns\ndenied\ndenied\ndenied\ndenied\ndenied\nunix ok\n")
      << r.stderr_data;
}

TEST_F(Containment, KillMinusOneOnlyReachesTheSandbox) {
  RunResult r = contained(c("#include <signal.h>\n#include <stdio.h>\n#include <unistd.h>\n"
                            "int main(){if(fork()==0){pause();return 0;}"
                            "int rc=kill(-1,SIGKILL);printf(\"kill %d\\n\",rc);}"),
                          quick(), 8);
  EXPECT_EQ(r.stdout_data, "kill 0\n");
  EXPECT_EQ(r.exit_code, 0);
}

TEST_F(Containment, PtraceOfParentAndInitIsDenied) {
  RunResult r = contained(c("#include <stdio.h>\n#include <sys/ptrace.h>\n#include <unistd.h>\n"
                            "int main(){printf(\"%ld %ld %ld\\n\","
                            "ptrace(PTRACE_ATTACH,getppid(),0,0),ptrace(PTRACE_ATTACH,1,0,0),"
                            "ptrace(PTRACE_TRACEME,0,0,0));}"),
                          quick(), 8);
  EXPECT_EQ(r.stdout_data, "-1 -1 -1\n");
}

TEST_F(Containment, InitMemoryAndEnvironmentAreUnreadable) {
  setenv("PONDER_TEST_SECRET", "hunter2", 1);
  RunResult r = contained(python("for p in ['/proc/1/environ', '/proc/1/mem', '/proc/1/maps']:\n"
                                 "    try:\n"
                                 "        print(p, len(open(p, 'rb').read(4096)))\n"
                                 "    except OSError:\n"
                                 "        print('denied')\n"),
                          quick(), 5);
  unsetenv("PONDER_TEST_SECRET");
  EXPECT_EQ(r.stdout_data, "denied\ndenied\ndenied\n");
}

TEST_F(Containment, SetsidDaemonDoesNotOutliveTheRun) {
  RunResult r = contained(python("import os, time\n"
                                 "if os.fork() == 0:\n"
                                 "    os.setsid()\n"
                                 "    if os.fork() == 0:\n"
                                 "        os.closerange(0, 3)\n"
                                 "        time.sleep(30)\n"
                                 "    os._exit(0)\n"
                                 "print('parent done')\n"),
                          quick(10), 3);
  EXPECT_EQ(r.stdout_data, "parent done\n");
  EXPECT_FALSE(r.timed_out);
}

TEST_F(Containment, DaemonHoldingStdoutIsKilledWithTheProgram) {
  RunResult r = contained(python("import os, sys, time\n"
                                 "if os.fork() == 0:\n"
                                 "    os.setsid()\n"
                                 "    while True:\n"
                                 "        print('still here', flush=True); time.sleep(0.01)\n"
                                 "time.sleep(0.2)\n"),
                          quick(10), 4);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_FALSE(r.timed_out);
}

TEST_F(Containment, SymlinkEscapesFindNothing) {
  RunResult r =
      contained(python("import os\n"
                       "os.symlink('/', 'root'); os.symlink('/proc/1/root', 'init_root')\n"
                       "os.symlink('../../../../../etc/shadow', 'up')\n"
                       "for p in ['root/etc/shadow', 'init_root/etc/shadow', 'up',"
                       " 'root/root', 'init_root/home']:\n"
                       "    print(os.path.exists(p))\n"),
                quick(), 5);
  EXPECT_EQ(r.stdout_data, "False\nFalse\nFalse\nFalse\nFalse\n") << r.stderr_data;
}

TEST_F(Containment, ProcShowsOnlyTheSandbox) {
  RunResult r =
      contained(python("import os\n"
                       "pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
                       "print(os.getpid(), pids)\n"
                       "print(os.path.exists('/proc/1/root/etc/shadow'),"
                       " os.path.exists('/proc/" +
                       std::to_string(getpid()) +
                       "/root'))\n"
                       "try:\n"
                       "    os.listdir('/proc/1/root'); print('LISTED')\n"
                       "except PermissionError:\n"
                       "    print('denied')\n"),
                quick(), 5);
  EXPECT_EQ(r.stdout_data, "2 [1, 2]\nFalse False\ndenied\n") << r.stderr_data;
}

TEST_F(Containment, RlimitsCannotBeRaised) {
  RunResult r = contained(
      python("import resource\n"
             "for lim in [resource.RLIMIT_NPROC, resource.RLIMIT_AS,"
             " resource.RLIMIT_CPU, resource.RLIMIT_NOFILE, resource.RLIMIT_FSIZE]:\n"
             "    soft, hard = resource.getrlimit(lim)\n"
             "    try:\n"
             "        resource.setrlimit(lim, (hard + 1, hard + 1)); print('RAISED', lim)\n"
             "    except (ValueError, OSError):\n"
             "        print('denied')\n"),
      quick(), 5);
  EXPECT_EQ(r.stdout_data, "denied\ndenied\ndenied\ndenied\ndenied\n") << r.stderr_data;
}

TEST_F(Containment, EnvironmentIsNotInherited) {
  setenv("PONDER_TEST_SECRET", "hunter2", 1);
  RunResult r =
      contained(python("import os\n"
                       "print(sorted(k for k in os.environ if k != 'LC_CTYPE'))\n"
                       "print(open('/proc/self/environ', 'rb').read().count(b'hunter2'))\n"),
                quick(), 5);
  unsetenv("PONDER_TEST_SECRET");
  EXPECT_EQ(r.stdout_data, "['HOME', 'LANG', 'PATH']\n0\n") << r.stderr_data;
}

TEST_F(Containment, NamespaceAndMountCallsAreDenied) {
  RunResult r = contained(c("#define _GNU_SOURCE\n#include <sched.h>\n#include <stdio.h>\n"
                            "#include <sys/mount.h>\n#include <unistd.h>\n"
                            "int main(){printf(\"%d %d %d %d %d\\n\",unshare(CLONE_NEWUSER),"
                            "unshare(CLONE_NEWNS),mount(\"none\",\"/work\",\"tmpfs\",0,0),"
                            "chroot(\"/tmp\"),umount2(\"/usr\",MNT_DETACH));}"),
                          quick(), 8);
  EXPECT_EQ(r.stdout_data, "-1 -1 -1 -1 -1\n");
}

TEST_F(Containment, KernelInterfacesAreDenied) {
  RunResult r = contained(
      c("#define _GNU_SOURCE\n#include <stdio.h>\n#include <sys/syscall.h>\n#include <unistd.h>\n"
        "#include <linux/perf_event.h>\n#include <string.h>\n"
        "int main(){struct perf_event_attr a;memset(&a,0,sizeof a);a.size=sizeof a;"
        "printf(\"%ld %ld %ld %ld %ld\\n\",syscall(SYS_bpf,0,0,0),"
        "syscall(SYS_perf_event_open,&a,0,-1,-1,0),syscall(SYS_keyctl,0,0),"
        "syscall(SYS_init_module,0,0,\"\"),syscall(SYS_kexec_load,0,0,0,0));}"),
      quick(), 8);
  EXPECT_EQ(r.stdout_data, "-1 -1 -1 -1 -1\n");
}

TEST_F(Containment, HostnameAndIdentityAreTheSandboxs) {
  RunResult r = contained(python("import os, socket\n"
                                 "print(socket.gethostname(), os.getuid(), os.getgid())\n"
                                 "try:\n"
                                 "    socket.sethostname('evil'); print('RENAMED')\n"
                                 "except OSError:\n"
                                 "    print('denied')\n"),
                          quick(), 5);
  EXPECT_EQ(r.stdout_data, "sandbox 1000 1000\ndenied\n") << r.stderr_data;
}

TEST_F(Containment, TooManyOpenFiles) {
  Limits limits = quick();
  limits.max_open_files = 32;
  RunResult r = contained(python("fs = []\n"
                                 "try:\n"
                                 "    while True: fs.append(open('/dev/null'))\n"
                                 "except OSError as e:\n"
                                 "    print(e.errno, len(fs) < 32)\n"),
                          limits, 5);
  EXPECT_EQ(r.stdout_data, "24 True\n") << r.stderr_data;
}

// The compile step runs in a sandbox of its own, with the sandbox's compile limits.
class CompileContainment : public Containment {
 protected:
  CompileContainment() {
    SandboxOptions options;
    options.compile_limits = {.wall_s = 4,
                              .cpu_s = 3,
                              .memory_mb = 512,
                              .max_processes = 32,
                              .max_file_mb = 16,
                              .disk_mb = 64,
                              .max_output_bytes = 1 << 16};
    sandbox_ = Sandbox(options);
  }
  RunResult compile(const std::string& source) {
    RunResult r = contained({.language = "cpp", .source = source}, quick(), 12);
    EXPECT_EQ(r.stage, "compile");
    EXPECT_FALSE(r.ok());
    return r;
  }
};

TEST_F(CompileContainment, IncludeDevZero) {
  RunResult r = compile("#include \"/dev/zero\"\nint main(){}\n");
  EXPECT_NE(r.stderr_data.find("out of memory"), std::string::npos) << r.stderr_data;
}

TEST_F(CompileContainment, IncludeHostSecrets) {
  RunResult r = compile("#include \"/etc/shadow\"\n#include \"" + std::string(PONDER_SOURCE_DIR) +
                        "/CMakeLists.txt\"\nint main(){}\n");
  EXPECT_NE(r.stderr_data.find("No such file"), std::string::npos) << r.stderr_data;
}

// The type's name doubles with every level: printing it in the error needs 2^32 characters.
TEST_F(CompileContainment, TemplateBomb) {
  RunResult r = compile(
      "#include <utility>\n"
      "template <int N, class T> struct B { typedef typename B<N - 1, std::pair<T, T>>::type "
      "type; };\n"
      "template <class T> struct B<0, T> { typedef T type; };\n"
      "int main() { B<32, int>::type x = 1; }\n");
  // Stopped by either limit: the wall-clock timeout, or RLIMIT_CPU killing cc1plus (which g++
  // reports as an internal compiler error) when its CPU time runs out first.
  const bool cpu_limit = r.stderr_data.find("CPU time limit exceeded") != std::string::npos;
  EXPECT_TRUE(r.timed_out || cpu_limit) << r.stderr_data.substr(0, 500);
  EXPECT_NE(r.exit_code, 0);
}

TEST_F(CompileContainment, PreprocessorBomb) {
  RunResult r = compile(
      "#define A0 x x x x x x x x x x\n#define A1 A0 A0 A0 A0 A0 A0 A0 A0 A0 A0\n"
      "#define A2 A1 A1 A1 A1 A1 A1 A1 A1 A1 A1\n#define A3 A2 A2 A2 A2 A2 A2 A2 A2 A2 A2\n"
      "#define A4 A3 A3 A3 A3 A3 A3 A3 A3 A3 A3\n#define A5 A4 A4 A4 A4 A4 A4 A4 A4 A4 A4\n"
      "#define A6 A5 A5 A5 A5 A5 A5 A5 A5 A5 A5\n#define A7 A6 A6 A6 A6 A6 A6 A6 A6 A6 A6\n"
      "#define A8 A7 A7 A7 A7 A7 A7 A7 A7 A7 A7\nint x; int main(){ A8 A8 A8 A8 }\n");
  EXPECT_NE(r.stderr_data.find("memory exhausted"), std::string::npos) << r.stderr_data;
}

TEST_F(CompileContainment, HugeObjectFile) {
  RunResult r = compile("char big[1 << 30] = {1};\nint main() { return big[12345]; }\n");
  EXPECT_NE(r.stderr_data.find("File size limit exceeded"), std::string::npos) << r.stderr_data;
}

TEST_F(CompileContainment, ErrorFloodIsTruncated) {
  std::string source = "int main() {\n";
  for (int i = 0; i < 20000; ++i) source += "  undefined_name_" + std::to_string(i) + "();\n";
  RunResult r = compile(source + "}\n");
  EXPECT_TRUE(r.truncated);
  EXPECT_EQ(r.stderr_data.size(), 1u << 16);
}

TEST_F(CompileContainment, CompiledProgramIsContainedToo) {
  RunResult r = contained({.language = "cpp",
                           .source = "#include <fstream>\n#include <iostream>\n"
                                     "int main(){std::ifstream f(\"/etc/shadow\");"
                                     "std::cout << (f ? \"READ\" : \"denied\") << std::endl;}\n"},
                          quick(), 15);
  EXPECT_EQ(r.stage, "run");
  EXPECT_EQ(r.stdout_data, "denied\n") << r.stderr_data;
}

std::vector<pid_t> children_of(pid_t pid) {
  std::vector<pid_t> children;
  for (const auto& task : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    std::istringstream in(read_file(task.path() / "children"));
    for (pid_t child; in >> child;) children.push_back(child);
  }
  return children;
}

// A trainer that crashes mid-run must not leave its sandboxes behind.
TEST(SandboxLifetime, KillingTheHostProcessEndsTheRun) {
  pid_t host = fork();
  if (host == 0) {
    Sandbox().run({.language = "python", .source = "import time\ntime.sleep(60)\n"},
                  {.wall_s = 60, .cpu_s = 60});
    _exit(0);
  }
  std::uint64_t pid_namespace = 0;
  for (int attempt = 0; attempt < 100 && pid_namespace == 0; ++attempt) {
    usleep(50000);
    for (pid_t outer : children_of(host)) {
      for (pid_t init : children_of(outer)) {
        struct stat info {};
        if (stat(("/proc/" + std::to_string(init) + "/ns/pid").c_str(), &info) == 0) {
          pid_namespace = info.st_ino;
        }
      }
    }
  }
  ASSERT_NE(pid_namespace, 0u) << "the sandbox never started";
  usleep(200000);
  ASSERT_GT(survivors(pid_namespace), 0);
  kill(host, SIGKILL);
  waitpid(host, nullptr, 0);
  for (int attempt = 0; attempt < 40 && survivors(pid_namespace) > 0; ++attempt) usleep(50000);
  EXPECT_EQ(survivors(pid_namespace), 0);
}

// run() must fail loudly when the kernel refuses isolation; checked in a forked child whose
// own seccomp filter makes the refused call fail.
void expect_refusal(int syscall_number, std::vector<scmp_arg_cmp> args, const char* message) {
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  pid_t child = fork();
  if (child == 0) {
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(EPERM), syscall_number, args.size(), args.data());
    if (seccomp_load(ctx) != 0) _exit(2);
    std::string outcome = "ran unconfined";
    try {
      Sandbox().run({.language = "python", .source = "print(1)"}, quick());
    } catch (const Error& e) {
      outcome = e.what();
    }
    write(pipe_fds[1], outcome.data(), outcome.size());
    _exit(0);
  }
  close(pipe_fds[1]);
  std::string outcome;
  char buffer[512];
  for (ssize_t n; (n = read(pipe_fds[0], buffer, sizeof(buffer))) > 0;) outcome.append(buffer, n);
  close(pipe_fds[0]);
  waitpid(child, nullptr, 0);
  EXPECT_NE(outcome.find(message), std::string::npos) << outcome;
}

TEST(SandboxRefusal, NamespaceRefusedThrows) {
  expect_refusal(SCMP_SYS(unshare), {}, "unshare(user, mount, pid, net, ipc, uts namespaces)");
}

TEST(SandboxRefusal, SeccompRefusedThrows) {
  expect_refusal(SCMP_SYS(prctl), {SCMP_A0(SCMP_CMP_EQ, PR_SET_SECCOMP)},
                 "installing the seccomp filter was refused");
}

TEST(SandboxUnsafe, NoIsolationRunsOnTheHostAndSaysSo) {
  char hostname[256] = {};
  gethostname(hostname, sizeof(hostname) - 1);
  Sandbox sandbox({.unsafe_no_isolation = true});
  ::testing::internal::CaptureStderr();
  RunResult r = sandbox.run({.language = "python",
                             .source = "import socket\n"
                                       "print(socket.gethostname())\n"},
                            quick());
  std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(r.stdout_data, std::string(hostname) + "\n");
  EXPECT_EQ(r.pid_namespace, 0u);
  EXPECT_NE(log.find("ISOLATION IS OFF"), std::string::npos);
}

}  // namespace
}  // namespace ponder::sandbox
