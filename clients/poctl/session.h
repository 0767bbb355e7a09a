// poctl's shared parts: the session a command runs in (server, account,
// output form, the service stubs) and the helpers every command group uses
// to parse flags and print answers.
#ifndef POLEDGER_CLIENTS_POCTL_SESSION_H_
#define POLEDGER_CLIENTS_POCTL_SESSION_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "clients/channel.h"
#include "clients/format.h"
#include "google/protobuf/descriptor.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/status.h"
#include "poledger/v1/invoices.grpc.pb.h"
#include "poledger/v1/log.grpc.pb.h"
#include "poledger/v1/purchase_orders.grpc.pb.h"

namespace CLI {
class App;
}  // namespace CLI

namespace poledger {
namespace poctl {

// The global flags.
struct Globals {
  std::string server;
  std::string account;
  // The shard a call that is about no one account goes to through a proxy
  // (x-poledger-shard); empty: shard 0.
  std::string shard;
  double timeout = 10;
  std::string output = "table";
  ClientTls tls;
};

// What a command runs against: one channel and its stubs.
class Session {
 public:
  Session(Globals globals,
          std::shared_ptr<grpc::ChannelCredentials> credentials);

  const std::string& account() const { return globals_.account; }
  bool json() const { return globals_.output == "json"; }

  // Sets the call deadline (--timeout; none for a stream, which runs until
  // the user stops it) and the routing headers: x-poledger-account (the
  // session's account, if any) and x-poledger-shard (--shard, if given).
  void Prepare(grpc::ClientContext* context, bool streaming = false) const;
  // As Prepare, for a call addressed to one shard (`shard`, else --shard),
  // not to an account: admin calls, a batch of one shard's items.
  void PrepareForShard(grpc::ClientContext* context,
                       const std::string& shard = "") const;

  v1::PurchaseOrderService::Stub& purchase_orders() { return *pos_; }
  v1::InvoiceService::Stub& invoices() { return *invoices_; }
  v1::NotificationService::Stub& notifications() { return *notifications_; }
  v1::EventLogService::Stub& log() { return *log_; }
  v1::AdminService::Stub& admin() { return *admin_; }
  grpc::health::v1::Health::Stub& health() { return *health_; }

 private:
  Globals globals_;
  std::unique_ptr<v1::PurchaseOrderService::Stub> pos_;
  std::unique_ptr<v1::InvoiceService::Stub> invoices_;
  std::unique_ptr<v1::NotificationService::Stub> notifications_;
  std::unique_ptr<v1::EventLogService::Stub> log_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

// A parsed command: runs in the session and returns the exit status.
using Run = std::function<int(Session&)>;

// Makes `command` the one to run, once the command line names it: `body`,
// after checking that an account is given if the command needs one.
void OnRun(CLI::App* command, Run* run, Run body, bool needs_account = true);

// --- Exit status
// ----------------------------------------------------------------

// Prints "error: CODE [REASON] field=FIELD: message" on one line and
// returns the exit status for the code.
int Report(const grpc::Status& status);

// Prints "usage error: message" and returns 2.
int Usage(const std::string& message);

// `given` (--request-id), or a new random one: every write carries a
// request id, so that the channel's retries of an UNAVAILABLE answer (a
// failover, a restart) are answered as the first attempt, never applied
// twice.
std::string RequestIdOr(const std::string& given);

// --- Parsing
// ----------------------------------------------------------------------

// Parses "1234.56" exactly into Money (up to 9 fraction digits).
bool ParseMoney(const std::string& text, const std::string& currency,
                v1::Money* out);

// Finds an enum value by its full name or a short form: "monthly-usage" for
// LINE_ITEM_TYPE_AWS_MONTHLY_USAGE, "all", "suspended".
bool ParseEnumNumber(const google::protobuf::EnumDescriptor* d,
                     const std::string& prefix, const std::string& text,
                     int* number);
template <typename Enum>
bool ParseEnum(const google::protobuf::EnumDescriptor* d,
               const std::string& prefix, const std::string& text, Enum* out) {
  int number = 0;
  if (!ParseEnumNumber(d, prefix, text, &number)) return false;
  *out = static_cast<Enum>(number);
  return true;
}

// Reads a message's JSON form from `path` ("-": standard input).
bool ReadJsonFile(const std::string& path, google::protobuf::Message* message,
                  std::string* error);

// --- Printing
// ---------------------------------------------------------------------

// An enum value's name without `prefix` ("ACTIVE" for
// PURCHASE_ORDER_STATUS_ACTIVE).
std::string EnumShort(const google::protobuf::EnumDescriptor* d, int value,
                      const std::string& prefix);
std::string StatusShort(int status);
// A message's JSON form with the proto field names.
std::string Json(const google::protobuf::Message& m, bool one_line);
// Prints rows as columns padded to the widest cell.
void PrintTable(const std::vector<std::vector<std::string>>& rows);
// Prints `m` as JSON with --output=json, else calls `table`; returns 0.
int Print(const Session& session, const google::protobuf::Message& m,
          const std::function<void()>& table);

// --- Command groups (one file each)
// ---------------------------------------------

void AddPurchaseOrderCommands(CLI::App* app, Run* run);  // po, po line
void AddInvoiceCommands(CLI::App* app, Run* run);        // invoice, marketplace
void AddImportCommand(CLI::App* invoice, Run* run);      // invoice import
void AddLogCommands(CLI::App* app, Run* run);    // events, notifications
void AddAdminCommands(CLI::App* app, Run* run);  // admin, health

}  // namespace poctl
}  // namespace poledger

#endif  // POLEDGER_CLIENTS_POCTL_SESSION_H_
