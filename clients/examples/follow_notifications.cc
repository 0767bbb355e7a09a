// follow_notifications: a service that follows one account's notifications
// and survives restarts on both sides. It keeps the position of the last
// notification it handled in a checkpoint file, resumes after it, and when
// the stream ends because the server restarts or shuts down it reconnects
// with backoff and resumes; so it handles each notification
// once, in order, whatever restarts.
//
//   follow_notifications --server=127.0.0.1:50051 --account=123456789012
//       --checkpoint=/var/lib/myservice/poledger.position [--count=N]
//
// Prints one line per notification ("position kind purchase_order"). With
// --count it exits after that many (0: follow forever).
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "clients/channel.h"
#include "poledger/v1/log.grpc.pb.h"

namespace {

std::string Flag(int argc, char** argv, const std::string& name,
                 const std::string& fallback) {
  const std::string prefix = "--" + name + "=";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind(prefix, 0) == 0) return arg.substr(prefix.size());
  }
  return fallback;
}

uint64_t ReadCheckpoint(const std::string& path) {
  std::ifstream in(path);
  uint64_t position = 0;
  std::string text;
  if (in >> text) (void)absl::SimpleAtoi(text, &position);
  return position;
}

// Written to a temporary file and renamed: a crash leaves the old or the
// new position, never a torn one.
bool WriteCheckpoint(const std::string& path, uint64_t position) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << position << "\n";
    out.flush();
    if (!out) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string server = Flag(argc, argv, "server", "127.0.0.1:50051");
  const std::string account = Flag(argc, argv, "account", "");
  const std::string checkpoint = Flag(argc, argv, "checkpoint", "");
  int64_t count = 0;
  (void)absl::SimpleAtoi(Flag(argc, argv, "count", "0"), &count);
  if (account.empty() || checkpoint.empty()) {
    std::fprintf(stderr,
                 "usage: %s --account=ID --checkpoint=FILE "
                 "[--server=HOST:PORT] [--count=N]\n",
                 argv[0]);
    return 2;
  }
  auto stub = poledger::v1::NotificationService::NewStub(
      poledger::NewClientChannel(server));
  uint64_t after = ReadCheckpoint(checkpoint);
  int64_t handled = 0;
  absl::Duration backoff = absl::Milliseconds(100);
  for (;;) {
    grpc::ClientContext ctx;
    poledger::v1::SubscribeNotificationsRequest request;
    request.set_account_id(account);
    request.set_after_position(after);
    // A proxy in front of shards routes on it.
    ctx.AddMetadata("x-poledger-account", account);
    auto stream = stub->SubscribeNotifications(&ctx, request);
    poledger::v1::SubscribeNotificationsResponse item;
    while (stream->Read(&item)) {
      backoff = absl::Milliseconds(100);       // Connected.
      if (!item.has_notification()) continue;  // caught_up, heartbeat.
      const poledger::v1::Notification& n = item.notification();
      std::printf("%llu %s %s\n", static_cast<unsigned long long>(n.position()),
                  poledger::v1::NotificationKind_Name(n.kind()).c_str(),
                  n.purchase_order_id().c_str());
      std::fflush(stdout);
      // Handled, then checkpointed: after a crash in between it is handled
      // again (at least once); make handling idempotent by position.
      after = n.position();
      if (!WriteCheckpoint(checkpoint, after)) {
        std::fprintf(stderr, "cannot write %s\n", checkpoint.c_str());
        return 1;
      }
      if (count > 0 && ++handled == count) {
        ctx.TryCancel();
        (void)stream->Finish();
        return 0;
      }
    }
    const grpc::Status status = stream->Finish();
    // UNAVAILABLE: the server is restarting or shutting down. CANCELLED
    // (this client never cancels while following): a server that is
    // shutting down cancels calls that reach it too late to start.
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE &&
        status.error_code() != grpc::StatusCode::CANCELLED) {
      std::fprintf(stderr, "stream ended: %d %s\n", status.error_code(),
                   status.error_message().c_str());
      return 1;
    }
    // The server is restarting or shutting down: resume after `after`.
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(5));
  }
}
