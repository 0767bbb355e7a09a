// poctl invoice import FILE: a billing run from a file, sent in batches
// (InvoiceService.BatchRecordInvoices), with a summary of what happened.
//
// FILE is JSON lines (one Invoice message's JSON form per line) or CSV
// with a header row naming Invoice fields (see README, "Importing a billing
// run"). The whole file is read and checked before anything is sent: a line
// that does not parse stops the import with its line number, and nothing
// is recorded. Items are idempotent by invoice id, so an import that stops
// half-way (server unreachable) can be run again as it is.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "clients/poctl/session.h"
#include "core/shard.h"
#include "google/protobuf/util/json_util.h"
#include "google/rpc/error_details.pb.h"

namespace poledger {
namespace poctl {
namespace {

// Exit status when some items were refused (the others are recorded).
constexpr int kSomeRefused = 9;

struct ImportFlags {
  std::string file;
  std::string format = "auto";
  int batch_size = 500;
  bool dry_run = false;
  bool progress = true;
};

// One item to send and the file line it came from.
struct Row {
  int line = 0;
  v1::RecordInvoiceRequest request;
};

// Splits one CSV record (RFC 4180: commas, double quotes, "" inside
// quotes). Records do not span lines here: a field with a line break is
// an error. Returns false on an unterminated quote.
bool SplitCsv(const std::string& line, std::vector<std::string>* fields) {
  fields->clear();
  std::string field;
  bool quoted = false;
  bool was_quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c == '"' && field.empty() && !was_quoted) {
      quoted = was_quoted = true;
    } else if (c == ',') {
      fields->push_back(std::move(field));
      field.clear();
      was_quoted = false;
    } else {
      field += c;
    }
  }
  if (quoted) return false;
  fields->push_back(std::move(field));
  return true;
}

// A date "YYYY-MM-DD" (midnight UTC) or an RFC 3339 time.
bool ParseTime(const std::string& text, google::protobuf::Timestamp* out) {
  absl::Time t;
  std::string error;
  if (!absl::ParseTime("%Y-%m-%d", text, &t, &error) &&
      !absl::ParseTime(absl::RFC3339_full, text, &t, &error)) {
    return false;
  }
  out->set_seconds(absl::ToUnixSeconds(t));
  return true;
}

// Sets CSV column `name` of `inv` from `value`; an error message if it
// cannot.
std::string SetColumn(const std::string& name, const std::string& value,
                      const std::string& currency,
                      v1::RecordInvoiceRequest* r) {
  v1::Invoice* inv = r->mutable_invoice();
  if (name == "account_id") {
    r->set_account_id(value);
  } else if (name == "invoice_id") {
    inv->set_invoice_id(value);
  } else if (name == "kind") {
    v1::InvoiceKind kind;
    if (!ParseEnum(v1::InvoiceKind_descriptor(), "INVOICE_KIND_", value,
                   &kind)) {
      return "kind: unknown kind '" + value + "' (invoice, credit-memo)";
    }
    inv->set_kind(kind);
  } else if (name == "original_invoice_id") {
    inv->set_original_invoice_id(value);
  } else if (name == "bill_from") {
    inv->set_bill_from(value);
  } else if (name == "tax_registration_number") {
    inv->set_tax_registration_number(value);
  } else if (name == "category") {
    v1::InvoiceCategory category;
    if (!ParseEnum(v1::InvoiceCategory_descriptor(), "INVOICE_CATEGORY_", value,
                   &category)) {
      return "category: unknown category '" + value + "'";
    }
    inv->set_category(category);
  } else if (name == "billing_period") {
    inv->set_billing_period(value);
  } else if (name == "amount") {
    if (!ParseMoney(value, currency, inv->mutable_amount())) {
      return "amount: '" + value + "' is not a decimal amount";
    }
  } else if (name == "issue_time" || name == "due_time") {
    google::protobuf::Timestamp* t = name == "issue_time"
                                         ? inv->mutable_issue_time()
                                         : inv->mutable_due_time();
    if (!ParseTime(value, t)) {
      return name + ": '" + value + "' is not YYYY-MM-DD or RFC 3339";
    }
  } else if (name == "purchase_order_id") {
    inv->set_purchase_order_id(value);
  } else if (name != "currency") {
    return "unknown column '" + name + "'";
  }
  return "";
}

constexpr const char* kColumns =
    "account_id, invoice_id, kind, original_invoice_id, bill_from, "
    "tax_registration_number, category, billing_period, amount, currency, "
    "issue_time, due_time, purchase_order_id";

// Reads every row of the file; on error, a message naming the line.
bool ReadRows(std::istream& in, const std::string& format,
              const std::string& account, std::vector<Row>* rows,
              std::string* error) {
  std::string line;
  std::vector<std::string> header;
  int number = 0;
  std::string kind = format;
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    if (kind == "auto") {
      kind = absl::StartsWith(absl::StripLeadingAsciiWhitespace(line), "{")
                 ? "jsonl"
                 : "csv";
    }
    Row row;
    row.line = number;
    if (kind == "jsonl") {
      v1::Invoice* inv = row.request.mutable_invoice();
      google::protobuf::util::JsonParseOptions options;
      const auto parsed =
          google::protobuf::util::JsonStringToMessage(line, inv, options);
      if (!parsed.ok()) {
        *error = absl::StrCat("line ", number, ": not an Invoice in JSON: ",
                              std::string(parsed.message()));
        return false;
      }
      // The account is the invoice's own, else --account.
      row.request.set_account_id(inv->account_id().empty() ? account
                                                           : inv->account_id());
      inv->clear_account_id();
    } else {
      std::vector<std::string> fields;
      if (!SplitCsv(line, &fields)) {
        *error = absl::StrCat("line ", number, ": unterminated quote");
        return false;
      }
      if (header.empty()) {
        header = fields;
        for (std::string& h : header) {
          h = absl::AsciiStrToLower(absl::StripAsciiWhitespace(h));
          if (h == "currency_code") h = "currency";
        }
        continue;
      }
      if (fields.size() != header.size()) {
        *error = absl::StrCat("line ", number, ": ", fields.size(),
                              " fields, the header has ", header.size());
        return false;
      }
      std::string currency = "USD";
      for (size_t i = 0; i < header.size(); ++i) {
        if (header[i] == "currency" && !fields[i].empty()) currency = fields[i];
      }
      row.request.set_account_id(account);
      for (size_t i = 0; i < header.size(); ++i) {
        if (fields[i].empty()) continue;
        const std::string bad =
            SetColumn(header[i], fields[i], currency, &row.request);
        if (!bad.empty()) {
          *error = absl::StrCat("line ", number, ": ", bad,
                                " (columns: ", kColumns, ")");
          return false;
        }
      }
    }
    if (row.request.account_id().empty()) {
      *error = absl::StrCat("line ", number,
                            ": no account (an account_id column or field, "
                            "or --account)");
      return false;
    }
    rows->push_back(std::move(row));
  }
  if (kind == "csv" && header.empty()) {
    *error = "the file is empty";
    return false;
  }
  return true;
}

std::string ReasonOf(const google::rpc::Status& status) {
  for (const auto& any : status.details()) {
    google::rpc::ErrorInfo info;
    if (any.UnpackTo(&info)) return info.reason();
  }
  return CodeName(static_cast<grpc::StatusCode>(status.code()));
}

std::string MetadataOf(const google::rpc::Status& status,
                       const std::string& key) {
  for (const auto& any : status.details()) {
    google::rpc::ErrorInfo info;
    if (any.UnpackTo(&info)) {
      auto it = info.metadata().find(key);
      return it == info.metadata().end() ? "" : it->second;
    }
  }
  return "";
}

// What happened to the items so far.
struct Summary {
  int recorded = 0;
  int already_recorded = 0;
  int unassociated = 0;
  std::map<std::string, int> refused;  // By reason.
  std::map<std::string, int> unassociated_by;
  int sent = 0;
};

void ShowProgress(const Summary& s, size_t total) {
  constexpr int kWidth = 30;
  const int done =
      total == 0 ? kWidth : static_cast<int>(s.sent * kWidth / total);
  std::fprintf(stderr, "\r[%s%s] %d/%zu", std::string(done, '#').c_str(),
               std::string(kWidth - done, '.').c_str(), s.sent, total);
  std::fflush(stderr);
}

int Import(Session& s, const ImportFlags& f) {
  if (f.format != "auto" && f.format != "jsonl" && f.format != "csv") {
    return Usage("--format: auto, jsonl or csv");
  }
  if (f.batch_size < 1 || f.batch_size > 1000) {
    return Usage("--batch-size: 1 to 1000");
  }
  std::vector<Row> rows;
  std::string error;
  if (f.file == "-") {
    if (!ReadRows(std::cin, f.format, s.account(), &rows, &error)) {
      return Usage(error);
    }
  } else {
    std::ifstream in(f.file);
    if (!in) return Usage("cannot read " + f.file);
    if (!ReadRows(in, f.format, s.account(), &rows, &error)) {
      return Usage(f.file + ": " + error);
    }
  }
  const bool progress = f.progress && isatty(STDERR_FILENO) && !s.json();
  // Through a proxy in front of shards, each batch goes to one shard: the
  // items are split by their account's shard (in file order within each).
  // The number of shards is learnt from the first items refused with
  // WRONG_SHARD (their details name it), which are then sent again.
  uint32_t shards = 1;
  Summary summary;
  for (size_t first = 0; first < rows.size(); first += f.batch_size) {
    const size_t end = std::min(rows.size(), first + f.batch_size);
    // The result of each row of [first, end), in file order.
    std::vector<v1::RecordInvoiceResult> results(end - first);
    std::vector<size_t> pending;
    for (size_t i = first; i < end; ++i) pending.push_back(i);
    for (int attempt = 0; !pending.empty() && attempt < 3; ++attempt) {
      std::map<uint32_t, std::vector<size_t>> by_shard;
      for (size_t i : pending) {
        by_shard[core::ShardOf(rows[i].request.account_id(), shards)].push_back(
            i);
      }
      pending.clear();
      const uint32_t asked_of = shards;
      for (const auto& [shard, items] : by_shard) {
        v1::BatchRecordInvoicesRequest batch;
        batch.set_validate_only(f.dry_run);
        for (size_t i : items) *batch.add_requests() = rows[i].request;
        v1::BatchRecordInvoicesResponse out;
        grpc::ClientContext ctx;
        s.PrepareForShard(&ctx, asked_of > 1 ? absl::StrCat(shard) : "");
        grpc::Status status =
            s.invoices().BatchRecordInvoices(&ctx, batch, &out);
        if (status.ok() && out.results_size() != batch.requests_size()) {
          status = grpc::Status(grpc::StatusCode::INTERNAL,
                                "the server answered another number of items");
        }
        if (!status.ok()) {
          if (progress) std::fprintf(stderr, "\n");
          std::fprintf(stderr,
                       "stopped at line %d after %d of %zu items (%d "
                       "recorded); items are idempotent: run the import "
                       "again\n",
                       rows[items[0]].line, summary.sent, rows.size(),
                       summary.recorded);
          return Report(status);
        }
        for (size_t k = 0; k < items.size(); ++k) {
          v1::RecordInvoiceResult* r = out.mutable_results(k);
          uint32_t count = 0;
          if (r->has_error() && ReasonOf(r->error()) == "WRONG_SHARD" &&
              absl::SimpleAtoi(MetadataOf(r->error(), "shard_count"), &count) &&
              count > 1 && count != asked_of) {
            shards = count;
            pending.push_back(items[k]);
          }
          results[items[k] - first] = std::move(*r);
        }
      }
    }
    for (size_t k = 0; k < results.size(); ++k) {
      const v1::RecordInvoiceResult& r = results[k];
      const Row& row = rows[first + k];
      if (r.has_error()) {
        const std::string reason = ReasonOf(r.error());
        ++summary.refused[reason];
        if (!s.json()) {
          if (progress) std::fprintf(stderr, "\n");
          std::fprintf(stderr, "line %d: %s: %s\n", row.line, reason.c_str(),
                       r.error().message().c_str());
        }
      } else if (r.already_recorded()) {
        ++summary.already_recorded;
      } else {
        ++summary.recorded;
        if (!r.invoice().association().associated()) {
          ++summary.unassociated;
          ++summary.unassociated_by[EnumShort(
              v1::UnmatchedReason_descriptor(),
              r.invoice().association().unmatched_reason(),
              "UNMATCHED_REASON_")];
        }
      }
      if (s.json()) {
        // One line per item: its file line and its result.
        std::printf("{\"line\":%d,\"result\":%s}\n", row.line,
                    Json(r, true).c_str());
      }
    }
    summary.sent += static_cast<int>(results.size());
    if (progress) ShowProgress(summary, rows.size());
  }
  if (progress) std::fprintf(stderr, "\n");
  int refused = 0;
  for (const auto& [reason, n] : summary.refused) refused += n;
  if (!s.json()) {
    std::vector<std::vector<std::string>> table = {
        {f.dry_run ? "would be recorded" : "recorded",
         absl::StrCat(summary.recorded)},
        {"already recorded", absl::StrCat(summary.already_recorded)},
        {"refused", absl::StrCat(refused)}};
    for (const auto& [reason, n] : summary.refused) {
      table.push_back({"  " + reason, absl::StrCat(n)});
    }
    table.push_back({"unassociated", absl::StrCat(summary.unassociated)});
    for (const auto& [reason, n] : summary.unassociated_by) {
      table.push_back({"  " + reason, absl::StrCat(n)});
    }
    PrintTable(table);
  }
  return refused > 0 ? kSomeRefused : 0;
}

}  // namespace

void AddImportCommand(CLI::App* invoice, Run* run) {
  auto f = std::make_shared<ImportFlags>();
  CLI::App* c = invoice->add_subcommand(
      "import", "Record a billing run from a JSON-lines or CSV file");
  c->add_option("file", f->file, "The file (\"-\": stdin)")->required();
  c->add_option("--format", f->format, "auto, jsonl or csv")
      ->capture_default_str();
  c->add_option("--batch-size", f->batch_size, "Items per call (1-1000)")
      ->capture_default_str();
  c->add_flag("--dry-run", f->dry_run,
              "Decide every item (match preview) and record nothing");
  c->add_flag("!--no-progress", f->progress, "No progress bar");
  // The account of items that name none.
  OnRun(
      c, run, [f](Session& s) { return Import(s, *f); },
      /*needs_account=*/false);
}

}  // namespace poctl
}  // namespace poledger
