// EtcdProcess runs Debian's etcd (/usr/bin/etcd) for a test: one member on
// 127.0.0.1, on free ports, with its data in `dir`; killed (SIGKILL) when
// the object goes away (or the test process dies). Pause and Resume (SIGSTOP, SIGCONT) and Kill let a
// test take etcd away.
//
// Not thread-safe: one test thread drives it.
#ifndef POLEDGER_TESTS_TESTING_ETCD_PROCESS_H_
#define POLEDGER_TESTS_TESTING_ETCD_PROCESS_H_

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace poledger {
namespace testing {

// A port of 127.0.0.1 that was free a moment ago.
inline int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

class EtcdProcess {
 public:
  explicit EtcdProcess(std::string dir) : dir_(std::move(dir)) {}
  ~EtcdProcess() { Kill(); }
  EtcdProcess(const EtcdProcess&) = delete;
  EtcdProcess& operator=(const EtcdProcess&) = delete;

  // Starts etcd (again, on the same ports and data after a Kill). Returns at
  // once: the caller waits until it answers.
  bool Start() {
    if (client_port_ == 0) {
      client_port_ = FreePort();
      peer_port_ = FreePort();
    }
    const std::string client = absl::StrCat("http://127.0.0.1:", client_port_);
    const std::string peer = absl::StrCat("http://127.0.0.1:", peer_port_);
    std::vector<std::string> args = {
        "/usr/bin/etcd",
        "--name=test",
        "--data-dir=" + dir_ + "/etcd",
        "--listen-client-urls=" + client,
        "--advertise-client-urls=" + client,
        "--listen-peer-urls=" + peer,
        "--initial-advertise-peer-urls=" + peer,
        "--initial-cluster=test=" + peer,
        "--logger=zap",
        "--log-outputs=" + dir_ + "/etcd.log"};
    pid_ = fork();
    if (pid_ == 0) {
      // etcd goes with the test, even one that crashes.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      const int null = open("/dev/null", O_WRONLY);
      dup2(null, STDOUT_FILENO);
      dup2(null, STDERR_FILENO);
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    return pid_ > 0;
  }

  void Pause() { kill(pid_, SIGSTOP); }
  void Resume() { kill(pid_, SIGCONT); }
  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  std::string endpoint() const {
    return absl::StrCat("http://127.0.0.1:", client_port_);
  }

 private:
  const std::string dir_;
  int client_port_ = 0;
  int peer_port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace testing
}  // namespace poledger

#endif  // POLEDGER_TESTS_TESTING_ETCD_PROCESS_H_
