#include "facetrain/dist/launch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "facetrain/core/error.h"

namespace facetrain::dist {

namespace {

std::atomic<int> g_forward{0};
extern "C" void on_launcher_signal(int sig) { g_forward.store(sig); }

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return std::string("was killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  return "stopped";
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

int64_t free_port(const std::string& addr) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error(std::string("launch: cannot open a socket: ") + std::strerror(errno));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = 0;
  if (::inet_pton(AF_INET, addr == "localhost" ? "127.0.0.1" : addr.c_str(), &sa.sin_addr) != 1) {
    ::close(fd);
    throw ArgumentError("launch: '" + addr + "' is not an IPv4 address (give --master-port)");
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    throw Error("launch: cannot bind a port on " + addr + ": " + why);
  }
  socklen_t len = sizeof sa;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  ::close(fd);
  return ntohs(sa.sin_port);
}

int launch_local(const LaunchOptions& o) {
  if (o.nproc < 1 || o.nproc > 1024)
    throw ArgumentError("launch: --nproc must be in [1, 1024], got " + std::to_string(o.nproc));
  const int64_t port = o.master_port > 0 ? o.master_port : free_port(o.master_addr);

  struct sigaction sa {
  }, old_int{}, old_term{};
  sa.sa_handler = on_launcher_signal;
  sigemptyset(&sa.sa_mask);
  g_forward.store(0);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);

  std::vector<pid_t> pids;
  for (int64_t rank = 0; rank < o.nproc; ++rank) {
    std::vector<std::string> argv_s = {"facetrain"};
    argv_s.insert(argv_s.end(), o.args.begin(), o.args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) {
      for (pid_t p : pids) ::kill(p, SIGKILL);
      throw Error(std::string("launch: fork failed: ") + std::strerror(errno));
    }
    if (pid == 0) {
      ::sigaction(SIGINT, &old_int, nullptr);
      ::sigaction(SIGTERM, &old_term, nullptr);
      // Its own process group: a Ctrl-C in the terminal reaches the launcher alone, which passes
      // it on once (a second SIGINT would stop a rank at once, without its checkpoint). And a
      // SIGTERM when the launcher dies, so that no rank outlives it.
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(o.nproc).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(o.nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", o.master_addr.c_str(), 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      ::unsetenv("TORCHELASTIC_USE_AGENT_STORE");
      ::execv(o.program.c_str(), argv.data());
      std::fprintf(stderr, "facetrain launch: cannot run %s: %s\n", o.program.c_str(), std::strerror(errno));
      ::_exit(127);
    }
    pids.push_back(pid);
  }
  std::string list;
  for (size_t r = 0; r < pids.size(); ++r)
    list += (r ? ", " : "") + std::to_string(r) + ": pid " + std::to_string(pids[r]);
  spdlog::info("launch: {} processes on {}:{} (rank {})", o.nproc, o.master_addr, port, list);

  using Clock = std::chrono::steady_clock;
  std::vector<bool> running(pids.size(), true);
  size_t alive = pids.size();
  int result = 0;
  bool stopping = false;
  Clock::time_point kill_at{};
  int forwarded = 0;
  while (alive > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      for (size_t r = 0; r < pids.size(); ++r) {
        if (pids[r] != pid || !running[r]) continue;
        running[r] = false;
        --alive;
        const int code = exit_code_of(status);
        if (code != 0 && result == 0 && g_forward.load() == 0) {
          result = code;
          spdlog::error("launch: rank {} (pid {}) {}; stopping the other {} rank(s)", r, pid, describe_status(status),
                        alive);
        } else if (code != 0 && result == 0) {
          result = code;
        }
        // After a forwarded Ctrl-C / SIGTERM the ranks are stopping on their own (each writes its
        // part of the last checkpoint): no need to hurry the others.
        if (code != 0 && !stopping && g_forward.load() == 0) {
          stopping = true;
          kill_at = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(o.grace_s * 1000));
          for (size_t k = 0; k < pids.size(); ++k) {
            if (running[k]) ::kill(pids[k], SIGTERM);
          }
        }
      }
      continue;
    }
    if (pid < 0 && errno != EINTR) break;  // no children left
    if (const int sig = g_forward.load(); sig != 0 && sig != forwarded) {
      forwarded = sig;
      for (size_t k = 0; k < pids.size(); ++k) {
        if (running[k]) ::kill(pids[k], sig);
      }
    }
    if (stopping && Clock::now() >= kill_at) {
      for (size_t k = 0; k < pids.size(); ++k) {
        if (running[k]) {
          spdlog::error("launch: rank {} (pid {}) did not stop within {} s; killing it", k, pids[k], o.grace_s);
          ::kill(pids[k], SIGKILL);
        }
      }
      kill_at = Clock::now() + std::chrono::hours(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return result;
}

}  // namespace facetrain::dist
