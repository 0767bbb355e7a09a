// Sealing one field (AES-256-GCM): what is sealed opens only with its key
// and its associated data, unchanged; anything else is DATA_LOSS, and a
// malformed key INVALID_ARGUMENT.
#include "ledger/field_cipher.h"

#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace poledger {
namespace {

using ::poledger::testing::StatusIs;
using ::testing::HasSubstr;

class FieldCipherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::string> key = NewFieldKey();
    ASSERT_TRUE(key.ok()) << key.status();
    key_ = *key;
  }

  std::string Seal(absl::string_view plaintext, absl::string_view associated) {
    absl::StatusOr<std::string> sealed = SealField(key_, plaintext, associated);
    EXPECT_TRUE(sealed.ok()) << sealed.status();
    return sealed.value_or("");
  }

  std::string key_;
};

TEST_F(FieldCipherTest, WhatIsSealedOpensWithItsKeyAndAssociatedData) {
  for (const std::string& plaintext :
       {std::string(), std::string("ana@example.com"), std::string(5000, 'x'),
        std::string("a\0b", 3)}) {
    const std::string sealed = Seal(plaintext, "acct-1/contact");
    EXPECT_EQ(sealed.size(), plaintext.size() + kSealOverheadBytes);
    if (plaintext.size() >= 8) {
      EXPECT_EQ(sealed.find(plaintext), std::string::npos);  // Not in clear.
    }
    absl::StatusOr<std::string> opened =
        OpenField(key_, sealed, "acct-1/contact");
    ASSERT_TRUE(opened.ok()) << opened.status();
    EXPECT_EQ(*opened, plaintext);
  }
}

TEST_F(FieldCipherTest, EachSealTakesAFreshNonce) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) seen.insert(Seal("ana@example.com", "a"));
  EXPECT_EQ(seen.size(), 100u);
}

TEST_F(FieldCipherTest, AnotherKeyOtherAssociatedDataOrAChangedByteDoNotOpen) {
  const std::string sealed = Seal("ana@example.com", "acct-1/contact");
  absl::StatusOr<std::string> other = NewFieldKey();
  ASSERT_TRUE(other.ok());
  EXPECT_NE(*other, key_);
  EXPECT_THAT(OpenField(*other, sealed, "acct-1/contact"),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("does not open with this key")));
  EXPECT_THAT(OpenField(key_, sealed, "acct-2/contact"),
              StatusIs(absl::StatusCode::kDataLoss));
  for (size_t i = 0; i < sealed.size(); ++i) {
    std::string changed = sealed;
    changed[i] ^= 0x01;
    EXPECT_THAT(OpenField(key_, changed, "acct-1/contact"),
                StatusIs(absl::StatusCode::kDataLoss))
        << "byte " << i;
  }
  EXPECT_THAT(OpenField(key_, sealed.substr(0, sealed.size() - 1),
                        "acct-1/contact"),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(OpenField(key_, sealed.substr(0, kSealOverheadBytes - 1),
                        "acct-1/contact"),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("shorter than its 28-byte nonce and tag")));
}

TEST_F(FieldCipherTest, AKeyOfTheWrongSizeIsInvalid) {
  EXPECT_THAT(SealField(std::string(16, 'k'), "x", ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("key: 16 bytes; AES-256-GCM takes 32")));
  EXPECT_THAT(OpenField(std::string(33, 'k'), Seal("x", ""), ""),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace poledger
