// poledger-server: the purchase-order ledger's gRPC server.
//
// Starts listening at once with health NOT_SERVING, opens (and verifies) the
// event log, then reports SERVING. SIGTERM or SIGINT shuts it down
// gracefully: in-flight calls finish (up to a grace period), then the event
// log is closed; nothing acknowledged is lost because every acknowledged
// append is already synced.
#include <signal.h>

#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "eventstore/rocksdb_event_store.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "Address to listen on (host:port).");
ABSL_FLAG(std::string, data_dir, "./data",
          "Directory of the embedded RocksDB event log; created if missing.");
ABSL_FLAG(std::string, clock, "real",
          "Clock: 'real', or 'manual:YYYY-MM-DDTHH:MM:SSZ' for tests.");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(10),
          "How long in-flight calls may run after SIGTERM before they are "
          "cancelled.");

namespace poledger {
namespace {

int Run() {
  const std::string clock = absl::GetFlag(FLAGS_clock);
  if (clock != "real" && !absl::StartsWith(clock, "manual:")) {
    std::fprintf(stderr, "--clock: '%s' is neither 'real' nor 'manual:TIME'\n",
                 clock.c_str());
    return 2;
  }

  // Signals are taken by one thread with sigwait; block them everywhere
  // else before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen),
                           grpc::InsecureServerCredentials(), &port);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "cannot listen on %s\n",
                 absl::GetFlag(FLAGS_listen).c_str());
    return 1;
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus(false);
  std::fprintf(stderr, "poledger-server listening on %s (port %d)\n",
               absl::GetFlag(FLAGS_listen).c_str(), port);

  RocksDbEventStoreOptions options;
  options.path = absl::GetFlag(FLAGS_data_dir);
  auto store = RocksDbEventStore::Open(options);
  if (!store.ok()) {
    std::fprintf(stderr, "cannot open the event log: %s\n",
                 store.status().ToString().c_str());
    server->Shutdown();
    return 1;
  }
  const LogHead head = (*store)->Head();
  std::fprintf(stderr, "event log open: head %llu, digest %s\n",
               static_cast<unsigned long long>(head.position),
               HashToHex(head.hash).c_str());
  health->SetServingStatus(true);

  std::thread signal_thread([&] {
    int signal = 0;
    sigwait(&signals, &signal);
    std::fprintf(stderr, "signal %d: shutting down\n", signal);
    health->SetServingStatus(false);
    server->Shutdown(std::chrono::system_clock::now() +
                     absl::ToChronoMilliseconds(
                         absl::GetFlag(FLAGS_shutdown_grace)));
    (*store)->Close();
  });
  server->Wait();
  signal_thread.join();
  std::fprintf(stderr, "poledger-server stopped\n");
  return 0;
}

}  // namespace
}  // namespace poledger

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "poledger-server --listen=127.0.0.1:50051 --data-dir=./data");
  absl::ParseCommandLine(argc, argv);
  return poledger::Run();
}
