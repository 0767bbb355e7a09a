#include "clients/poctl/session.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <utility>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "clients/channel.h"
#include "google/protobuf/util/json_util.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace poledger {
namespace poctl {

Session::Session(Globals globals,
                 std::shared_ptr<grpc::ChannelCredentials> credentials)
    : globals_(std::move(globals)) {
  std::shared_ptr<grpc::Channel> channel =
      NewClientChannel(globals_.server, std::move(credentials));
  pos_ = v1::PurchaseOrderService::NewStub(channel);
  invoices_ = v1::InvoiceService::NewStub(channel);
  notifications_ = v1::NotificationService::NewStub(channel);
  log_ = v1::EventLogService::NewStub(channel);
  admin_ = v1::AdminService::NewStub(channel);
  health_ = grpc::health::v1::Health::NewStub(channel);
}

void Session::Prepare(grpc::ClientContext* context, bool streaming) const {
  if (!streaming) {
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::milliseconds(
                              static_cast<int64_t>(globals_.timeout * 1000)));
  }
  if (!globals_.account.empty()) {
    context->AddMetadata("x-poledger-account", globals_.account);
  }
  if (!globals_.shard.empty()) {
    context->AddMetadata("x-poledger-shard", globals_.shard);
  }
}

void Session::PrepareForShard(grpc::ClientContext* context,
                              const std::string& shard) const {
  context->set_deadline(
      std::chrono::system_clock::now() +
      std::chrono::milliseconds(static_cast<int64_t>(globals_.timeout * 1000)));
  const std::string& to = shard.empty() ? globals_.shard : shard;
  if (!to.empty()) context->AddMetadata("x-poledger-shard", to);
}

void OnRun(CLI::App* command, Run* run, Run body, bool needs_account) {
  command->callback([run, body = std::move(body), needs_account] {
    *run = [body, needs_account](Session& session) {
      if (needs_account && session.account().empty()) {
        return Usage("--account (or $POLEDGER_ACCOUNT) is required");
      }
      return body(session);
    };
  });
}

// --- Exit status
// ----------------------------------------------------------------

namespace {

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
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      return 8;
    default:
      return 1;
  }
}

}  // namespace

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

std::string RequestIdOr(const std::string& given) {
  if (!given.empty()) return given;
  std::random_device random;
  return absl::StrCat("poctl-", absl::Hex(random(), absl::kZeroPad8),
                      absl::Hex(random(), absl::kZeroPad8));
}

// --- Parsing
// ----------------------------------------------------------------------

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

bool ParseEnumNumber(const google::protobuf::EnumDescriptor* d,
                     const std::string& prefix, const std::string& text,
                     int* number) {
  std::string upper = absl::AsciiStrToUpper(text);
  for (char& c : upper) c = c == '-' ? '_' : c;
  for (const std::string& candidate :
       {upper, prefix + upper, prefix + "AWS_" + upper}) {
    if (const auto* v = d->FindValueByName(candidate)) {
      *number = v->number();
      return true;
    }
  }
  return false;
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
  auto status =
      google::protobuf::util::JsonStringToMessage(text.str(), message);
  if (!status.ok()) {
    *error = absl::StrCat(path, ": ", status.ToString());
    return false;
  }
  return true;
}

// --- Printing
// ---------------------------------------------------------------------

std::string EnumShort(const google::protobuf::EnumDescriptor* d, int value,
                      const std::string& prefix) {
  const auto* v = d->FindValueByNumber(value);
  if (v == nullptr) return absl::StrCat(value);
  std::string name = v->name();
  if (name.rfind(prefix, 0) == 0) name = name.substr(prefix.size());
  return name;
}

std::string StatusShort(int status) {
  return EnumShort(v1::PurchaseOrderStatus_descriptor(), status,
                   "PURCHASE_ORDER_STATUS_");
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
      if (i + 1 < row.size())
        line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
}

int Print(const Session& session, const google::protobuf::Message& m,
          const std::function<void()>& table) {
  if (session.json()) {
    std::printf("%s\n", Json(m, false).c_str());
  } else {
    table();
  }
  return 0;
}

}  // namespace poctl
}  // namespace poledger
