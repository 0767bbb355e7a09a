// Spend forecasts: how fast a balance-tracked line item (or a purchase
// order's tracked lines together) is being spent, and the month its balance
// runs out at that pace.
//
// The burn rate is the average net amount invoiced per billing month (the
// invoices matched to the line minus their credit memos, by billing period)
// over the last three billing months that had any, or over fewer if fewer
// had, rounded down to the micro. At that rate the balance left runs out in
// the month latest + ceil(balance / rate), where `latest` is the last of
// those months; a balance already at or below zero ran out in `latest`.
// When that month is past the line's end month (a purchase order: its
// expiration month), the balance lasts the term.
//
// Thread safety: pure functions.
#ifndef POLEDGER_CORE_FORECAST_H_
#define POLEDGER_CORE_FORECAST_H_

#include <cstdint>
#include <map>
#include <optional>

#include "core/account.h"
#include "core/calendar.h"

namespace poledger {
namespace core {

struct SpendForecast {
  enum class Outlook {
    kNoSpend,       // Nothing invoiced yet: no rate.
    kRunsOut,       // In `runs_out`, within the term.
    kLastsTheTerm,  // Not before the end of the term.
  };
  Outlook outlook = Outlook::kNoSpend;
  // Micros per billing month.
  int64_t burn_rate = 0;
  // Billing months the rate averages (0 to 3).
  int months_averaged = 0;
  // kRunsOut only.
  YearMonth runs_out;
};

// The forecast from net amounts by billing month, a balance and the last
// month of the term.
SpendForecast Forecast(const std::map<YearMonth, int64_t>& invoiced_by_month,
                       int64_t balance, YearMonth term_end);

// A balance-tracked line's forecast (its end month ends the term), or
// std::nullopt for a line without balance tracking.
std::optional<SpendForecast> ForecastLine(const LineItemState& line);

// A purchase order's: its tracked lines together (their amounts by month
// and balances summed; the expiration month ends the term), or std::nullopt
// if none is tracked.
std::optional<SpendForecast> ForecastPurchaseOrder(
    const PurchaseOrderState& po);

}  // namespace core
}  // namespace poledger

#endif  // POLEDGER_CORE_FORECAST_H_
