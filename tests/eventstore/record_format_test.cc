#include "eventstore/record_format.h"

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace poledger {
namespace record_format {
namespace {

using ::poledger::testing::StatusIs;
using ::testing::HasSubstr;

RecordedEvent SampleRecord() {
  RecordedEvent r;
  r.position = 300;
  r.stream_id = "account/123456789012";
  r.stream_version = 129;  // Needs two varint bytes.
  r.event_type = "poledger.v1.PurchaseOrderCreated";
  r.payload = std::string("\x0a\x03po1\x00\xff", 7);
  r.event_id = "evt-1";
  r.request_id = "req-1";
  r.correlation_id = "corr-1";
  r.actor = "ops@example.com";
  r.timestamp = absl::FromUnixMicros(-5);  // Before the epoch still works.
  r.prev_hash.fill(0xab);
  r.hash = ComputeRecordHash(r);
  return r;
}

TEST(RecordFormatTest, RecordValueRoundTrips) {
  const RecordedEvent r = SampleRecord();
  const std::string value = EncodeRecordValue(r);
  EXPECT_EQ(static_cast<uint8_t>(value[0]), kRecordFormat);
  auto decoded = DecodeOneEventRecord(r.position, value, /*verify=*/true);
  ASSERT_OK(decoded);
  EXPECT_EQ(*decoded, r);
}

TEST(RecordFormatTest, HashCoversPositionAndEveryField) {
  const RecordedEvent r = SampleRecord();
  const std::string value = EncodeRecordValue(r);
  // The same bytes stored at another position fail verification.
  EXPECT_THAT(DecodeOneEventRecord(r.position + 1, value, true),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("position 301")));
  // Flipping any single byte after the format byte is detected.
  for (size_t i = 1; i < value.size(); ++i) {
    std::string tampered = value;
    tampered[i] = static_cast<char>(tampered[i] ^ 0x01);
    EXPECT_THAT(DecodeOneEventRecord(r.position, tampered, true),
                StatusIs(absl::StatusCode::kDataLoss))
        << "byte " << i;
  }
}

TEST(RecordFormatTest, TruncatedValuesAreDataLoss) {
  const std::string value = EncodeRecordValue(SampleRecord());
  for (size_t len : {size_t{0}, size_t{1}, size_t{40}, size_t{65},
                     value.size() - 1}) {
    EXPECT_THAT(DecodeOneEventRecord(300, value.substr(0, len), false),
                StatusIs(absl::StatusCode::kDataLoss))
        << "length " << len;
  }
}

// Three events of one append on two streams, sealed as one record.
std::vector<RecordedEvent> SampleMany() {
  std::vector<RecordedEvent> events(3, SampleRecord());
  events[1].stream_id = "account/other";
  events[1].stream_version = 1;
  events[1].event_id = "evt-301";  // The derived id: stored empty.
  events[2].stream_version = 130;
  events[2].payload = "third";
  for (size_t i = 0; i < events.size(); ++i) events[i].position = 300 + i;
  SealRecord(absl::MakeSpan(events));
  return events;
}

TEST(RecordFormatTest, ARecordOfSeveralEventsRoundTrips) {
  const std::vector<RecordedEvent> events = SampleMany();
  for (const RecordedEvent& e : events) {
    EXPECT_EQ(e.hash, events[0].hash);
    EXPECT_EQ(e.record_first(), 300u);
    EXPECT_EQ(e.record_last(), 302u);
  }
  const std::string value = EncodeRecordValue(events);
  EXPECT_EQ(static_cast<uint8_t>(value[0]), kManyRecordFormat);
  EXPECT_EQ(*RecordEventCount(value), 3u);
  std::vector<RecordedEvent> decoded;
  ASSERT_OK(DecodeRecordValue(300, value, /*verify=*/true, &decoded));
  EXPECT_EQ(decoded, events);
  EXPECT_EQ(decoded[1].event_id, "evt-301");
  EXPECT_EQ(ComputeRecordHash(decoded), events[0].hash);
  EXPECT_THAT(DecodeOneEventRecord(300, value, true),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  // Shared metadata and the stream table are stored once: the record is
  // smaller than its events alone.
  size_t alone = 0;
  for (const RecordedEvent& e : events) alone += EncodeRecordValue(e).size();
  EXPECT_LT(value.size(), alone);
}

TEST(RecordFormatTest, ARecordOfSeveralEventsDetectsEveryChange) {
  const std::string value = EncodeRecordValue(SampleMany());
  std::vector<RecordedEvent> out;
  EXPECT_THAT(DecodeRecordValue(301, value, true, &out),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("position 301")));
  for (size_t i = 1; i < value.size(); ++i) {
    std::string tampered = value;
    tampered[i] = static_cast<char>(tampered[i] ^ 0x01);
    EXPECT_THAT(DecodeRecordValue(300, tampered, true, &out),
                StatusIs(absl::StatusCode::kDataLoss))
        << "byte " << i;
  }
  for (size_t len = 0; len < value.size(); ++len) {
    EXPECT_THAT(DecodeRecordValue(300, value.substr(0, len), false, &out),
                StatusIs(absl::StatusCode::kDataLoss))
        << "length " << len;
  }
  EXPECT_TRUE(out.empty());
}

TEST(RecordFormatTest, WholeRecordsAndLinks) {
  const std::vector<RecordedEvent> events = SampleMany();
  EXPECT_EQ(WholeRecordEvents(events), 3u);
  EXPECT_EQ(WholeRecordEvents(absl::MakeConstSpan(events).subspan(0, 2)), 0u);
  EXPECT_TRUE(LinksTo(events[0], {299, events[0].prev_hash}));
  EXPECT_TRUE(LinksTo(events[1], {300, events[0].hash}));
  EXPECT_FALSE(LinksTo(events[1], {300, events[0].prev_hash}));
  std::vector<std::pair<std::string, uint64_t>> entries;
  AppendStreamEntries(events, &entries);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].first, StreamKey("account/123456789012", 130));
  EXPECT_EQ(entries[0].second, 300u);
  EXPECT_EQ(entries[1].first, StreamKey("account/other", 1));
  EXPECT_THAT(ForEachRecord(absl::MakeConstSpan(events).subspan(1),
                            [](size_t, size_t) { return absl::OkStatus(); }),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("whose start is missing")));
}

TEST(RecordFormatTest, KeysRoundTripAndSortByPosition) {
  for (uint64_t p : {uint64_t{1}, uint64_t{255}, uint64_t{256},
                     uint64_t{1} << 40, ~uint64_t{0}}) {
    auto parsed = ParseLogKey(LogKey(p));
    ASSERT_OK(parsed);
    EXPECT_EQ(*parsed, p);
  }
  const std::string part_key = SnapshotKey("acct-1");
  auto part = ParseSnapshotKey(part_key);  // A view into part_key.
  ASSERT_OK(part);
  EXPECT_EQ(*part, "acct-1");
  EXPECT_THAT(ParseSnapshotKey(LogKey(1)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_LT(LogKey(255), LogKey(256));
  EXPECT_LT(LogKey(256), LogKey(uint64_t{1} << 40));
  EXPECT_THAT(ParseLogKey("Lshort"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseLogKey(SnapshotKey("12345678")),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(RecordFormatTest, StreamKeysGroupByStreamThenVersion) {
  // "a" must not interleave with "ab", whatever the versions.
  EXPECT_LT(StreamKey("a", ~uint64_t{0}), StreamKey("ab", 1));
  EXPECT_LT(StreamKey("b", 1), StreamKey("b", 2));
  EXPECT_EQ(StreamKey("b", 7).substr(0, StreamKeyPrefix("b").size()),
            StreamKeyPrefix("b"));
  EXPECT_EQ(StreamKey("b", 7).size(), 1 + 4 + 1 + 8u);
  std::string stream;
  uint64_t version = 0;
  ASSERT_OK(ParseStreamKey(StreamKey("acct/7", 42), &stream, &version));
  EXPECT_EQ(stream, "acct/7");
  EXPECT_EQ(version, 42u);
  EXPECT_THAT(ParseStreamKey(StreamKey("acct/7", 42).substr(0, 12), &stream,
                             &version),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(RecordFormatTest, RequestValueRoundTrips) {
  RequestEntry entry;
  entry.content_digest.fill(7);
  entry.result.first_position = 10;
  entry.result.last_position = 14;
  entry.result.stream_versions = {3, 200};
  auto decoded = DecodeRequestValue(EncodeRequestValue(entry));
  ASSERT_OK(decoded);
  EXPECT_EQ(decoded->content_digest, entry.content_digest);
  EXPECT_EQ(decoded->result.first_position, 10u);
  EXPECT_EQ(decoded->result.last_position, 14u);
  EXPECT_EQ(decoded->result.stream_versions, entry.result.stream_versions);
  EXPECT_THAT(DecodeRequestValue("junk"),
              StatusIs(absl::StatusCode::kDataLoss));
}

TEST(RecordFormatTest, ContentDigestIgnoresMetadataButNotContent) {
  AppendRequest a;
  a.streams.push_back({"s", ExpectedVersion::Exact(2), {{"T", "payload", ""}}});
  AppendRequest b = a;
  b.metadata.timestamp = absl::FromUnixSeconds(5);
  b.metadata.actor = "someone else";
  b.streams[0].events[0].event_id = "explicit";
  EXPECT_EQ(RequestContentDigest(a), RequestContentDigest(b));
  b.streams[0].expected_version = ExpectedVersion::Exact(3);
  EXPECT_NE(RequestContentDigest(a), RequestContentDigest(b));
  AppendRequest c = a;
  c.streams[0].events[0].payload = "payloae";
  EXPECT_NE(RequestContentDigest(a), RequestContentDigest(c));
  // Field boundaries are unambiguous.
  AppendRequest d;
  d.streams.push_back({"s", ExpectedVersion::Exact(2), {{"Tp", "ayload", ""}}});
  EXPECT_NE(RequestContentDigest(a), RequestContentDigest(d));
}

}  // namespace
}  // namespace record_format
}  // namespace poledger
