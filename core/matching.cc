#include "core/matching.h"

#include <algorithm>
#include <tuple>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "core/money.h"

namespace poledger {
namespace core {

// Candidate lines by (seller entity, currency, type, month), each list in
// tie-break order: most recently updated PO first, then PO id, then line
// number. Only Active purchase orders are listed. Buckets are filled on first
// use; the whole index is dropped whenever a purchase order changes (Apply),
// but not when a balance does, since entries point at live lines.
class MatchIndex {
 public:
  struct Entry {
    const PurchaseOrderState* po;
    const LineItemState* line;
  };

  const std::vector<Entry>& Bucket(const AccountState& state,
                                   const MatchInput& input,
                                   v1::LineItemType type) {
    key_.clear();
    absl::StrAppend(&key_, input.bill_from, "\x1f", input.currency_code, "\x1f",
                    static_cast<int>(type), "\x1f",
                    input.billing_period.civil().year(), "-",
                    input.billing_period.civil().month());
    auto it = buckets_.find(key_);
    if (it != buckets_.end()) return it->second;
    std::vector<Entry> entries;
    for (const auto& [id, po] : state.purchase_orders) {
      if (po.status != v1::PURCHASE_ORDER_STATUS_ACTIVE ||
          po.header.currency_code() != input.currency_code ||
          std::find(po.header.bill_from().begin(), po.header.bill_from().end(),
                    input.bill_from) == po.header.bill_from().end()) {
        continue;
      }
      for (const auto& [n, line] : po.lines) {
        if (line.definition.type() == type &&
            line.start <= input.billing_period &&
            input.billing_period <= line.end) {
          entries.push_back({&po, &line});
        }
      }
    }
    std::sort(entries.begin(), entries.end(),
              [](const Entry& a, const Entry& b) {
                if (a.po->last_user_change != b.po->last_user_change) {
                  return a.po->last_user_change > b.po->last_user_change;
                }
                if (a.po != b.po) return a.po->id < b.po->id;
                return a.line->definition.line_number() <
                       b.line->definition.line_number();
              });
    return buckets_.emplace(key_, std::move(entries)).first->second;
  }

 private:
  std::string key_;
  absl::flat_hash_map<std::string, std::vector<Entry>> buckets_;
};

namespace {

constexpr v1::LineItemType kMonthlyUsage[] = {
    v1::LINE_ITEM_TYPE_AWS_MONTHLY_USAGE, v1::LINE_ITEM_TYPE_ALL};
constexpr v1::LineItemType kSubscription[] = {
    v1::LINE_ITEM_TYPE_AWS_SUBSCRIPTION_PURCHASE, v1::LINE_ITEM_TYPE_ALL};
constexpr v1::LineItemType kProfessional[] = {
    v1::LINE_ITEM_TYPE_AWS_PROFESSIONAL_SERVICES_AND_TRAINING,
    v1::LINE_ITEM_TYPE_ALL};
constexpr v1::LineItemType kMarketplace[] = {
    v1::LINE_ITEM_TYPE_AWS_MARKETPLACE_TRANSACTION,
    v1::LINE_ITEM_TYPE_AWS_MARKETPLACE_BLANKET_USAGE, v1::LINE_ITEM_TYPE_ALL};

struct TypeList {
  const v1::LineItemType* types;
  int size;
};

TypeList TypesFor(v1::InvoiceCategory category) {
  switch (category) {
    case v1::INVOICE_CATEGORY_MONTHLY_USAGE:
      return {kMonthlyUsage, 2};
    case v1::INVOICE_CATEGORY_SUBSCRIPTION_PURCHASE:
      return {kSubscription, 2};
    case v1::INVOICE_CATEGORY_PROFESSIONAL_SERVICES:
      return {kProfessional, 2};
    case v1::INVOICE_CATEGORY_MARKETPLACE:
      return {kMarketplace, 3};
    default:
      return {nullptr, 0};
  }
}

bool TaxRegistrationFits(const PurchaseOrderState& po,
                         const MatchInput& input) {
  if (input.bill_from != kEmeaEntity ||
      po.header.tax_registration_numbers().empty()) {
    return true;
  }
  const auto& numbers = po.header.tax_registration_numbers();
  return std::find(numbers.begin(), numbers.end(),
                   input.tax_registration_number) != numbers.end();
}

bool Covers(const LineItemState& line, int64_t amount) {
  return !line.definition.balance_tracking() || line.balance() >= amount;
}

// A marketplace-transaction line counts only on the PO the invoice names.
bool MarketplaceFits(const PurchaseOrderState& po, const LineItemState& line,
                     const MatchInput& input) {
  return line.definition.type() !=
             v1::LINE_ITEM_TYPE_AWS_MARKETPLACE_TRANSACTION ||
         po.id == input.purchase_order_id;
}

}  // namespace

int TypeRank(v1::InvoiceCategory category, v1::LineItemType type) {
  const TypeList list = TypesFor(category);
  for (int i = 0; i < list.size; ++i) {
    if (list.types[i] == type) return i;
  }
  return -1;
}

MatchResult Match(const AccountState& state, const MatchInput& input) {
  if (state.match_index.index == nullptr) {
    state.match_index.index = std::make_shared<MatchIndex>();
  }
  MatchIndex& index = *state.match_index.index;
  const TypeList list = TypesFor(input.category);
  for (int rank = 0; rank < list.size; ++rank) {
    MatchResult first_fitting;
    for (const MatchIndex::Entry& e :
         index.Bucket(state, input, list.types[rank])) {
      if (!TaxRegistrationFits(*e.po, input) ||
          !MarketplaceFits(*e.po, *e.line, input)) {
        continue;
      }
      if (Covers(*e.line, input.amount_micros)) return {e.po, e.line};
      if (!first_fitting.matched()) first_fitting = {e.po, e.line};
    }
    // Balance never blocks association: the best out-of-balance line of the
    // most specific fitting type still wins over less specific types.
    if (first_fitting.matched()) return first_fitting;
  }
  return {};
}

v1::MatchExplanation Explain(const AccountState& state, const MatchInput& input,
                             const MatchResult& result) {
  v1::MatchExplanation out;
  const int winner_rank =
      result.matched()
          ? TypeRank(input.category, result.line->definition.type())
          : -1;
  const bool winner_covers =
      result.matched() && Covers(*result.line, input.amount_micros);
  for (const auto& [id, po] : state.purchase_orders) {
    v1::PurchaseOrderCandidate* c = out.add_purchase_orders();
    c->set_purchase_order_id(id);
    if (po.status != v1::PURCHASE_ORDER_STATUS_ACTIVE) {
      c->set_outcome(v1::CANDIDATE_OUTCOME_NOT_ACTIVE);
      continue;
    }
    if (std::find(po.header.bill_from().begin(), po.header.bill_from().end(),
                  input.bill_from) == po.header.bill_from().end()) {
      c->set_outcome(v1::CANDIDATE_OUTCOME_BILL_FROM_MISMATCH);
      continue;
    }
    if (!TaxRegistrationFits(po, input)) {
      c->set_outcome(v1::CANDIDATE_OUTCOME_TAX_REGISTRATION_MISMATCH);
      continue;
    }
    if (po.header.currency_code() != input.currency_code) {
      c->set_outcome(v1::CANDIDATE_OUTCOME_CURRENCY_MISMATCH);
      continue;
    }
    bool any_fitting = false;
    int32_t outside_period = 0;
    int32_t wrong_type = 0;
    for (const auto& [n, line] : po.lines) {
      const int rank = TypeRank(input.category, line.definition.type());
      if (line.start > input.billing_period ||
          input.billing_period > line.end) {
        ++outside_period;
        continue;
      }
      if (rank < 0 || !MarketplaceFits(po, line, input)) {
        ++wrong_type;
        continue;
      }
      any_fitting = true;
      v1::LineCandidate* lc = c->add_lines();
      lc->set_line_number(n);
      if (&line == result.line) {
        lc->set_outcome(v1::CANDIDATE_OUTCOME_SELECTED);
      } else if (!result.matched()) {
        // Unreachable when result is Match's answer: a fitting line wins.
        lc->set_outcome(v1::CANDIDATE_OUTCOME_UNSPECIFIED);
      } else if (rank > winner_rank) {
        lc->set_outcome(v1::CANDIDATE_OUTCOME_LESS_SPECIFIC_TYPE);
      } else if (winner_covers && !Covers(line, input.amount_micros)) {
        lc->set_outcome(v1::CANDIDATE_OUTCOME_OUT_OF_BALANCE);
      } else if (po.last_user_change <
                 result.purchase_order->last_user_change) {
        lc->set_outcome(v1::CANDIDATE_OUTCOME_OLDER_UPDATE);
      } else if (&po != result.purchase_order) {
        lc->set_outcome(v1::CANDIDATE_OUTCOME_HIGHER_PURCHASE_ORDER_ID);
      } else {
        lc->set_outcome(v1::CANDIDATE_OUTCOME_HIGHER_LINE_NUMBER);
      }
    }
    c->set_lines_outside_period(outside_period);
    c->set_lines_wrong_type(wrong_type);
    if (&po == result.purchase_order) {
      c->set_outcome(v1::CANDIDATE_OUTCOME_SELECTED);
    } else if (any_fitting) {
      c->set_outcome(v1::CANDIDATE_OUTCOME_LOST_TO_OTHER_PURCHASE_ORDER);
    } else {
      c->set_outcome(v1::CANDIDATE_OUTCOME_NO_FITTING_LINE);
    }
  }
  if (result.matched()) {
    out.set_selected_line_type(result.line->definition.type());
    out.set_selected_line_covers(winner_covers);
  }
  return out;
}

std::string ExplanationSummary(const v1::MatchExplanation& explanation) {
  if (!explanation.summary().empty()) return explanation.summary();
  for (const v1::PurchaseOrderCandidate& po : explanation.purchase_orders()) {
    if (po.outcome() != v1::CANDIDATE_OUTCOME_SELECTED) continue;
    for (const v1::LineCandidate& line : po.lines()) {
      if (line.outcome() != v1::CANDIDATE_OUTCOME_SELECTED) continue;
      return absl::StrCat(
          "purchase order \"", po.purchase_order_id(), "\" line ",
          line.line_number(), ": most specific fitting type ",
          v1::LineItemType_Name(explanation.selected_line_type()),
          explanation.selected_line_covers()
              ? ", balance covers the amount"
              : ", no fitting line of that type covers the amount",
          "; ties go to the most recently updated purchase order, then the "
          "lowest purchase order id and line number");
    }
  }
  // Explain lists every purchase order of the account.
  return explanation.purchase_orders().empty()
             ? "the account has no purchase orders"
             : "no Active purchase order has a line that fits the seller, "
               "currency, billing period and category";
}

}  // namespace core
}  // namespace poledger
