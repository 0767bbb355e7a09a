// ScratchFor: a billing run decided on the scratch copy, each decision
// applied to it, decides exactly as on the whole state.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/decide.h"
#include "core/errors.h"
#include "gtest/gtest.h"
#include "tests/core/core_test_util.h"

namespace poledger {
namespace core {
namespace {

using namespace ::poledger::core::testing;  // NOLINT

// Decides `run` in turn on `state`, applying each decision; returns what
// each decided, as comparable text.
std::vector<std::string> DecideInTurn(AccountState state,
                                      const std::vector<Command>& run) {
  std::vector<std::string> out;
  for (const Command& c : run) {
    absl::StatusOr<Decision> d = Decide(state, c, At(2026, 4, 1));
    if (!d.ok()) {
      // Not ToString: it lists a status's payloads in no fixed order.
      out.push_back(absl::StrCat(d.status().code(), " ", d.status().message(),
                                 " ", FieldOf(d.status()), " ",
                                 ReasonOf(d.status())));
      continue;
    }
    std::string text = absl::StrCat("repeat of ", d->duplicate_of_version, ":");
    for (const v1::AccountEvent& e : d->events) {
      absl::StrAppend(&text, e.SerializeAsString());
      EXPECT_TRUE(Apply(state, e).ok());
    }
    out.push_back(text);
  }
  return out;
}

TEST(ScratchTest, ABillingRunDecidesOnTheScratchAsOnTheWholeState) {
  Account account;
  account.Must(Create("po", {Line(1, v1::LINE_ITEM_TYPE_ALL, 5000)}));
  for (int i = 0; i < 50; ++i) {
    account.Must(Invoice(absl::StrCat("old-", i), 10));
  }
  RecordMarketplaceTransaction tx;
  tx.transaction_id = "tx-1";
  tx.bill_from = kAws;
  tx.currency_code = "USD";
  tx.month = "2026-03";
  tx.amount_micros = Units(5);
  account.Must(tx);
  const std::vector<Command> run = {
      Invoice("old-3", 10),            // Repeats a recorded invoice.
      Invoice("old-4", 11),            // Same id, other content.
      CreditMemo("cm-1", "old-5", 4),  // Credits a recorded invoice.
      Invoice("new-1", 3000),          // Crosses 75% of the line.
      Invoice("new-1", 3000),          // Repeats the one before.
      CreditMemo("cm-2", "new-1", 7),  // Credits the one before.
      CreditMemo("cm-3", "none", 1),   // No such original.
      tx,                              // Repeats a recorded transaction.
  };
  const AccountState scratch = ScratchFor(account.state(), run);
  EXPECT_LT(scratch.invoices.size(), account.state().invoices.size());
  EXPECT_EQ(DecideInTurn(scratch, run), DecideInTurn(account.state(), run));
  // Any other command copies the whole state.
  std::vector<Command> mixed = run;
  mixed.push_back(Tick{});
  EXPECT_EQ(ScratchFor(account.state(), mixed).invoices.size(),
            account.state().invoices.size());
}

}  // namespace
}  // namespace core
}  // namespace poledger
