// Which shard an account belongs to. A deployment of N shards splits the
// accounts by CRC-32 (as zlib computes it) of the account id, mod N: the
// same function HAProxy's `crc32` and `mod(N)` converters compute, so the
// proxy routes a call where the server expects it.
//
// Thread safety: pure functions.
#ifndef POLEDGER_CORE_SHARD_H_
#define POLEDGER_CORE_SHARD_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace poledger {
namespace core {

// One shard of `count`; a server without shards is shard 0 of 1.
struct Shard {
  uint32_t index = 0;
  uint32_t count = 1;

  // Returns "I/N".
  std::string ToString() const;
  // Returns whether `account_id` belongs to this shard.
  bool Owns(absl::string_view account_id) const;
};

// Most shards one deployment may have.
inline constexpr uint32_t kMaxShards = 1024;

// Returns crc32(account_id) mod `count` (count >= 1).
uint32_t ShardOf(absl::string_view account_id, uint32_t count);

// Parses "I/N" (0 <= I < N <= kMaxShards); INVALID_ARGUMENT otherwise.
absl::StatusOr<Shard> ParseShard(absl::string_view text);

}  // namespace core
}  // namespace poledger

#endif  // POLEDGER_CORE_SHARD_H_
