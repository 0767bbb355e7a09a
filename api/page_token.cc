#include "api/page_token.h"

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/errors.h"
#include "eventstore/sha256.h"

namespace poledger {
namespace {

constexpr size_t kTagBytes = 12;

std::string Tag(absl::string_view query, absl::string_view resume) {
  Sha256 sha;
  sha.Update("poledger page token v1");
  // Lengths first: no two (query, resume) pairs hash the same bytes.
  sha.Update(absl::StrCat(query.size(), ":", resume.size(), ":"));
  sha.Update(query);
  sha.Update(resume);
  const Hash hash = sha.Finish();
  return std::string(reinterpret_cast<const char*>(hash.data()), kTagBytes);
}

absl::Status NotIssued() {
  return core::InvalidField("page_token",
                            "is not a token this server issued for this query",
                            core::reason::kInvalidPageToken);
}

}  // namespace

std::string MakePageToken(absl::string_view query, absl::string_view resume) {
  return absl::WebSafeBase64Escape(absl::StrCat(resume, Tag(query, resume)));
}

absl::StatusOr<std::string> ParsePageToken(absl::string_view token,
                                           absl::string_view query) {
  if (token.empty()) return std::string();
  std::string raw;
  if (token.size() > 1024 || !absl::WebSafeBase64Unescape(token, &raw) ||
      raw.size() < kTagBytes) {
    return NotIssued();
  }
  const absl::string_view resume =
      absl::string_view(raw).substr(0, raw.size() - kTagBytes);
  if (absl::string_view(raw).substr(resume.size()) != Tag(query, resume)) {
    return NotIssued();
  }
  return std::string(resume);
}

std::string MakeNumberPageToken(absl::string_view query, uint64_t resume) {
  return MakePageToken(query, absl::StrCat(resume));
}

absl::StatusOr<uint64_t> ParseNumberPageToken(absl::string_view token,
                                              absl::string_view query) {
  absl::StatusOr<std::string> raw = ParsePageToken(token, query);
  if (!raw.ok()) return raw.status();
  uint64_t n = 0;
  if (!raw->empty() && !absl::SimpleAtoi(*raw, &n)) return NotIssued();
  return n;
}

}  // namespace poledger
