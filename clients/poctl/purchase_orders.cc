// poctl po ...: purchase orders and their line items.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "clients/poctl/session.h"

namespace poledger {
namespace poctl {
namespace {

// The flags of the po commands.
struct PoFlags {
  std::string file, id, description, currency = "USD", effective, expiration;
  std::vector<std::string> bill_from, contacts, tags;
  std::vector<int> thresholds;
  std::string request_id;
  int64_t expected_version = -1;
  std::string status;
  int page_size = 0;
  // Line items.
  int line_number = 0;
  std::string type, start, end, amount, tax_rate;
  int64_t quantity = 1;
  bool tracking = true;

  template <typename Request>
  void SetWrite(Request* req) const {
    req->set_request_id(RequestIdOr(request_id));
    if (expected_version >= 0) req->set_expected_version(expected_version);
  }
};

// "167.00/month, runs out 2026-07" (or "lasts the term", "no spend yet");
// "" without a forecast.
std::string FormatForecast(const v1::SpendForecast& f) {
  switch (f.outlook()) {
    case v1::SpendForecast::OUTLOOK_NO_SPEND:
      return "no spend yet";
    case v1::SpendForecast::OUTLOOK_RUNS_OUT:
      return absl::StrCat(FormatMoney(f.burn_rate()), "/month, runs out ",
                          f.runs_out_month());
    case v1::SpendForecast::OUTLOOK_LASTS_THE_TERM:
      return absl::StrCat(FormatMoney(f.burn_rate()), "/month, lasts the term");
    default:
      return "";
  }
}

void PrintPurchaseOrder(const v1::PurchaseOrder& po) {
  PrintTable(
      {{"purchase order", po.purchase_order_id()},
       {"status", StatusShort(po.status())},
       {"description", po.description()},
       {"bill from", absl::StrJoin(po.bill_from(), ", ")},
       {"months",
        absl::StrCat(po.effective_month(), " .. ", po.expiration_month())},
       {"value", FormatMoney(po.value())},
       {"balance", FormatMoney(po.balance())},
       {"forecast", po.has_forecast() ? FormatForecast(po.forecast())
                                      : "no balance-tracked line"},
       {"contacts", absl::StrJoin(po.contacts(), ", ",
                                  [](std::string* out, const v1::Contact& c) {
                                    out->append(c.email());
                                  })},
       {"version", absl::StrCat(po.version())}});
  std::vector<std::vector<std::string>> lines = {
      {"LINE", "TYPE", "MONTHS", "TRACKING", "TOTAL", "BALANCE", "FORECAST"}};
  for (const v1::LineItem& l : po.line_items()) {
    lines.push_back(
        {absl::StrCat(l.line_number()),
         EnumShort(v1::LineItemType_descriptor(), l.type(), "LINE_ITEM_TYPE_"),
         absl::StrCat(l.start_month(), "..", l.end_month()),
         l.balance_tracking() ? "on" : "off", FormatMoney(l.total_value()),
         FormatMoney(l.balance()),
         l.has_forecast() ? FormatForecast(l.forecast()) : "-"});
  }
  if (po.line_items_size() > 0) {
    std::printf("\n");
    PrintTable(lines);
  }
}

// Prints the purchase order an answer carries, or reports the error.
int Answer(const Session& session, const grpc::Status& status,
           const v1::PurchaseOrder& po) {
  if (!status.ok()) return Report(status);
  return Print(session, po, [&] { PrintPurchaseOrder(po); });
}

// Fills `p` from -f FILE or the header flags; with a mask, names in it each
// field a flag gave. Returns a usage error, or "".
std::string BuildHeader(const PoFlags& f, v1::PurchaseOrder* p, bool for_update,
                        google::protobuf::FieldMask* mask) {
  if (!f.file.empty()) {
    std::string error;
    if (!ReadJsonFile(f.file, p, &error)) return error;
    if (!f.id.empty()) p->set_purchase_order_id(f.id);
    return "";
  }
  p->set_purchase_order_id(f.id);
  auto touch = [&](const char* field) {
    if (mask != nullptr) mask->add_paths(field);
  };
  if (!f.description.empty()) {
    p->set_description(f.description);
    touch("description");
  }
  if (!f.bill_from.empty()) {
    for (const auto& b : f.bill_from) p->add_bill_from(b);
    touch("bill_from");
  }
  if (!for_update || f.currency != "USD") {
    p->set_currency_code(f.currency);
    if (for_update) touch("currency_code");
  }
  if (!f.effective.empty()) {
    p->set_effective_month(f.effective);
    touch("effective_month");
  }
  if (!f.expiration.empty()) {
    p->set_expiration_month(f.expiration);
    touch("expiration_month");
  }
  for (const auto& c : f.contacts) {
    v1::Contact* contact = p->add_contacts();
    const size_t lt = c.find('<');
    if (lt != std::string::npos && c.back() == '>') {
      contact->set_name(
          std::string(absl::StripAsciiWhitespace(c.substr(0, lt))));
      contact->set_email(c.substr(lt + 1, c.size() - lt - 2));
    } else {
      contact->set_email(c);
    }
  }
  if (!f.contacts.empty()) touch("contacts");
  for (const auto& t : f.tags) {
    const size_t eq = t.find('=');
    v1::Tag* tag = p->add_tags();
    tag->set_key(t.substr(0, eq));
    if (eq != std::string::npos) tag->set_value(t.substr(eq + 1));
  }
  if (!f.tags.empty()) touch("tags");
  for (int t : f.thresholds) p->add_balance_thresholds(t);
  if (!f.thresholds.empty()) touch("balance_thresholds");
  return "";
}

// Fills `l` from the line flags (money in the purchase order's currency,
// which the server supplies); with a mask, names each field given.
std::string BuildLine(const PoFlags& f, v1::LineItem* l,
                      google::protobuf::FieldMask* mask) {
  l->set_line_number(f.line_number);
  auto touch = [&](const char* field) {
    if (mask != nullptr) mask->add_paths(field);
  };
  if (!f.type.empty()) {
    v1::LineItemType t;
    if (!ParseEnum(v1::LineItemType_descriptor(), "LINE_ITEM_TYPE_", f.type,
                   &t)) {
      return absl::StrCat("--type: unknown line item type '", f.type, "'");
    }
    l->set_type(t);
    touch("type");
  }
  if (!f.start.empty()) {
    l->set_start_month(f.start);
    touch("start_month");
  }
  if (!f.end.empty()) {
    l->set_end_month(f.end);
    touch("end_month");
  }
  if (!f.amount.empty()) {
    if (!ParseMoney(f.amount, "", l->mutable_amount())) {
      return absl::StrCat("--amount: '", f.amount, "' is not a decimal amount");
    }
    touch("amount");
  }
  l->set_quantity(f.quantity);
  touch("quantity");
  l->set_balance_tracking(f.tracking);
  touch("balance_tracking");
  if (!f.tax_rate.empty()) {
    double pct = 0;
    if (!absl::SimpleAtod(f.tax_rate, &pct)) return "--tax-rate: not a number";
    l->mutable_tax()->set_rate_ppm(static_cast<int64_t>(pct * 10000 + 0.5));
    touch("tax");
  }
  return "";
}

int Create(Session& s, const PoFlags& f) {
  v1::CreatePurchaseOrderRequest req;
  req.set_account_id(s.account());
  req.set_request_id(RequestIdOr(f.request_id));
  if (auto e = BuildHeader(f, req.mutable_purchase_order(), false, nullptr);
      !e.empty()) {
    return Usage(e);
  }
  v1::PurchaseOrder out;
  grpc::ClientContext ctx;
  s.Prepare(&ctx);
  return Answer(s, s.purchase_orders().CreatePurchaseOrder(&ctx, req, &out),
                out);
}

int Get(Session& s, const PoFlags& f) {
  v1::GetPurchaseOrderRequest req;
  req.set_account_id(s.account());
  req.set_purchase_order_id(f.id);
  v1::PurchaseOrder out;
  grpc::ClientContext ctx;
  s.Prepare(&ctx);
  return Answer(s, s.purchase_orders().GetPurchaseOrder(&ctx, req, &out), out);
}

int List(Session& s, const PoFlags& f) {
  v1::ListPurchaseOrdersRequest req;
  req.set_account_id(s.account());
  req.set_page_size(f.page_size);
  if (!f.status.empty()) {
    v1::PurchaseOrderStatus st;
    if (!ParseEnum(v1::PurchaseOrderStatus_descriptor(),
                   "PURCHASE_ORDER_STATUS_", f.status, &st)) {
      return Usage("--status: unknown status '" + f.status + "'");
    }
    req.set_status(st);
  }
  std::vector<std::vector<std::string>> rows = {
      {"ID", "STATUS", "MONTHS", "VALUE", "BALANCE", "LINES", "VERSION"}};
  v1::ListPurchaseOrdersResponse all;
  do {
    v1::ListPurchaseOrdersResponse page;
    grpc::ClientContext ctx;
    s.Prepare(&ctx);
    grpc::Status status =
        s.purchase_orders().ListPurchaseOrders(&ctx, req, &page);
    if (!status.ok()) return Report(status);
    for (const auto& p : page.purchase_orders()) {
      *all.add_purchase_orders() = p;
      rows.push_back(
          {p.purchase_order_id(), StatusShort(p.status()),
           absl::StrCat(p.effective_month(), "..", p.expiration_month()),
           FormatMoney(p.value()), FormatMoney(p.balance()),
           absl::StrCat(p.line_items_size()), absl::StrCat(p.version())});
    }
    req.set_page_token(page.next_page_token());
  } while (!req.page_token().empty());
  return Print(s, all, [&] { PrintTable(rows); });
}

int Update(Session& s, const PoFlags& f) {
  v1::UpdatePurchaseOrderRequest req;
  req.set_account_id(s.account());
  f.SetWrite(&req);
  if (auto e =
          BuildHeader(f, req.mutable_purchase_order(), true,
                      f.file.empty() ? req.mutable_update_mask() : nullptr);
      !e.empty()) {
    return Usage(e);
  }
  if (f.file.empty() && req.update_mask().paths_size() == 0) {
    return Usage("nothing to update: give the fields to change");
  }
  v1::PurchaseOrder out;
  grpc::ClientContext ctx;
  s.Prepare(&ctx);
  return Answer(s, s.purchase_orders().UpdatePurchaseOrder(&ctx, req, &out),
                out);
}

int SetStatus(Session& s, const PoFlags& f, v1::PurchaseOrderStatus status) {
  v1::UpdatePurchaseOrderStatusRequest req;
  req.set_account_id(s.account());
  req.set_purchase_order_id(f.id);
  f.SetWrite(&req);
  req.set_status(status);
  v1::PurchaseOrder out;
  grpc::ClientContext ctx;
  s.Prepare(&ctx);
  return Answer(
      s, s.purchase_orders().UpdatePurchaseOrderStatus(&ctx, req, &out), out);
}

int Delete(Session& s, const PoFlags& f) {
  v1::DeletePurchaseOrderRequest req;
  req.set_account_id(s.account());
  req.set_purchase_order_id(f.id);
  f.SetWrite(&req);
  google::protobuf::Empty out;
  grpc::ClientContext ctx;
  s.Prepare(&ctx);
  grpc::Status status =
      s.purchase_orders().DeletePurchaseOrder(&ctx, req, &out);
  if (!status.ok()) return Report(status);
  return Print(s, out, [&] { std::printf("deleted %s\n", f.id.c_str()); });
}

int AddLine(Session& s, const PoFlags& f) {
  v1::AddLineItemRequest req;
  req.set_account_id(s.account());
  req.set_purchase_order_id(f.id);
  f.SetWrite(&req);
  if (auto e = BuildLine(f, req.mutable_line_item(), nullptr); !e.empty()) {
    return Usage(e);
  }
  v1::PurchaseOrder out;
  grpc::ClientContext ctx;
  s.Prepare(&ctx);
  return Answer(s, s.purchase_orders().AddLineItem(&ctx, req, &out), out);
}

int UpdateLine(Session& s, const PoFlags& f) {
  v1::UpdateLineItemRequest req;
  req.set_account_id(s.account());
  req.set_purchase_order_id(f.id);
  f.SetWrite(&req);
  if (auto e = BuildLine(f, req.mutable_line_item(), req.mutable_update_mask());
      !e.empty()) {
    return Usage(e);
  }
  v1::PurchaseOrder out;
  grpc::ClientContext ctx;
  s.Prepare(&ctx);
  return Answer(s, s.purchase_orders().UpdateLineItem(&ctx, req, &out), out);
}

int RemoveLine(Session& s, const PoFlags& f) {
  v1::RemoveLineItemRequest req;
  req.set_account_id(s.account());
  req.set_purchase_order_id(f.id);
  req.set_line_number(f.line_number);
  f.SetWrite(&req);
  v1::PurchaseOrder out;
  grpc::ClientContext ctx;
  s.Prepare(&ctx);
  return Answer(s, s.purchase_orders().RemoveLineItem(&ctx, req, &out), out);
}

}  // namespace

void AddPurchaseOrderCommands(CLI::App* app, Run* run) {
  auto f = std::make_shared<PoFlags>();
  auto write_flags = [f](CLI::App* c) {
    c->add_option("--request-id", f->request_id, "Retry-safe request id");
    c->add_option("--expected-version", f->expected_version,
                  "Refuse unless the purchase order is at this version");
  };
  auto header_flags = [f](CLI::App* c) {
    c->add_option("--id", f->id, "Purchase order id");
    c->add_option("-f,--file", f->file, "JSON PurchaseOrder (\"-\": stdin)");
    c->add_option("--description", f->description);
    c->add_option("--bill-from", f->bill_from, "Seller entity (repeat)");
    c->add_option("--currency", f->currency)->capture_default_str();
    c->add_option("--effective", f->effective, "YYYY-MM");
    c->add_option("--expiration", f->expiration, "YYYY-MM");
    c->add_option("--contact", f->contacts, "email or 'Name <email>' (repeat)");
    c->add_option("--tag", f->tags, "key=value (repeat)");
    c->add_option("--threshold", f->thresholds,
                  "Balance alert percent (repeat)");
  };
  auto line_flags = [f](CLI::App* c) {
    c->add_option("po", f->id, "Purchase order id")->required();
    c->add_option("--line", f->line_number, "Line number")->required();
    c->add_option("--type", f->type,
                  "all, monthly-usage, subscription-purchase, "
                  "marketplace-transaction, ...");
    c->add_option("--start", f->start, "YYYY-MM");
    c->add_option("--end", f->end, "YYYY-MM");
    c->add_option("--amount", f->amount, "Unit price, e.g. 1250.00");
    c->add_option("--quantity", f->quantity)->capture_default_str();
    c->add_option("--tax-rate", f->tax_rate, "Percent, e.g. 19 or 7.5");
    c->add_flag("--tracking,!--no-tracking", f->tracking, "Balance tracking");
  };
  auto with = [f](int (*body)(Session&, const PoFlags&)) -> Run {
    return [f, body](Session& s) { return body(s, *f); };
  };

  CLI::App* po =
      app->add_subcommand("po", "Purchase orders")->require_subcommand(1);
  CLI::App* c = po->add_subcommand("create", "Create a purchase order");
  header_flags(c);
  c->add_option("--request-id", f->request_id, "Retry-safe request id");
  OnRun(c, run, with(Create));
  c = po->add_subcommand("get", "Show a purchase order");
  c->add_option("id", f->id)->required();
  OnRun(c, run, with(Get));
  c = po->add_subcommand("list", "List purchase orders");
  c->add_option("--status", f->status, "active, suspended, expired, ...");
  c->add_option("--page-size", f->page_size);
  OnRun(c, run, with(List));
  c = po->add_subcommand("update",
                         "Change header fields (only the flags given)");
  header_flags(c);
  write_flags(c);
  OnRun(c, run, with(Update));
  for (auto [name, help, status] :
       {std::make_tuple("suspend", "Suspend",
                        v1::PURCHASE_ORDER_STATUS_SUSPENDED),
        std::make_tuple("activate", "Reactivate",
                        v1::PURCHASE_ORDER_STATUS_ACTIVE)}) {
    c = po->add_subcommand(name, help);
    c->add_option("id", f->id)->required();
    write_flags(c);
    OnRun(c, run, [f, status = status](Session& s) {
      return SetStatus(s, *f, status);
    });
  }
  c = po->add_subcommand("delete", "Delete");
  c->add_option("id", f->id)->required();
  write_flags(c);
  OnRun(c, run, with(Delete));

  CLI::App* line =
      po->add_subcommand("line", "Line items")->require_subcommand(1);
  c = line->add_subcommand("add", "Add a line item");
  line_flags(c);
  write_flags(c);
  OnRun(c, run, with(AddLine));
  c = line->add_subcommand("update",
                           "Change a line item (only the flags given)");
  line_flags(c);
  write_flags(c);
  OnRun(c, run, with(UpdateLine));
  c = line->add_subcommand("remove", "Remove a line item");
  c->add_option("po", f->id, "Purchase order id")->required();
  c->add_option("--line", f->line_number)->required();
  write_flags(c);
  OnRun(c, run, with(RemoveLine));
}

}  // namespace poctl
}  // namespace poledger
