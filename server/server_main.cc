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

#include "CLI/CLI.hpp"
#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "eventstore/rocksdb_event_store.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"

namespace poledger {
namespace {

struct ServerFlags {
  std::string listen = "127.0.0.1:50051";
  std::string data_dir = "./data";
  std::string clock = "real";
  double shutdown_grace_seconds = 10;
};

int Run(const ServerFlags& flags) {
  if (flags.clock != "real" && !absl::StartsWith(flags.clock, "manual:")) {
    std::fprintf(stderr, "--clock: '%s' is neither 'real' nor 'manual:TIME'\n",
                 flags.clock.c_str());
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
  builder.AddListeningPort(flags.listen,
                           grpc::InsecureServerCredentials(), &port);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "cannot listen on %s\n",
                 flags.listen.c_str());
    return 1;
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus(false);
  // Tests and scripts read the bound port from this line.
  const std::string& listen = flags.listen;
  std::fprintf(stderr, "poledger-server listening on %s:%d\n",
               listen.substr(0, listen.rfind(':')).c_str(), port);

  RocksDbEventStoreOptions options;
  options.path = flags.data_dir;
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
                         absl::Seconds(flags.shutdown_grace_seconds)));
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
  poledger::ServerFlags flags;
  CLI::App app("poledger-server: the purchase-order ledger's gRPC server");
  app.add_option("--listen", flags.listen, "Address to listen on (host:port)")
      ->capture_default_str();
  app.add_option("--data-dir", flags.data_dir,
                 "Directory of the embedded RocksDB event log; created if "
                 "missing")
      ->capture_default_str();
  app.add_option("--clock", flags.clock,
                 "'real', or 'manual:YYYY-MM-DDTHH:MM:SSZ' for tests")
      ->capture_default_str();
  app.add_option("--shutdown-grace-seconds", flags.shutdown_grace_seconds,
                 "How long in-flight calls may run after SIGTERM before they "
                 "are cancelled")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }
  return poledger::Run(flags);
}
