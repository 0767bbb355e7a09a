// ServerProcess runs poledger-server as a child process for tests: on
// 127.0.0.1 with a port the kernel picks, stopped by the test (SIGTERM) or,
// at the latest, when the object goes away (SIGKILL).
//
// Not thread-safe: one test thread drives it.
#ifndef POLEDGER_TESTS_TESTING_SERVER_PROCESS_H_
#define POLEDGER_TESTS_TESTING_SERVER_PROCESS_H_

#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace poledger {
namespace testing {

class ServerProcess {
 public:
  ServerProcess() = default;
  ~ServerProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (reader_.joinable()) reader_.join();
  }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Starts `binary` with `args` plus --listen=127.0.0.1:0 (unless `args`
  // has a --listen) and waits until it reports its port. Returns false (with
  // output() explaining) if it exits or stays silent for 30 s.
  bool Start(const std::string& binary, std::vector<std::string> args) {
    const bool has_listen =
        std::any_of(args.begin(), args.end(), [](const std::string& a) {
          return a.rfind("--listen", 0) == 0;
        });
    args.insert(args.begin(), binary);
    if (!has_listen) args.push_back("--listen=127.0.0.1:0");
    int fds[2];
    if (pipe(fds) != 0) return false;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], STDERR_FILENO);
      close(fds[0]);
      close(fds[1]);
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(binary.c_str(), argv.data());
      _exit(127);
    }
    close(fds[1]);
    reader_ = std::thread([this, fd = fds[0]] {
      char buf[4096];
      ssize_t n;
      while ((n = read(fd, buf, sizeof(buf))) > 0) {
        std::lock_guard<std::mutex> lock(mu_);
        output_.append(buf, static_cast<size_t>(n));
      }
      close(fd);
    });
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (absl::Now() < deadline) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        const std::string marker = "listening on 127.0.0.1:";
        const size_t at = output_.find(marker);
        const size_t eol = at == std::string::npos
                               ? std::string::npos
                               : output_.find('\n', at);
        if (eol != std::string::npos) {
          const size_t begin = at + marker.size();
          const size_t end = output_.find_first_not_of("0123456789", begin);
          if (absl::SimpleAtoi(output_.substr(begin, end - begin), &port_)) {
            return true;
          }
        }
      }
      if (waitpid(pid_, &status_, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  }

  // Sends `signal` and waits up to `timeout` for the exit. Returns the wait
  // status, or -1 if it had to be killed.
  int Stop(int signal = SIGTERM, absl::Duration timeout = absl::Seconds(30)) {
    if (pid_ <= 0) return status_;
    kill(pid_, signal);
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      if (waitpid(pid_, &status_, WNOHANG) == pid_) {
        pid_ = -1;
        if (reader_.joinable()) reader_.join();
        return status_;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
    pid_ = -1;
    return -1;
  }

  // Waits for the process to exit by itself; returns the wait status.
  int Wait() {
    if (pid_ > 0) {
      waitpid(pid_, &status_, 0);
      pid_ = -1;
    }
    if (reader_.joinable()) reader_.join();
    return status_;
  }

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  std::string output() {
    std::lock_guard<std::mutex> lock(mu_);
    return output_;
  }

 private:
  pid_t pid_ = -1;
  int status_ = 0;
  int port_ = 0;
  std::thread reader_;
  std::mutex mu_;
  std::string output_;
};

}  // namespace testing
}  // namespace poledger

#endif  // POLEDGER_TESTS_TESTING_SERVER_PROCESS_H_
