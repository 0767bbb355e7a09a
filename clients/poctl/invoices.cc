// poctl invoice ... and marketplace ...: recording and reading invoices.
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "clients/poctl/session.h"

namespace poledger {
namespace poctl {
namespace {

struct InvoiceFlags {
  std::string file, id, category, period, amount, currency = "USD", credit_for,
                                                  po_id, month, request_id;
  std::vector<std::string> bill_from;
  int line_number = 0;
  bool dry_run = false;
  bool full = false;
};

void PrintInvoice(const v1::Invoice& inv) {
  const v1::InvoiceAssociation& a = inv.association();
  PrintTable(
      {{"invoice", inv.invoice_id()},
       {"kind",
        EnumShort(v1::InvoiceKind_descriptor(), inv.kind(), "INVOICE_KIND_")},
       {"amount", FormatMoney(inv.amount())},
       {"period", inv.billing_period()},
       {"purchase order", a.associated() ? a.purchase_order_id() : "(none)"},
       {"line", a.associated() ? absl::StrCat(a.line_number()) : "-"},
       {"line balance after",
        a.associated() ? FormatMoney(a.line_balance_after()) : "-"},
       {"position", inv.position() == 0 ? std::string("(preview: not recorded)")
                                        : absl::StrCat(inv.position())}});
  for (const v1::Notification& n : inv.notifications()) {
    std::printf("raises: %s", EnumShort(v1::NotificationKind_descriptor(),
                                        n.kind(), "NOTIFICATION_KIND_")
                                  .c_str());
    if (n.threshold_percent() != 0) {
      std::printf(" (line %d past %d%%, balance %s)", n.line_number(),
                  n.threshold_percent(), FormatMoney(n.balance()).c_str());
    }
    std::printf("\n");
  }
  if (!a.explanation().summary().empty()) {
    std::printf("\nwhy: %s\n", a.explanation().summary().c_str());
    const v1::InvoiceExplanation& why = a.explanation();
    if (why.runners_up_size() > 0) {
      std::vector<std::vector<std::string>> runners = {
          {"RUNNER-UP", "LINE", "LOST BY"}};
      for (const v1::RunnerUp& r : why.runners_up()) {
        runners.push_back({r.purchase_order_id(), absl::StrCat(r.line_number()),
                           EnumShort(v1::CandidateOutcome_descriptor(),
                                     r.outcome(), "CANDIDATE_OUTCOME_")});
      }
      PrintTable(runners);
    }
    std::vector<std::string> counts;
    for (const v1::OutcomeCount& c : why.purchase_order_outcomes()) {
      counts.push_back(
          absl::StrCat(c.count(), " ",
                       EnumShort(v1::CandidateOutcome_descriptor(), c.outcome(),
                                 "CANDIDATE_OUTCOME_")));
    }
    if (!counts.empty()) {
      std::printf("purchase orders: %s; fitting lines: %d%s\n",
                  absl::StrJoin(counts, ", ").c_str(), why.fitting_lines(),
                  why.purchase_orders().empty() ? " (--full lists each)" : "");
    }
    if (why.purchase_orders().empty()) return;
    std::vector<std::vector<std::string>> rows = {
        {"PURCHASE ORDER", "OUTCOME", "LINES"}};
    for (const auto& c : a.explanation().purchase_orders()) {
      std::vector<std::string> lines;
      for (const auto& l : c.lines()) {
        lines.push_back(
            absl::StrCat(l.line_number(), ":",
                         EnumShort(v1::CandidateOutcome_descriptor(),
                                   l.outcome(), "CANDIDATE_OUTCOME_")));
      }
      rows.push_back({c.purchase_order_id(),
                      EnumShort(v1::CandidateOutcome_descriptor(), c.outcome(),
                                "CANDIDATE_OUTCOME_"),
                      absl::StrJoin(lines, " ")});
    }
    PrintTable(rows);
  }
}

int Answer(const Session& session, const grpc::Status& status,
           const v1::Invoice& invoice) {
  if (!status.ok()) return Report(status);
  return Print(session, invoice, [&] { PrintInvoice(invoice); });
}

int Record(Session& s, const InvoiceFlags& f) {
  v1::RecordInvoiceRequest req;
  req.set_account_id(s.account());
  req.set_request_id(RequestIdOr(f.request_id));
  req.set_validate_only(f.dry_run);
  v1::Invoice* inv = req.mutable_invoice();
  if (!f.file.empty()) {
    std::string error;
    if (!ReadJsonFile(f.file, inv, &error)) return Usage(error);
  } else {
    inv->set_invoice_id(f.id);
    if (!f.bill_from.empty()) inv->set_bill_from(f.bill_from[0]);
    if (!f.category.empty()) {
      v1::InvoiceCategory c;
      if (!ParseEnum(v1::InvoiceCategory_descriptor(), "INVOICE_CATEGORY_",
                     f.category, &c)) {
        return Usage("--category: unknown category '" + f.category + "'");
      }
      inv->set_category(c);
    }
    inv->set_billing_period(f.period);
    if (!ParseMoney(f.amount, f.currency, inv->mutable_amount())) {
      return Usage("--amount: '" + f.amount + "' is not a decimal amount");
    }
    if (!f.credit_for.empty()) {
      inv->set_kind(v1::INVOICE_KIND_CREDIT_MEMO);
      inv->set_original_invoice_id(f.credit_for);
    }
    inv->set_purchase_order_id(f.po_id);
  }
  if (f.full) req.set_view(v1::INVOICE_VIEW_FULL);
  v1::Invoice out;
  grpc::ClientContext ctx;
  s.Prepare(&ctx);
  return Answer(s, s.invoices().RecordInvoice(&ctx, req, &out), out);
}

int Get(Session& s, const InvoiceFlags& f) {
  v1::GetInvoiceRequest req;
  req.set_account_id(s.account());
  req.set_invoice_id(f.id);
  if (f.full) req.set_view(v1::INVOICE_VIEW_FULL);
  v1::Invoice out;
  grpc::ClientContext ctx;
  s.Prepare(&ctx);
  return Answer(s, s.invoices().GetInvoice(&ctx, req, &out), out);
}

int RecordMarketplace(Session& s, const InvoiceFlags& f) {
  v1::RecordMarketplaceTransactionRequest req;
  req.set_account_id(s.account());
  req.set_request_id(RequestIdOr(f.request_id));
  v1::MarketplaceTransaction* t = req.mutable_transaction();
  t->set_transaction_id(f.id);
  t->set_purchase_order_id(f.po_id);
  t->set_bill_from(f.bill_from.empty() ? "" : f.bill_from[0]);
  if (!ParseMoney(f.amount, f.currency, t->mutable_amount())) {
    return Usage("--amount: '" + f.amount + "' is not a decimal amount");
  }
  t->set_month(f.month);
  t->set_line_number(f.line_number);
  v1::RecordMarketplaceTransactionResponse out;
  grpc::ClientContext ctx;
  s.Prepare(&ctx);
  grpc::Status status =
      s.invoices().RecordMarketplaceTransaction(&ctx, req, &out);
  if (!status.ok()) return Report(status);
  return Print(s, out, [&] {
    PrintTable({{"outcome", EnumShort(v1::MarketplaceOutcome_descriptor(),
                                      out.outcome(), "MARKETPLACE_OUTCOME_")},
                {"purchase order", out.purchase_order_id()},
                {"line", absl::StrCat(out.line_number())},
                {"reason", out.reason()}});
  });
}

}  // namespace

void AddInvoiceCommands(CLI::App* app, Run* run) {
  auto f = std::make_shared<InvoiceFlags>();
  auto with = [f](int (*body)(Session&, const InvoiceFlags&)) -> Run {
    return [f, body](Session& s) { return body(s, *f); };
  };
  CLI::App* invoice =
      app->add_subcommand("invoice", "Invoices")->require_subcommand(1);
  CLI::App* c = invoice->add_subcommand("record", "Record an invoice");
  c->add_option("--id", f->id, "Invoice id");
  c->add_option("-f,--file", f->file, "JSON Invoice (\"-\": stdin)");
  c->add_option("--bill-from", f->bill_from, "Seller entity");
  c->add_option("--category", f->category,
                "monthly-usage, subscription-purchase, marketplace, "
                "professional-services");
  c->add_option("--period", f->period, "Billing period YYYY-MM");
  c->add_option("--amount", f->amount, "e.g. 2600.00");
  c->add_option("--currency", f->currency)->capture_default_str();
  c->add_option("--credit-for", f->credit_for,
                "Make it a credit memo for this invoice");
  c->add_option("--po", f->po_id, "Purchase order id the buyer typed");
  c->add_option("--request-id", f->request_id);
  c->add_flag("--dry-run", f->dry_run,
              "Show where it would go (match preview); record nothing");
  c->add_flag("--full", f->full,
              "Explain with every purchase order and line considered "
              "(rebuilt from the log)");
  OnRun(c, run, with(Record));
  AddImportCommand(invoice, run);
  c = invoice->add_subcommand("get", "Show an invoice");
  c->add_option("id", f->id)->required();
  c->add_flag("--full", f->full,
              "Explain with every purchase order and line considered "
              "(rebuilt from the log)");
  OnRun(c, run, with(Get));

  CLI::App* marketplace =
      app->add_subcommand("marketplace", "Marketplace")->require_subcommand(1);
  c = marketplace->add_subcommand("record", "Record a transaction");
  c->add_option("--id", f->id, "Transaction id")->required();
  c->add_option("--po", f->po_id, "Purchase order number");
  c->add_option("--bill-from", f->bill_from)->required();
  c->add_option("--amount", f->amount)->required();
  c->add_option("--currency", f->currency)->capture_default_str();
  c->add_option("--month", f->month, "YYYY-MM")->required();
  c->add_option("--line", f->line_number);
  c->add_option("--request-id", f->request_id);
  OnRun(c, run, with(RecordMarketplace));
}

}  // namespace poctl
}  // namespace poledger
