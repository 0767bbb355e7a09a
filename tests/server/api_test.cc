// The poledger.v1 API over TCP on 127.0.0.1 against an in-process server on
// a manual clock and a real RocksDB data directory.
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/civil_time.h"
#include "core/proto_time.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "poledger/v1/invoices.grpc.pb.h"
#include "poledger/v1/log.grpc.pb.h"
#include "poledger/v1/purchase_orders.grpc.pb.h"
#include "server/server.h"
#include "tests/eventstore/store_test_util.h"
#include "tests/testing/status_matchers.h"

namespace poledger {
namespace {

using ::testing::HasSubstr;

constexpr char kAccount[] = "111122223333";
constexpr char kAws[] = "Amazon Web Services, Inc.";

v1::Money Usd(int64_t units) {
  v1::Money m;
  m.set_currency_code("USD");
  m.set_units(units);
  return m;
}

v1::PurchaseOrder NewPo(const std::string& id, int64_t line_amount = 1000,
                        v1::LineItemType type = v1::LINE_ITEM_TYPE_ALL) {
  v1::PurchaseOrder po;
  po.set_purchase_order_id(id);
  po.set_description("cloud spend");
  po.add_bill_from(kAws);
  po.set_currency_code("USD");
  po.set_effective_month("2026-01");
  po.set_expiration_month("2026-12");
  v1::Contact* c = po.add_contacts();
  c->set_name("Finance");
  c->set_email("finance@example.com");
  v1::LineItem* l = po.add_line_items();
  l->set_line_number(1);
  l->set_type(type);
  l->set_start_month("2026-01");
  l->set_end_month("2026-12");
  l->set_balance_tracking(true);
  *l->mutable_amount() = Usd(line_amount);
  l->set_quantity(1);
  return po;
}

v1::Invoice NewInvoice(const std::string& id, int64_t amount) {
  v1::Invoice inv;
  inv.set_invoice_id(id);
  inv.set_bill_from(kAws);
  inv.set_category(v1::INVOICE_CATEGORY_MONTHLY_USAGE);
  inv.set_billing_period("2026-02");
  *inv.mutable_amount() = Usd(amount);
  return inv;
}

// The reason and field violations carried in a status's details.
struct Details {
  std::string reason;
  std::string domain;
  std::vector<std::string> fields;
};

Details DetailsOf(const grpc::Status& status) {
  Details out;
  google::rpc::Status rpc;
  if (!rpc.ParseFromString(status.error_details())) return out;
  for (const auto& any : rpc.details()) {
    google::rpc::ErrorInfo info;
    google::rpc::BadRequest bad;
    if (any.UnpackTo(&info)) {
      out.reason = info.reason();
      out.domain = info.domain();
    } else if (any.UnpackTo(&bad)) {
      for (const auto& v : bad.field_violations()) out.fields.push_back(v.field());
    }
  }
  return out;
}

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(); }

  void Start() {
    ServerOptions options;
    // Small, so that slow-subscriber tests overflow and resync.
    options.stream_queue_records = 64;
    options.listen = "127.0.0.1:0";
    options.data_dir = dir_.path() + "/data";
    options.clock = "manual:2026-02-01T00:00:00Z";
    options.heartbeat_interval = absl::Milliseconds(200);
    auto server = PoledgerServer::Start(options);
    ASSERT_OK(server);
    server_ = std::move(*server);
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                       grpc::InsecureChannelCredentials());
    pos_ = v1::PurchaseOrderService::NewStub(channel);
    invoices_ = v1::InvoiceService::NewStub(channel);
    notifications_ = v1::NotificationService::NewStub(channel);
    log_ = v1::EventLogService::NewStub(channel);
    admin_ = v1::AdminService::NewStub(channel);
  }

  void Restart() {
    server_.reset();
    Start();
  }

  grpc::Status Create(const v1::PurchaseOrder& po, v1::PurchaseOrder* out,
                      const std::string& request_id = "") {
    grpc::ClientContext ctx;
    v1::CreatePurchaseOrderRequest req;
    req.set_account_id(kAccount);
    *req.mutable_purchase_order() = po;
    req.set_request_id(request_id);
    return pos_->CreatePurchaseOrder(&ctx, req, out);
  }

  grpc::Status Record(const v1::Invoice& inv, v1::Invoice* out,
                      const std::string& request_id = "") {
    grpc::ClientContext ctx;
    v1::RecordInvoiceRequest req;
    req.set_account_id(kAccount);
    *req.mutable_invoice() = inv;
    req.set_request_id(request_id);
    return invoices_->RecordInvoice(&ctx, req, out);
  }

  v1::PurchaseOrder Get(const std::string& id) {
    grpc::ClientContext ctx;
    v1::GetPurchaseOrderRequest req;
    req.set_account_id(kAccount);
    req.set_purchase_order_id(id);
    v1::PurchaseOrder out;
    EXPECT_TRUE(pos_->GetPurchaseOrder(&ctx, req, &out).ok());
    return out;
  }

  grpc::Status SetStatus(const std::string& id, v1::PurchaseOrderStatus status) {
    grpc::ClientContext ctx;
    v1::UpdatePurchaseOrderStatusRequest req;
    req.set_account_id(kAccount);
    req.set_purchase_order_id(id);
    req.set_status(status);
    v1::PurchaseOrder out;
    return pos_->UpdatePurchaseOrderStatus(&ctx, req, &out);
  }

  grpc::Status SetTime(int y, int m, int d) {
    grpc::ClientContext ctx;
    v1::SetTimeRequest req;
    *req.mutable_time() = core::ToProtoTime(
        absl::FromCivil(absl::CivilDay(y, m, d), absl::UTCTimeZone()));
    v1::TimeResponse out;
    return admin_->SetTime(&ctx, req, &out);
  }

  uint64_t store_head() {
    grpc::ClientContext ctx;
    v1::GetLogDigestResponse digest;
    EXPECT_TRUE(log_->GetLogDigest(&ctx, v1::GetLogDigestRequest(), &digest).ok());
    return digest.head_position();
  }

  TempDir dir_;
  std::unique_ptr<PoledgerServer> server_;
  std::unique_ptr<v1::PurchaseOrderService::Stub> pos_;
  std::unique_ptr<v1::InvoiceService::Stub> invoices_;
  std::unique_ptr<v1::NotificationService::Stub> notifications_;
  std::unique_ptr<v1::EventLogService::Stub> log_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
};

TEST_F(ApiTest, CreateGetListWithDerivedFields) {
  v1::PurchaseOrder created;
  ASSERT_TRUE(Create(NewPo("po-1", 1200), &created).ok());
  EXPECT_EQ(created.status(), v1::PURCHASE_ORDER_STATUS_ACTIVE);
  EXPECT_EQ(created.value().units(), 1200);
  EXPECT_EQ(created.balance().units(), 1200);
  EXPECT_EQ(created.line_items(0).total_value().units(), 1200);
  EXPECT_EQ(created.line_items(0).balance().currency_code(), "USD");
  EXPECT_EQ(created.balance_thresholds(0), 75);
  EXPECT_EQ(created.create_time().seconds(), 1769904000);  // 2026-02-01
  EXPECT_GT(created.version(), 0u);
  EXPECT_EQ(Get("po-1").purchase_order_id(), "po-1");
  for (int i = 2; i <= 5; ++i) {
    v1::PurchaseOrder ignored;
    ASSERT_TRUE(Create(NewPo(absl::StrCat("po-", i)), &ignored).ok());
  }
  ASSERT_TRUE(SetStatus("po-3", v1::PURCHASE_ORDER_STATUS_SUSPENDED).ok());
  std::vector<std::string> seen;
  std::string token;
  do {
    grpc::ClientContext ctx;
    v1::ListPurchaseOrdersRequest req;
    req.set_account_id(kAccount);
    req.set_page_size(2);
    req.set_page_token(token);
    v1::ListPurchaseOrdersResponse resp;
    ASSERT_TRUE(pos_->ListPurchaseOrders(&ctx, req, &resp).ok());
    EXPECT_LE(resp.purchase_orders_size(), 2);
    for (const auto& po : resp.purchase_orders()) seen.push_back(po.purchase_order_id());
    token = resp.next_page_token();
  } while (!token.empty());
  EXPECT_THAT(seen, ::testing::ElementsAre("po-1", "po-2", "po-3", "po-4", "po-5"));
  grpc::ClientContext ctx;
  v1::ListPurchaseOrdersRequest req;
  req.set_account_id(kAccount);
  req.set_status(v1::PURCHASE_ORDER_STATUS_SUSPENDED);
  v1::ListPurchaseOrdersResponse resp;
  ASSERT_TRUE(pos_->ListPurchaseOrders(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.purchase_orders_size(), 1);
  EXPECT_EQ(resp.purchase_orders(0).purchase_order_id(), "po-3");
}

// An account at the limits: 100 purchase orders of 100 lines. The default
// (full) view pages by size, under 100 KB each; the basic view leaves the
// lines out and lists all 100 in one page.
TEST_F(ApiTest, ListPagesStaySmallForPurchaseOrdersOfManyLines) {
  for (int i = 0; i < 100; ++i) {
    v1::PurchaseOrder po = NewPo(absl::StrFormat("po-%03d", i));
    for (int n = 2; n <= 100; ++n) {
      v1::LineItem* l = po.add_line_items();
      *l = po.line_items(0);
      l->set_line_number(n);
    }
    v1::PurchaseOrder created;
    ASSERT_TRUE(Create(po, &created).ok()) << i;
  }
  auto list = [&](v1::PurchaseOrderView view, const std::string& token,
                  v1::ListPurchaseOrdersResponse* page) {
    grpc::ClientContext ctx;
    v1::ListPurchaseOrdersRequest req;
    req.set_account_id(kAccount);
    req.set_view(view);
    req.set_page_token(token);
    return pos_->ListPurchaseOrders(&ctx, req, page);
  };
  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    v1::ListPurchaseOrdersResponse page;
    ASSERT_TRUE(list(v1::PURCHASE_ORDER_VIEW_UNSPECIFIED, token, &page).ok());
    EXPECT_LT(page.ByteSizeLong(), 100u * 1000) << "page " << pages;
    ASSERT_GT(page.purchase_orders_size(), 0);
    for (const auto& po : page.purchase_orders()) {
      EXPECT_EQ(po.line_items_size(), 100);
      EXPECT_EQ(po.line_item_count(), 100);
      seen.push_back(po.purchase_order_id());
    }
    token = page.next_page_token();
    ++pages;
  } while (!token.empty() && pages < 100);
  EXPECT_GT(pages, 5);
  ASSERT_EQ(seen.size(), 100u);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(seen[i], absl::StrFormat("po-%03d", i));
  }

  v1::ListPurchaseOrdersResponse basic;
  ASSERT_TRUE(list(v1::PURCHASE_ORDER_VIEW_BASIC, "", &basic).ok());
  EXPECT_LT(basic.ByteSizeLong(), 100u * 1000);
  ASSERT_EQ(basic.purchase_orders_size(), 100);
  EXPECT_TRUE(basic.next_page_token().empty());
  EXPECT_EQ(basic.purchase_orders(7).line_items_size(), 0);
  EXPECT_EQ(basic.purchase_orders(7).line_item_count(), 100);
  EXPECT_EQ(basic.purchase_orders(7).balance().units(), 100 * 1000);

  v1::ListPurchaseOrdersResponse bad;
  const grpc::Status refused =
      list(static_cast<v1::PurchaseOrderView>(9), "", &bad);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.error_message(), ::testing::HasSubstr("view"));
}

TEST_F(ApiTest, ErrorsCarryCodeReasonAndField) {
  v1::PurchaseOrder out;
  v1::PurchaseOrder bad = NewPo("po-1");
  bad.set_effective_month("2026-13");
  grpc::Status s = Create(bad, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  Details d = DetailsOf(s);
  EXPECT_EQ(d.reason, "INVALID_FIELD");
  EXPECT_EQ(d.domain, "poledger.dev");
  EXPECT_THAT(d.fields, ::testing::ElementsAre("purchase_order.effective_month"));

  bad = NewPo("po-1");
  bad.mutable_line_items(0)->mutable_amount()->set_nanos(1);
  s = Create(bad, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(DetailsOf(s).fields,
              ::testing::ElementsAre("purchase_order.line_items[0].amount"));

  ASSERT_TRUE(Create(NewPo("po-1"), &out).ok());
  s = Create(NewPo("po-1"), &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(DetailsOf(s).reason, "PURCHASE_ORDER_ALREADY_EXISTS");

  grpc::ClientContext ctx;
  v1::GetPurchaseOrderRequest get;
  get.set_account_id(kAccount);
  get.set_purchase_order_id("missing");
  s = pos_->GetPurchaseOrder(&ctx, get, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(DetailsOf(s).reason, "PURCHASE_ORDER_NOT_FOUND");

  grpc::ClientContext ctx2;
  get.set_account_id("no spaces allowed");
  s = pos_->GetPurchaseOrder(&ctx2, get, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(DetailsOf(s).fields, ::testing::ElementsAre("account_id"));

  s = SetStatus("po-1", v1::PURCHASE_ORDER_STATUS_EXPIRED);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(DetailsOf(s).reason, "INVALID_STATUS_TRANSITION");

  grpc::ClientContext ctx3;
  v1::ListPurchaseOrdersRequest list;
  list.set_account_id(kAccount);
  list.set_page_size(-1);
  v1::ListPurchaseOrdersResponse listed;
  s = pos_->ListPurchaseOrders(&ctx3, list, &listed);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(DetailsOf(s).fields, ::testing::ElementsAre("page_size"));
}

TEST_F(ApiTest, UpdatesLinesAndExpectedVersions) {
  v1::PurchaseOrder po;
  ASSERT_TRUE(Create(NewPo("po"), &po).ok());
  const uint64_t v = po.version();
  {
    grpc::ClientContext ctx;
    v1::UpdatePurchaseOrderRequest req;
    req.set_account_id(kAccount);
    req.mutable_purchase_order()->set_purchase_order_id("po");
    req.mutable_purchase_order()->set_description("renamed");
    req.mutable_update_mask()->add_paths("description");
    req.set_expected_version(v);
    ASSERT_TRUE(pos_->UpdatePurchaseOrder(&ctx, req, &po).ok());
    EXPECT_EQ(po.description(), "renamed");
    EXPECT_EQ(po.bill_from(0), kAws);
    grpc::ClientContext again;
    grpc::Status stale = pos_->UpdatePurchaseOrder(&again, req, &po);
    EXPECT_EQ(stale.error_code(), grpc::StatusCode::ABORTED);
    EXPECT_EQ(DetailsOf(stale).reason, "WRONG_EXPECTED_VERSION");
  }
  {
    grpc::ClientContext ctx;
    v1::AddLineItemRequest req;
    req.set_account_id(kAccount);
    req.set_purchase_order_id("po");
    v1::LineItem* l = req.mutable_line_item();
    l->set_line_number(2);
    l->set_type(v1::LINE_ITEM_TYPE_AWS_MONTHLY_USAGE);
    l->set_start_month("2026-02");
    l->set_end_month("2026-03");
    l->set_balance_tracking(true);
    l->mutable_amount()->set_units(50);  // Currency taken from the PO.
    l->set_quantity(2);
    l->mutable_tax()->set_rate_ppm(100000);
    ASSERT_TRUE(pos_->AddLineItem(&ctx, req, &po).ok());
    ASSERT_EQ(po.line_items_size(), 2);
    EXPECT_EQ(po.line_items(1).total_value().units(), 110);
  }
  {
    grpc::ClientContext ctx;
    v1::UpdateLineItemRequest req;
    req.set_account_id(kAccount);
    req.set_purchase_order_id("po");
    req.mutable_line_item()->set_line_number(2);
    req.mutable_line_item()->set_quantity(3);
    req.mutable_update_mask()->add_paths("quantity");
    ASSERT_TRUE(pos_->UpdateLineItem(&ctx, req, &po).ok());
    EXPECT_EQ(po.line_items(1).total_value().units(), 165);
  }
  {
    // "tax" names the one Tax message: a rate becomes an amount.
    grpc::ClientContext ctx;
    v1::UpdateLineItemRequest req;
    req.set_account_id(kAccount);
    req.set_purchase_order_id("po");
    req.mutable_line_item()->set_line_number(2);
    req.mutable_line_item()->mutable_tax()->mutable_amount()->set_units(7);
    req.mutable_update_mask()->add_paths("tax");
    ASSERT_TRUE(pos_->UpdateLineItem(&ctx, req, &po).ok());
    EXPECT_EQ(po.line_items(1).total_value().units(), 157);
    EXPECT_EQ(po.line_items(1).tax().amount().units(), 7);
    EXPECT_EQ(po.line_items(1).quantity(), 3);
  }
  {
    // A domain rule broken by a masked header field names the API's path.
    grpc::ClientContext ctx;
    v1::UpdatePurchaseOrderRequest req;
    req.set_account_id(kAccount);
    req.mutable_purchase_order()->set_purchase_order_id("po");
    req.mutable_purchase_order()->add_balance_thresholds(50);
    req.mutable_purchase_order()->add_balance_thresholds(150);
    req.mutable_update_mask()->add_paths("balance_thresholds");
    v1::PurchaseOrder unchanged;
    grpc::Status s = pos_->UpdatePurchaseOrder(&ctx, req, &unchanged);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(DetailsOf(s).fields,
                ::testing::ElementsAre("purchase_order.balance_thresholds[1]"));
    EXPECT_THAT(
        s.error_message(),
        ::testing::StartsWith("purchase_order.balance_thresholds[1]: "));
  }
  {
    grpc::ClientContext ctx;
    v1::RemoveLineItemRequest req;
    req.set_account_id(kAccount);
    req.set_purchase_order_id("po");
    req.set_line_number(1);
    ASSERT_TRUE(pos_->RemoveLineItem(&ctx, req, &po).ok());
    EXPECT_EQ(po.line_items_size(), 1);
  }
  {
    grpc::ClientContext ctx;
    v1::DeletePurchaseOrderRequest req;
    req.set_account_id(kAccount);
    req.set_purchase_order_id("po");
    google::protobuf::Empty empty;
    ASSERT_TRUE(pos_->DeletePurchaseOrder(&ctx, req, &empty).ok());
    grpc::ClientContext again;
    EXPECT_EQ(pos_->DeletePurchaseOrder(&again, req, &empty).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
}

TEST_F(ApiTest, InvoicesAssociateExplainAndRetry) {
  v1::PurchaseOrder po;
  ASSERT_TRUE(Create(NewPo("usage", 1000, v1::LINE_ITEM_TYPE_AWS_MONTHLY_USAGE), &po).ok());
  ASSERT_TRUE(Create(NewPo("general", 1000), &po).ok());
  v1::Invoice inv;
  ASSERT_TRUE(Record(NewInvoice("inv-1", 300), &inv, "rq-1").ok());
  EXPECT_TRUE(inv.association().associated());
  EXPECT_EQ(inv.association().purchase_order_id(), "usage");
  EXPECT_EQ(inv.association().line_balance_after().units(), 700);
  // The default (BASIC) view: what competed and the counts, not every
  // purchase order's candidates.
  const v1::InvoiceExplanation& why = inv.association().explanation();
  EXPECT_EQ(why.purchase_orders_size(), 0);
  ASSERT_EQ(why.runners_up_size(), 1);
  EXPECT_EQ(why.runners_up(0).purchase_order_id(), "general");
  EXPECT_EQ(why.runners_up(0).line_number(), 1);
  EXPECT_EQ(why.runners_up(0).outcome(),
            v1::CANDIDATE_OUTCOME_LESS_SPECIFIC_TYPE);
  ASSERT_EQ(why.purchase_order_outcomes_size(), 2);
  EXPECT_EQ(why.fitting_lines(), 2);
  // The log keeps the facts; the answer carries the sentence too.
  const std::string summary =
      "purchase order \"usage\" line 1: most specific fitting type "
      "LINE_ITEM_TYPE_AWS_MONTHLY_USAGE, balance covers the amount; ties go to "
      "the most recently updated purchase order, then the lowest purchase "
      "order id and line number";
  EXPECT_EQ(inv.association().explanation().summary(), summary);
  EXPECT_GT(inv.position(), 0u);
  // A retry with the same request id returns the first result.
  v1::Invoice again;
  ASSERT_TRUE(Record(NewInvoice("inv-1", 300), &again, "rq-1").ok());
  EXPECT_EQ(again.position(), inv.position());
  // The same invoice id with other content is refused.
  grpc::Status conflict = Record(NewInvoice("inv-1", 301), &again);
  EXPECT_EQ(conflict.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(DetailsOf(conflict).reason, "INVOICE_ID_CONFLICT");
  // Bad input names the request field.
  v1::Invoice bad = NewInvoice("inv-2", 1);
  bad.set_billing_period("Feb");
  grpc::Status invalid = Record(bad, &again);
  EXPECT_EQ(invalid.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(DetailsOf(invalid).fields,
              ::testing::ElementsAre("invoice.billing_period"));
  // A credit memo.
  v1::Invoice memo = NewInvoice("cm-1", 100);
  memo.set_kind(v1::INVOICE_KIND_CREDIT_MEMO);
  memo.set_original_invoice_id("inv-1");
  ASSERT_TRUE(Record(memo, &again).ok());
  EXPECT_EQ(again.association().line_balance_after().units(), 800);
  {
    grpc::ClientContext ctx;
    v1::GetInvoiceRequest req;
    req.set_account_id(kAccount);
    req.set_invoice_id("inv-1");
    v1::Invoice got;
    ASSERT_TRUE(invoices_->GetInvoice(&ctx, req, &got).ok());
    EXPECT_EQ(got.association().purchase_order_id(), "usage");
    EXPECT_EQ(got.amount().units(), 300);
    EXPECT_EQ(got.association().explanation().summary(), summary);
    EXPECT_EQ(got.association().explanation().purchase_orders_size(), 0);
  }
  {
    // FULL: every purchase order, rebuilt from the state before inv-1 (the
    // credit memo since changed the balance; the explanation is as then).
    grpc::ClientContext ctx;
    v1::GetInvoiceRequest req;
    req.set_account_id(kAccount);
    req.set_invoice_id("inv-1");
    req.set_view(v1::INVOICE_VIEW_FULL);
    v1::Invoice got;
    ASSERT_TRUE(invoices_->GetInvoice(&ctx, req, &got).ok());
    const v1::InvoiceExplanation& full = got.association().explanation();
    EXPECT_EQ(full.summary(), summary);
    ASSERT_EQ(full.purchase_orders_size(), 2);
    EXPECT_EQ(full.purchase_orders(0).purchase_order_id(), "general");
    EXPECT_EQ(full.purchase_orders(0).outcome(),
              v1::CANDIDATE_OUTCOME_LOST_TO_OTHER_PURCHASE_ORDER);
    EXPECT_EQ(full.purchase_orders(1).purchase_order_id(), "usage");
    EXPECT_EQ(full.purchase_orders(1).outcome(),
              v1::CANDIDATE_OUTCOME_SELECTED);
    EXPECT_EQ(full.runners_up_size(), 1);
    // RecordInvoice answers FULL on request too.
    v1::RecordInvoiceRequest record;
    record.set_account_id(kAccount);
    *record.mutable_invoice() = NewInvoice("inv-3", 5);
    record.set_view(v1::INVOICE_VIEW_FULL);
    grpc::ClientContext record_ctx;
    v1::Invoice recorded;
    ASSERT_TRUE(invoices_->RecordInvoice(&record_ctx, record, &recorded).ok());
    EXPECT_EQ(recorded.association().explanation().purchase_orders_size(), 2);
  }
  {
    grpc::ClientContext ctx;
    v1::ListPurchaseOrderInvoicesRequest req;
    req.set_account_id(kAccount);
    req.set_purchase_order_id("usage");
    v1::ListPurchaseOrderInvoicesResponse resp;
    ASSERT_TRUE(pos_->ListPurchaseOrderInvoices(&ctx, req, &resp).ok());
    ASSERT_EQ(resp.invoices_size(), 3);
    EXPECT_EQ(resp.invoices(0).invoice_id(), "inv-1");
    EXPECT_EQ(resp.invoices(1).invoice_id(), "cm-1");
    EXPECT_EQ(resp.invoices(2).invoice_id(), "inv-3");
  }
}

TEST_F(ApiTest, MarketplaceCreatesAPurchaseOrder) {
  grpc::ClientContext ctx;
  v1::RecordMarketplaceTransactionRequest req;
  req.set_account_id(kAccount);
  v1::MarketplaceTransaction* t = req.mutable_transaction();
  t->set_transaction_id("tx-1");
  t->set_purchase_order_id("poc1");
  t->set_bill_from(kAws);
  *t->mutable_amount() = Usd(99);
  t->set_month("2026-02");
  v1::RecordMarketplaceTransactionResponse resp;
  ASSERT_TRUE(invoices_->RecordMarketplaceTransaction(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.outcome(), v1::MARKETPLACE_OUTCOME_PURCHASE_ORDER_CREATED);
  EXPECT_EQ(Get("poc1").expiration_month(), "2027-01");
}

TEST_F(ApiTest, ManualClockDrivesExpiryAndReminders) {
  v1::PurchaseOrder po;
  ASSERT_TRUE(Create(NewPo("po"), &po).ok());
  ASSERT_TRUE(SetTime(2026, 10, 31).ok());  // "two months before"
  ASSERT_TRUE(SetTime(2027, 1, 1).ok());
  EXPECT_EQ(Get("po").status(), v1::PURCHASE_ORDER_STATUS_EXPIRED);
  grpc::ClientContext ctx;
  v1::ListNotificationsRequest req;
  req.set_account_id(kAccount);
  v1::ListNotificationsResponse resp;
  ASSERT_TRUE(notifications_->ListNotifications(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.notifications_size(), 2);
  EXPECT_EQ(resp.notifications(0).kind(),
            v1::NOTIFICATION_KIND_EXPIRATION_REMINDER);
  EXPECT_EQ(resp.notifications(1).kind(), v1::NOTIFICATION_KIND_EXPIRED);
  EXPECT_EQ(resp.notifications(1).expiration_date(), "2026-12-31");
  EXPECT_FALSE(resp.notifications(1).has_balance());
  grpc::ClientContext advance_ctx;
  v1::AdvanceTimeRequest advance;
  advance.mutable_duration()->set_seconds(-1);
  v1::TimeResponse time;
  EXPECT_EQ(admin_->AdvanceTime(&advance_ctx, advance, &time).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ApiTest, EventStreamCatchesUpGoesLiveAndResumesWithoutGaps) {
  v1::PurchaseOrder po;
  ASSERT_TRUE(Create(NewPo("po"), &po).ok());
  v1::Invoice inv;
  ASSERT_TRUE(Record(NewInvoice("inv-1", 10), &inv).ok());
  grpc::ClientContext ctx;
  v1::SubscribeEventsRequest req;
  req.set_after_position(0);
  auto reader = log_->SubscribeEvents(&ctx, req);
  v1::SubscribeEventsResponse msg;
  std::vector<uint64_t> positions;
  while (reader->Read(&msg) && !msg.has_caught_up()) {
    positions.push_back(msg.event().position());
  }
  EXPECT_THAT(positions, ::testing::ElementsAre(1u, 2u));
  EXPECT_EQ(msg.caught_up().head_position(), 2u);
  ASSERT_TRUE(Record(NewInvoice("inv-2", 10), &inv).ok());
  ASSERT_TRUE(reader->Read(&msg));
  EXPECT_EQ(msg.event().position(), 3u);
  EXPECT_EQ(msg.event().event_type(), "invoice_recorded");
  EXPECT_EQ(msg.event().payload().invoice_recorded().invoice().invoice_id(), "inv-2");
  // Idle: a heartbeat with the head.
  ASSERT_TRUE(reader->Read(&msg));
  EXPECT_TRUE(msg.has_heartbeat());
  EXPECT_EQ(msg.heartbeat().head_position(), 3u);
  ctx.TryCancel();
  while (reader->Read(&msg)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);

  // Resume after position 2: exactly 3 comes, then the marker.
  grpc::ClientContext resume_ctx;
  req.set_after_position(2);
  auto resumed = log_->SubscribeEvents(&resume_ctx, req);
  ASSERT_TRUE(resumed->Read(&msg));
  EXPECT_EQ(msg.event().position(), 3u);
  ASSERT_TRUE(resumed->Read(&msg));
  EXPECT_TRUE(msg.has_caught_up());
  resume_ctx.TryCancel();
  while (resumed->Read(&msg)) {
  }
  resumed->Finish();
}

// The log tail reads nothing while nobody subscribes; subscribers that
// join and leave while writes go on must still see every record once, in
// order: from the store up to where they joined, from the tail after.
TEST_F(ApiTest, SubscribersJoiningWhileWritesGoOnMissNothing) {
  v1::PurchaseOrder po;
  ASSERT_TRUE(Create(NewPo("po", 1000000), &po).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> written{0};
  std::thread writer([&] {
    v1::Invoice inv;
    for (int i = 0; !stop.load(); ++i) {
      if (Record(NewInvoice(absl::StrCat("w-", i), 1), &inv).ok()) ++written;
    }
  });
  for (int round = 0; round < 12; ++round) {
    SCOPED_TRACE(absl::StrCat("subscriber ", round));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(30));
    v1::SubscribeEventsRequest req;
    req.set_after_position(0);
    auto reader = log_->SubscribeEvents(&ctx, req);
    v1::SubscribeEventsResponse msg;
    uint64_t last = 0;
    int live = 0;
    bool caught_up = false;
    while (live < 15 && reader->Read(&msg)) {
      if (msg.has_caught_up()) {
        EXPECT_EQ(msg.caught_up().head_position(), last);
        caught_up = true;
        continue;
      }
      if (!msg.has_event()) continue;
      ASSERT_EQ(msg.event().position(), last + 1) << "a gap or a repeat";
      last = msg.event().position();
      if (caught_up) ++live;
    }
    EXPECT_TRUE(caught_up);
    EXPECT_EQ(live, 15);
    ctx.TryCancel();
    while (reader->Read(&msg)) {
    }
    reader->Finish();
    // Nobody subscribes for a while: the tail skips what is written now.
    const int before = written.load();
    while (written.load() < before + 20) absl::SleepFor(absl::Milliseconds(1));
  }
  stop = true;
  writer.join();
}

TEST_F(ApiTest, NotificationStreamDeliversTheBalanceAlertLive) {
  v1::PurchaseOrder po;
  ASSERT_TRUE(Create(NewPo("po", 1000), &po).ok());
  grpc::ClientContext ctx;
  v1::SubscribeNotificationsRequest req;
  req.set_account_id(kAccount);
  auto reader = notifications_->SubscribeNotifications(&ctx, req);
  v1::SubscribeNotificationsResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  ASSERT_TRUE(msg.has_caught_up());
  v1::Invoice inv;
  ASSERT_TRUE(Record(NewInvoice("big", 300), &inv).ok());  // 70% left.
  do {
    ASSERT_TRUE(reader->Read(&msg));
  } while (!msg.has_notification());
  const v1::Notification& n = msg.notification();
  EXPECT_EQ(n.kind(), v1::NOTIFICATION_KIND_BALANCE_THRESHOLD);
  EXPECT_EQ(n.threshold_percent(), 75);
  EXPECT_EQ(n.recipients(0).email(), "finance@example.com");
  EXPECT_EQ(n.account_id(), kAccount);
  EXPECT_EQ(n.invoice_id(), "big");
  // Money like every other amount of the API.
  EXPECT_EQ(n.balance().units(), 700);
  EXPECT_EQ(n.balance().nanos(), 0);
  EXPECT_EQ(n.balance().currency_code(), "USD");
  EXPECT_EQ(n.total_value().units(), 1000);
  EXPECT_FALSE(n.notification_id().empty());
  ctx.TryCancel();
  while (reader->Read(&msg)) {
  }
  reader->Finish();
}

TEST_F(ApiTest, ShutdownEndsStreamsWithUnavailable) {
  grpc::ClientContext ctx;
  auto reader = log_->SubscribeEvents(&ctx, v1::SubscribeEventsRequest());
  v1::SubscribeEventsResponse msg;
  ASSERT_TRUE(reader->Read(&msg));  // Caught up on the empty log.
  std::thread stopper([&] { server_->Shutdown(absl::Seconds(5)); });
  while (reader->Read(&msg)) {
  }
  const grpc::Status end = reader->Finish();
  stopper.join();
  EXPECT_EQ(end.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(end.error_message(), HasSubstr("resume after position 0"));
}

TEST_F(ApiTest, PastStatesDigestAndRestartGiveTheSameAnswers) {
  v1::PurchaseOrder po;
  ASSERT_TRUE(Create(NewPo("po", 1000), &po).ok());
  v1::Invoice inv;
  ASSERT_TRUE(Record(NewInvoice("a", 100), &inv).ok());
  const uint64_t at = inv.position();
  ASSERT_TRUE(Record(NewInvoice("b", 200), &inv).ok());
  {
    grpc::ClientContext ctx;
    v1::GetPurchaseOrderAtRequest req;
    req.set_account_id(kAccount);
    req.set_purchase_order_id("po");
    req.set_position(at);
    v1::GetPurchaseOrderAtResponse resp;
    ASSERT_TRUE(log_->GetPurchaseOrderAt(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.purchase_order().balance().units(), 900);
  }
  {
    grpc::ClientContext ctx;
    v1::CreateSnapshotResponse snap;
    ASSERT_TRUE(admin_->CreateSnapshot(&ctx, v1::CreateSnapshotRequest(), &snap).ok());
    // Invoice "b" took the line below 75%: its alert follows it.
    EXPECT_EQ(snap.position(), inv.position() + 1);
  }
  ASSERT_TRUE(Record(NewInvoice("c", 50), &inv).ok());  // After the snapshot.
  const v1::PurchaseOrder before = Get("po");
  v1::GetLogDigestResponse digest_before;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(log_->GetLogDigest(&ctx, v1::GetLogDigestRequest(), &digest_before).ok());
    EXPECT_EQ(digest_before.head_position(), 5u);
    EXPECT_EQ(digest_before.chain_hash().size(), 64u);
  }
  auto queries = [&] {
    std::string answers;
    grpc::ClientContext list_ctx;
    v1::ListPurchaseOrdersRequest list;
    list.set_account_id(kAccount);
    v1::ListPurchaseOrdersResponse listed;
    EXPECT_TRUE(pos_->ListPurchaseOrders(&list_ctx, list, &listed).ok());
    answers += listed.SerializeAsString();
    grpc::ClientContext inv_ctx;
    v1::GetInvoiceRequest get;
    get.set_account_id(kAccount);
    get.set_invoice_id("b");
    v1::Invoice got;
    EXPECT_TRUE(invoices_->GetInvoice(&inv_ctx, get, &got).ok());
    answers += got.SerializeAsString();
    grpc::ClientContext n_ctx;
    v1::ListNotificationsRequest n;
    n.set_account_id(kAccount);
    v1::ListNotificationsResponse notes;
    EXPECT_TRUE(notifications_->ListNotifications(&n_ctx, n, &notes).ok());
    EXPECT_EQ(notes.notifications_size(), 1);
    answers += notes.SerializeAsString();
    return answers;
  };
  const std::string answers_before = queries();
  Restart();
  EXPECT_EQ(Get("po").SerializeAsString(), before.SerializeAsString());
  EXPECT_EQ(queries(), answers_before);
  grpc::ClientContext ctx;
  v1::GetLogDigestResponse digest_after;
  ASSERT_TRUE(log_->GetLogDigest(&ctx, v1::GetLogDigestRequest(), &digest_after).ok());
  EXPECT_EQ(digest_after.SerializeAsString(), digest_before.SerializeAsString());
}

TEST_F(ApiTest, ReadEventsPagesWithFilters) {
  v1::PurchaseOrder po;
  ASSERT_TRUE(Create(NewPo("po"), &po).ok());
  v1::Invoice inv;
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(Record(NewInvoice(absl::StrCat("i", i), 1), &inv).ok());
  }
  std::vector<uint64_t> positions;
  std::string token;
  do {
    grpc::ClientContext ctx;
    v1::ReadEventsRequest req;
    req.set_page_size(2);
    req.set_page_token(token);
    req.add_event_types("invoice_recorded");
    v1::ReadEventsResponse resp;
    ASSERT_TRUE(log_->ReadEvents(&ctx, req, &resp).ok());
    for (const auto& e : resp.events()) positions.push_back(e.position());
    token = resp.next_page_token();
  } while (!token.empty());
  EXPECT_THAT(positions, ::testing::ElementsAre(2u, 3u, 4u, 5u, 6u));
}

TEST_F(ApiTest, ServerInfo) {
  grpc::ClientContext ctx;
  v1::GetServerInfoResponse info;
  ASSERT_TRUE(admin_->GetServerInfo(&ctx, v1::GetServerInfoRequest(), &info).ok());
  EXPECT_EQ(info.clock(), "manual");
  EXPECT_EQ(info.now().seconds(), 1769904000);
  EXPECT_FALSE(info.version().empty());
  // A server on its own leads, in term 0.
  EXPECT_EQ(info.role(), "leader");
  EXPECT_EQ(info.term(), 0u);
  EXPECT_EQ(info.leader(), "");
}

}  // namespace
}  // namespace poledger

namespace poledger {
namespace {

// Error paths of the methods the scenarios above do not refuse.
TEST_F(ApiTest, MoreErrorPaths) {
  v1::PurchaseOrder po;
  ASSERT_TRUE(Create(NewPo("po"), &po).ok());
  {
    grpc::ClientContext ctx;
    v1::GetInvoiceRequest req;
    req.set_account_id(kAccount);
    req.set_invoice_id("missing");
    v1::Invoice out;
    grpc::Status s = invoices_->GetInvoice(&ctx, req, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_EQ(DetailsOf(s).reason, "INVOICE_NOT_FOUND");
  }
  {
    grpc::ClientContext ctx;
    v1::ListPurchaseOrderInvoicesRequest req;
    req.set_account_id(kAccount);
    req.set_purchase_order_id("missing");
    v1::ListPurchaseOrderInvoicesResponse out;
    EXPECT_EQ(pos_->ListPurchaseOrderInvoices(&ctx, req, &out).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    v1::ListPurchaseOrdersRequest req;
    req.set_account_id(kAccount);
    req.set_page_token("%%%not-base64");
    v1::ListPurchaseOrdersResponse out;
    grpc::Status s = pos_->ListPurchaseOrders(&ctx, req, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(DetailsOf(s).fields, ::testing::ElementsAre("page_token"));
  }
  {
    grpc::ClientContext ctx;
    v1::UpdatePurchaseOrderRequest req;
    req.set_account_id(kAccount);
    req.mutable_purchase_order()->set_purchase_order_id("po");
    req.mutable_update_mask()->add_paths("status");
    v1::PurchaseOrder out;
    grpc::Status s = pos_->UpdatePurchaseOrder(&ctx, req, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(DetailsOf(s).fields,
                ::testing::ElementsAre("update_mask.paths[0]"));
  }
  {
    grpc::ClientContext ctx;
    v1::AddLineItemRequest req;
    req.set_account_id(kAccount);
    req.set_purchase_order_id("po");
    req.mutable_line_item()->set_line_number(5);
    req.mutable_line_item()->set_type(v1::LINE_ITEM_TYPE_ALL);
    req.mutable_line_item()->set_start_month("2026-01");
    req.mutable_line_item()->set_end_month("2026-02");
    *req.mutable_line_item()->mutable_amount() = Usd(1);
    req.mutable_line_item()->mutable_amount()->set_currency_code("EUR");
    v1::PurchaseOrder out;
    grpc::Status s = pos_->AddLineItem(&ctx, req, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(DetailsOf(s).fields,
                ::testing::ElementsAre("line_item.amount.currency_code"));
  }
  {
    grpc::ClientContext ctx;
    v1::RemoveLineItemRequest req;
    req.set_account_id(kAccount);
    req.set_purchase_order_id("po");
    req.set_line_number(9);
    v1::PurchaseOrder out;
    grpc::Status s = pos_->RemoveLineItem(&ctx, req, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_EQ(DetailsOf(s).reason, "LINE_ITEM_NOT_FOUND");
  }
  {
    grpc::ClientContext ctx;
    v1::GetPurchaseOrderAtRequest req;
    req.set_account_id(kAccount);
    req.set_purchase_order_id("po");
    v1::GetPurchaseOrderAtResponse out;
    EXPECT_EQ(log_->GetPurchaseOrderAt(&ctx, req, &out).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
    grpc::ClientContext at_time;
    *req.mutable_time() = core::ToProtoTime(absl::FromUnixSeconds(1769904000));
    ASSERT_TRUE(log_->GetPurchaseOrderAt(&at_time, req, &out).ok());
    EXPECT_EQ(out.position(), 1u);
    grpc::ClientContext before;
    *req.mutable_time() = core::ToProtoTime(absl::FromUnixSeconds(1));
    EXPECT_EQ(log_->GetPurchaseOrderAt(&before, req, &out).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    v1::SubscribeEventsRequest req;
    req.set_account_id("bad account!");
    auto reader = log_->SubscribeEvents(&ctx, req);
    v1::SubscribeEventsResponse msg;
    EXPECT_FALSE(reader->Read(&msg));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext ctx;
    v1::RecordMarketplaceTransactionRequest req;
    req.set_account_id(kAccount);
    req.mutable_transaction()->set_transaction_id("tx");
    req.mutable_transaction()->set_bill_from(kAws);
    *req.mutable_transaction()->mutable_amount() = Usd(1);
    req.mutable_transaction()->set_month("2026");
    v1::RecordMarketplaceTransactionResponse out;
    grpc::Status s = invoices_->RecordMarketplaceTransaction(&ctx, req, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(DetailsOf(s).fields, ::testing::ElementsAre("transaction.month"));
  }
  EXPECT_EQ(store_head(), 1u);  // None of the refused calls wrote anything.
}

TEST(RealClockApiTest, TimeControlsNeedTheManualClock) {
  TempDir dir;
  ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.data_dir = dir.path() + "/data";
  auto server = PoledgerServer::Start(options);
  ASSERT_OK(server);
  auto admin = v1::AdminService::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", (*server)->port()),
      grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  v1::SetTimeRequest req;
  req.mutable_time()->set_seconds(1);
  v1::TimeResponse out;
  grpc::Status s = admin->SetTime(&ctx, req, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(DetailsOf(s).reason, "CLOCK_NOT_MANUAL");
  grpc::ClientContext info_ctx;
  v1::GetServerInfoResponse info;
  ASSERT_TRUE(admin->GetServerInfo(&info_ctx, v1::GetServerInfoRequest(), &info).ok());
  EXPECT_EQ(info.clock(), "real");
}

}  // namespace
}  // namespace poledger

namespace poledger {
namespace {

// A subscriber that stops reading holds only its own handler: appends go on
// and another subscriber receives everything.
TEST_F(ApiTest, ASlowSubscriberBlocksNeitherAppendsNorOtherSubscribers) {
  v1::PurchaseOrder po;
  ASSERT_TRUE(Create(NewPo("po", 1000000000), &po).ok());
  grpc::ClientContext slow_ctx;
  auto slow = log_->SubscribeEvents(&slow_ctx, v1::SubscribeEventsRequest());
  v1::SubscribeEventsResponse msg;
  ASSERT_TRUE(slow->Read(&msg));  // Then never reads again.
  grpc::ClientContext fast_ctx;
  auto fast = log_->SubscribeEvents(&fast_ctx, v1::SubscribeEventsRequest());
  constexpr int kInvoices = 1500;  // Far more than a stream's flow window.
  std::atomic<uint64_t> fast_last{0};
  std::thread reader([&] {
    v1::SubscribeEventsResponse m;
    while (fast->Read(&m)) {
      if (m.has_event()) fast_last = m.event().position();
      if (fast_last == kInvoices + 1) break;
    }
  });
  int recorded = 0;
  for (int i = 0; i < kInvoices; ++i) {
    v1::Invoice inv = NewInvoice(absl::StrCat("inv-", i), 1);
    inv.set_tax_registration_number(std::string(50, 'x'));
    v1::Invoice out;
    grpc::Status s = Record(inv, &out);
    if (!s.ok()) {
      ADD_FAILURE() << "invoice " << i << ": " << s.error_message();
      fast_ctx.TryCancel();
      break;
    }
    ++recorded;
  }
  reader.join();
  EXPECT_EQ(recorded, kInvoices);
  EXPECT_EQ(fast_last.load(), uint64_t{kInvoices} + 1);
  fast_ctx.TryCancel();
  slow_ctx.TryCancel();
  while (slow->Read(&msg)) {
  }
  EXPECT_EQ(slow->Finish().error_code(), grpc::StatusCode::CANCELLED);
  fast->Finish();
}

// A subscriber that stopped reading while thousands of records were
// written (more than it may queue) then reads on: it gets every record in
// order, none twice, the overflow read again from the store.
TEST_F(ApiTest, ASlowSubscriberResumesWithoutGapOrDuplicate) {
  v1::PurchaseOrder po;
  ASSERT_TRUE(Create(NewPo("po", 1000000000), &po).ok());
  // A small receive window, so that the server's writes wait at once.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 16 << 10);
  auto log = v1::EventLogService::NewStub(
      grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                grpc::InsecureChannelCredentials(), args));
  grpc::ClientContext ctx;
  auto slow = log->SubscribeEvents(&ctx, v1::SubscribeEventsRequest());
  v1::SubscribeEventsResponse msg;
  ASSERT_TRUE(slow->Read(&msg));
  ASSERT_TRUE(msg.has_event());
  constexpr int kInvoices = 1000;
  for (int i = 0; i < kInvoices; ++i) {
    v1::Invoice inv = NewInvoice(absl::StrCat("inv-", i), 1);
    inv.set_tax_registration_number(std::string(50, 'x'));
    v1::Invoice out;
    ASSERT_TRUE(Record(inv, &out).ok()) << i;
  }
  uint64_t expected = 2;
  int markers = 0;
  while (expected <= kInvoices + 1 && slow->Read(&msg)) {
    if (!msg.has_event()) {
      ++markers;
      continue;
    }
    ASSERT_EQ(msg.event().position(), expected);
    ++expected;
  }
  EXPECT_EQ(expected, uint64_t{kInvoices} + 2);
  EXPECT_LE(markers, 3);  // caught_up once, a heartbeat or two.
  ctx.TryCancel();
  while (slow->Read(&msg)) {
  }
  EXPECT_EQ(slow->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

// An idle stream gets heartbeats naming the head (200 ms here).
TEST_F(ApiTest, AnIdleStreamGetsHeartbeats) {
  v1::PurchaseOrder po;
  ASSERT_TRUE(Create(NewPo("po", 1000), &po).ok());
  grpc::ClientContext ctx;
  v1::SubscribeNotificationsRequest req;
  req.set_account_id(kAccount);
  auto stream = notifications_->SubscribeNotifications(&ctx, req);
  v1::SubscribeNotificationsResponse msg;
  ASSERT_TRUE(stream->Read(&msg));
  ASSERT_TRUE(msg.has_caught_up());
  const absl::Time start = absl::Now();
  int heartbeats = 0;
  while (heartbeats < 2 && stream->Read(&msg)) {
    ASSERT_TRUE(msg.has_heartbeat());
    EXPECT_EQ(msg.heartbeat().head_position(), 1u);
    ++heartbeats;
  }
  EXPECT_EQ(heartbeats, 2);
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  ctx.TryCancel();
  while (stream->Read(&msg)) {
  }
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

}  // namespace
}  // namespace poledger

namespace poledger {
namespace {

v1::RecordInvoiceRequest Item(const std::string& account, v1::Invoice inv) {
  v1::RecordInvoiceRequest item;
  item.set_account_id(account);
  *item.mutable_invoice() = std::move(inv);
  return item;
}

v1::Invoice Memo(const std::string& id, const std::string& original,
                 int64_t amount) {
  v1::Invoice memo = NewInvoice(id, amount);
  memo.set_kind(v1::INVOICE_KIND_CREDIT_MEMO);
  memo.set_original_invoice_id(original);
  return memo;
}

// Any mix of accounts; a result per item in request order; items of one
// account decided in order, each seeing the ones before it.
v1::BatchRecordInvoicesRequest BillingBatch() {
  v1::BatchRecordInvoicesRequest batch;
  *batch.add_requests() = Item(kAccount, NewInvoice("inv-1", 100));
  *batch.add_requests() = Item("other-acct", NewInvoice("inv-1", 50));
  v1::Invoice bad = NewInvoice("inv-bad", 1);
  bad.mutable_amount()->set_units(-5);
  *batch.add_requests() = Item(kAccount, bad);
  *batch.add_requests() = Item(kAccount, NewInvoice("inv-2", 700));
  *batch.add_requests() = Item(kAccount, NewInvoice("inv-1", 100));
  *batch.add_requests() = Item(kAccount, Memo("cm-1", "inv-2", 20));
  return batch;
}

TEST_F(ApiTest, BatchRecordsAnyAccountsWithAResultEach) {
  v1::PurchaseOrder po;
  ASSERT_TRUE(Create(NewPo("po", 1000), &po).ok());
  {
    grpc::ClientContext ctx;
    v1::CreatePurchaseOrderRequest req;
    req.set_account_id("other-acct");
    *req.mutable_purchase_order() = NewPo("po-o", 1000);
    ASSERT_TRUE(pos_->CreatePurchaseOrder(&ctx, req, &po).ok());
  }
  const uint64_t head = store_head();
  grpc::ClientContext ctx;
  v1::BatchRecordInvoicesResponse out;
  ASSERT_TRUE(invoices_->BatchRecordInvoices(&ctx, BillingBatch(), &out).ok());
  ASSERT_EQ(out.results_size(), 6);
  for (int i : {0, 1, 3, 4, 5}) {
    ASSERT_TRUE(out.results(i).has_invoice())
        << i << out.results(i).DebugString();
  }
  const v1::Invoice& first = out.results(0).invoice();
  EXPECT_TRUE(first.association().associated());
  EXPECT_EQ(first.association().purchase_order_id(), "po");
  EXPECT_FALSE(out.results(0).already_recorded());
  // The default view of a batch: the explanation's summary, no candidates.
  EXPECT_FALSE(first.association().explanation().summary().empty());
  EXPECT_EQ(first.association().explanation().purchase_orders_size(), 0);
  EXPECT_EQ(out.results(1).invoice().account_id(), "other-acct");
  EXPECT_EQ(out.results(1).invoice().association().purchase_order_id(), "po-o");
  // The bad item's own error, its field a path in the batch request.
  ASSERT_TRUE(out.results(2).has_error());
  EXPECT_EQ(out.results(2).error().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(out.results(2).error().message(),
              ::testing::StartsWith("requests[2].invoice.amount"));
  google::rpc::BadRequest bad;
  ASSERT_GE(out.results(2).error().details_size(), 2);
  ASSERT_TRUE(out.results(2).error().details(1).UnpackTo(&bad));
  ASSERT_EQ(bad.field_violations_size(), 1);
  EXPECT_EQ(bad.field_violations(0).field(), "requests[2].invoice.amount");
  // inv-2 takes the line past 75% (100 + 700 of 1000): its alert comes
  // with it.
  const v1::Invoice& second = out.results(3).invoice();
  EXPECT_EQ(second.association().line_balance_after().units(), 200);
  ASSERT_EQ(second.notifications_size(), 1);
  EXPECT_EQ(second.notifications(0).threshold_percent(), 75);
  EXPECT_EQ(second.notifications(0).invoice_id(), "inv-2");
  // The repeat answers the first, and the credit memo saw inv-2.
  EXPECT_TRUE(out.results(4).already_recorded());
  EXPECT_EQ(out.results(4).invoice().position(), first.position());
  EXPECT_EQ(out.results(5).invoice().association().line_balance_after().units(),
            220);
  // Written: kAccount's four events in one append, other-acct's one.
  EXPECT_EQ(store_head(), head + 5);

  // A retried batch answers the first results and writes nothing.
  grpc::ClientContext again_ctx;
  v1::BatchRecordInvoicesResponse again;
  ASSERT_TRUE(
      invoices_->BatchRecordInvoices(&again_ctx, BillingBatch(), &again).ok());
  EXPECT_EQ(store_head(), head + 5);
  ASSERT_EQ(again.results_size(), 6);
  for (int i : {0, 1, 3, 4, 5}) {
    ASSERT_TRUE(again.results(i).has_invoice()) << i;
    EXPECT_TRUE(again.results(i).already_recorded()) << i;
    EXPECT_EQ(again.results(i).invoice().position(),
              out.results(i).invoice().position());
    EXPECT_EQ(again.results(i).invoice().notifications_size(),
              out.results(i).invoice().notifications_size());
  }
  EXPECT_EQ(again.results(2).error().code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // The full view, on request (GetInvoice), with the alert; a batch does
  // not offer it (each item's would be rebuilt from its account's log).
  grpc::ClientContext get_ctx;
  v1::GetInvoiceRequest get;
  get.set_account_id(kAccount);
  get.set_invoice_id("inv-2");
  get.set_view(v1::INVOICE_VIEW_FULL);
  v1::Invoice got;
  ASSERT_TRUE(invoices_->GetInvoice(&get_ctx, get, &got).ok());
  EXPECT_GT(got.association().explanation().purchase_orders_size(), 0);
  EXPECT_EQ(got.notifications_size(), 1);
  {
    v1::BatchRecordInvoicesRequest full = BillingBatch();
    for (auto& item : *full.mutable_requests()) {
      item.mutable_invoice()->set_invoice_id("full-" +
                                             item.invoice().invoice_id());
    }
    full.set_view(v1::INVOICE_VIEW_FULL);
    grpc::ClientContext full_ctx;
    v1::BatchRecordInvoicesResponse refused;
    const uint64_t before = store_head();
    const grpc::Status s =
        invoices_->BatchRecordInvoices(&full_ctx, full, &refused);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(DetailsOf(s).fields, ::testing::ElementsAre("view"));
    EXPECT_EQ(store_head(), before);
  }

  // And a restart answers the same.
  Restart();
  grpc::ClientContext restarted_ctx;
  v1::Invoice restarted;
  ASSERT_TRUE(invoices_->GetInvoice(&restarted_ctx, get, &restarted).ok());
  EXPECT_EQ(restarted.SerializeAsString(), got.SerializeAsString());
}

// A preview decides as the real call that follows it, and writes nothing.
TEST_F(ApiTest, APreviewEqualsTheRealCallAndWritesNothing) {
  v1::PurchaseOrder po;
  ASSERT_TRUE(Create(NewPo("po", 1000), &po).ok());
  const uint64_t head = store_head();
  v1::BatchRecordInvoicesRequest batch = BillingBatch();
  batch.set_validate_only(true);
  grpc::ClientContext preview_ctx;
  v1::BatchRecordInvoicesResponse preview;
  ASSERT_TRUE(
      invoices_->BatchRecordInvoices(&preview_ctx, batch, &preview).ok());
  EXPECT_EQ(store_head(), head);

  // One invoice alone: RecordInvoice with validate_only.
  grpc::ClientContext one_ctx;
  v1::RecordInvoiceRequest one = Item(kAccount, NewInvoice("inv-1", 100));
  one.set_validate_only(true);
  one.set_view(v1::INVOICE_VIEW_FULL);
  v1::Invoice one_preview;
  ASSERT_TRUE(invoices_->RecordInvoice(&one_ctx, one, &one_preview).ok());
  EXPECT_EQ(store_head(), head);
  EXPECT_EQ(one_preview.position(), 0u);
  EXPECT_GT(one_preview.association().explanation().purchase_orders_size(), 0);

  batch.set_validate_only(false);
  grpc::ClientContext real_ctx;
  v1::BatchRecordInvoicesResponse real;
  ASSERT_TRUE(invoices_->BatchRecordInvoices(&real_ctx, batch, &real).ok());
  EXPECT_GT(store_head(), head);
  ASSERT_EQ(preview.results_size(), real.results_size());
  for (int i = 0; i < real.results_size(); ++i) {
    // other-acct has no purchase order here: unassociated, in both.
    v1::RecordInvoiceResult p = preview.results(i);
    v1::RecordInvoiceResult r = real.results(i);
    EXPECT_EQ(p.has_error(), r.has_error()) << i;
    if (r.has_error()) {
      EXPECT_EQ(p.error().SerializeAsString(), r.error().SerializeAsString());
      continue;
    }
    EXPECT_EQ(p.invoice().position(), 0u);
    EXPECT_GT(r.invoice().position(), 0u);
    p.mutable_invoice()->clear_position();
    r.mutable_invoice()->clear_position();
    for (auto* n : {p.mutable_invoice(), r.mutable_invoice()}) {
      for (v1::Notification& note : *n->mutable_notifications()) {
        note.clear_position();
      }
    }
    EXPECT_EQ(p.DebugString(), r.DebugString()) << i;
  }
  // The single preview, in FULL, equals the recorded invoice in FULL: the
  // explanation the preview decided on is the one the log rebuilds.
  const v1::Invoice& recorded = real.results(0).invoice();
  grpc::ClientContext get_ctx;
  v1::GetInvoiceRequest get;
  get.set_account_id(kAccount);
  get.set_invoice_id(recorded.invoice_id());
  get.set_view(v1::INVOICE_VIEW_FULL);
  v1::Invoice got;
  ASSERT_TRUE(invoices_->GetInvoice(&get_ctx, get, &got).ok());
  EXPECT_EQ(got.position(), recorded.position());
  v1::Invoice expected = one_preview;
  expected.set_position(recorded.position());
  EXPECT_EQ(expected.DebugString(), got.DebugString());
}

TEST_F(ApiTest, AMalformedBatchIsRefusedWholeAndWritesNothing) {
  v1::PurchaseOrder po;
  ASSERT_TRUE(Create(NewPo("po", 1000), &po).ok());
  const uint64_t head = store_head();
  std::vector<v1::BatchRecordInvoicesRequest> malformed(3);
  for (int i = 0; i < 1001; ++i) {
    *malformed[1].add_requests() =
        Item(kAccount, NewInvoice(absl::StrCat("inv-", i), 1));
  }
  for (int i = 0; i < 1000; ++i) {
    v1::Invoice inv = NewInvoice(absl::StrCat("inv-", i), 1);
    inv.set_tax_registration_number(std::string(2200, 'x'));
    *malformed[2].add_requests() = Item(kAccount, inv);
  }
  for (const v1::BatchRecordInvoicesRequest& batch : malformed) {
    grpc::ClientContext ctx;
    v1::BatchRecordInvoicesResponse out;
    const grpc::Status s = invoices_->BatchRecordInvoices(&ctx, batch, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << s.error_message();
    EXPECT_THAT(DetailsOf(s).fields, ::testing::ElementsAre("requests"));
    EXPECT_EQ(store_head(), head);
  }
  // An item's request id is that item's error: items are idempotent by
  // invoice id.
  v1::BatchRecordInvoicesRequest batch;
  *batch.add_requests() = Item(kAccount, NewInvoice("inv-1", 1));
  batch.mutable_requests(0)->set_request_id("r-1");
  *batch.add_requests() = Item(kAccount, NewInvoice("inv-2", 1));
  grpc::ClientContext ctx;
  v1::BatchRecordInvoicesResponse out;
  ASSERT_TRUE(invoices_->BatchRecordInvoices(&ctx, batch, &out).ok());
  ASSERT_TRUE(out.results(0).has_error());
  EXPECT_THAT(out.results(0).error().message(),
              ::testing::StartsWith("requests[0].request_id"));
  EXPECT_TRUE(out.results(1).has_invoice());
  EXPECT_EQ(store_head(), head + 1);
}

}  // namespace
}  // namespace poledger
