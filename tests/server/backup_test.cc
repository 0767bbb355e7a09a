// Online backup and restore: a backup taken by poctl while 64 clients write,
// checked by poledger-audit, restored by starting a server on it, and
// compared with the live server at the backup's position.
#include <atomic>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "poledger/v1/invoices.grpc.pb.h"
#include "poledger/v1/log.grpc.pb.h"
#include "poledger/v1/purchase_orders.grpc.pb.h"
#include "server/server.h"
#include "tests/eventstore/store_test_util.h"
#include "tests/testing/command.h"
#include "tests/testing/purchase_orders.h"
#include "tests/testing/status_matchers.h"

namespace poledger {
namespace {

constexpr int kWriters = 64;
constexpr int kAccounts = 16;

std::string Account(int i) { return absl::StrCat("acct-", i); }

v1::PurchaseOrder NewPo(const std::string& id) {
  return testing::SimplePurchaseOrder(id, 1000000);
}

std::unique_ptr<PoledgerServer> StartServer(const std::string& data_dir) {
  ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.data_dir = data_dir;
  options.tick_interval = absl::Hours(1);
  // Snapshots during the load: the backup holds some, and restore uses one.
  options.snapshot_every_events = 500;
  auto server = PoledgerServer::Start(options);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

std::shared_ptr<grpc::Channel> ChannelTo(const PoledgerServer& server) {
  return grpc::CreateChannel(absl::StrCat("127.0.0.1:", server.port()),
                             grpc::InsecureChannelCredentials());
}

v1::GetLogDigestResponse Digest(const std::shared_ptr<grpc::Channel>& channel,
                                uint64_t at) {
  grpc::ClientContext ctx;
  v1::GetLogDigestRequest req;
  req.set_at_position(at);
  v1::GetLogDigestResponse out;
  grpc::Status s =
      v1::EventLogService::NewStub(channel)->GetLogDigest(&ctx, req, &out);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return out;
}

std::set<std::string> PurchaseOrderIds(
    const std::shared_ptr<grpc::Channel>& channel, const std::string& account) {
  auto pos = v1::PurchaseOrderService::NewStub(channel);
  std::set<std::string> ids;
  v1::ListPurchaseOrdersRequest req;
  req.set_account_id(account);
  req.set_page_size(1000);
  do {
    grpc::ClientContext ctx;
    v1::ListPurchaseOrdersResponse page;
    grpc::Status s = pos->ListPurchaseOrders(&ctx, req, &page);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (!s.ok()) break;
    for (const auto& po : page.purchase_orders())
      ids.insert(po.purchase_order_id());
    req.set_page_token(page.next_page_token());
  } while (!req.page_token().empty());
  return ids;
}

TEST(BackupTest, BackupUnderLoadRestoresToTheLiveLogAtItsPosition) {
  TempDir dir;
  std::unique_ptr<PoledgerServer> live = StartServer(dir.path() + "/live");
  ASSERT_NE(live, nullptr);
  auto channel = ChannelTo(*live);

  // 64 writers: purchase orders, and invoices against them.
  std::atomic<bool> stop{false};
  std::atomic<int> acknowledged{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      auto own = grpc::CreateChannel(absl::StrCat("127.0.0.1:", live->port()),
                                     grpc::InsecureChannelCredentials());
      auto pos = v1::PurchaseOrderService::NewStub(own);
      auto invoices = v1::InvoiceService::NewStub(own);
      const std::string account = Account(w % kAccounts);
      for (int n = 0; !stop.load(); ++n) {
        grpc::ClientContext ctx;
        grpc::Status s;
        if (n % 4 == 0) {
          v1::CreatePurchaseOrderRequest req;
          req.set_account_id(account);
          *req.mutable_purchase_order() = NewPo(absl::StrCat("po-", w, "-", n));
          v1::PurchaseOrder out;
          s = pos->CreatePurchaseOrder(&ctx, req, &out);
        } else {
          v1::RecordInvoiceRequest req;
          req.set_account_id(account);
          v1::Invoice* inv = req.mutable_invoice();
          inv->set_invoice_id(absl::StrCat("inv-", w, "-", n));
          inv->set_bill_from("Amazon Web Services, Inc.");
          inv->set_category(v1::INVOICE_CATEGORY_MONTHLY_USAGE);
          inv->set_billing_period("2026-03");
          inv->mutable_amount()->set_currency_code("USD");
          inv->mutable_amount()->set_units(10 + n % 7);
          v1::Invoice out;
          s = invoices->RecordInvoice(&ctx, req, &out);
        }
        // ACTIVE_PURCHASE_ORDER_LIMIT past 100 per account is fine.
        if (s.ok()) acknowledged.fetch_add(1);
      }
    });
  }
  while (acknowledged.load() < 2000) absl::SleepFor(absl::Milliseconds(20));

  // The backup, by poctl, while the writers go on.
  const std::string backup = dir.path() + "/backup";
  const auto made = testing::RunCommand(
      absl::StrCat(POLEDGER_POCTL_BINARY, " --server=127.0.0.1:", live->port(),
                   " --output=json admin backup ", backup, " 2>&1"));
  ASSERT_EQ(made.exit_code, 0) << made.out;
  const int at_backup = acknowledged.load();
  while (acknowledged.load() < at_backup + 1000) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  stop = true;
  for (std::thread& t : writers) t.join();
  // The answer: {"directory": ..., "position": "N", "chain_hash": "..."}.
  auto field = [&](const std::string& name) {
    const std::string key = "\"" + name + "\": \"";
    const size_t at = made.out.find(key);
    EXPECT_NE(at, std::string::npos) << made.out;
    if (at == std::string::npos) return std::string();
    const size_t begin = at + key.size();
    return made.out.substr(begin, made.out.find('"', begin) - begin);
  };
  const uint64_t position = std::stoull(field("position"));
  const std::string digest = field("chain_hash");
  const uint64_t live_head = Digest(channel, 0).head_position();
  ASSERT_GT(position, 0u);
  ASSERT_GT(live_head, position) << "the writers went on after the backup";

  // The live log at that position has the backup's digest.
  EXPECT_EQ(Digest(channel, position).chain_hash(), digest);
  EXPECT_EQ(Digest(channel, position).head_position(), position);

  // The auditor sees the same head and digest in the backup.
  const auto verified = testing::RunCommand(absl::StrCat(
      POLEDGER_AUDIT_BINARY, " verify --data-dir=", backup, " 2>&1"));
  EXPECT_EQ(verified.exit_code, 0) << verified.out;
  EXPECT_THAT(verified.out,
              ::testing::HasSubstr(absl::StrCat("head: ", position, "\n")));
  EXPECT_THAT(verified.out,
              ::testing::HasSubstr(absl::StrCat("digest: ", digest)));

  // Restore: a server on the backup directory.
  std::unique_ptr<PoledgerServer> restored = StartServer(backup);
  ASSERT_NE(restored, nullptr);
  auto restored_channel = ChannelTo(*restored);
  const v1::GetLogDigestResponse restored_digest = Digest(restored_channel, 0);
  EXPECT_EQ(restored_digest.head_position(), position);
  EXPECT_EQ(restored_digest.chain_hash(), digest);

  // Every purchase order of the restored server equals the live server's at
  // the backup's position; those created later do not exist there.
  auto history = v1::EventLogService::NewStub(channel);
  auto restored_pos = v1::PurchaseOrderService::NewStub(restored_channel);
  int compared = 0;
  for (int a = 0; a < kAccounts; ++a) {
    const std::string account = Account(a);
    const std::set<std::string> restored_ids =
        PurchaseOrderIds(restored_channel, account);
    for (const std::string& id : PurchaseOrderIds(channel, account)) {
      grpc::ClientContext ctx;
      v1::GetPurchaseOrderAtRequest req;
      req.set_account_id(account);
      req.set_purchase_order_id(id);
      req.set_position(position);
      v1::GetPurchaseOrderAtResponse then;
      grpc::Status s = history->GetPurchaseOrderAt(&ctx, req, &then);
      if (restored_ids.count(id) == 0) {
        EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << id;
        continue;
      }
      ASSERT_TRUE(s.ok()) << s.error_message();
      grpc::ClientContext get_ctx;
      v1::GetPurchaseOrderRequest get;
      get.set_account_id(account);
      get.set_purchase_order_id(id);
      v1::PurchaseOrder now;
      ASSERT_TRUE(restored_pos->GetPurchaseOrder(&get_ctx, get, &now).ok());
      EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(
          now, then.purchase_order()))
          << "restored:\n"
          << now.DebugString() << "live at " << position << ":\n"
          << then.purchase_order().DebugString();
      ++compared;
    }
  }
  EXPECT_GT(compared, 100);
  std::printf("backup at %llu of %llu events; %d purchase orders compared\n",
              static_cast<unsigned long long>(position),
              static_cast<unsigned long long>(live_head), compared);

  // A second backup to the same directory is refused; a relative one too.
  const auto again = testing::RunCommand(
      absl::StrCat(POLEDGER_POCTL_BINARY, " --server=127.0.0.1:", live->port(),
                   " admin backup ", backup, " 2>&1"));
  EXPECT_EQ(again.exit_code, 3) << again.out;
  EXPECT_THAT(again.out, ::testing::HasSubstr("field=directory"));
  const auto relative = testing::RunCommand(
      absl::StrCat(POLEDGER_POCTL_BINARY, " --server=127.0.0.1:", live->port(),
                   " admin backup relative/dir 2>&1"));
  EXPECT_EQ(relative.exit_code, 3) << relative.out;
}

}  // namespace
}  // namespace poledger
