// Builders and a small harness for domain tests: run a command through
// Decide, apply its events, and keep every event for inspection.
#ifndef POLEDGER_TESTS_CORE_CORE_TEST_UTIL_H_
#define POLEDGER_TESTS_CORE_CORE_TEST_UTIL_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "core/account.h"
#include "core/commands.h"
#include "core/decide.h"
#include "core/matching.h"
#include "gtest/gtest.h"

namespace poledger {
namespace core {
namespace testing {

inline constexpr char kAws[] = "Amazon Web Services, Inc.";
inline constexpr char kEmea[] = "Amazon Web Services EMEA SARL";

inline absl::Time At(int y, int m, int d, int hh = 0, int mm = 0, int ss = 0) {
  return absl::FromCivil(absl::CivilSecond(y, m, d, hh, mm, ss),
                         absl::UTCTimeZone());
}

inline int64_t Units(int64_t units) { return units * 1000000; }

inline v1::PurchaseOrderHeader Header(const std::string& effective = "2026-01",
                                      const std::string& expiration = "2026-12",
                                      const std::string& bill_from = kAws,
                                      const std::string& currency = "USD") {
  v1::PurchaseOrderHeader h;
  h.set_description("test purchase order");
  h.add_bill_from(bill_from);
  h.set_currency_code(currency);
  h.set_effective_month(effective);
  h.set_expiration_month(expiration);
  v1::Contact* c = h.add_contacts();
  c->set_name("Finance");
  c->set_email("finance@example.com");
  return h;
}

inline v1::LineItemDefinition Line(int32_t number, v1::LineItemType type,
                                   int64_t amount_units = 1000,
                                   const std::string& start = "2026-01",
                                   const std::string& end = "2026-12",
                                   bool tracking = true) {
  v1::LineItemDefinition l;
  l.set_line_number(number);
  l.set_type(type);
  l.set_start_month(start);
  l.set_end_month(end);
  l.set_balance_tracking(tracking);
  l.set_amount_micros(Units(amount_units));
  l.set_quantity(1);
  return l;
}

inline CreatePurchaseOrder Create(const std::string& id,
                                  std::vector<v1::LineItemDefinition> lines,
                                  v1::PurchaseOrderHeader header = Header()) {
  return CreatePurchaseOrder{id, std::move(header), std::move(lines)};
}

inline RecordInvoice Invoice(const std::string& id, int64_t amount_units,
                             v1::InvoiceCategory category =
                                 v1::INVOICE_CATEGORY_MONTHLY_USAGE,
                             const std::string& period = "2026-03",
                             const std::string& bill_from = kAws,
                             const std::string& currency = "USD") {
  RecordInvoice cmd;
  v1::InvoiceData& in = cmd.invoice;
  in.set_invoice_id(id);
  in.set_kind(v1::INVOICE_KIND_INVOICE);
  in.set_bill_from(bill_from);
  in.set_category(category);
  in.set_billing_period(period);
  in.set_currency_code(currency);
  in.set_amount_micros(Units(amount_units));
  return cmd;
}

inline RecordInvoice CreditMemo(const std::string& id,
                                const std::string& original,
                                int64_t amount_units) {
  RecordInvoice cmd = Invoice(id, amount_units);
  cmd.invoice.set_kind(v1::INVOICE_KIND_CREDIT_MEMO);
  cmd.invoice.set_original_invoice_id(original);
  return cmd;
}

// An account driven through Decide and Apply.
class Account {
 public:
  explicit Account(std::string id = "123456789012") {
    state_.account_id = std::move(id);
  }

  // Decides `command` at `now`; on success applies and records the events.
  absl::StatusOr<Decision> Run(const Command& command,
                               absl::Time now = At(2026, 2, 1)) {
    absl::StatusOr<Decision> decision = Decide(state_, command, now);
    if (!decision.ok()) return decision;
    for (const v1::AccountEvent& e : decision->events) {
      absl::Status applied = Apply(state_, e);
      EXPECT_TRUE(applied.ok()) << applied;
      log_.push_back(e);
    }
    return decision;
  }

  // Runs `command`, failing the test if it is refused.
  Decision Must(const Command& command, absl::Time now = At(2026, 2, 1)) {
    absl::StatusOr<Decision> d = Run(command, now);
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? *std::move(d) : Decision{};
  }

  // Like Must for an invoice, with the event's explanation in full (as
  // GetInvoice's FULL view rebuilds it) instead of the compact form logged.
  Decision MustExplained(const RecordInvoice& invoice,
                         absl::Time now = At(2026, 2, 1)) {
    const AccountState before = state_;
    Decision d = Must(invoice, now);
    for (v1::AccountEvent& e : d.events) {
      if (!e.has_invoice_recorded()) continue;
      v1::InvoiceRecorded* r = e.mutable_invoice_recorded();
      *r->mutable_explanation() = ExplainRecorded(before, r->invoice());
    }
    return d;
  }

  const AccountState& state() const { return state_; }
  const std::vector<v1::AccountEvent>& log() const { return log_; }
  const PurchaseOrderState& po(const std::string& id) const {
    return state_.purchase_orders.at(id);
  }

 private:
  AccountState state_;
  std::vector<v1::AccountEvent> log_;
};

// The invoice event of a decision, or a default one.
inline v1::InvoiceRecorded InvoiceEvent(const Decision& d) {
  for (const v1::AccountEvent& e : d.events) {
    if (e.has_invoice_recorded()) return e.invoice_recorded();
  }
  ADD_FAILURE() << "no InvoiceRecorded event";
  return {};
}

inline std::vector<v1::NotificationRaised> Notifications(const Decision& d) {
  std::vector<v1::NotificationRaised> out;
  for (const v1::AccountEvent& e : d.events) {
    if (e.has_notification_raised()) out.push_back(e.notification_raised());
  }
  return out;
}

}  // namespace testing
}  // namespace core
}  // namespace poledger

#endif  // POLEDGER_TESTS_CORE_CORE_TEST_UTIL_H_
