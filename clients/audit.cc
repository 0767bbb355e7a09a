#include "clients/audit.h"

#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "api/convert.h"
#include "base/status_macros.h"
#include "core/errors.h"
#include "core/money.h"
#include "core/shard.h"
#include "eventstore/record_format.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "ledger/clock.h"
#include "ledger/ledger.h"
#include "poledger/v1/snapshot.pb.h"

namespace poledger {
namespace audit {
namespace {

constexpr size_t kBatch = 4096;

std::string Json(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(m, &out, options);
  return out;
}

// The purchase order an account event is about, or "".
std::string PurchaseOrderOf(const v1::AccountEvent& e) {
  switch (e.event_case()) {
    case v1::AccountEvent::kPurchaseOrderCreated:
      return e.purchase_order_created().purchase_order_id();
    case v1::AccountEvent::kPurchaseOrderUpdated:
      return e.purchase_order_updated().purchase_order_id();
    case v1::AccountEvent::kPurchaseOrderStatusChanged:
      return e.purchase_order_status_changed().purchase_order_id();
    case v1::AccountEvent::kPurchaseOrderExpired:
      return e.purchase_order_expired().purchase_order_id();
    case v1::AccountEvent::kPurchaseOrderDeleted:
      return e.purchase_order_deleted().purchase_order_id();
    case v1::AccountEvent::kLineItemAdded:
      return e.line_item_added().purchase_order_id();
    case v1::AccountEvent::kLineItemUpdated:
      return e.line_item_updated().purchase_order_id();
    case v1::AccountEvent::kLineItemRemoved:
      return e.line_item_removed().purchase_order_id();
    case v1::AccountEvent::kInvoiceRecorded:
      return e.invoice_recorded().purchase_order_id();
    case v1::AccountEvent::kCreditMemoRecorded:
      return e.credit_memo_recorded().purchase_order_id();
    case v1::AccountEvent::kMarketplaceTransactionRecorded:
      return e.marketplace_transaction_recorded().purchase_order_id();
    case v1::AccountEvent::kNotificationRaised:
      return e.notification_raised().purchase_order_id();
    case v1::AccountEvent::kPersonalDataErased:  // About the account.
    case v1::AccountEvent::EVENT_NOT_SET:
      break;
  }
  return "";
}

// Removes the secondary instance's temporary directory with the store.
struct TempDirStore {
  std::unique_ptr<RocksDbEventStore> store;
  std::string dir;
  ~TempDirStore() {
    store.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
};

}  // namespace

absl::StatusOr<std::shared_ptr<RocksDbEventStore>> OpenDataDir(
    const std::string& data_dir) {
  if (!std::filesystem::exists(std::filesystem::path(data_dir) / "CURRENT")) {
    return absl::NotFoundError(
        absl::StrCat("no event log in ", data_dir, " (no RocksDB CURRENT file)"));
  }
  const char* tmp = getenv("TMPDIR");
  std::string pattern = absl::StrCat(tmp != nullptr && *tmp ? tmp : "/tmp",
                                     "/poledger-audit-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError("cannot create a temporary directory");
  }
  auto holder = std::make_shared<TempDirStore>();
  holder->dir = pattern;
  RocksDbEventStoreOptions options;
  options.path = data_dir;
  options.create_if_missing = false;
  options.secondary_path = pattern;
  options.verify_on_open = false;  // Verify reports breaks itself.
  ASSIGN_OR_RETURN(holder->store, RocksDbEventStore::Open(options));
  RocksDbEventStore* raw = holder->store.get();
  return std::shared_ptr<RocksDbEventStore>(holder, raw);
}

absl::StatusOr<VerifyReport> Verify(
    const EventStore& store,
    const std::function<void(uint64_t, uint64_t)>& progress,
    const core::Shard* shard) {
  VerifyReport report;
  const uint64_t total = store.Head().position;
  uint64_t next = 1;
  for (;;) {
    absl::StatusOr<std::vector<RecordedEvent>> batch =
        store.ReadForward(next, kBatch);
    if (!batch.ok()) {
      if (batch.status().code() != absl::StatusCode::kDataLoss) {
        return batch.status();
      }
      // Narrow down to the first broken record: read one at a time.
      for (uint64_t p = next;; ++p) {
        absl::StatusOr<std::vector<RecordedEvent>> one = store.ReadForward(p, 1);
        if (!one.ok() || one->empty() ||
            !record_format::LinksTo(one->front(), report.head)) {
          report.first_broken = p;
          report.problem = !one.ok() ? std::string(one.status().message())
                           : one->empty()
                               ? absl::StrCat("record at position ", p, " missing")
                               : absl::StrCat("event log record at position ", p,
                                              ": chain link broken (previous "
                                              "hash does not match)");
          return report;
        }
        report.head = LogHead{p, one->front().hash};
        ++report.records;
      }
    }
    if (batch->empty()) break;
    for (const RecordedEvent& r : *batch) {
      if (!record_format::LinksTo(r, report.head)) {
        report.first_broken = r.position;
        report.problem = absl::StrCat("event log record at position ", r.position,
                                      ": chain link broken (previous hash does "
                                      "not match)");
        return report;
      }
      report.head = LogHead{r.position, r.hash};
      ++report.records;
      if (shard != nullptr) {
        const std::string account = AccountOfStream(r.stream_id);
        // Records of no account (a term's) belong to every shard.
        if (!account.empty() && !shard->Owns(account)) {
          if (report.foreign_records++ == 0) {
            report.first_foreign = absl::StrCat(
                "position ", r.position, ": account ", core::Quote(account),
                " of shard ", core::ShardOf(account, shard->count), " of ",
                shard->count);
          }
        }
      }
    }
    next = batch->back().position + 1;
    if (progress) progress(report.records, total);
  }
  if (report.head.position < total) {
    report.first_broken = report.head.position + 1;
    report.problem = absl::StrCat("record at position ", report.first_broken,
                                  " missing");
  }
  return report;
}

absl::StatusOr<uint64_t> Export(const EventStore& store,
                                const ExportFilter& filter, std::ostream& out) {
  uint64_t written = 0;
  uint64_t next = std::max<uint64_t>(filter.from_position, 1);
  while (next <= filter.to_position) {
    ASSIGN_OR_RETURN(std::vector<RecordedEvent> batch,
                     store.ReadForward(next, kBatch));
    if (batch.empty()) break;
    for (const RecordedEvent& r : batch) {
      next = r.position + 1;
      if (r.position > filter.to_position) break;
      if (!filter.account_id.empty() &&
          AccountOfStream(r.stream_id) != filter.account_id) {
        continue;
      }
      if (!filter.event_types.empty() &&
          std::find(filter.event_types.begin(), filter.event_types.end(),
                    r.event_type) == filter.event_types.end()) {
        continue;
      }
      ASSIGN_OR_RETURN(v1::Event event, convert::EventOf(r));
      if (!filter.purchase_order_id.empty() &&
          PurchaseOrderOf(event.payload()) != filter.purchase_order_id) {
        continue;
      }
      out << Json(event) << "\n";
      ++written;
    }
  }
  return written;
}

absl::Status ExportRecords(const std::vector<RecordedEvent>& records,
                           std::ostream& out) {
  for (const RecordedEvent& r : records) {
    ASSIGN_OR_RETURN(v1::Event event, convert::EventOf(r));
    out << Json(event) << "\n";
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<PersonalData>> OpenKeys(
    const EventStore* store, const std::string& key_file) {
  std::string text;
  if (!key_file.empty()) {
    std::ifstream in(key_file);
    if (!in) {
      return absl::InvalidArgumentError(
          absl::StrCat("--data-key-file: cannot read ", key_file));
    }
    std::stringstream all;
    all << in.rdbuf();
    text = all.str();
  }
  if (store == nullptr || text.empty()) {
    return std::unique_ptr<PersonalData>();
  }
  ASSIGN_OR_RETURN(std::string kek, ParseDataKey(text));
  return PersonalData::Open(store, std::move(kek));
}

absl::Status Replay(const EventStore& store, const std::string& account_id,
                    const std::string& purchase_order_id, uint64_t position,
                    const PersonalData* keys, std::ostream& out) {
  ASSIGN_OR_RETURN(core::AccountState state,
                   RebuildAccountAt(store, account_id, position));
  bool any = false;
  for (auto& [id, po] : state.purchase_orders) {
    if (!purchase_order_id.empty() && id != purchase_order_id) continue;
    if (keys != nullptr) {
      RETURN_IF_ERROR(
          keys->OpenContacts(account_id, *po.header.mutable_contacts()));
    }
    out << Json(convert::ToApi(account_id, po)) << "\n";
    any = true;
  }
  if (!any && !purchase_order_id.empty()) {
    return absl::NotFoundError(absl::StrCat("purchase order \"",
                                            purchase_order_id,
                                            "\" did not exist at position ",
                                            position));
  }
  return absl::OkStatus();
}

std::string CheckPinnedDigest(const EventStore& store, const VerifyReport& report,
                              uint64_t position, const std::string& digest_hex) {
  if (position == 0 || position > report.head.position) {
    return absl::StrCat("the intact log ends at position ", report.head.position,
                        ": it no longer reaches pinned position ", position);
  }
  absl::StatusOr<std::vector<RecordedEvent>> record = store.ReadForward(position, 1);
  if (!record.ok()) return std::string(record.status().message());
  if (record->empty() || record->front().position != position) {
    return absl::StrCat("no record at pinned position ", position);
  }
  const std::string actual = HashToHex(record->front().hash);
  if (actual != digest_hex) {
    return absl::StrCat("the record at position ", position, " has digest ",
                        actual, ", not the pinned ", digest_hex,
                        ": the log was rewritten since that digest was kept");
  }
  return "";
}

namespace {

// Returns "" if `a` equals `b`, else their differences (shortened).
std::string Describe(const google::protobuf::Message& a,
                     const google::protobuf::Message& b) {
  google::protobuf::util::MessageDifferencer differencer;
  std::string diff;
  differencer.ReportDifferencesToString(&diff);
  if (differencer.Compare(a, b)) return "";
  if (diff.size() > 600) diff = absl::StrCat(diff.substr(0, 600), "...");
  return diff;
}

// Applies `record` to its account's state in `states` (the ledger's own
// rule, ledger/record_applier.h); other streams change no account.
absl::Status ApplyToAccounts(const RecordedEvent& record,
                             std::map<std::string, core::AccountState>& states) {
  const std::string account_id = AccountOfStream(record.stream_id);
  if (account_id.empty()) return absl::OkStatus();
  core::AccountState& state = states[account_id];
  state.account_id = account_id;
  return ApplyRecord(state, record, nullptr).status();
}

}  // namespace

absl::StatusOr<SnapshotReport> CheckSnapshot(EventStore& store) {
  SnapshotReport report;
  auto problem = [&report](std::string text) {
    if (report.problems.size() < 20) report.problems.push_back(std::move(text));
  };
  // Loaded as the server loads it.
  const ManualClock clock(absl::UnixEpoch());
  LedgerOptions options;
  options.snapshot_every_events = 0;
  options.completion_threads = 1;
  ASSIGN_OR_RETURN(std::unique_ptr<Ledger> loaded,
                   Ledger::Open(&store, &clock, options));
  // Rebuilt from the whole log, with every account's state at each version
  // a saved part records.
  std::map<std::string, uint64_t> part_versions;
  std::map<std::string, v1::AccountSnapshot> account_parts;
  std::map<std::string, std::map<std::string, v1::InvoiceSnapshot>> invoice_parts;
  ASSIGN_OR_RETURN(
      report.snapshot_position,
      store.ReadSnapshotParts(SnapshotPartFilter{}, [&](absl::string_view key,
                                                        absl::string_view
                                                            blob) {
        ++report.parts;
        if (const size_t nul = key.find('\0'); nul != key.npos) {
          v1::InvoiceSnapshot& invoice =
              invoice_parts[std::string(key.substr(0, nul))]
                           [std::string(key.substr(nul + 1))];
          if (!invoice.ParseFromArray(blob.data(), static_cast<int>(blob.size()))) {
            return absl::DataLossError(absl::StrCat("snapshot part \"", key,
                                                    "\" does not decode"));
          }
          return absl::OkStatus();
        }
        v1::AccountSnapshot& account = account_parts[std::string(key)];
        if (!account.ParseFromArray(blob.data(), static_cast<int>(blob.size()))) {
          return absl::DataLossError(absl::StrCat("snapshot part \"", key,
                                                  "\" does not decode"));
        }
        return absl::OkStatus();
      }));
  // Each saved invoice is checked against its stream at the version that
  // saved it: an account's part saves the invoices it holds as they are at
  // its version; an append saves those it records as they are at theirs,
  // which may be past the account's part (or the account may have none).
  std::map<std::string, std::map<uint64_t, std::vector<std::string>>>
      saved_by_append;
  for (auto& [account_id, invoices] : invoice_parts) {
    auto part = account_parts.find(account_id);
    const uint64_t part_version =
        part == account_parts.end() ? 0 : part->second.version();
    for (const auto& [id, saved] : invoices) {
      if (saved.recorded_version() > part_version) {
        saved_by_append[account_id][saved.recorded_version()].push_back(id);
      }
    }
  }
  auto check_invoice = [&](const std::string& account_id, const std::string& id,
                           const v1::InvoiceSnapshot& saved,
                           const core::AccountState& state) {
    auto it = state.invoices.find(id);
    if (it == state.invoices.end()) {
      problem(absl::StrCat("invoice ", id, " of account ", account_id,
                           " is saved but not in its stream at version ",
                           state.version));
      return;
    }
    if (std::string diff = Describe(saved, core::ToInvoiceSnapshot(id, it->second));
        !diff.empty()) {
      problem(absl::StrCat("the saved invoice ", id, " of account ", account_id,
                           " differs from its stream: ", diff));
    }
  };
  std::map<std::string, core::AccountState> rebuilt;
  auto check_parts = [&](const std::string& account_id,
                         const core::AccountState& state) {
    if (auto by_append = saved_by_append.find(account_id);
        by_append != saved_by_append.end()) {
      if (auto at = by_append->second.find(state.version);
          at != by_append->second.end()) {
        for (const std::string& id : at->second) {
          check_invoice(account_id, id, invoice_parts[account_id][id], state);
        }
        by_append->second.erase(at);
      }
    }
    auto part = account_parts.find(account_id);
    if (part == account_parts.end() || part->second.version() != state.version) {
      return;
    }
    if (std::string diff = Describe(
            part->second, core::ToSnapshot(state, core::SnapshotInvoices::kExclude));
        !diff.empty()) {
      problem(absl::StrCat("the saved part of account ", account_id,
                           " differs from its stream at version ", state.version,
                           ": ", diff));
    }
    for (const auto& [id, saved] : invoice_parts[account_id]) {
      if (saved.recorded_version() > state.version) continue;  // By its append.
      check_invoice(account_id, id, saved, state);
    }
    part_versions[account_id] = state.version;
  };
  const uint64_t head = store.Head().position;
  for (uint64_t next = 1; next <= head;) {
    ASSIGN_OR_RETURN(std::vector<RecordedEvent> batch,
                     store.ReadForward(next, std::min<uint64_t>(kBatch, head - next + 1)));
    if (batch.empty()) break;
    for (const RecordedEvent& r : batch) {
      RETURN_IF_ERROR(ApplyToAccounts(r, rebuilt));
      const std::string account_id = AccountOfStream(r.stream_id);
      if (!account_id.empty()) check_parts(account_id, rebuilt[account_id]);
      next = r.position + 1;
      report.head = r.position;
    }
  }
  for (const auto& [account_id, by_version] : saved_by_append) {
    for (const auto& [version, ids] : by_version) {
      for (const std::string& id : ids) {
        problem(absl::StrCat("invoice ", id, " of account ", account_id,
                             " is saved as recorded at version ", version,
                             ", which its stream never reached"));
      }
    }
  }
  for (const auto& [account_id, part] : account_parts) {
    if (part_versions.count(account_id) == 0) {
      problem(absl::StrCat("the saved part of account ", account_id, " is at version ",
                           part.version(), ", which its stream never reached"));
    }
  }
  std::vector<std::string> ids = loaded->AccountIds();
  for (const auto& [id, state] : rebuilt) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  for (const std::string& id : ids) {
    ++report.accounts;
    v1::AccountSnapshot from_log;
    if (auto it = rebuilt.find(id); it != rebuilt.end()) {
      from_log = core::ToSnapshot(it->second);
    } else {
      core::AccountState empty;
      empty.account_id = id;
      from_log = core::ToSnapshot(empty);
    }
    // With the invoices the ledger reads from their saved parts.
    ASSIGN_OR_RETURN(const core::AccountState whole,
                     loaded->ReadWholeState(id));
    const v1::AccountSnapshot from_snapshot = core::ToSnapshot(whole);
    if (std::string diff = Describe(from_snapshot, from_log); !diff.empty()) {
      problem(absl::StrCat("account ", id,
                           ": the state loaded from the snapshot and the log "
                           "differs from the state rebuilt from the whole log: ",
                           diff));
    }
  }
  return report;
}

absl::Status History(const EventStore& store, const std::string& account_id,
                     const std::string& purchase_order_id, std::ostream& out) {
  RETURN_IF_ERROR(ValidateAccountId(account_id));
  uint64_t version = 1;
  int shown = 0;
  for (;;) {
    ASSIGN_OR_RETURN(std::vector<RecordedEvent> records,
                     store.ReadStream(absl::StrCat(kAccountStreamPrefix, account_id),
                                      version, kBatch));
    if (records.empty()) break;
    for (const RecordedEvent& r : records) {
      version = r.stream_version + 1;
      ASSIGN_OR_RETURN(LoggedEvent logged, DecodeRecord(r));
      const v1::AccountEvent& e = logged.event;
      if (PurchaseOrderOf(e) != purchase_order_id) continue;
      std::string what;
      switch (e.event_case()) {
        case v1::AccountEvent::kPurchaseOrderCreated:
          what = absl::StrCat("created, ",
                              e.purchase_order_created().line_items_size(),
                              " line items, ",
                              e.purchase_order_created().header().contacts_size(),
                              " contacts, ",
                              e.purchase_order_created().header().effective_month(),
                              "..",
                              e.purchase_order_created().header().expiration_month());
          break;
        case v1::AccountEvent::kPurchaseOrderUpdated:
          what = absl::StrCat(
              "updated: ",
              absl::StrJoin(e.purchase_order_updated().changed_fields(), ", "));
          break;
        case v1::AccountEvent::kPurchaseOrderStatusChanged:
          what = absl::StrCat(
              "status ",
              v1::PurchaseOrderStatus_Name(
                  e.purchase_order_status_changed().from_status()),
              " -> ",
              v1::PurchaseOrderStatus_Name(
                  e.purchase_order_status_changed().to_status()));
          break;
        case v1::AccountEvent::kPurchaseOrderExpired:
          what = absl::StrCat("expired: ",
                              v1::PurchaseOrderStatus_Name(
                                  e.purchase_order_expired().to_status()));
          break;
        case v1::AccountEvent::kPurchaseOrderDeleted:
          what = "deleted";
          break;
        case v1::AccountEvent::kLineItemAdded:
          what = absl::StrCat("line ", e.line_item_added().line_item().line_number(),
                              " added");
          break;
        case v1::AccountEvent::kLineItemUpdated:
          what = absl::StrCat("line ",
                              e.line_item_updated().line_item().line_number(),
                              " updated");
          break;
        case v1::AccountEvent::kLineItemRemoved:
          what = absl::StrCat("line ", e.line_item_removed().line_number(),
                              " removed");
          break;
        case v1::AccountEvent::kInvoiceRecorded: {
          const v1::InvoiceRecorded& i = e.invoice_recorded();
          const std::string& c = i.invoice().currency_code();
          what = absl::StrCat(
              "invoice ", i.invoice().invoice_id(), " ",
              core::FormatMicros(i.invoice().amount_micros(), c), " -> line ",
              i.line_number(), "; line balance ",
              core::FormatMicros(i.line_balance_after_micros(), c),
              ", PO balance ",
              core::FormatMicros(i.purchase_order_balance_after_micros(), c));
          break;
        }
        case v1::AccountEvent::kCreditMemoRecorded: {
          const v1::CreditMemoRecorded& m = e.credit_memo_recorded();
          const std::string& c = m.credit_memo().currency_code();
          what = absl::StrCat(
              "credit memo ", m.credit_memo().invoice_id(), " for ",
              m.credit_memo().original_invoice_id(), " ",
              core::FormatMicros(m.credit_memo().amount_micros(), c),
              " -> line ", m.line_number(), "; line balance ",
              core::FormatMicros(m.line_balance_after_micros(), c),
              ", PO balance ",
              core::FormatMicros(m.purchase_order_balance_after_micros(), c));
          break;
        }
        case v1::AccountEvent::kMarketplaceTransactionRecorded:
          what = absl::StrCat(
              "marketplace transaction ",
              e.marketplace_transaction_recorded().transaction_id(), ": ",
              v1::MarketplaceOutcome_Name(
                  e.marketplace_transaction_recorded().outcome()));
          break;
        case v1::AccountEvent::kNotificationRaised:
          what = absl::StrCat(
              "notification ",
              v1::NotificationKind_Name(e.notification_raised().kind()), " to ",
              e.notification_raised().recipients_size(), " recipients");
          break;
        case v1::AccountEvent::kPersonalDataErased:
        case v1::AccountEvent::EVENT_NOT_SET:
          break;
      }
      out << absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", r.timestamp,
                              absl::UTCTimeZone())
          << "  #" << r.position << "  "
          << (r.actor.empty() ? "-" : r.actor) << "  " << what << "\n";
      ++shown;
    }
  }
  if (shown == 0) {
    return absl::NotFoundError(absl::StrCat("no events for purchase order \"",
                                            purchase_order_id, "\""));
  }
  return absl::OkStatus();
}

}  // namespace audit
}  // namespace poledger
