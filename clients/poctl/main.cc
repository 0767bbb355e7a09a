// poctl: the operator's command line for a poledger server.
//
//   poctl [--server=HOST:PORT] [--account=ID] [--timeout=SECONDS]
//         [--output=table|json] GROUP COMMAND [flags]
//
//   po create|get|list|update|suspend|activate|delete
//   po line add|update|remove
//   invoice record|get
//   marketplace record
//   events read|tail
//   notifications list|watch
//   admin info|snapshot
//
// --server defaults to $POLEDGER_SERVER or 127.0.0.1:50051; --account to
// $POLEDGER_ACCOUNT. Inputs come from flags or, with -f FILE, from the
// message's JSON form ("-" reads standard input).
//
// Exit status: 0 success; 1 other error; 2 bad usage; 3 invalid argument;
// 4 not found; 5 already exists; 6 refused by a rule or a version conflict
// (FAILED_PRECONDITION, ABORTED); 7 server unreachable or too slow
// (UNAVAILABLE, DEADLINE_EXCEEDED); 8 not allowed (UNAUTHENTICATED,
// PERMISSION_DENIED).
//
// TLS: --tls-ca, --tls-cert, --tls-key, or $POLEDGER_CLIENT_TLS_CA,
// $POLEDGER_CLIENT_TLS_CERT, $POLEDGER_CLIENT_TLS_KEY (not POLEDGER_TLS_*,
// which are the server's own flags in its environment).
#include <cstdlib>
#include <string>
#include <utility>

#include "CLI/CLI.hpp"
#include "clients/poctl/session.h"

namespace poledger {
namespace poctl {

int Main(int argc, char** argv) {
  Globals g;
  const char* env_server = std::getenv("POLEDGER_SERVER");
  g.server = env_server != nullptr ? env_server : "127.0.0.1:50051";
  const char* env_account = std::getenv("POLEDGER_ACCOUNT");
  if (env_account != nullptr) g.account = env_account;
  const char* env_shard = std::getenv("POLEDGER_SHARD");
  if (env_shard != nullptr) g.shard = env_shard;

  CLI::App app(
      "poctl: manage purchase orders, invoices and the event log of a "
      "poledger server");
  app.require_subcommand(1);
  app.add_option("--server", g.server, "host:port ($POLEDGER_SERVER)")
      ->capture_default_str();
  app.add_option("--account", g.account, "Account id ($POLEDGER_ACCOUNT)");
  app.add_option("--shard", g.shard,
                 "Through a proxy: the shard (0..N-1) of calls about no one "
                 "account (admin, the whole log) ($POLEDGER_SHARD)");
  app.add_option("--timeout", g.timeout, "Seconds per call")
      ->capture_default_str();
  app.add_option("--output,-o", g.output, "table or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  AddTlsOptions(&app, &g.tls, "POLEDGER_CLIENT");

  Run run;
  AddPurchaseOrderCommands(&app, &run);
  AddInvoiceCommands(&app, &run);
  AddLogCommands(&app, &run);
  AddAdminCommands(&app, &run);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }
  if (!run) return Usage("no command");
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      ClientCredentials(g.tls);
  if (!credentials.ok())
    return Usage(std::string(credentials.status().message()));
  Session session(std::move(g), *std::move(credentials));
  return run(session);
}

}  // namespace poctl
}  // namespace poledger

int main(int argc, char** argv) { return poledger::poctl::Main(argc, argv); }
