// Damaged files, on a server's own data directory: a record changed below
// the verified-through mark (found by the background scrub and by reads),
// a byte flipped inside an SST file (reads that touch it and the scrub
// answer DATA_LOSS; a full check at open refuses to start, naming the
// file), and a WAL whose tail is cut (the server starts on the whole
// records before the cut and says so). Never a crash, never a wrong answer.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "eventstore/record_format.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "poledger/v1/invoices.grpc.pb.h"
#include "poledger/v1/log.grpc.pb.h"
#include "poledger/v1/purchase_orders.grpc.pb.h"
#include "rocksdb/db.h"
#include "ledger/ledger.h"
#include "server/server.h"
#include "tests/eventstore/store_test_util.h"
#include "tests/testing/purchase_orders.h"
#include "tests/testing/status_matchers.h"

namespace poledger {
namespace {

using ::poledger::testing::StatusIs;
using ::testing::HasSubstr;

constexpr char kAccount[] = "acct-1";

class DamageTest : public ::testing::Test {
 protected:
  std::string data_dir() const { return dir_.path() + "/data"; }

  absl::StatusOr<std::unique_ptr<PoledgerServer>> Start(
      absl::Duration scrub_interval = absl::ZeroDuration(),
      const std::string& verify_on_open = "mark") {
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.data_dir = data_dir();
    options.tick_interval = absl::Hours(1);
    options.scrub_interval = scrub_interval;
    options.verify_on_open = verify_on_open;
    return PoledgerServer::Start(options);
  }

  static std::shared_ptr<grpc::Channel> ChannelTo(const PoledgerServer& s) {
    return grpc::CreateChannel(absl::StrCat("127.0.0.1:", s.port()),
                               grpc::InsecureChannelCredentials());
  }

  // A purchase order and `batches` batches of 500 invoices.
  static void Write(const PoledgerServer& server, int batches) {
    auto channel = ChannelTo(server);
    {
      grpc::ClientContext ctx;
      v1::CreatePurchaseOrderRequest req;
      req.set_account_id(kAccount);
      *req.mutable_purchase_order() =
          testing::SimplePurchaseOrder("po-1", 1000000000);
      v1::PurchaseOrder out;
      grpc::Status s = v1::PurchaseOrderService::NewStub(channel)
                           ->CreatePurchaseOrder(&ctx, req, &out);
      ASSERT_TRUE(s.ok() || s.error_code() == grpc::ALREADY_EXISTS)
          << s.error_message();
    }
    auto invoices = v1::InvoiceService::NewStub(channel);
    static int next = 0;
    for (int b = 0; b < batches; ++b) {
      grpc::ClientContext ctx;
      v1::BatchRecordInvoicesRequest req;
      for (int i = 0; i < 500; ++i) {
        v1::RecordInvoiceRequest* item = req.add_requests();
        item->set_account_id(kAccount);
        v1::Invoice* inv = item->mutable_invoice();
        inv->set_invoice_id(absl::StrCat("inv-", next++));
        inv->set_bill_from("Amazon Web Services, Inc.");
        inv->set_category(v1::INVOICE_CATEGORY_MONTHLY_USAGE);
        inv->set_billing_period("2026-02");
        inv->mutable_amount()->set_currency_code("USD");
        inv->mutable_amount()->set_units(1);
      }
      v1::BatchRecordInvoicesResponse out;
      ASSERT_TRUE(invoices->BatchRecordInvoices(&ctx, req, &out).ok());
    }
  }

  // Saves a snapshot: a restart loads the account from it, without
  // reading the records before it.
  static void Snapshot(const PoledgerServer& server) {
    grpc::ClientContext ctx;
    v1::CreateSnapshotResponse out;
    ASSERT_TRUE(v1::AdminService::NewStub(ChannelTo(server))
                    ->CreateSnapshot(&ctx, v1::CreateSnapshotRequest(), &out)
                    .ok());
  }

  static grpc::Status ReadEvents(const PoledgerServer& server, uint64_t after,
                                 int page_size) {
    grpc::ClientContext ctx;
    v1::ReadEventsRequest req;
    req.set_from_position(after + 1);
    req.set_page_size(page_size);
    v1::ReadEventsResponse out;
    return v1::EventLogService::NewStub(ChannelTo(server))
        ->ReadEvents(&ctx, req, &out);
  }

  static v1::GetServerInfoResponse Info(const PoledgerServer& server) {
    grpc::ClientContext ctx;
    v1::GetServerInfoResponse out;
    EXPECT_TRUE(v1::AdminService::NewStub(ChannelTo(server))
                    ->GetServerInfo(&ctx, v1::GetServerInfoRequest(), &out)
                    .ok());
    return out;
  }

  // Waits for the scrub's first finished pass.
  static v1::Scrub ScrubPass(const PoledgerServer& server) {
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    v1::Scrub scrub;
    while (absl::Now() < deadline) {
      scrub = Info(server).scrub();
      if (scrub.passes() > 0) break;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return scrub;
  }

  // Runs a server that writes `batches` batches (and a snapshot after
  // them, if asked) and stops cleanly; returns the head it left.
  uint64_t Populate(int batches, bool snapshot) {
    auto server = Start();
    EXPECT_OK(server);
    if (!server.ok()) return 0;
    Write(**server, batches);
    if (snapshot) Snapshot(**server);
    return (*server)->ledger()->store()->Head().position;
  }

  // Runs `edit` on the raw database of the (stopped) server.
  void EditRaw(const std::function<void(rocksdb::DB*)>& edit) {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), data_dir(), &raw).ok());
    edit(raw);
    delete raw;
  }

  std::vector<std::filesystem::path> FilesEndingWith(const std::string& ext) {
    std::vector<std::filesystem::path> out;
    for (const auto& e : std::filesystem::directory_iterator(data_dir())) {
      if (e.path().extension() == ext) out.push_back(e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  // Changes a byte of the record holding `position` (an append is one
  // record); returns the record's first position, which errors name.
  uint64_t DamageRecordHolding(uint64_t position) {
    uint64_t first = 0;
    EditRaw([&](rocksdb::DB* db) {
      std::unique_ptr<rocksdb::Iterator> it(
          db->NewIterator(rocksdb::ReadOptions()));
      it->SeekForPrev(record_format::LogKey(position));
      ASSERT_TRUE(it->Valid());
      absl::StatusOr<uint64_t> key =
          record_format::ParseLogKey(it->key().ToString());
      ASSERT_OK(key);
      first = *key;
      std::string value = it->value().ToString();
      value[value.size() - 12] ^= 0x20;
      ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), it->key(), value).ok());
    });
    return first;
  }

  TempDir dir_;
};

TEST_F(DamageTest, TheScrubFindsARecordChangedBelowTheMark) {
  // A clean stop: the verified-through mark is at the head.
  const uint64_t head = Populate(4, true);
  const uint64_t damaged = DamageRecordHolding(head / 2);
  auto server = Start(absl::Seconds(1));
  ASSERT_OK(server);  // The mark is trusted: open checks nothing.
  const v1::Scrub scrub = ScrubPass(**server);
  EXPECT_EQ(scrub.passes(), 1u);
  EXPECT_EQ(scrub.failures(), 1u);
  EXPECT_THAT(scrub.result(), HasSubstr(absl::StrCat("position ", damaged)));
  EXPECT_EQ(scrub.verified_through_position(), damaged - 1);
  // Reads that touch it answer DATA_LOSS naming it; others are served.
  const grpc::Status read = ReadEvents(**server, damaged - 2, 10);
  EXPECT_EQ(read.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_THAT(read.error_message(), HasSubstr(absl::StrCat("position ", damaged)));
  const grpc::Status other = ReadEvents(**server, head - 10, 10);
  EXPECT_TRUE(other.ok()) << other.error_message();
  // Nothing was repaired.
  EXPECT_EQ((*server)->ledger()->store()->Head().position, head);
}

// Without a snapshot a restart replays the account through the damage: it
// refuses to start, naming the position and saying what to do.
TEST_F(DamageTest, DamageInWhatAStartReplaysRefusesTheStart) {
  const uint64_t head = Populate(2, false);
  const uint64_t damaged = DamageRecordHolding(head / 2);
  EXPECT_THAT(Start().status(),
              StatusIs(absl::StatusCode::kDataLoss,
                       ::testing::AllOf(
                           HasSubstr(absl::StrCat("position ", damaged)),
                           HasSubstr("restore it from a backup"),
                           HasSubstr("poledger-audit verify"))));
}

TEST_F(DamageTest, AnIntactLogPassesTheScrub) {
  Populate(2, false);
  auto server = Start(absl::Seconds(1));
  ASSERT_OK(server);
  const v1::Scrub scrub = ScrubPass(**server);
  EXPECT_EQ(scrub.result(), "ok");
  EXPECT_EQ(scrub.failures(), 0u);
  EXPECT_EQ(scrub.verified_through_position(),
            (*server)->ledger()->store()->Head().position);
}

TEST_F(DamageTest, AByteFlippedInsideAnSstFile) {
  const uint64_t head = Populate(6, true);
  // Everything into SST files, then one byte of the largest one's data
  // (its first quarter: data blocks come before the index and footer).
  EditRaw([](rocksdb::DB* db) {
    ASSERT_TRUE(db->CompactRange(rocksdb::CompactRangeOptions(), nullptr,
                                 nullptr)
                    .ok());
  });
  std::vector<std::filesystem::path> ssts = FilesEndingWith(".sst");
  ASSERT_FALSE(ssts.empty());
  std::filesystem::path largest = *std::max_element(
      ssts.begin(), ssts.end(), [](const auto& a, const auto& b) {
        return std::filesystem::file_size(a) < std::filesystem::file_size(b);
      });
  {
    std::fstream f(largest, std::ios::in | std::ios::out | std::ios::binary);
    const std::streamoff at =
        static_cast<std::streamoff>(std::filesystem::file_size(largest) / 4);
    f.seekg(at);
    char c = 0;
    f.get(c);
    f.seekp(at);
    f.put(static_cast<char>(c ^ 0x5a));
  }
  const std::string file = largest.filename().string();

  // A full check at open refuses to start, naming the file.
  auto refused = Start(absl::ZeroDuration(), "full");
  EXPECT_THAT(refused.status(), StatusIs(absl::StatusCode::kDataLoss,
                                         HasSubstr(file)));

  // The default open starts; what touches the block answers DATA_LOSS
  // naming the file, and so does the scrub.
  auto server = Start(absl::Seconds(1));
  ASSERT_OK(server);
  const v1::Scrub scrub = ScrubPass(**server);
  EXPECT_EQ(scrub.failures(), 1u);
  EXPECT_THAT(scrub.result(), HasSubstr(file));
  EXPECT_THAT(scrub.result(), HasSubstr("position"));
  bool data_loss = false;
  for (uint64_t after = 0; after < head && !data_loss; after += 1000) {
    const grpc::Status read = ReadEvents(**server, after, 1000);
    if (!read.ok()) {
      EXPECT_EQ(read.error_code(), grpc::StatusCode::DATA_LOSS);
      EXPECT_THAT(read.error_message(), HasSubstr(file));
      data_loss = true;
    }
  }
  EXPECT_TRUE(data_loss);
}

TEST_F(DamageTest, AWalCutInsideItsLastRecord) {
  // The records are in the WAL (a close does not flush it).
  const uint64_t head = Populate(3, false);
  std::vector<std::filesystem::path> wals = FilesEndingWith(".log");
  ASSERT_FALSE(wals.empty());
  const std::filesystem::path wal = wals.back();
  const uintmax_t size = std::filesystem::file_size(wal);
  ASSERT_GT(size, 4096u);
  std::filesystem::resize_file(wal, size - 3000);

  auto server = Start(absl::Seconds(1));
  ASSERT_OK(server);
  const uint64_t recovered = (*server)->ledger()->store()->Head().position;
  EXPECT_LT(recovered, head);
  EXPECT_GT(recovered, 0u);
  // Said, with RocksDB's own words (a "log_tail_damaged" warning line).
  EXPECT_THAT((*server)->open_recovery_skipped(), ::testing::Not(""));
  // What remains is whole and consistent, and the server takes writes.
  EXPECT_TRUE(ReadEvents(**server, 0, 1000).ok());
  const v1::Scrub scrub = ScrubPass(**server);
  EXPECT_EQ(scrub.result(), "ok");
  Write(**server, 1);
  EXPECT_GT((*server)->ledger()->store()->Head().position, recovered);
}

}  // namespace
}  // namespace poledger
