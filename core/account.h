// The state of one payer account: its purchase orders, line items, invoices
// and notification bookkeeping, built only by applying events (Apply).
//
// The account is poledger's consistency boundary: the 100-active-PO limit and
// invoice matching look at all of an account's purchase orders, so every
// decision is made on one AccountState at one version of the account's
// stream and appended with that version as the expected version.
//
// Thread safety: an AccountState is a value; concurrent reads are safe,
// writes need external synchronisation. Matching keeps a lazily built index
// inside the state (see matching.h), so concurrent Match calls on one state
// need that synchronisation too.
#ifndef POLEDGER_CORE_ACCOUNT_H_
#define POLEDGER_CORE_ACCOUNT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/calendar.h"
#include "poledger/v1/events.pb.h"
#include "poledger/v1/snapshot.pb.h"

namespace poledger {
namespace core {

// Limits from the domain rules.
inline constexpr int kMaxActivePurchaseOrders = 100;
inline constexpr int kMaxLineItems = 100;
inline constexpr int kMaxContacts = 10;
inline constexpr int kMaxTags = 50;
inline constexpr int kDefaultBalanceThresholdPercent = 75;

struct LineItemState {
  v1::LineItemDefinition definition;
  YearMonth start;
  YearMonth end;
  int64_t total_value = 0;  // amount x quantity + tax, micros.
  int64_t invoiced = 0;     // Invoices minus credit memos, micros.
  // The same by billing period (each document's own), for the spend
  // forecast (core/forecast.h); months that net to zero are dropped.
  std::map<YearMonth, int64_t> invoiced_by_month;
  // Thresholds (percent) crossed and not yet re-armed, ascending.
  std::vector<int32_t> fired_thresholds;
  // Account version of the event that added the line: tells it apart from
  // a later line with the same number (removed, then added again).
  uint64_t created_version = 0;

  int64_t balance() const { return total_value - invoiced; }
};

struct Reminder {
  absl::Time due;
  std::string label;
  bool fired = false;
};

struct PurchaseOrderState {
  std::string id;
  v1::PurchaseOrderHeader header;
  YearMonth effective;
  YearMonth expiration;
  v1::PurchaseOrderStatus status = v1::PURCHASE_ORDER_STATUS_ACTIVE;
  v1::PurchaseOrderOrigin origin = v1::PURCHASE_ORDER_ORIGIN_USER;
  std::map<int32_t, LineItemState> lines;
  absl::Time create_time;
  absl::Time update_time;  // Last change by a user.
  // Account version of the creation: tells incarnations of a reused id
  // apart.
  uint64_t created_version = 0;
  // Account version of the last change by a user: "most recently updated"
  // in matching is this order, not clock time.
  uint64_t last_user_change = 0;
  // Account version of the last event that touched this purchase order
  // (including invoices); the expected version of writes.
  uint64_t version = 0;
  std::vector<Reminder> reminders;

  // Sums over the line items. Decide keeps them within int64.
  int64_t Value() const;
  int64_t Balance() const;
  // The first instant after the expiration date.
  absl::Time ExpiryTime() const { return expiration.End(); }
};

// What the account remembers of each invoice and credit memo.
struct InvoiceEntry {
  v1::InvoiceKind kind = v1::INVOICE_KIND_INVOICE;
  std::string content_digest;
  int64_t amount = 0;
  std::string original_invoice_id;  // Credit memos.
  // The association (invoices: where it matched; credit memos: where the
  // credit went); empty id: none.
  std::string purchase_order_id;
  uint64_t purchase_order_created_version = 0;
  int32_t line_number = 0;
  uint64_t line_created_version = 0;  // That line's created_version.
  int64_t credited = 0;  // Invoices: sum of their credit memos.
  uint64_t recorded_version = 0;  // Account version of its event.
};

struct MarketplaceEntry {
  std::string content_digest;
  uint64_t recorded_version = 0;
};

class MatchIndex;

// Holds matching's index. Copies and moves start empty, so an index never
// points into another state's purchase orders.
class MatchIndexCache {
 public:
  MatchIndexCache() = default;
  MatchIndexCache(const MatchIndexCache&) {}
  MatchIndexCache(MatchIndexCache&&) noexcept {}
  MatchIndexCache& operator=(const MatchIndexCache&) {
    index.reset();
    return *this;
  }
  MatchIndexCache& operator=(MatchIndexCache&&) noexcept {
    index.reset();
    return *this;
  }

  std::shared_ptr<MatchIndex> index;
};

// A field added here must be added to ScratchFor (decide.cc) too.
struct AccountState {
  std::string account_id;
  uint64_t version = 0;  // Events applied: the account stream's version.
  std::map<std::string, PurchaseOrderState> purchase_orders;
  // Invoices by id, in a hash map: every invoice command looks its id up
  // and every invoice event inserts one, so the lookup must not grow with
  // the account (a B-tree of these large entries held three per node and
  // cost several cache misses and string comparisons per lookup). Not
  // ordered: ToSnapshot sorts. Inserting invalidates iterators and
  // references.
  // Decide reads only the entries InvoicesReadBy names, so a holder of
  // many states may keep the others elsewhere (the Ledger keeps those saved
  // in a snapshot on disk) and add them back before deciding.
  using InvoiceMap = absl::flat_hash_map<std::string, InvoiceEntry>;
  InvoiceMap invoices;
  // Sorted like std::map (snapshots list them by id).
  absl::btree_map<std::string, MarketplaceEntry> marketplace_transactions;

  // Returns the number of Active purchase orders.
  int ActiveCount() const;

  // Matching's index over the purchase orders; rebuilt lazily after any
  // change other than a balance change. Not part of the state's value.
  mutable MatchIndexCache match_index;
};

// Applies `event` (the account's next event) to `state`. Returns INTERNAL if
// the event does not fit the state (e.g. it names an unknown purchase
// order): the log and the rules disagree, and replay must stop.
absl::Status Apply(AccountState& state, const v1::AccountEvent& event);

// Whether ToSnapshot puts the invoices in the message.
enum class SnapshotInvoices { kInclude, kExclude };

// The state as a message: for snapshots and for comparing states. Purchase
// orders, invoices and transactions are sorted by id, so equal states give
// equal bytes under deterministic serialisation. A snapshot saved in parts
// leaves the invoices out (kExclude) and saves each on its own
// (ToInvoiceSnapshot): an account's invoices only grow, and few change
// between two snapshots.
v1::AccountSnapshot ToSnapshot(
    const AccountState& state,
    SnapshotInvoices invoices = SnapshotInvoices::kInclude);
absl::StatusOr<AccountState> FromSnapshot(const v1::AccountSnapshot& snapshot);
v1::InvoiceSnapshot ToInvoiceSnapshot(const std::string& invoice_id,
                                      const InvoiceEntry& entry);
// The entry an invoice saved on its own holds.
InvoiceEntry InvoiceEntryOf(const v1::InvoiceSnapshot& invoice);
// Adds an invoice saved on its own to a state rebuilt by FromSnapshot.
// DATA_LOSS if the state already has it.
absl::Status AddInvoiceSnapshot(AccountState& state,
                                const v1::InvoiceSnapshot& invoice);

// The entry, saved on its own, of the invoice or credit memo that `event`
// records at `version` (std::nullopt for any other event), as Apply makes
// it, matched in `state`: the state the event applies to, or the one it was
// decided on, which holds the same purchase orders and lines. INTERNAL if
// `state` lacks them.
absl::StatusOr<std::optional<v1::InvoiceSnapshot>> RecordedInvoice(
    const AccountState& state, const v1::AccountEvent& event,
    uint64_t version);

// Whether `event` records an invoice or a credit memo.
bool RecordsAnInvoice(const v1::AccountEvent& event);

// The ids of the invoices and credit memos whose entries `event` adds or
// changes: the one it records first, then, for a credit memo, its original
// invoice (whose credited sum it changes).
std::vector<std::string> InvoicesChangedBy(const v1::AccountEvent& event);

// Computes a line's total value (amount x quantity + tax) with overflow
// checks.
absl::StatusOr<int64_t> LineTotal(const v1::LineItemDefinition& line);

}  // namespace core
}  // namespace poledger

#endif  // POLEDGER_CORE_ACCOUNT_H_
