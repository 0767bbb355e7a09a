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
// (UNAVAILABLE, DEADLINE_EXCEEDED).
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "clients/channel.h"
#include "core/money.h"
#include "google/protobuf/util/json_util.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "poledger/v1/invoices.grpc.pb.h"
#include "poledger/v1/log.grpc.pb.h"
#include "poledger/v1/purchase_orders.grpc.pb.h"

namespace poledger {
namespace {

struct Globals {
  std::string server;
  std::string account;
  double timeout = 10;
  std::string output = "table";
};

// --- Errors and exit codes ---------------------------------------------------

int ExitCodeOf(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return 0;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      return 3;
    case grpc::StatusCode::NOT_FOUND:
      return 4;
    case grpc::StatusCode::ALREADY_EXISTS:
      return 5;
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::ABORTED:
      return 6;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return 7;
    default:
      return 1;
  }
}

const char* CodeName(grpc::StatusCode code) {
  static const char* const kNames[] = {
      "OK",          "CANCELLED",          "UNKNOWN",           "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED", "NOT_FOUND",    "ALREADY_EXISTS",    "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",   "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL",         "UNAVAILABLE",       "DATA_LOSS",
      "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  return i >= 0 && i < 17 ? kNames[i] : "UNKNOWN";
}

// Prints "error: CODE [REASON] field=FIELD: message" on one line and
// returns the exit code.
int Report(const grpc::Status& status) {
  std::string reason;
  std::string field;
  google::rpc::Status rpc;
  if (rpc.ParseFromString(status.error_details())) {
    for (const auto& any : rpc.details()) {
      google::rpc::ErrorInfo info;
      google::rpc::BadRequest bad;
      if (any.UnpackTo(&info)) reason = info.reason();
      if (any.UnpackTo(&bad) && bad.field_violations_size() > 0) {
        field = bad.field_violations(0).field();
      }
    }
  }
  std::string line = absl::StrCat("error: ", CodeName(status.error_code()));
  if (!reason.empty()) absl::StrAppend(&line, " [", reason, "]");
  if (!field.empty()) absl::StrAppend(&line, " field=", field);
  absl::StrAppend(&line, ": ", status.error_message());
  std::fprintf(stderr, "%s\n", line.c_str());
  return ExitCodeOf(status.error_code());
}

int Usage(const std::string& message) {
  std::fprintf(stderr, "usage error: %s\n", message.c_str());
  return 2;
}

// --- Parsing helpers -------------------------------------------------------------

// Parses "1234.56" exactly into Money (up to 9 fraction digits).
bool ParseMoney(const std::string& text, const std::string& currency,
                v1::Money* out) {
  std::string s = text;
  bool negative = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    negative = s[0] == '-';
    s = s.substr(1);
  }
  const size_t dot = s.find('.');
  const std::string whole = dot == std::string::npos ? s : s.substr(0, dot);
  std::string fraction = dot == std::string::npos ? "" : s.substr(dot + 1);
  if (whole.empty() || fraction.size() > 9) return false;
  for (char c : whole + fraction) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  int64_t units = 0;
  if (!absl::SimpleAtoi(whole, &units)) return false;
  fraction.resize(9, '0');
  int32_t nanos = 0;
  if (!absl::SimpleAtoi(fraction, &nanos)) return false;
  out->set_currency_code(currency);
  out->set_units(negative ? -units : units);
  out->set_nanos(negative ? -nanos : nanos);
  return true;
}

std::string FormatMoney(const v1::Money& m) {
  const int64_t micros = m.units() * core::kMicrosPerUnit + m.nanos() / 1000;
  return core::FormatMicros(micros, m.currency_code());
}

// Finds an enum value by its full name or a short form: "monthly-usage" for
// LINE_ITEM_TYPE_AWS_MONTHLY_USAGE, "all", "suspended".
template <typename Enum>
bool ParseEnum(const google::protobuf::EnumDescriptor* d, const std::string& prefix,
               const std::string& text, Enum* out) {
  std::string upper = absl::AsciiStrToUpper(text);
  for (char& c : upper) c = c == '-' ? '_' : c;
  for (const std::string& candidate :
       {upper, prefix + upper, prefix + "AWS_" + upper}) {
    if (const auto* v = d->FindValueByName(candidate)) {
      *out = static_cast<Enum>(v->number());
      return true;
    }
  }
  return false;
}

std::string EnumShort(const google::protobuf::EnumDescriptor* d, int value,
                      const std::string& prefix) {
  const auto* v = d->FindValueByNumber(value);
  if (v == nullptr) return absl::StrCat(value);
  std::string name = v->name();
  if (name.rfind(prefix, 0) == 0) name = name.substr(prefix.size());
  return name;
}

bool ReadJsonFile(const std::string& path, google::protobuf::Message* message,
                  std::string* error) {
  std::stringstream text;
  if (path == "-") {
    text << std::cin.rdbuf();
  } else {
    std::ifstream in(path);
    if (!in) {
      *error = absl::StrCat("cannot read ", path);
      return false;
    }
    text << in.rdbuf();
  }
  auto status = google::protobuf::util::JsonStringToMessage(text.str(), message);
  if (!status.ok()) {
    *error = absl::StrCat(path, ": ", status.ToString());
    return false;
  }
  return true;
}

std::string Json(const google::protobuf::Message& m, bool one_line) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.add_whitespace = !one_line;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(m, &out, options);
  if (!one_line && !out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// Prints rows as columns padded to the widest cell.
void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
}

std::string StatusShort(int status) {
  return EnumShort(v1::PurchaseOrderStatus_descriptor(), status,
                   "PURCHASE_ORDER_STATUS_");
}

void PrintPurchaseOrder(const v1::PurchaseOrder& po) {
  PrintTable({{"purchase order", po.purchase_order_id()},
              {"status", StatusShort(po.status())},
              {"description", po.description()},
              {"bill from", absl::StrJoin(po.bill_from(), ", ")},
              {"months", absl::StrCat(po.effective_month(), " .. ",
                                      po.expiration_month())},
              {"value", FormatMoney(po.value())},
              {"balance", FormatMoney(po.balance())},
              {"contacts", absl::StrJoin(po.contacts(), ", ",
                                         [](std::string* out, const v1::Contact& c) {
                                           out->append(c.email());
                                         })},
              {"version", absl::StrCat(po.version())}});
  std::vector<std::vector<std::string>> lines = {
      {"LINE", "TYPE", "MONTHS", "TRACKING", "TOTAL", "BALANCE"}};
  for (const v1::LineItem& l : po.line_items()) {
    lines.push_back({absl::StrCat(l.line_number()),
                     EnumShort(v1::LineItemType_descriptor(), l.type(),
                               "LINE_ITEM_TYPE_"),
                     absl::StrCat(l.start_month(), "..", l.end_month()),
                     l.balance_tracking() ? "on" : "off",
                     FormatMoney(l.total_value()), FormatMoney(l.balance())});
  }
  if (po.line_items_size() > 0) {
    std::printf("\n");
    PrintTable(lines);
  }
}

void PrintInvoice(const v1::Invoice& inv) {
  const v1::InvoiceAssociation& a = inv.association();
  PrintTable({{"invoice", inv.invoice_id()},
              {"kind", EnumShort(v1::InvoiceKind_descriptor(), inv.kind(),
                                 "INVOICE_KIND_")},
              {"amount", FormatMoney(inv.amount())},
              {"period", inv.billing_period()},
              {"purchase order", a.associated() ? a.purchase_order_id() : "(none)"},
              {"line", a.associated() ? absl::StrCat(a.line_number()) : "-"},
              {"line balance after",
               a.associated() ? FormatMoney(a.line_balance_after()) : "-"},
              {"position", absl::StrCat(inv.position())}});
  if (!a.explanation().summary().empty()) {
    std::printf("\nwhy: %s\n", a.explanation().summary().c_str());
    std::vector<std::vector<std::string>> rows = {{"PURCHASE ORDER", "OUTCOME", "LINES"}};
    for (const auto& c : a.explanation().purchase_orders()) {
      std::vector<std::string> lines;
      for (const auto& l : c.lines()) {
        lines.push_back(absl::StrCat(
            l.line_number(), ":",
            EnumShort(v1::CandidateOutcome_descriptor(), l.outcome(),
                      "CANDIDATE_OUTCOME_")));
      }
      rows.push_back({c.purchase_order_id(),
                      EnumShort(v1::CandidateOutcome_descriptor(), c.outcome(),
                                "CANDIDATE_OUTCOME_"),
                      absl::StrJoin(lines, " ")});
    }
    PrintTable(rows);
  }
}

}  // namespace

int Main(int argc, char** argv) {
  Globals g;
  const char* env_server = std::getenv("POLEDGER_SERVER");
  g.server = env_server != nullptr ? env_server : "127.0.0.1:50051";
  const char* env_account = std::getenv("POLEDGER_ACCOUNT");
  if (env_account != nullptr) g.account = env_account;

  CLI::App app("poctl: manage purchase orders, invoices and the event log of a "
               "poledger server");
  app.require_subcommand(1);
  app.add_option("--server", g.server, "host:port ($POLEDGER_SERVER)")
      ->capture_default_str();
  app.add_option("--account", g.account, "Account id ($POLEDGER_ACCOUNT)");
  app.add_option("--timeout", g.timeout, "Seconds per call")->capture_default_str();
  app.add_option("--output,-o", g.output, "table or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();

  // Shared inputs.
  std::string file, id, description, currency = "USD", effective, expiration;
  std::vector<std::string> bill_from, contacts, tags;
  std::vector<int> thresholds;
  std::string request_id;
  int64_t expected_version = -1;
  int line_number = 0;
  std::string type, start, end, amount, tax_rate;
  int64_t quantity = 1;
  bool tracking = true;
  std::string category, period, credit_for, po_id, month, status_filter;
  int page_size = 0;
  uint64_t after = 0;
  std::vector<std::string> event_types;
  std::vector<std::string> update_fields;

  auto common_write = [&](CLI::App* c) {
    c->add_option("--request-id", request_id, "Retry-safe request id");
    c->add_option("--expected-version", expected_version,
                  "Refuse unless the purchase order is at this version");
  };
  auto header_flags = [&](CLI::App* c) {
    c->add_option("--id", id, "Purchase order id");
    c->add_option("-f,--file", file, "JSON PurchaseOrder (\"-\": stdin)");
    c->add_option("--description", description);
    c->add_option("--bill-from", bill_from, "Seller entity (repeat)");
    c->add_option("--currency", currency)->capture_default_str();
    c->add_option("--effective", effective, "YYYY-MM");
    c->add_option("--expiration", expiration, "YYYY-MM");
    c->add_option("--contact", contacts, "email or 'Name <email>' (repeat)");
    c->add_option("--tag", tags, "key=value (repeat)");
    c->add_option("--threshold", thresholds, "Balance alert percent (repeat)");
  };
  auto line_flags = [&](CLI::App* c) {
    c->add_option("--line", line_number, "Line number")->required();
    c->add_option("--type", type, "all, monthly-usage, subscription-purchase, "
                                  "marketplace-transaction, ...");
    c->add_option("--start", start, "YYYY-MM");
    c->add_option("--end", end, "YYYY-MM");
    c->add_option("--amount", amount, "Unit price, e.g. 1250.00");
    c->add_option("--quantity", quantity)->capture_default_str();
    c->add_option("--tax-rate", tax_rate, "Percent, e.g. 19 or 7.5");
    c->add_flag("--tracking,!--no-tracking", tracking, "Balance tracking");
  };

  CLI::App* po = app.add_subcommand("po", "Purchase orders")->require_subcommand(1);
  CLI::App* po_create = po->add_subcommand("create", "Create a purchase order");
  header_flags(po_create);
  common_write(po_create);
  CLI::App* po_get = po->add_subcommand("get", "Show a purchase order");
  po_get->add_option("id", id)->required();
  CLI::App* po_list = po->add_subcommand("list", "List purchase orders");
  po_list->add_option("--status", status_filter, "active, suspended, expired, ...");
  po_list->add_option("--page-size", page_size);
  CLI::App* po_update = po->add_subcommand(
      "update", "Change header fields (only the flags given)");
  header_flags(po_update);
  common_write(po_update);
  CLI::App* po_suspend = po->add_subcommand("suspend", "Suspend");
  po_suspend->add_option("id", id)->required();
  common_write(po_suspend);
  CLI::App* po_activate = po->add_subcommand("activate", "Reactivate");
  po_activate->add_option("id", id)->required();
  common_write(po_activate);
  CLI::App* po_delete = po->add_subcommand("delete", "Delete");
  po_delete->add_option("id", id)->required();
  common_write(po_delete);
  CLI::App* line = po->add_subcommand("line", "Line items")->require_subcommand(1);
  CLI::App* line_add = line->add_subcommand("add", "Add a line item");
  line_add->add_option("po", id, "Purchase order id")->required();
  line_flags(line_add);
  common_write(line_add);
  CLI::App* line_update = line->add_subcommand("update", "Change a line item");
  line_update->add_option("po", id, "Purchase order id")->required();
  line_flags(line_update);
  common_write(line_update);
  CLI::App* line_remove = line->add_subcommand("remove", "Remove a line item");
  line_remove->add_option("po", id, "Purchase order id")->required();
  line_remove->add_option("--line", line_number)->required();
  common_write(line_remove);

  CLI::App* invoice = app.add_subcommand("invoice", "Invoices")->require_subcommand(1);
  CLI::App* inv_record = invoice->add_subcommand("record", "Record an invoice");
  inv_record->add_option("--id", id, "Invoice id");
  inv_record->add_option("-f,--file", file, "JSON Invoice (\"-\": stdin)");
  inv_record->add_option("--bill-from", bill_from, "Seller entity");
  inv_record->add_option("--category", category,
                         "monthly-usage, subscription-purchase, marketplace, "
                         "professional-services");
  inv_record->add_option("--period", period, "Billing period YYYY-MM");
  inv_record->add_option("--amount", amount, "e.g. 2600.00");
  inv_record->add_option("--currency", currency)->capture_default_str();
  inv_record->add_option("--credit-for", credit_for,
                         "Make it a credit memo for this invoice");
  inv_record->add_option("--po", po_id, "Purchase order id the buyer typed");
  inv_record->add_option("--request-id", request_id);
  CLI::App* inv_get = invoice->add_subcommand("get", "Show an invoice");
  inv_get->add_option("id", id)->required();

  CLI::App* marketplace =
      app.add_subcommand("marketplace", "Marketplace")->require_subcommand(1);
  CLI::App* mp_record = marketplace->add_subcommand("record", "Record a transaction");
  mp_record->add_option("--id", id, "Transaction id")->required();
  mp_record->add_option("--po", po_id, "Purchase order number");
  mp_record->add_option("--bill-from", bill_from)->required();
  mp_record->add_option("--amount", amount)->required();
  mp_record->add_option("--currency", currency)->capture_default_str();
  mp_record->add_option("--month", month, "YYYY-MM")->required();
  mp_record->add_option("--line", line_number);
  mp_record->add_option("--request-id", request_id);

  CLI::App* events = app.add_subcommand("events", "Event log")->require_subcommand(1);
  CLI::App* ev_read = events->add_subcommand("read", "Read a page of events");
  ev_read->add_option("--from", after, "First position");
  ev_read->add_option("--type", event_types, "Only these types (repeat)");
  ev_read->add_option("--page-size", page_size);
  CLI::App* ev_tail = events->add_subcommand("tail", "Follow the log");
  ev_tail->add_option("--after", after, "Resume after this position");
  ev_tail->add_option("--type", event_types, "Only these types (repeat)");

  CLI::App* notifications =
      app.add_subcommand("notifications", "Notifications")->require_subcommand(1);
  CLI::App* n_list = notifications->add_subcommand("list", "List notifications");
  n_list->add_option("--po", po_id);
  n_list->add_option("--page-size", page_size);
  CLI::App* n_watch = notifications->add_subcommand("watch", "Follow notifications");
  n_watch->add_option("--after", after, "Resume after this position");

  CLI::App* admin = app.add_subcommand("admin", "Administration")->require_subcommand(1);
  CLI::App* admin_info = admin->add_subcommand("info", "Server version and head");
  CLI::App* admin_snapshot = admin->add_subcommand("snapshot", "Save a snapshot now");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }

  auto channel = NewClientChannel(g.server);
  auto pos = v1::PurchaseOrderService::NewStub(channel);
  auto invoices = v1::InvoiceService::NewStub(channel);
  auto notes = v1::NotificationService::NewStub(channel);
  auto log = v1::EventLogService::NewStub(channel);
  auto adm = v1::AdminService::NewStub(channel);
  const bool json = g.output == "json";
  auto context = [&](grpc::ClientContext* ctx, bool streaming = false) {
    if (!streaming) {
      ctx->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(g.timeout * 1000)));
    }
    ctx->AddMetadata("x-poledger-actor", "poctl");
  };
  auto need_account = [&]() { return g.account.empty(); };
  const bool needs_account = !admin->parsed() && !events->parsed();
  if (needs_account && need_account()) {
    return Usage("--account (or $POLEDGER_ACCOUNT) is required");
  }

  auto print_po = [&](const v1::PurchaseOrder& p) {
    if (json) {
      std::printf("%s\n", Json(p, false).c_str());
    } else {
      PrintPurchaseOrder(p);
    }
    return 0;
  };

  auto build_header = [&](v1::PurchaseOrder* p, bool for_update,
                          google::protobuf::FieldMask* mask) -> std::string {
    if (!file.empty()) {
      std::string error;
      if (!ReadJsonFile(file, p, &error)) return error;
      if (!id.empty()) p->set_purchase_order_id(id);
      return "";
    }
    p->set_purchase_order_id(id);
    auto touch = [&](const char* field) {
      if (mask != nullptr) mask->add_paths(field);
    };
    if (!description.empty()) {
      p->set_description(description);
      touch("description");
    }
    if (!bill_from.empty()) {
      for (const auto& b : bill_from) p->add_bill_from(b);
      touch("bill_from");
    }
    if (!for_update || currency != "USD") {
      p->set_currency_code(currency);
      if (for_update) touch("currency_code");
    }
    if (!effective.empty()) {
      p->set_effective_month(effective);
      touch("effective_month");
    }
    if (!expiration.empty()) {
      p->set_expiration_month(expiration);
      touch("expiration_month");
    }
    for (const auto& c : contacts) {
      v1::Contact* contact = p->add_contacts();
      const size_t lt = c.find('<');
      if (lt != std::string::npos && c.back() == '>') {
        contact->set_name(std::string(absl::StripAsciiWhitespace(c.substr(0, lt))));
        contact->set_email(c.substr(lt + 1, c.size() - lt - 2));
      } else {
        contact->set_email(c);
      }
    }
    if (!contacts.empty()) touch("contacts");
    for (const auto& t : tags) {
      const size_t eq = t.find('=');
      v1::Tag* tag = p->add_tags();
      tag->set_key(t.substr(0, eq));
      if (eq != std::string::npos) tag->set_value(t.substr(eq + 1));
    }
    if (!tags.empty()) touch("tags");
    for (int t : thresholds) p->add_balance_thresholds(t);
    if (!thresholds.empty()) touch("balance_thresholds");
    return "";
  };

  auto build_line = [&](v1::LineItem* l, const std::string& line_currency,
                        google::protobuf::FieldMask* mask) -> std::string {
    l->set_line_number(line_number);
    auto touch = [&](const char* field) {
      if (mask != nullptr) mask->add_paths(field);
    };
    if (!type.empty()) {
      v1::LineItemType t;
      if (!ParseEnum(v1::LineItemType_descriptor(), "LINE_ITEM_TYPE_", type, &t)) {
        return absl::StrCat("--type: unknown line item type '", type, "'");
      }
      l->set_type(t);
      touch("type");
    }
    if (!start.empty()) {
      l->set_start_month(start);
      touch("start_month");
    }
    if (!end.empty()) {
      l->set_end_month(end);
      touch("end_month");
    }
    if (!amount.empty()) {
      if (!ParseMoney(amount, line_currency, l->mutable_amount())) {
        return absl::StrCat("--amount: '", amount, "' is not a decimal amount");
      }
      touch("amount");
    }
    l->set_quantity(quantity);
    touch("quantity");
    l->set_balance_tracking(tracking);
    touch("balance_tracking");
    if (!tax_rate.empty()) {
      double pct = 0;
      if (!absl::SimpleAtod(tax_rate, &pct)) return "--tax-rate: not a number";
      l->mutable_tax()->set_rate_ppm(static_cast<int64_t>(pct * 10000 + 0.5));
      touch("tax");
    }
    return "";
  };

  auto expected = [&](auto* req) {
    if (expected_version >= 0) req->set_expected_version(expected_version);
  };

  grpc::Status s;
  if (po_create->parsed()) {
    v1::CreatePurchaseOrderRequest req;
    req.set_account_id(g.account);
    req.set_request_id(request_id);
    if (auto e = build_header(req.mutable_purchase_order(), false, nullptr); !e.empty()) {
      return Usage(e);
    }
    v1::PurchaseOrder out;
    grpc::ClientContext ctx;
    context(&ctx);
    s = pos->CreatePurchaseOrder(&ctx, req, &out);
    return s.ok() ? print_po(out) : Report(s);
  }
  if (po_get->parsed()) {
    v1::GetPurchaseOrderRequest req;
    req.set_account_id(g.account);
    req.set_purchase_order_id(id);
    v1::PurchaseOrder out;
    grpc::ClientContext ctx;
    context(&ctx);
    s = pos->GetPurchaseOrder(&ctx, req, &out);
    return s.ok() ? print_po(out) : Report(s);
  }
  if (po_list->parsed()) {
    v1::ListPurchaseOrdersRequest req;
    req.set_account_id(g.account);
    req.set_page_size(page_size);
    if (!status_filter.empty()) {
      v1::PurchaseOrderStatus st;
      if (!ParseEnum(v1::PurchaseOrderStatus_descriptor(), "PURCHASE_ORDER_STATUS_",
                     status_filter, &st)) {
        return Usage("--status: unknown status '" + status_filter + "'");
      }
      req.set_status(st);
    }
    std::vector<std::vector<std::string>> rows = {
        {"ID", "STATUS", "MONTHS", "VALUE", "BALANCE", "LINES", "VERSION"}};
    v1::ListPurchaseOrdersResponse all;
    do {
      v1::ListPurchaseOrdersResponse page;
      grpc::ClientContext ctx;
      context(&ctx);
      s = pos->ListPurchaseOrders(&ctx, req, &page);
      if (!s.ok()) return Report(s);
      for (const auto& p : page.purchase_orders()) {
        *all.add_purchase_orders() = p;
        rows.push_back({p.purchase_order_id(), StatusShort(p.status()),
                        absl::StrCat(p.effective_month(), "..", p.expiration_month()),
                        FormatMoney(p.value()), FormatMoney(p.balance()),
                        absl::StrCat(p.line_items_size()), absl::StrCat(p.version())});
      }
      req.set_page_token(page.next_page_token());
    } while (!req.page_token().empty());
    if (json) {
      std::printf("%s\n", Json(all, false).c_str());
    } else {
      PrintTable(rows);
    }
    return 0;
  }
  if (po_update->parsed()) {
    v1::UpdatePurchaseOrderRequest req;
    req.set_account_id(g.account);
    req.set_request_id(request_id);
    expected(&req);
    if (auto e = build_header(req.mutable_purchase_order(), true,
                              file.empty() ? req.mutable_update_mask() : nullptr);
        !e.empty()) {
      return Usage(e);
    }
    if (file.empty() && req.update_mask().paths_size() == 0) {
      return Usage("nothing to update: give the fields to change");
    }
    v1::PurchaseOrder out;
    grpc::ClientContext ctx;
    context(&ctx);
    s = pos->UpdatePurchaseOrder(&ctx, req, &out);
    return s.ok() ? print_po(out) : Report(s);
  }
  if (po_suspend->parsed() || po_activate->parsed()) {
    v1::UpdatePurchaseOrderStatusRequest req;
    req.set_account_id(g.account);
    req.set_purchase_order_id(id);
    req.set_request_id(request_id);
    expected(&req);
    req.set_status(po_suspend->parsed() ? v1::PURCHASE_ORDER_STATUS_SUSPENDED
                                        : v1::PURCHASE_ORDER_STATUS_ACTIVE);
    v1::PurchaseOrder out;
    grpc::ClientContext ctx;
    context(&ctx);
    s = pos->UpdatePurchaseOrderStatus(&ctx, req, &out);
    return s.ok() ? print_po(out) : Report(s);
  }
  if (po_delete->parsed()) {
    v1::DeletePurchaseOrderRequest req;
    req.set_account_id(g.account);
    req.set_purchase_order_id(id);
    req.set_request_id(request_id);
    expected(&req);
    google::protobuf::Empty out;
    grpc::ClientContext ctx;
    context(&ctx);
    s = pos->DeletePurchaseOrder(&ctx, req, &out);
    if (!s.ok()) return Report(s);
    if (!json) std::printf("deleted %s\n", id.c_str());
    if (json) std::printf("{}\n");
    return 0;
  }
  if (line_add->parsed() || line_update->parsed()) {
    const bool add = line_add->parsed();
    v1::PurchaseOrder out;
    grpc::ClientContext ctx;
    context(&ctx);
    if (add) {
      v1::AddLineItemRequest req;
      req.set_account_id(g.account);
      req.set_purchase_order_id(id);
      req.set_request_id(request_id);
      expected(&req);
      if (auto e = build_line(req.mutable_line_item(), "", nullptr); !e.empty()) {
        return Usage(e);
      }
      s = pos->AddLineItem(&ctx, req, &out);
    } else {
      v1::UpdateLineItemRequest req;
      req.set_account_id(g.account);
      req.set_purchase_order_id(id);
      req.set_request_id(request_id);
      expected(&req);
      if (auto e = build_line(req.mutable_line_item(), "", req.mutable_update_mask());
          !e.empty()) {
        return Usage(e);
      }
      s = pos->UpdateLineItem(&ctx, req, &out);
    }
    return s.ok() ? print_po(out) : Report(s);
  }
  if (line_remove->parsed()) {
    v1::RemoveLineItemRequest req;
    req.set_account_id(g.account);
    req.set_purchase_order_id(id);
    req.set_line_number(line_number);
    req.set_request_id(request_id);
    expected(&req);
    v1::PurchaseOrder out;
    grpc::ClientContext ctx;
    context(&ctx);
    s = pos->RemoveLineItem(&ctx, req, &out);
    return s.ok() ? print_po(out) : Report(s);
  }
  auto print_invoice = [&](const v1::Invoice& inv) {
    if (json) {
      std::printf("%s\n", Json(inv, false).c_str());
    } else {
      PrintInvoice(inv);
    }
    return 0;
  };
  if (inv_record->parsed()) {
    v1::RecordInvoiceRequest req;
    req.set_account_id(g.account);
    req.set_request_id(request_id);
    v1::Invoice* inv = req.mutable_invoice();
    if (!file.empty()) {
      std::string error;
      if (!ReadJsonFile(file, inv, &error)) return Usage(error);
    } else {
      inv->set_invoice_id(id);
      if (!bill_from.empty()) inv->set_bill_from(bill_from[0]);
      if (!category.empty()) {
        v1::InvoiceCategory c;
        if (!ParseEnum(v1::InvoiceCategory_descriptor(), "INVOICE_CATEGORY_",
                       category, &c)) {
          return Usage("--category: unknown category '" + category + "'");
        }
        inv->set_category(c);
      }
      inv->set_billing_period(period);
      if (!ParseMoney(amount, currency, inv->mutable_amount())) {
        return Usage("--amount: '" + amount + "' is not a decimal amount");
      }
      if (!credit_for.empty()) {
        inv->set_kind(v1::INVOICE_KIND_CREDIT_MEMO);
        inv->set_original_invoice_id(credit_for);
      }
      inv->set_purchase_order_id(po_id);
    }
    v1::Invoice out;
    grpc::ClientContext ctx;
    context(&ctx);
    s = invoices->RecordInvoice(&ctx, req, &out);
    return s.ok() ? print_invoice(out) : Report(s);
  }
  if (inv_get->parsed()) {
    v1::GetInvoiceRequest req;
    req.set_account_id(g.account);
    req.set_invoice_id(id);
    v1::Invoice out;
    grpc::ClientContext ctx;
    context(&ctx);
    s = invoices->GetInvoice(&ctx, req, &out);
    return s.ok() ? print_invoice(out) : Report(s);
  }
  if (mp_record->parsed()) {
    v1::RecordMarketplaceTransactionRequest req;
    req.set_account_id(g.account);
    req.set_request_id(request_id);
    v1::MarketplaceTransaction* t = req.mutable_transaction();
    t->set_transaction_id(id);
    t->set_purchase_order_id(po_id);
    t->set_bill_from(bill_from.empty() ? "" : bill_from[0]);
    if (!ParseMoney(amount, currency, t->mutable_amount())) {
      return Usage("--amount: '" + amount + "' is not a decimal amount");
    }
    t->set_month(month);
    t->set_line_number(line_number);
    v1::RecordMarketplaceTransactionResponse out;
    grpc::ClientContext ctx;
    context(&ctx);
    s = invoices->RecordMarketplaceTransaction(&ctx, req, &out);
    if (!s.ok()) return Report(s);
    if (json) {
      std::printf("%s\n", Json(out, false).c_str());
    } else {
      PrintTable({{"outcome", EnumShort(v1::MarketplaceOutcome_descriptor(),
                                        out.outcome(), "MARKETPLACE_OUTCOME_")},
                  {"purchase order", out.purchase_order_id()},
                  {"line", absl::StrCat(out.line_number())},
                  {"reason", out.reason()}});
    }
    return 0;
  }
  auto event_row = [](const v1::Event& e) {
    return std::vector<std::string>{
        absl::StrCat(e.position()),
        absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                         absl::FromUnixSeconds(e.time().seconds()),
                         absl::UTCTimeZone()),
        e.stream_id(), e.event_type(), e.actor()};
  };
  if (ev_read->parsed()) {
    v1::ReadEventsRequest req;
    req.set_from_position(after);
    req.set_page_size(page_size);
    req.set_account_id(g.account);
    for (const auto& t : event_types) req.add_event_types(t);
    v1::ReadEventsResponse out;
    grpc::ClientContext ctx;
    context(&ctx);
    s = log->ReadEvents(&ctx, req, &out);
    if (!s.ok()) return Report(s);
    if (json) {
      for (const auto& e : out.events()) std::printf("%s\n", Json(e, true).c_str());
    } else {
      std::vector<std::vector<std::string>> rows = {
          {"POSITION", "TIME", "STREAM", "TYPE", "ACTOR"}};
      for (const auto& e : out.events()) rows.push_back(event_row(e));
      PrintTable(rows);
    }
    return 0;
  }
  if (ev_tail->parsed()) {
    v1::SubscribeEventsRequest req;
    req.set_after_position(after);
    req.set_account_id(g.account);
    for (const auto& t : event_types) req.add_event_types(t);
    grpc::ClientContext ctx;
    context(&ctx, true);
    auto reader = log->SubscribeEvents(&ctx, req);
    v1::SubscribeEventsResponse msg;
    while (reader->Read(&msg)) {
      if (!msg.has_event()) continue;
      if (json) {
        std::printf("%s\n", Json(msg.event(), true).c_str());
      } else {
        std::printf("%s\n", absl::StrJoin(event_row(msg.event()), "  ").c_str());
      }
      std::fflush(stdout);
    }
    s = reader->Finish();
    return s.ok() ? 0 : Report(s);
  }
  auto notification_row = [](const v1::Notification& n) {
    const v1::NotificationRaised& r = n.notification();
    return std::vector<std::string>{
        absl::StrCat(n.position()),
        EnumShort(v1::NotificationKind_descriptor(), r.kind(), "NOTIFICATION_KIND_"),
        r.purchase_order_id(), r.line_number() ? absl::StrCat(r.line_number()) : "-",
        r.reminder_label().empty() ? absl::StrCat(r.threshold_percent(), "%")
                                   : r.reminder_label(),
        absl::StrCat(r.recipients_size())};
  };
  if (n_list->parsed()) {
    v1::ListNotificationsRequest req;
    req.set_account_id(g.account);
    req.set_purchase_order_id(po_id);
    req.set_page_size(page_size);
    v1::ListNotificationsResponse out;
    grpc::ClientContext ctx;
    context(&ctx);
    s = notes->ListNotifications(&ctx, req, &out);
    if (!s.ok()) return Report(s);
    if (json) {
      std::printf("%s\n", Json(out, false).c_str());
    } else {
      std::vector<std::vector<std::string>> rows = {
          {"POSITION", "KIND", "PO", "LINE", "TRIGGER", "RECIPIENTS"}};
      for (const auto& n : out.notifications()) rows.push_back(notification_row(n));
      PrintTable(rows);
    }
    return 0;
  }
  if (n_watch->parsed()) {
    v1::SubscribeNotificationsRequest req;
    req.set_account_id(g.account);
    req.set_after_position(after);
    grpc::ClientContext ctx;
    context(&ctx, true);
    auto reader = notes->SubscribeNotifications(&ctx, req);
    v1::SubscribeNotificationsResponse msg;
    while (reader->Read(&msg)) {
      if (!msg.has_notification()) continue;
      if (json) {
        std::printf("%s\n", Json(msg.notification(), true).c_str());
      } else {
        std::printf("%s\n",
                    absl::StrJoin(notification_row(msg.notification()), "  ").c_str());
      }
      std::fflush(stdout);
    }
    s = reader->Finish();
    return s.ok() ? 0 : Report(s);
  }
  if (admin_info->parsed()) {
    v1::GetServerInfoResponse out;
    grpc::ClientContext ctx;
    context(&ctx);
    s = adm->GetServerInfo(&ctx, v1::GetServerInfoRequest(), &out);
    if (!s.ok()) return Report(s);
    if (json) {
      std::printf("%s\n", Json(out, false).c_str());
    } else {
      PrintTable({{"version", out.version()},
                  {"head", absl::StrCat(out.head_position())},
                  {"uptime", absl::StrCat(out.uptime().seconds(), "s")},
                  {"clock", out.clock()}});
    }
    return 0;
  }
  if (admin_snapshot->parsed()) {
    v1::CreateSnapshotResponse out;
    grpc::ClientContext ctx;
    context(&ctx);
    s = adm->CreateSnapshot(&ctx, v1::CreateSnapshotRequest(), &out);
    if (!s.ok()) return Report(s);
    if (json) {
      std::printf("%s\n", Json(out, false).c_str());
    } else {
      std::printf("snapshot at position %llu\n",
                  static_cast<unsigned long long>(out.position()));
    }
    return 0;
  }
  return Usage("no command");
}

}  // namespace poledger

int main(int argc, char** argv) { return poledger::Main(argc, argv); }
