// Invoice matching: which line item of which purchase order an invoice goes
// to, and why.
//
// The rules (domain.md): only Active purchase orders; the invoice's seller
// entity in the PO's bill-from set (and, for the EMEA entity on a PO with
// tax registration numbers, the invoice's number among them); the same
// currency; a line whose start..end months contain the billing period and
// whose type fits the category; the most specific type; lines whose balance
// covers the amount over out-of-balance ones; the most recently updated PO
// (log order); the lowest PO id; the lowest line number.
//
// Match answers from an index kept in the AccountState (built lazily, reused
// until a purchase order changes). Explain's full form walks every
// purchase order and line to say why each lost; its compact form reads the
// same index.
//
// Thread safety: Match may build the state's index, so calls on one state
// need external synchronisation, like writes.
#ifndef POLEDGER_CORE_MATCHING_H_
#define POLEDGER_CORE_MATCHING_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "core/account.h"
#include "core/calendar.h"
#include "poledger/v1/events.pb.h"

namespace poledger {
namespace core {

// The seller entity whose invoices are also filtered by tax registration
// number.
inline constexpr absl::string_view kEmeaEntity = "Amazon Web Services EMEA SARL";

struct MatchInput {
  absl::string_view bill_from;
  absl::string_view tax_registration_number;
  absl::string_view currency_code;
  v1::InvoiceCategory category = v1::INVOICE_CATEGORY_UNSPECIFIED;
  YearMonth billing_period;
  int64_t amount_micros = 0;
  // The purchase order id a marketplace buyer typed (may be empty).
  absl::string_view purchase_order_id;
};

struct MatchResult {
  const PurchaseOrderState* purchase_order = nullptr;
  const LineItemState* line = nullptr;

  bool matched() const { return line != nullptr; }
};

// Returns the line `input` goes to, or an unmatched result.
MatchResult Match(const AccountState& state, const MatchInput& input);

// The lines an explanation names among those that lost.
inline constexpr int kMaxRunnersUp = 5;

enum class ExplainDetail {
  // The selected purchase order with its selected line, the runners-up and
  // the counts: what an invoice event keeps (well under 1 KB in an account
  // at the limits).
  kCompact,
  // Also every purchase order with each line considered.
  kFull,
};

// Returns why `input` went to `result` (which must be Match's answer): the
// best kMaxRunnersUp lines that fit and lost, with why; every purchase
// order counted by outcome; and, in full, every purchase order of the
// account with its outcome and, for those that passed the purchase-order
// filters, each line that fit the period and category with its outcome and
// counts of the lines left out by period or type.
// The event keeps the facts, not the sentence: see ExplanationSummary.
v1::MatchExplanation Explain(const AccountState& state, const MatchInput& input,
                             const MatchResult& result,
                             ExplainDetail detail = ExplainDetail::kFull);

// The compact form computed by a walk over every purchase order and line,
// as the full form is: Explain(kCompact) reads Match's index instead, and
// tests check that the two agree.
v1::MatchExplanation ExplainCompactByWalk(const AccountState& state,
                                          const MatchInput& input,
                                          const MatchResult& result);

// The match input of a validated invoice; it points into `invoice`.
MatchInput MatchInputOf(const v1::InvoiceData& invoice);

// The full explanation of `invoice` as it was recorded on `before`, the
// account's state just before it: matching is deterministic, so this is
// what the decision saw.
v1::MatchExplanation ExplainRecorded(const AccountState& before,
                                     const v1::InvoiceData& invoice);

// Returns the explanation in one sentence: `explanation.summary()` if it
// has one (invoices recorded by earlier servers), else the sentence
// rendered from its facts (the selected candidate, line type and coverage).
std::string ExplanationSummary(const v1::MatchExplanation& explanation);

// The types that fit `category`, most specific first; rank is the index.
// Returns -1 if `type` does not fit.
int TypeRank(v1::InvoiceCategory category, v1::LineItemType type);

}  // namespace core
}  // namespace poledger

#endif  // POLEDGER_CORE_MATCHING_H_
