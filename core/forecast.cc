#include "core/forecast.h"

#include <cstdint>

namespace poledger {
namespace core {
namespace {

constexpr int kMonthsAveraged = 3;

}  // namespace

SpendForecast Forecast(const std::map<YearMonth, int64_t>& invoiced_by_month,
                       int64_t balance, YearMonth term_end) {
  SpendForecast out;
  // The last three months with a net amount; sums of int64 micros over
  // three months stay well inside __int128.
  __int128 sum = 0;
  YearMonth latest;
  for (auto it = invoiced_by_month.rbegin();
       it != invoiced_by_month.rend() && out.months_averaged < kMonthsAveraged;
       ++it) {
    if (it->second == 0) continue;
    if (out.months_averaged == 0) latest = it->first;
    sum += it->second;
    ++out.months_averaged;
  }
  if (sum <= 0) return out;  // Nothing spent, or all credited back.
  out.burn_rate = static_cast<int64_t>(sum / out.months_averaged);
  if (out.burn_rate == 0) return out;  // Less than a micro a month.
  if (balance <= 0) {
    out.outlook = SpendForecast::Outlook::kRunsOut;
    out.runs_out = latest;
    return out;
  }
  const __int128 months =
      (static_cast<__int128>(balance) + out.burn_rate - 1) / out.burn_rate;
  // Beyond any term: a balance of a thousand years.
  if (months > 12 * 1000 || latest.Plus(static_cast<int>(months)) > term_end) {
    out.outlook = SpendForecast::Outlook::kLastsTheTerm;
    return out;
  }
  out.outlook = SpendForecast::Outlook::kRunsOut;
  out.runs_out = latest.Plus(static_cast<int>(months));
  return out;
}

std::optional<SpendForecast> ForecastLine(const LineItemState& line) {
  if (!line.definition.balance_tracking()) return std::nullopt;
  return Forecast(line.invoiced_by_month, line.balance(), line.end);
}

std::optional<SpendForecast> ForecastPurchaseOrder(
    const PurchaseOrderState& po) {
  std::map<YearMonth, int64_t> by_month;
  int64_t balance = 0;
  bool tracked = false;
  for (const auto& [n, line] : po.lines) {
    if (!line.definition.balance_tracking()) continue;
    tracked = true;
    // Decide keeps values and balances within int64 (PurchaseOrderState).
    balance += line.balance();
    for (const auto& [month, micros] : line.invoiced_by_month) {
      int64_t& total = by_month[month];
      if (__builtin_add_overflow(total, micros, &total)) {
        total = micros > 0 ? INT64_MAX : INT64_MIN;
      }
    }
  }
  if (!tracked) return std::nullopt;
  return Forecast(by_month, balance, po.expiration);
}

}  // namespace core
}  // namespace poledger
