// Streams cost no thread each: a child server with 1,500 open
// SubscribeEvents streams (idle, filtered to accounts nobody writes to) runs
// on a few dozen threads, keeps taking writes, and every stream ends when
// its client cancels.
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench/load_requests.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "poledger/v1/invoices.grpc.pb.h"
#include "poledger/v1/log.grpc.pb.h"
#include "tests/eventstore/store_test_util.h"
#include "tests/testing/server_process.h"

namespace poledger {
namespace {

int ThreadsOf(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) {
      int n = 0;
      (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(8)), &n);
      return n;
    }
  }
  return -1;
}

class Stream final
    : public grpc::ClientReadReactor<v1::SubscribeEventsResponse> {
 public:
  Stream(v1::EventLogService::Stub* stub, const std::string& account) {
    request_.set_account_id(account);
    stub->async()->SubscribeEvents(&ctx_, &request_, this);
    StartRead(&response_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (response_.has_caught_up()) caught_up_ = true;
    StartRead(&response_);
  }
  void OnDone(const grpc::Status& status) override {
    absl::MutexLock lock(&mu_);
    code_ = status.error_code();
    done_ = true;
  }
  void Cancel() { ctx_.TryCancel(); }
  bool caught_up() const { return caught_up_.load(); }
  // Waits for the end; returns its code, or -1 on time-out.
  int WaitDone(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout(absl::Condition(&done_), timeout)) return -1;
    return code_;
  }

 private:
  grpc::ClientContext ctx_;
  v1::SubscribeEventsRequest request_;
  v1::SubscribeEventsResponse response_;
  std::atomic<bool> caught_up_{false};
  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  int code_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST(StreamScaleTest, ThousandsOfStreamsOnAFewThreads) {
  TempDir dir;
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start(POLEDGER_SERVER_BINARY,
                           {"--data-dir=" + dir.path() + "/data",
                           // One host opens them all: no per-caller limit.
                           "--max-streams-per-identity=0"}))
      << server.output();
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<v1::EventLogService::Stub>> stubs;
  for (int c = 0; c < 4; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("poledger.test.channel", c);
    channels.push_back(grpc::CreateCustomChannel(
        server.address(), grpc::InsecureChannelCredentials(), args));
    stubs.push_back(v1::EventLogService::NewStub(channels.back()));
  }
  const int threads_before = ThreadsOf(server.pid());
  constexpr int kStreams = 1500;
  std::vector<std::unique_ptr<Stream>> streams;
  for (int i = 0; i < kStreams; ++i) {
    streams.push_back(std::make_unique<Stream>(stubs[i % stubs.size()].get(),
                                               absl::StrCat("idle-", i % 50)));
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  int caught_up = 0;
  while (absl::Now() < deadline) {
    caught_up = 0;
    for (auto& s : streams) caught_up += s->caught_up();
    if (caught_up == kStreams) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_EQ(caught_up, kStreams);

  // Writes go on while every stream is open.
  auto invoices = v1::InvoiceService::NewStub(channels[0]);
  for (int i = 0; i < 100; ++i) {
    grpc::ClientContext ctx;
    v1::RecordInvoiceRequest req;
    req.set_account_id("busy");
    FillLoadInvoice(absl::StrCat("inv-", i), i, req.mutable_invoice());
    v1::Invoice out;
    ASSERT_TRUE(invoices->RecordInvoice(&ctx, req, &out).ok()) << i;
  }
  const int threads_open = ThreadsOf(server.pid());
  std::printf("server threads: %d before, %d with %d streams open\n",
              threads_before, threads_open, kStreams);
  EXPECT_LT(threads_open, 100);
  EXPECT_LT(threads_open - threads_before, 30);

  auto admin = v1::AdminService::NewStub(channels[0]);
  auto open_streams = [&] {
    grpc::ClientContext ctx;
    v1::GetServerInfoResponse info;
    EXPECT_TRUE(
        admin->GetServerInfo(&ctx, v1::GetServerInfoRequest(), &info).ok());
    return info.open_streams();
  };
  EXPECT_EQ(open_streams(), static_cast<uint64_t>(kStreams));

  for (auto& s : streams) s->Cancel();
  int cancelled = 0;
  for (auto& s : streams) {
    cancelled += s->WaitDone(absl::Seconds(10)) ==
                 static_cast<int>(grpc::StatusCode::CANCELLED);
  }
  EXPECT_EQ(cancelled, kStreams);
  // The server lets go of each at once (no polling): none left open.
  const absl::Time by = absl::Now() + absl::Seconds(5);
  uint64_t left = open_streams();
  while (left != 0 && absl::Now() < by) {
    absl::SleepFor(absl::Milliseconds(10));
    left = open_streams();
  }
  EXPECT_EQ(left, 0u);
}

}  // namespace
}  // namespace poledger
