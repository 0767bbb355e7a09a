// Input as users break it: bytes that are not the request message, control
// and bidi characters in ids, ids far over their limits, page tokens the
// server did not issue, connections that never finish their handshake.
// Each is refused with a clear INVALID_ARGUMENT (or closed) and writes
// nothing.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "eventstore/event_store.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/byte_buffer.h"
#include "gtest/gtest.h"
#include "ledger/ledger.h"
#include "poledger/v1/invoices.grpc.pb.h"
#include "poledger/v1/log.grpc.pb.h"
#include "poledger/v1/purchase_orders.grpc.pb.h"
#include "server/server.h"
#include "tests/eventstore/store_test_util.h"
#include "tests/testing/status_matchers.h"

namespace poledger {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kAccount[] = "111122223333";

// True if `s` is well-formed UTF-8.
bool IsUtf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80         ? 1
               : (c >> 5) == 6  ? 2
               : (c >> 4) == 14 ? 3
               : (c >> 3) == 30 ? 4
                                : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

struct Details {
  std::string reason;
  std::string field;
};

Details DetailsOf(const grpc::Status& status) {
  Details out;
  google::rpc::Status details;
  if (!details.ParseFromString(status.error_details())) return out;
  for (const auto& any : details.details()) {
    google::rpc::ErrorInfo info;
    google::rpc::BadRequest bad;
    if (any.UnpackTo(&info)) out.reason = info.reason();
    if (any.UnpackTo(&bad) && bad.field_violations_size() > 0) {
      out.field = bad.field_violations(0).field();
    }
  }
  return out;
}

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.data_dir = dir_.path() + "/data";
    options.clock = "manual:2026-02-01T00:00:00Z";
    options.handshake_timeout = absl::Seconds(1);
    auto server = PoledgerServer::Start(options);
    ASSERT_OK(server);
    server_ = std::move(*server);
    channel_ =
        grpc::CreateChannel(address(), grpc::InsecureChannelCredentials());
    pos_ = v1::PurchaseOrderService::NewStub(channel_);
    invoices_ = v1::InvoiceService::NewStub(channel_);
    log_ = v1::EventLogService::NewStub(channel_);
    for (const char* id : {"PO-1", "PO-2", "PO-3"}) {
      grpc::ClientContext ctx;
      v1::CreatePurchaseOrderRequest create;
      create.set_account_id(kAccount);
      v1::PurchaseOrder* po = create.mutable_purchase_order();
      po->set_purchase_order_id(id);
      po->add_bill_from("Amazon Web Services, Inc.");
      po->set_currency_code("USD");
      po->set_effective_month("2026-01");
      po->set_expiration_month("2026-12");
      v1::PurchaseOrder out;
      const grpc::Status s = pos_->CreatePurchaseOrder(&ctx, create, &out);
      ASSERT_TRUE(s.ok()) << s.error_message();
    }
  }

  std::string address() const {
    return absl::StrCat("127.0.0.1:", server_->port());
  }

  uint64_t Head() {
    grpc::ClientContext ctx;
    v1::GetLogDigestResponse digest;
    EXPECT_TRUE(
        log_->GetLogDigest(&ctx, v1::GetLogDigestRequest(), &digest).ok());
    return digest.head_position();
  }

  // Sends `bytes` as the request of `method`, unparsed.
  grpc::Status CallRaw(const std::string& method, const std::string& bytes) {
    grpc::GenericStub stub(channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    std::promise<grpc::Status> done;
    stub.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response,
                   [&done](grpc::Status s) { done.set_value(std::move(s)); });
    return done.get_future().get();
  }

  grpc::Status RecordInvoiceWithId(const std::string& id,
                                   const std::string& request_id = "") {
    grpc::ClientContext ctx;
    v1::RecordInvoiceRequest req;
    req.set_account_id(kAccount);
    req.set_request_id(request_id);
    v1::Invoice* inv = req.mutable_invoice();
    inv->set_invoice_id(id);
    inv->set_bill_from("Amazon Web Services, Inc.");
    inv->set_category(v1::INVOICE_CATEGORY_MONTHLY_USAGE);
    inv->set_billing_period("2026-02");
    inv->mutable_amount()->set_currency_code("USD");
    inv->mutable_amount()->set_units(5);
    v1::Invoice out;
    return invoices_->RecordInvoice(&ctx, req, &out);
  }

  TempDir dir_;
  std::unique_ptr<PoledgerServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::PurchaseOrderService::Stub> pos_;
  std::unique_ptr<v1::InvoiceService::Stub> invoices_;
  std::unique_ptr<v1::EventLogService::Stub> log_;
};

TEST_F(BadInputTest, BytesThatAreNotTheRequestAreInvalidArgumentOnEveryApi) {
  const std::string truncated("\x0a\xff\x01", 3);  // Length past the end.
  std::string nested;
  for (int i = 0; i < 200; ++i) nested.push_back('\x7b');  // Field 15 groups.
  // Each method with the tag of a string field of its request, for a value
  // that is not UTF-8 (0 where the request has none).
  const std::vector<std::pair<std::string, char>> methods = {
      // Callback API.
      {"/poledger.v1.InvoiceService/RecordInvoice", '\x0a'},
      {"/poledger.v1.PurchaseOrderService/CreatePurchaseOrder", '\x0a'},
      {"/poledger.v1.PurchaseOrderService/GetPurchaseOrder", '\x0a'},
      {"/poledger.v1.AdminService/GetServerInfo", 0},
      // Synchronous API, unary and streaming.
      {"/poledger.v1.EventLogService/ReadEvents", '\x22'},
      {"/poledger.v1.NotificationService/ListNotifications", '\x0a'},
      {"/poledger.v1.EventLogService/SubscribeEvents", '\x12'},
  };
  const uint64_t head = Head();
  for (const auto& [method, string_tag] : methods) {
    std::vector<std::string> payloads = {truncated, nested};
    if (string_tag != 0) {
      payloads.push_back(std::string(1, string_tag) +
                         std::string("\x02\xc3\x28", 3));
    }
    for (const std::string& bytes : payloads) {
      const grpc::Status s = CallRaw(method, bytes);
      EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
          << method << " " << absl::CHexEscape(bytes) << ": "
          << s.error_message();
      EXPECT_THAT(s.error_message(), HasSubstr("could not be parsed"))
          << method;
      EXPECT_THAT(s.error_message(), HasSubstr(method));
      EXPECT_EQ(DetailsOf(s).reason, "MALFORMED_REQUEST") << method;
    }
  }
  EXPECT_EQ(Head(), head);
  // A well-formed request still works on the same channel.
  EXPECT_TRUE(RecordInvoiceWithId("INV-ok").ok());
}

TEST_F(BadInputTest, ControlAndBidiCharactersInIdsAreRefusedAndNeverEchoed) {
  const std::vector<std::string> bad = {
      std::string("a\0b", 3),
      "a\nb",
      "a\x1b[31mb",
      "a\x7f"
      "b",
      "a\xe2\x80\xae"
      "b",          // U+202E RIGHT-TO-LEFT OVERRIDE
      "a\xc3\xa9",  // Not in the id character set either.
  };
  const uint64_t head = Head();
  for (const std::string& id : bad) {
    grpc::Status s = RecordInvoiceWithId(id);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << absl::CHexEscape(id);
    EXPECT_EQ(DetailsOf(s).field, "invoice.invoice_id");
    EXPECT_TRUE(IsUtf8(s.error_message()));
    EXPECT_THAT(s.error_message(), Not(HasSubstr(id)));
    EXPECT_THAT(s.error_message(), HasSubstr("is not allowed"));

    s = RecordInvoiceWithId("INV-fine", id);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(DetailsOf(s).field, "request_id");
    EXPECT_THAT(s.error_message(), Not(HasSubstr(id)));

    grpc::ClientContext ctx;
    v1::RecordMarketplaceTransactionRequest req;
    req.set_account_id(kAccount);
    v1::MarketplaceTransaction* t = req.mutable_transaction();
    t->set_transaction_id(id);
    t->set_bill_from("Amazon Web Services, Inc.");
    t->mutable_amount()->set_currency_code("USD");
    t->mutable_amount()->set_units(5);
    t->set_month("2026-02");
    v1::RecordMarketplaceTransactionResponse out;
    s = invoices_->RecordMarketplaceTransaction(&ctx, req, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(DetailsOf(s).field, "transaction.transaction_id");

    grpc::ClientContext get_ctx;
    v1::GetInvoiceRequest get;
    get.set_account_id(kAccount);
    get.set_invoice_id(id);
    v1::Invoice invoice;
    s = invoices_->GetInvoice(&get_ctx, get, &invoice);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(DetailsOf(s).field, "invoice_id");
  }
  // The escaped form names the character.
  const grpc::Status s = RecordInvoiceWithId(
      "a\xe2\x80\xae"
      "b");
  EXPECT_THAT(s.error_message(), HasSubstr("\\u{202E}"));
  EXPECT_EQ(Head(), head);
}

TEST_F(BadInputTest, LongAndNonAsciiIdsGetShortValidUtf8Messages) {
  const std::string huge(10000, 'x');
  grpc::ClientContext ctx;
  v1::GetPurchaseOrderRequest get;
  get.set_account_id(kAccount);
  get.set_purchase_order_id(huge);
  v1::PurchaseOrder po;
  grpc::Status s = pos_->GetPurchaseOrder(&ctx, get, &po);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("not 10000"));
  EXPECT_LT(s.error_message().size(), 200u);

  s = RecordInvoiceWithId(huge);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_LT(s.error_message().size(), 200u);

  std::string umlauts;
  for (int i = 0; i < 150; ++i) umlauts += "\xc3\x84";  // 150 x U+00C4
  grpc::ClientContext ctx2;
  get.set_purchase_order_id(umlauts);
  s = pos_->GetPurchaseOrder(&ctx2, get, &po);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(IsUtf8(s.error_message()));
  EXPECT_THAT(s.error_message(), HasSubstr("not 150"));  // Characters.

  // A description is counted in characters too: 1,000 two-byte ones fit.
  grpc::ClientContext ctx3;
  v1::UpdatePurchaseOrderRequest update;
  update.set_account_id(kAccount);
  update.mutable_purchase_order()->set_purchase_order_id("PO-1");
  std::string description;
  for (int i = 0; i < 1000; ++i) description += "\xc3\xa9";
  update.mutable_purchase_order()->set_description(description);
  update.mutable_update_mask()->add_paths("description");
  s = pos_->UpdatePurchaseOrder(&ctx3, update, &po);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(po.description(), description);
}

TEST_F(BadInputTest, PageTokensAreOnlyThoseIssuedForTheSameQuery) {
  v1::ListPurchaseOrdersRequest list;
  list.set_account_id(kAccount);
  list.set_page_size(1);
  v1::ListPurchaseOrdersResponse page;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(pos_->ListPurchaseOrders(&ctx, list, &page).ok());
  }
  ASSERT_FALSE(page.next_page_token().empty());
  const std::string token = page.next_page_token();
  {
    grpc::ClientContext ctx;
    list.set_page_token(token);
    ASSERT_TRUE(pos_->ListPurchaseOrders(&ctx, list, &page).ok());
    ASSERT_EQ(page.purchase_orders_size(), 1);
    EXPECT_EQ(page.purchase_orders(0).purchase_order_id(), "PO-2");
  }
  std::string forged = absl::WebSafeBase64Escape("PO-1");
  std::string flipped = token;
  flipped[0] = flipped[0] == 'A' ? 'B' : 'A';
  for (const std::string& bad : {forged, flipped, std::string("AAAA"),
                                 std::string("not base64 at all!")}) {
    grpc::ClientContext ctx;
    list.set_page_token(bad);
    const grpc::Status s = pos_->ListPurchaseOrders(&ctx, list, &page);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
    EXPECT_EQ(DetailsOf(s).field, "page_token");
    EXPECT_EQ(DetailsOf(s).reason, "INVALID_PAGE_TOKEN");
  }
  {
    // Issued for another query: another account, another filter.
    grpc::ClientContext ctx;
    list.set_page_token(token);
    list.set_account_id("other-account");
    EXPECT_EQ(pos_->ListPurchaseOrders(&ctx, list, &page).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
    grpc::ClientContext ctx2;
    list.set_account_id(kAccount);
    list.set_status(v1::PURCHASE_ORDER_STATUS_SUSPENDED);
    EXPECT_EQ(pos_->ListPurchaseOrders(&ctx2, list, &page).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    // ReadEvents: a token is bound to its filter.
    v1::ReadEventsRequest read;
    read.set_page_size(1);
    v1::ReadEventsResponse events;
    grpc::ClientContext ctx;
    ASSERT_TRUE(log_->ReadEvents(&ctx, read, &events).ok());
    ASSERT_FALSE(events.next_page_token().empty());
    read.set_page_token(events.next_page_token());
    grpc::ClientContext ctx2;
    ASSERT_TRUE(log_->ReadEvents(&ctx2, read, &events).ok());
    EXPECT_EQ(events.events(0).position(), 2u);
    read.add_event_types("invoice_recorded");
    grpc::ClientContext ctx3;
    EXPECT_EQ(log_->ReadEvents(&ctx3, read, &events).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
}

// A record whose payload does not decode ends a stream with DATA_LOSS
// naming its position, as a unary read would, not as a client that left.
TEST_F(BadInputTest, StreamsEndWithDataLossAtARecordThatDoesNotDecode) {
  AppendRequest append;
  StreamAppend& stream = append.streams.emplace_back();
  stream.stream_id = "account/999999999999";
  stream.events.push_back({"notification_raised", "\xff\xff not an event", ""});
  auto appended = server_->ledger()->store()->Append(append);
  ASSERT_OK(appended);
  const std::string position =
      absl::StrCat("position ", appended->first_position);
  {
    grpc::ClientContext ctx;
    v1::SubscribeEventsRequest req;
    auto reader = log_->SubscribeEvents(&ctx, req);
    v1::SubscribeEventsResponse item;
    int events = 0;
    while (reader->Read(&item)) events += item.has_event();
    const grpc::Status s = reader->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(position));
    EXPECT_EQ(events, static_cast<int>(appended->first_position) - 1);
    EXPECT_EQ(DetailsOf(s).reason, "DATA_LOSS");
  }
  {
    auto notifications = v1::NotificationService::NewStub(channel_);
    grpc::ClientContext ctx;
    v1::SubscribeNotificationsRequest req;
    auto reader = notifications->SubscribeNotifications(&ctx, req);
    v1::SubscribeNotificationsResponse item;
    while (reader->Read(&item)) {
    }
    const grpc::Status s = reader->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(position));
  }
}

// 200 connections that send the HTTP/2 preface and nothing else are closed
// once the handshake timeout (1 s here) passes; the server keeps serving.
TEST_F(BadInputTest, ConnectionsThatNeverFinishTheHandshakeAreClosed) {
  constexpr int kConnections = 200;
  std::vector<int> fds;
  for (int i = 0; i < kConnections; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(server_->port()));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    const std::string preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    ASSERT_EQ(write(fd, preface.data(), preface.size()),
              static_cast<ssize_t>(preface.size()));
    fds.push_back(fd);
  }
  // Read (and drop) whatever the server sends until it closes.
  std::vector<bool> closed(kConnections, false);
  int open = kConnections;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (open > 0 && absl::Now() < deadline) {
    std::vector<pollfd> polls;
    for (int i = 0; i < kConnections; ++i) {
      if (!closed[i]) polls.push_back({fds[i], POLLIN, 0});
    }
    if (poll(polls.data(), polls.size(), 200) <= 0) continue;
    for (const pollfd& p : polls) {
      if ((p.revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      char buf[4096];
      if (read(p.fd, buf, sizeof(buf)) <= 0) {
        for (int i = 0; i < kConnections; ++i) {
          if (fds[i] == p.fd) closed[i] = true;
        }
        --open;
      }
    }
  }
  for (int fd : fds) close(fd);
  EXPECT_EQ(open, 0) << "connections the server left open";
  EXPECT_TRUE(RecordInvoiceWithId("INV-after").ok());
}

}  // namespace
}  // namespace poledger
