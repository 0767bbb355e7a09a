#include "core/shard.h"

#include <zlib.h>

#include <algorithm>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace poledger {
namespace core {

std::string Shard::ToString() const { return absl::StrCat(index, "/", count); }

bool Shard::Owns(absl::string_view account_id) const {
  return count <= 1 || ShardOf(account_id, count) == index;
}

uint32_t ShardOf(absl::string_view account_id, uint32_t count) {
  if (count <= 1) return 0;
  // zlib takes a uInt length; account ids are short (validated elsewhere),
  // but hash any length in pieces all the same.
  uLong crc = crc32(0L, Z_NULL, 0);
  while (!account_id.empty()) {
    const size_t n = std::min<size_t>(account_id.size(), 1u << 30);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(account_id.data()),
                static_cast<uInt>(n));
    account_id.remove_prefix(n);
  }
  return static_cast<uint32_t>(crc) % count;
}

absl::StatusOr<Shard> ParseShard(absl::string_view text) {
  const std::vector<absl::string_view> parts = absl::StrSplit(text, '/');
  const auto digits = [](absl::string_view part) {
    return !part.empty() && part.size() <= 9 &&
           std::all_of(part.begin(), part.end(), absl::ascii_isdigit);
  };
  Shard shard;
  if (parts.size() != 2 || !digits(parts[0]) || !digits(parts[1]) ||
      !absl::SimpleAtoi(parts[0], &shard.index) ||
      !absl::SimpleAtoi(parts[1], &shard.count) || shard.count < 1 ||
      shard.count > kMaxShards || shard.index >= shard.count) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard: must be I/N with 0 <= I < N <= ", kMaxShards,
                     ", not \"", text, "\""));
  }
  return shard;
}

}  // namespace core
}  // namespace poledger
