// The ledger's promise under crashes: a child poledger-server with frequent
// snapshots takes invoices and purchase-order changes from 64 concurrent
// writers and is killed with SIGKILL at random moments, cycle after cycle.
// After each restart every acknowledged invoice answers GetInvoice with the
// association it was acknowledged with, every acknowledged purchase-order
// change is visible, no invoice id is in the log twice, and poledger-audit's
// verify and check-snapshot pass on the data directory.
//
// POLEDGER_CRASH_CYCLES sets the number of cycles (default 20).

#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "poledger/v1/invoices.grpc.pb.h"
#include "poledger/v1/log.grpc.pb.h"
#include "poledger/v1/purchase_orders.grpc.pb.h"
#include "tests/eventstore/store_test_util.h"
#include "tests/testing/command.h"
#include "tests/testing/server_process.h"

namespace poledger {
namespace {

using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using ::poledger::testing::RunCommand;
using ::poledger::testing::ServerProcess;
using ::testing::HasSubstr;

constexpr int kWriters = 64;
constexpr int kAccounts = 8;

std::string AccountOf(int writer) { return absl::StrCat("acct-", writer % kAccounts); }
std::string PoOf(int writer) { return absl::StrCat("po-w", writer); }

bool WaitUntilServing(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = Health::NewStub(channel);
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (absl::Now() < deadline) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    HealthCheckResponse response;
    if (stub->Check(&context, HealthCheckRequest(), &response).ok() &&
        response.status() == HealthCheckResponse::SERVING) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

v1::CreatePurchaseOrderRequest CreateRequest(int writer) {
  v1::CreatePurchaseOrderRequest create;
  create.set_account_id(AccountOf(writer));
  create.set_request_id(absl::StrCat("create-", PoOf(writer)));
  v1::PurchaseOrder* po = create.mutable_purchase_order();
  po->set_purchase_order_id(PoOf(writer));
  po->add_bill_from("Amazon Web Services, Inc.");
  po->set_currency_code("USD");
  po->set_effective_month("2026-01");
  po->set_expiration_month("2026-12");
  po->set_description("created");
  v1::LineItem* line = po->add_line_items();
  line->set_line_number(1);
  line->set_type(v1::LINE_ITEM_TYPE_ALL);
  line->set_start_month("2026-01");
  line->set_end_month("2026-12");
  line->set_balance_tracking(true);
  line->mutable_amount()->set_units(1000000);
  line->set_quantity(1);
  return create;
}

v1::RecordInvoiceRequest InvoiceRequest(int writer, const std::string& id) {
  v1::RecordInvoiceRequest req;
  req.set_account_id(AccountOf(writer));
  v1::Invoice* inv = req.mutable_invoice();
  inv->set_invoice_id(id);
  inv->set_bill_from("Amazon Web Services, Inc.");
  inv->set_category(v1::INVOICE_CATEGORY_MONTHLY_USAGE);
  inv->set_billing_period("2026-02");
  inv->mutable_amount()->set_currency_code("USD");
  inv->mutable_amount()->set_units(1 + static_cast<int>(id.size() % 7));
  return req;
}

struct Acked {
  std::string account;
  std::string association;  // PO id and line, or "none".
};

std::string AssociationOf(const v1::Invoice& invoice) {
  const v1::InvoiceAssociation& a = invoice.association();
  if (!a.associated()) return "none";
  return absl::StrCat(a.purchase_order_id(), "#", a.line_number());
}

// What the writers were told, and what they may have changed unanswered.
struct Ledgerbook {
  std::mutex mu;
  std::map<std::string, Acked> invoices;  // Every acknowledged invoice.
  // Per writer: the last description acknowledged, and the one in flight
  // when the server died (which may or may not have been applied).
  std::vector<std::string> acked_description =
      std::vector<std::string>(kWriters, "created");
  std::vector<std::string> unanswered_description =
      std::vector<std::string>(kWriters);
};

class CrashCycleTest : public ::testing::Test {
 protected:
  int Cycles() const {
    int cycles = 20;
    if (const char* env = std::getenv("POLEDGER_CRASH_CYCLES")) {
      (void)absl::SimpleAtoi(env, &cycles);
    }
    return cycles;
  }
  std::string DataDir() const { return dir_.path() + "/data"; }

  bool Start(ServerProcess& server) {
    return server.Start(POLEDGER_SERVER_BINARY,
                        {"--data-dir=" + DataDir(), "--snapshot-every-events=700",
                         "--clock=manual:2026-02-01T00:00:00Z"});
  }

  // Each writer records invoices with ids of its own and now and then
  // changes its purchase order's description, until `stop`.
  void Write(const std::shared_ptr<grpc::Channel>& channel, int cycle, int writer,
             const std::atomic<bool>& stop, Ledgerbook& book) {
    auto invoices = v1::InvoiceService::NewStub(channel);
    auto pos = v1::PurchaseOrderService::NewStub(channel);
    for (int n = 0; !stop.load(); ++n) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      if (n % 5 == 4) {
        const std::string description = absl::StrCat("c", cycle, "-n", n);
        v1::UpdatePurchaseOrderRequest req;
        req.set_account_id(AccountOf(writer));
        req.mutable_purchase_order()->set_purchase_order_id(PoOf(writer));
        req.mutable_purchase_order()->set_description(description);
        req.mutable_update_mask()->add_paths("description");
        v1::PurchaseOrder out;
        {
          std::lock_guard<std::mutex> lock(book.mu);
          book.unanswered_description[writer] = description;
        }
        const grpc::Status s = pos->UpdatePurchaseOrder(&ctx, req, &out);
        std::lock_guard<std::mutex> lock(book.mu);
        if (s.ok()) {
          book.acked_description[writer] = description;
          book.unanswered_description[writer].clear();
        } else if (s.error_code() != grpc::StatusCode::UNAVAILABLE &&
                   s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
          ADD_FAILURE() << "update: " << s.error_code() << " " << s.error_message();
        }
        if (!s.ok()) return;  // The server is gone.
        continue;
      }
      const std::string id = absl::StrCat("inv-c", cycle, "-w", writer, "-", n);
      v1::Invoice out;
      const grpc::Status s =
          invoices->RecordInvoice(&ctx, InvoiceRequest(writer, id), &out);
      if (s.ok()) {
        std::lock_guard<std::mutex> lock(book.mu);
        book.invoices[id] = Acked{AccountOf(writer), AssociationOf(out)};
        continue;
      }
      if (s.error_code() != grpc::StatusCode::UNAVAILABLE &&
          s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
        ADD_FAILURE() << "record: " << s.error_code() << " " << s.error_message();
      }
      return;
    }
  }

  // Checks the restarted server against everything acknowledged: the
  // invoices in `ids`, every purchase order, the log, the audit tool.
  void Check(const std::shared_ptr<grpc::Channel>& channel, Ledgerbook& book,
             const std::vector<std::string>& ids) {
    std::atomic<int> missing{0};
    std::atomic<int> changed{0};
    std::vector<std::thread> checkers;
    constexpr int kCheckers = 8;
    for (int c = 0; c < kCheckers; ++c) {
      checkers.emplace_back([&, c] {
        auto invoices = v1::InvoiceService::NewStub(channel);
        for (size_t i = c; i < ids.size(); i += kCheckers) {
          Acked acked;
          {
            std::lock_guard<std::mutex> lock(book.mu);
            acked = book.invoices.at(ids[i]);
          }
          grpc::ClientContext ctx;
          v1::GetInvoiceRequest req;
          req.set_account_id(acked.account);
          req.set_invoice_id(ids[i]);
          v1::Invoice out;
          const grpc::Status s = invoices->GetInvoice(&ctx, req, &out);
          if (!s.ok()) {
            if (missing++ < 5) ADD_FAILURE() << ids[i] << ": " << s.error_message();
          } else if (AssociationOf(out) != acked.association) {
            if (changed++ < 5) {
              ADD_FAILURE() << ids[i] << " was " << acked.association << ", now "
                            << AssociationOf(out);
            }
          }
        }
      });
    }
    for (std::thread& t : checkers) t.join();
    EXPECT_EQ(missing.load(), 0);
    EXPECT_EQ(changed.load(), 0);

    auto pos = v1::PurchaseOrderService::NewStub(channel);
    for (int w = 0; w < kWriters; ++w) {
      grpc::ClientContext ctx;
      v1::GetPurchaseOrderRequest req;
      req.set_account_id(AccountOf(w));
      req.set_purchase_order_id(PoOf(w));
      v1::PurchaseOrder po;
      ASSERT_TRUE(pos->GetPurchaseOrder(&ctx, req, &po).ok()) << PoOf(w);
      std::lock_guard<std::mutex> lock(book.mu);
      // The change in flight at the kill may have been applied; then it is
      // the one acknowledged from now on.
      if (!book.unanswered_description[w].empty() &&
          po.description() == book.unanswered_description[w]) {
        book.acked_description[w] = po.description();
      }
      book.unanswered_description[w].clear();
      EXPECT_EQ(po.description(), book.acked_description[w]) << PoOf(w);
    }

    // No invoice id twice in the log.
    auto log = v1::EventLogService::NewStub(channel);
    std::set<std::string> logged;
    int twice = 0;
    v1::ReadEventsRequest req;
    req.set_page_size(1000);
    req.add_event_types("invoice_recorded");
    for (;;) {
      grpc::ClientContext ctx;
      v1::ReadEventsResponse page;
      ASSERT_TRUE(log->ReadEvents(&ctx, req, &page).ok());
      for (const v1::Event& e : page.events()) {
        const std::string key = absl::StrCat(
            e.account_id(), "/", e.payload().invoice_recorded().invoice().invoice_id());
        if (!logged.insert(key).second && twice++ < 5) {
          ADD_FAILURE() << key << " is in the log twice";
        }
      }
      if (page.next_page_token().empty()) break;
      req.set_page_token(page.next_page_token());
    }
    EXPECT_EQ(twice, 0);

    const auto verify = RunCommand(absl::StrCat(POLEDGER_AUDIT_BINARY,
                                                " verify --data-dir=", DataDir(),
                                                " 2>&1"));
    EXPECT_EQ(verify.exit_code, 0) << verify.out;
    const auto snapshot = RunCommand(absl::StrCat(
        POLEDGER_AUDIT_BINARY, " check-snapshot --data-dir=", DataDir(), " 2>&1"));
    EXPECT_EQ(snapshot.exit_code, 0) << snapshot.out;
    EXPECT_THAT(snapshot.out, HasSubstr("OK"));
  }

  TempDir dir_;
};

TEST_F(CrashCycleTest, NothingAcknowledgedIsLostOrDuplicatedAcrossKills) {
  Ledgerbook book;
  {
    ServerProcess server;
    ASSERT_TRUE(Start(server)) << server.output();
    auto channel = grpc::CreateChannel(server.address(),
                                       grpc::InsecureChannelCredentials());
    ASSERT_TRUE(WaitUntilServing(channel)) << server.output();
    auto pos = v1::PurchaseOrderService::NewStub(channel);
    for (int w = 0; w < kWriters; ++w) {
      grpc::ClientContext ctx;
      v1::PurchaseOrder out;
      ASSERT_TRUE(pos->CreatePurchaseOrder(&ctx, CreateRequest(w), &out).ok());
    }
    server.Stop(SIGKILL);
  }
  std::mt19937 random(20261129);
  std::vector<std::string> previous_cycle;
  size_t cycles_past_a_snapshot = 0;
  for (int cycle = 0; cycle < Cycles(); ++cycle) {
    ServerProcess server;
    ASSERT_TRUE(Start(server)) << server.output();
    // Several channels, as many clients would have.
    std::vector<std::shared_ptr<grpc::Channel>> channels;
    for (int c = 0; c < 4; ++c) {
      grpc::ChannelArguments args;
      args.SetInt("poledger.channel", c);  // Distinct connections.
      channels.push_back(grpc::CreateCustomChannel(
          server.address(), grpc::InsecureChannelCredentials(), args));
    }
    ASSERT_TRUE(WaitUntilServing(channels[0])) << server.output();

    // Everything acknowledged in the cycles before must still be there.
    size_t before;
    {
      std::lock_guard<std::mutex> lock(book.mu);
      before = book.invoices.size();
    }
    if (cycle > 0) {
      Check(channels[0], book, previous_cycle);
      if (HasFailure()) break;
    }

    std::atomic<bool> stop{false};
    std::vector<std::thread> writers;
    for (int w = 0; w < kWriters; ++w) {
      writers.emplace_back([&, w] {
        Write(channels[w % channels.size()], cycle, w, stop, book);
      });
    }
    const int millis = std::uniform_int_distribution<int>(150, 900)(random);
    absl::SleepFor(absl::Milliseconds(millis));
    server.Stop(SIGKILL);
    stop = true;
    for (std::thread& t : writers) t.join();
    {
      std::lock_guard<std::mutex> lock(book.mu);
      previous_cycle.clear();
      for (const auto& [id, acked] : book.invoices) {
        if (id.rfind(absl::StrCat("inv-c", cycle, "-"), 0) == 0) {
          previous_cycle.push_back(id);
        }
      }
      cycles_past_a_snapshot += book.invoices.size() - before > 700;
    }
    ASSERT_FALSE(previous_cycle.empty()) << "cycle " << cycle << " acknowledged nothing";
  }
  // Last: every invoice acknowledged in any cycle.
  ServerProcess server;
  ASSERT_TRUE(Start(server)) << server.output();
  auto channel =
      grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials());
  ASSERT_TRUE(WaitUntilServing(channel)) << server.output();
  std::vector<std::string> all;
  {
    std::lock_guard<std::mutex> lock(book.mu);
    for (const auto& [id, acked] : book.invoices) all.push_back(id);
  }
  Check(channel, book, all);
  std::printf("crash cycles: %d, invoices acknowledged: %zu, cycles past a "
              "snapshot: %zu\n",
              Cycles(), all.size(), cycles_past_a_snapshot);
  server.Stop(SIGTERM);
}

}  // namespace
}  // namespace poledger
