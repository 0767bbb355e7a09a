// The shard of an account: zlib's CRC-32 mod N, as HAProxy computes it.
#include "core/shard.h"

#include <cstdint>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace poledger {
namespace core {
namespace {

using ::poledger::testing::StatusIs;
using ::testing::HasSubstr;

TEST(ShardTest, IsZlibsCrc32ModTheCount) {
  // Expected values from Python's zlib.crc32, the same CRC-32 as zlib's and
  // HAProxy's crc32 converter (0xCBF43926 is the standard check value).
  struct Case {
    const char* account;
    uint32_t crc;
  };
  for (const Case& c :
       {Case{"123456789", 0xCBF43926u}, Case{"111122223333", 1183428820u},
        Case{"acct-a", 3423396737u}, Case{"acct-b", 1426436667u},
        Case{"a", 3904355907u}}) {
    for (uint32_t n : {1u, 2u, 3u, 16u, 1024u}) {
      EXPECT_EQ(ShardOf(c.account, n), c.crc % n) << c.account << " of " << n;
    }
  }
  EXPECT_EQ(ShardOf("", 3), 0u);
}

TEST(ShardTest, OwnsOnlyItsAccounts) {
  const Shard one;  // 0 of 1: everything.
  EXPECT_TRUE(one.Owns("111122223333"));
  EXPECT_EQ(one.ToString(), "0/1");
  const Shard shard{1, 3};
  EXPECT_TRUE(shard.Owns("111122223333"));  // 1183428820 % 3 == 1
  EXPECT_FALSE(shard.Owns("acct-a"));       // 2
  EXPECT_FALSE(shard.Owns("acct-b"));       // 0
  // Every account has exactly one owner.
  for (int i = 0; i < 1000; ++i) {
    const std::string account = "account-" + std::to_string(i);
    int owners = 0;
    for (uint32_t s = 0; s < 5; ++s) owners += Shard{s, 5}.Owns(account);
    EXPECT_EQ(owners, 1) << account;
  }
}

TEST(ShardTest, ParsesIndexOfCount) {
  ASSERT_OK(ParseShard("0/1"));
  absl::StatusOr<Shard> two_of_three = ParseShard("2/3");
  ASSERT_OK(two_of_three);
  EXPECT_EQ(two_of_three->index, 2u);
  EXPECT_EQ(two_of_three->count, 3u);
  for (const char* bad : {"", "3", "3/3", "4/3", "0/0", "-1/3", "1/-3", "a/3",
                          "1/3/4", "1 / 3", "0/1025"}) {
    EXPECT_THAT(ParseShard(bad), StatusIs(absl::StatusCode::kInvalidArgument,
                                          HasSubstr("shard: must be I/N")))
        << bad;
  }
}

}  // namespace
}  // namespace core
}  // namespace poledger
