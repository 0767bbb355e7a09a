// Runs a shell command for tests and captures its standard output (append
// "2>&1" to the command to capture standard error too).
#ifndef POLEDGER_TESTS_TESTING_COMMAND_H_
#define POLEDGER_TESTS_TESTING_COMMAND_H_

#include <stdio.h>
#include <sys/wait.h>

#include <string>

namespace poledger {
namespace testing {

struct CommandResult {
  int exit_code = -1;  // -1: could not run, or ended by a signal.
  std::string out;
};

inline CommandResult RunCommand(const std::string& command) {
  CommandResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) result.out.append(buf, n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

}  // namespace testing
}  // namespace poledger

#endif  // POLEDGER_TESTS_TESTING_COMMAND_H_
