// Commands: what a caller asks of an account. Decide turns a command into
// the events that carry it out, or refuses it.
//
// Thread safety: value types.
#ifndef POLEDGER_CORE_COMMANDS_H_
#define POLEDGER_CORE_COMMANDS_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "poledger/v1/events.pb.h"

namespace poledger {
namespace core {

struct CreatePurchaseOrder {
  std::string purchase_order_id;
  v1::PurchaseOrderHeader header;
  std::vector<v1::LineItemDefinition> line_items;
};

struct UpdatePurchaseOrder {
  std::string purchase_order_id;
  // The new values of the fields named in update_mask (all header fields
  // if the mask is empty).
  v1::PurchaseOrderHeader header;
  std::vector<std::string> update_mask;
  // The purchase order's version the caller read (ABORTED if it moved on).
  std::optional<uint64_t> expected_version;
};

struct ChangePurchaseOrderStatus {
  std::string purchase_order_id;
  v1::PurchaseOrderStatus status = v1::PURCHASE_ORDER_STATUS_UNSPECIFIED;
  std::optional<uint64_t> expected_version;
};

struct DeletePurchaseOrder {
  std::string purchase_order_id;
  std::optional<uint64_t> expected_version;
};

struct AddLineItem {
  std::string purchase_order_id;
  v1::LineItemDefinition line_item;
  std::optional<uint64_t> expected_version;
};

struct UpdateLineItem {
  std::string purchase_order_id;
  // Names the line (line_number) and carries the new values of the fields
  // named in update_mask (field names of v1::LineItemDefinition; all fields
  // if the mask is empty).
  v1::LineItemDefinition line_item;
  std::vector<std::string> update_mask;
  std::optional<uint64_t> expected_version;
};

struct RemoveLineItem {
  std::string purchase_order_id;
  int32_t line_number = 0;
  std::optional<uint64_t> expected_version;
};

// An invoice or a credit memo (invoice.kind). content_digest is computed by
// Decide.
struct RecordInvoice {
  v1::InvoiceData invoice;
};

struct RecordMarketplaceTransaction {
  std::string transaction_id;
  std::string purchase_order_id;  // As the buyer typed it; may be empty.
  std::string bill_from;
  std::string currency_code;
  std::string month;  // YYYY-MM
  int64_t amount_micros = 0;
  std::string description;
  int32_t line_number = 0;  // As the buyer gave it; 0: default.
};

// Erases a data subject of the account (README "Personal data"): its
// contacts, in the state and in every event, read as erased from then on.
inline constexpr size_t kSubjectRefBytes = 32;  // HMAC-SHA256.
inline constexpr size_t kMaxRequestReference = 128;
struct ErasePersonalData {
  std::string subject_ref;        // v1::Contact.subject_ref.
  std::string request_reference;  // v1::PersonalDataErased's.
};

// The scheduler's command: expire purchase orders and raise reminders that
// have fallen due by `now`.
struct Tick {};

using Command =
    std::variant<CreatePurchaseOrder, UpdatePurchaseOrder,
                 ChangePurchaseOrderStatus, DeletePurchaseOrder, AddLineItem,
                 UpdateLineItem, RemoveLineItem, RecordInvoice,
                 RecordMarketplaceTransaction, Tick, ErasePersonalData>;

}  // namespace core
}  // namespace poledger

#endif  // POLEDGER_CORE_COMMANDS_H_
