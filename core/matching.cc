#include "core/matching.h"

#include <algorithm>
#include <tuple>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
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

namespace {

// Adds the purchase orders counted by outcome (indexed by the enum's value)
// to `out`, in the enum's order.
void AddOutcomeCounts(const std::vector<int32_t>& outcomes,
                      v1::MatchExplanation& out) {
  for (int o = 0; o < static_cast<int>(outcomes.size()); ++o) {
    if (outcomes[o] == 0) continue;
    v1::OutcomeCount* count = out.add_purchase_order_outcomes();
    count->set_outcome(static_cast<v1::CandidateOutcome>(o));
    count->set_count(outcomes[o]);
  }
}

// Explain by a walk over every purchase order and line: the full form, and
// the compact one for tests (ExplainCompactByWalk).
v1::MatchExplanation ExplainByWalk(const AccountState& state,
                                   const MatchInput& input,
                                   const MatchResult& result,
                                   ExplainDetail detail) {
  v1::MatchExplanation out;
  const bool full = detail == ExplainDetail::kFull;
  out.set_compact(!full);
  const int winner_rank =
      result.matched()
          ? TypeRank(input.category, result.line->definition.type())
          : -1;
  const bool winner_covers =
      result.matched() && Covers(*result.line, input.amount_micros);
  // Purchase orders by outcome, indexed by the enum's value.
  std::vector<int32_t> outcomes(v1::CandidateOutcome_ARRAYSIZE, 0);
  // The best losing lines, best first, by the rules Match applies: type
  // rank, then covering the amount, then the most recent update, the
  // lowest purchase order id, the lowest line number.
  struct Loser {
    int rank;
    bool short_of_amount;
    uint64_t last_user_change;
    const std::string* po_id;
    int32_t line_number;
    v1::CandidateOutcome outcome;
    bool operator<(const Loser& o) const {
      if (rank != o.rank) return rank < o.rank;
      if (short_of_amount != o.short_of_amount) return !short_of_amount;
      if (last_user_change != o.last_user_change) {
        return last_user_change > o.last_user_change;
      }
      if (*po_id != *o.po_id) return *po_id < *o.po_id;
      return line_number < o.line_number;
    }
  };
  std::vector<Loser> runners_up;
  int32_t fitting = 0;
  for (const auto& [id, po] : state.purchase_orders) {
    const bool selected_po = &po == result.purchase_order;
    // The full form lists every purchase order; the compact one only the
    // selected purchase order, with only its selected line.
    v1::PurchaseOrderCandidate scratch;
    v1::PurchaseOrderCandidate* c =
        full || selected_po ? out.add_purchase_orders() : &scratch;
    c->set_purchase_order_id(id);
    auto decided = [&](v1::CandidateOutcome outcome) {
      c->set_outcome(outcome);
      ++outcomes[outcome];
    };
    if (po.status != v1::PURCHASE_ORDER_STATUS_ACTIVE) {
      decided(v1::CANDIDATE_OUTCOME_NOT_ACTIVE);
      continue;
    }
    if (std::find(po.header.bill_from().begin(), po.header.bill_from().end(),
                  input.bill_from) == po.header.bill_from().end()) {
      decided(v1::CANDIDATE_OUTCOME_BILL_FROM_MISMATCH);
      continue;
    }
    if (!TaxRegistrationFits(po, input)) {
      decided(v1::CANDIDATE_OUTCOME_TAX_REGISTRATION_MISMATCH);
      continue;
    }
    if (po.header.currency_code() != input.currency_code) {
      decided(v1::CANDIDATE_OUTCOME_CURRENCY_MISMATCH);
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
      ++fitting;
      v1::CandidateOutcome outcome;
      const bool covers = Covers(line, input.amount_micros);
      if (&line == result.line) {
        outcome = v1::CANDIDATE_OUTCOME_SELECTED;
      } else if (!result.matched()) {
        // Unreachable when result is Match's answer: a fitting line wins.
        outcome = v1::CANDIDATE_OUTCOME_UNSPECIFIED;
      } else if (rank > winner_rank) {
        outcome = v1::CANDIDATE_OUTCOME_LESS_SPECIFIC_TYPE;
      } else if (winner_covers && !covers) {
        outcome = v1::CANDIDATE_OUTCOME_OUT_OF_BALANCE;
      } else if (po.last_user_change <
                 result.purchase_order->last_user_change) {
        outcome = v1::CANDIDATE_OUTCOME_OLDER_UPDATE;
      } else if (!selected_po) {
        outcome = v1::CANDIDATE_OUTCOME_HIGHER_PURCHASE_ORDER_ID;
      } else {
        outcome = v1::CANDIDATE_OUTCOME_HIGHER_LINE_NUMBER;
      }
      if (full || outcome == v1::CANDIDATE_OUTCOME_SELECTED) {
        v1::LineCandidate* lc = c->add_lines();
        lc->set_line_number(n);
        lc->set_outcome(outcome);
      }
      if (outcome == v1::CANDIDATE_OUTCOME_SELECTED) continue;
      const Loser loser{rank, !covers, po.last_user_change, &id, n, outcome};
      if (runners_up.size() < static_cast<size_t>(kMaxRunnersUp) ||
          loser < runners_up.back()) {
        runners_up.insert(
            std::upper_bound(runners_up.begin(), runners_up.end(), loser),
            loser);
        if (runners_up.size() > static_cast<size_t>(kMaxRunnersUp)) {
          runners_up.pop_back();
        }
      }
    }
    c->set_lines_outside_period(outside_period);
    c->set_lines_wrong_type(wrong_type);
    if (selected_po) {
      decided(v1::CANDIDATE_OUTCOME_SELECTED);
    } else if (any_fitting) {
      decided(v1::CANDIDATE_OUTCOME_LOST_TO_OTHER_PURCHASE_ORDER);
    } else {
      decided(v1::CANDIDATE_OUTCOME_NO_FITTING_LINE);
    }
  }
  for (const Loser& l : runners_up) {
    v1::RunnerUp* r = out.add_runners_up();
    r->set_purchase_order_id(*l.po_id);
    r->set_line_number(l.line_number);
    r->set_outcome(l.outcome);
  }
  AddOutcomeCounts(outcomes, out);
  out.set_fitting_lines(fitting);
  if (result.matched()) {
    out.set_selected_line_type(result.line->definition.type());
    out.set_selected_line_covers(winner_covers);
  }
  return out;
}

// The outcome of a line that fit and lost to `result`'s (as the walk
// decides it).
v1::CandidateOutcome LoserOutcome(const MatchResult& result, int winner_rank,
                                  bool winner_covers,
                                  const PurchaseOrderState& po, int rank,
                                  bool covers) {
  if (rank > winner_rank) return v1::CANDIDATE_OUTCOME_LESS_SPECIFIC_TYPE;
  if (winner_covers && !covers) return v1::CANDIDATE_OUTCOME_OUT_OF_BALANCE;
  if (po.last_user_change < result.purchase_order->last_user_change) {
    return v1::CANDIDATE_OUTCOME_OLDER_UPDATE;
  }
  if (&po != result.purchase_order) {
    return v1::CANDIDATE_OUTCOME_HIGHER_PURCHASE_ORDER_ID;
  }
  return v1::CANDIDATE_OUTCOME_HIGHER_LINE_NUMBER;
}

// The compact form from Match's index, without walking every line: the
// index's buckets hold exactly the fitting lines of each type, in the
// tie-break order, so the runners-up are the first lines of the buckets in
// rank order (covering ones first) and the counts are the buckets' sizes.
v1::MatchExplanation ExplainCompact(const AccountState& state,
                                    const MatchInput& input,
                                    const MatchResult& result) {
  v1::MatchExplanation out;
  out.set_compact(true);
  if (state.match_index.index == nullptr) {
    state.match_index.index = std::make_shared<MatchIndex>();
  }
  MatchIndex& index = *state.match_index.index;
  const TypeList list = TypesFor(input.category);
  const bool check_tax = input.bill_from == kEmeaEntity;
  const bool check_marketplace =
      input.category == v1::INVOICE_CATEGORY_MARKETPLACE;
  auto fits = [&](const MatchIndex::Entry& e) {
    return (!check_tax || TaxRegistrationFits(*e.po, input)) &&
           (!check_marketplace || MarketplaceFits(*e.po, *e.line, input));
  };
  const int winner_rank =
      result.matched()
          ? TypeRank(input.category, result.line->definition.type())
          : -1;
  const bool winner_covers =
      result.matched() && Covers(*result.line, input.amount_micros);
  // The purchase orders with a fitting line, and the fitting lines.
  absl::flat_hash_set<const PurchaseOrderState*> with_fitting;
  int32_t fitting = 0;
  int runners = 0;
  auto add_runner = [&](const MatchIndex::Entry& e, int rank, bool covers) {
    v1::RunnerUp* r = out.add_runners_up();
    r->set_purchase_order_id(e.po->id);
    r->set_line_number(e.line->definition.line_number());
    r->set_outcome(
        LoserOutcome(result, winner_rank, winner_covers, *e.po, rank, covers));
    ++runners;
  };
  for (int rank = 0; rank < list.size; ++rank) {
    const std::vector<MatchIndex::Entry>& bucket =
        index.Bucket(state, input, list.types[rank]);
    const PurchaseOrderState* last = nullptr;
    for (const MatchIndex::Entry& e : bucket) {
      if (!fits(e)) continue;
      ++fitting;
      // A bucket lists each purchase order's lines together.
      if (e.po != last) with_fitting.insert(last = e.po);
    }
    if (runners == kMaxRunnersUp || !result.matched()) continue;
    // This rank's losers, best first: those that cover the amount, then the
    // others, each in the bucket's order.
    std::vector<const MatchIndex::Entry*> short_of_amount;
    for (const MatchIndex::Entry& e : bucket) {
      if (runners == kMaxRunnersUp) break;
      if (e.line == result.line || !fits(e)) continue;
      if (Covers(*e.line, input.amount_micros)) {
        add_runner(e, rank, true);
      } else if (short_of_amount.size() < static_cast<size_t>(kMaxRunnersUp)) {
        short_of_amount.push_back(&e);
      }
    }
    for (const MatchIndex::Entry* e : short_of_amount) {
      if (runners == kMaxRunnersUp) break;
      add_runner(*e, rank, false);
    }
  }
  std::vector<int32_t> outcomes(v1::CandidateOutcome_ARRAYSIZE, 0);
  for (const auto& [id, po] : state.purchase_orders) {
    v1::CandidateOutcome outcome;
    if (po.status != v1::PURCHASE_ORDER_STATUS_ACTIVE) {
      outcome = v1::CANDIDATE_OUTCOME_NOT_ACTIVE;
    } else if (std::find(po.header.bill_from().begin(),
                         po.header.bill_from().end(),
                         input.bill_from) == po.header.bill_from().end()) {
      outcome = v1::CANDIDATE_OUTCOME_BILL_FROM_MISMATCH;
    } else if (!TaxRegistrationFits(po, input)) {
      outcome = v1::CANDIDATE_OUTCOME_TAX_REGISTRATION_MISMATCH;
    } else if (po.header.currency_code() != input.currency_code) {
      outcome = v1::CANDIDATE_OUTCOME_CURRENCY_MISMATCH;
    } else if (&po == result.purchase_order) {
      outcome = v1::CANDIDATE_OUTCOME_SELECTED;
    } else if (with_fitting.contains(&po)) {
      outcome = v1::CANDIDATE_OUTCOME_LOST_TO_OTHER_PURCHASE_ORDER;
    } else {
      outcome = v1::CANDIDATE_OUTCOME_NO_FITTING_LINE;
    }
    ++outcomes[outcome];
  }
  if (result.matched()) {
    // The selected purchase order, with its selected line and the counts of
    // its lines left out.
    const PurchaseOrderState& po = *result.purchase_order;
    int32_t outside_period = 0;
    int32_t wrong_type = 0;
    for (const auto& [n, line] : po.lines) {
      if (line.start > input.billing_period ||
          input.billing_period > line.end) {
        ++outside_period;
      } else if (TypeRank(input.category, line.definition.type()) < 0 ||
                 !MarketplaceFits(po, line, input)) {
        ++wrong_type;
      }
    }
    v1::PurchaseOrderCandidate* c = out.add_purchase_orders();
    c->set_purchase_order_id(po.id);
    c->set_outcome(v1::CANDIDATE_OUTCOME_SELECTED);
    v1::LineCandidate* lc = c->add_lines();
    lc->set_line_number(result.line->definition.line_number());
    lc->set_outcome(v1::CANDIDATE_OUTCOME_SELECTED);
    c->set_lines_outside_period(outside_period);
    c->set_lines_wrong_type(wrong_type);
    out.set_selected_line_type(result.line->definition.type());
    out.set_selected_line_covers(winner_covers);
  }
  AddOutcomeCounts(outcomes, out);
  out.set_fitting_lines(fitting);
  return out;
}

}  // namespace

v1::MatchExplanation Explain(const AccountState& state, const MatchInput& input,
                             const MatchResult& result, ExplainDetail detail) {
  if (detail == ExplainDetail::kCompact) {
    return ExplainCompact(state, input, result);
  }
  return ExplainByWalk(state, input, result, detail);
}

v1::MatchExplanation ExplainCompactByWalk(const AccountState& state,
                                          const MatchInput& input,
                                          const MatchResult& result) {
  return ExplainByWalk(state, input, result, ExplainDetail::kCompact);
}

MatchInput MatchInputOf(const v1::InvoiceData& invoice) {
  MatchInput input;
  input.bill_from = invoice.bill_from();
  input.tax_registration_number = invoice.tax_registration_number();
  input.currency_code = invoice.currency_code();
  input.category = invoice.category();
  input.billing_period =
      YearMonth::Parse(invoice.billing_period(), "").value_or(YearMonth());
  input.amount_micros = invoice.amount_micros();
  input.purchase_order_id = invoice.purchase_order_id();
  return input;
}

v1::MatchExplanation ExplainRecorded(const AccountState& before,
                                     const v1::InvoiceData& invoice) {
  const MatchInput input = MatchInputOf(invoice);
  return Explain(before, input, Match(before, input), ExplainDetail::kFull);
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
  // Explain lists (or counts) every purchase order of the account.
  const bool none = explanation.compact()
                        ? explanation.purchase_order_outcomes().empty()
                        : explanation.purchase_orders().empty();
  return none ? "the account has no purchase orders"
              : "no Active purchase order has a line that fits the seller, "
                "currency, billing period and category";
}

}  // namespace core
}  // namespace poledger
