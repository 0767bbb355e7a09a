// poledger-server as a process: it starts, listens on 127.0.0.1, reports
// health, refuses a second instance on the same data directory, and stops
// cleanly on SIGTERM and SIGINT.

#include <signal.h>
#include <sys/wait.h>

#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "tests/eventstore/store_test_util.h"
#include "tests/testing/server_process.h"

namespace poledger {
namespace {

using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using ::poledger::testing::ServerProcess;
using ::testing::HasSubstr;

// Polls the health service until it answers SERVING or 30 s pass.
bool WaitUntilServing(const std::string& address) {
  auto stub = Health::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(2));
    HealthCheckResponse response;
    grpc::Status status =
        stub->Check(&context, HealthCheckRequest(), &response);
    if (status.ok() && response.status() == HealthCheckResponse::SERVING) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

class ServerProcessTest : public ::testing::Test {
 protected:
  std::vector<std::string> Args() const {
    return {"--data-dir=" + dir_.path() + "/data"};
  }
  TempDir dir_;
};

TEST_F(ServerProcessTest, ServesHealthAndStopsOnSigterm) {
  ServerProcess server;
  ASSERT_TRUE(server.Start(POLEDGER_SERVER_BINARY, Args())) << server.output();
  ASSERT_TRUE(WaitUntilServing(server.address())) << server.output();
  const int status = server.Stop(SIGTERM);
  ASSERT_TRUE(WIFEXITED(status)) << server.output();
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_THAT(server.output(), HasSubstr("poledger-server stopped"));
}

TEST_F(ServerProcessTest, RestartsOnTheSameDataDirectoryAfterSigint) {
  for (int run = 0; run < 2; ++run) {
    ServerProcess server;
    ASSERT_TRUE(server.Start(POLEDGER_SERVER_BINARY, Args()))
        << server.output();
    ASSERT_TRUE(WaitUntilServing(server.address())) << server.output();
    EXPECT_THAT(server.output(), HasSubstr("event log open: head 0"));
    const int status = server.Stop(SIGINT);
    ASSERT_TRUE(WIFEXITED(status)) << server.output();
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }
}

TEST_F(ServerProcessTest, SecondServerOnALiveDataDirectoryFails) {
  ServerProcess first;
  ASSERT_TRUE(first.Start(POLEDGER_SERVER_BINARY, Args())) << first.output();
  ASSERT_TRUE(WaitUntilServing(first.address()));
  ServerProcess second;
  second.Start(POLEDGER_SERVER_BINARY, Args());
  const int status = second.Wait();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_THAT(second.output(), HasSubstr("cannot start: UNAVAILABLE: opening event log"));
  EXPECT_EQ(first.Stop(), 0);
}

// gRPC sets SO_REUSEPORT by default: without the server turning it off, a
// second server (another data directory) could bind the same port and take
// a share of the calls silently.
TEST_F(ServerProcessTest, SecondServerOnABusyPortFails) {
  ServerProcess first;
  ASSERT_TRUE(first.Start(POLEDGER_SERVER_BINARY, Args())) << first.output();
  ASSERT_TRUE(WaitUntilServing(first.address()));
  ServerProcess second;
  if (second.Start(POLEDGER_SERVER_BINARY,
                   {"--data-dir=" + dir_.path() + "/other",
                    "--listen=" + first.address()})) {
    ADD_FAILURE() << "a second server listens on " << first.address();
    second.Stop();
    first.Stop();
    return;
  }
  const int status = second.Wait();
  ASSERT_TRUE(WIFEXITED(status)) << second.output();
  EXPECT_EQ(WEXITSTATUS(status), 1) << second.output();
  EXPECT_THAT(second.output(), HasSubstr("cannot listen on " + first.address()));
  EXPECT_EQ(first.Stop(), 0);
}

TEST_F(ServerProcessTest, MalformedClockFlagExitsWithUsageError) {
  ServerProcess server;
  std::vector<std::string> args = Args();
  args.push_back("--clock=sundial");
  EXPECT_FALSE(server.Start(POLEDGER_SERVER_BINARY, args));
  const int status = server.Wait();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
  EXPECT_THAT(server.output(), HasSubstr("--clock"));
}

}  // namespace
}  // namespace poledger
