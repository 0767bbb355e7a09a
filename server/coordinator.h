// Coordinator is the outside arbiter of who leads a shard: a lease-backed
// key in etcd (etcd_coordinator.h) or, in tests, in memory
// (memory_coordinator.h), behind one small interface so that failover runs
// the same against both.
//
// The leader key names the leader (its node name and address) and its
// term. It lives as long as the leader renews its lease within the lease's
// TTL; then anyone may take it. Taking the key raises the shard's term in
// the same transaction, so no two leaderships ever share a term. Nodes also
// publish their durable heads, so that the most advanced follower is the
// one that campaigns.
//
// Every call is bounded: an implementation answers UNAVAILABLE when the
// arbiter does not answer within its own timeout.
//
// Thread safety: implementations are safe for concurrent use.
#ifndef POLEDGER_SERVER_COORDINATOR_H_
#define POLEDGER_SERVER_COORDINATOR_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace poledger {

struct Leadership {
  std::string node;
  std::string address;
  uint64_t term = 0;

  bool operator==(const Leadership& o) const {
    return node == o.node && address == o.address && term == o.term;
  }
};

// How far a node's log goes, as elections compare logs: first by the term of
// its last term record, then by its head. A log that ends in a later term
// holds every record committed before that term began, whatever its length;
// a longer log of an older term may end in records no one acknowledged.
struct LogRank {
  uint64_t term = 0;
  uint64_t position = 0;

  LogRank() = default;
  // A log of no term yet (a shard before its first election).
  LogRank(uint64_t position) : position(position) {}  // NOLINT: implicit
  LogRank(uint64_t term, uint64_t position) : term(term), position(position) {}

  bool operator<(const LogRank& o) const {
    return term != o.term ? term < o.term : position < o.position;
  }
  bool operator>(const LogRank& o) const { return o < *this; }
  bool operator==(const LogRank& o) const {
    return term == o.term && position == o.position;
  }
  bool operator!=(const LogRank& o) const { return !(*this == o); }
  // "12", or "12 in term 3".
  std::string ToString() const;
};

// What a node campaigns with.
struct Candidacy {
  // Its node name and address (the term is the arbiter's to give).
  Leadership me;
  // The leader key's lease.
  absl::Duration ttl = absl::Seconds(10);
  // Its durable head's rank: the campaign fails if another node (but
  // `lost_leader`, the leader whose lease ran out) has published a higher
  // one, checked in the same transaction as the election, so that a node
  // that would lose acknowledged records never leads.
  LogRank head;
  std::string lost_leader;
};

class Coordinator {
 public:
  virtual ~Coordinator() = default;

  // Takes the leader key for c.me with a lease of c.ttl, if nobody holds
  // it and no other node has published a head past c.head. Returns the
  // leadership with its new term, one past the shard's last.
  // Errors: FAILED_PRECONDITION naming the holder if someone holds the key,
  // or the node whose head is ahead; ABORTED if another node took the key
  // meanwhile (ask again); UNAVAILABLE if the arbiter does not answer.
  virtual absl::StatusOr<Leadership> Campaign(const Candidacy& c) = 0;

  // Renews this node's lease for another TTL.
  // Errors: NOT_FOUND if the lease is gone (expired, or resigned): this node
  // no longer leads; UNAVAILABLE if the arbiter does not answer (the lease
  // runs out meanwhile).
  virtual absl::Status Renew() = 0;

  // Gives the leader key up now (OK if this node does not hold it).
  virtual absl::Status Resign() = 0;

  // Who holds the leader key now (std::nullopt: nobody).
  virtual absl::StatusOr<std::optional<Leadership>> Leader() = 0;

  // The shard's last term (0: nobody ever led).
  virtual absl::StatusOr<uint64_t> Term() = 0;

  // Publishes `node`'s durable head.
  virtual absl::Status PublishHead(const std::string& node, LogRank head) = 0;
  // Every node's last published head.
  virtual absl::StatusOr<std::map<std::string, LogRank>> Heads() = 0;
};

}  // namespace poledger

#endif  // POLEDGER_SERVER_COORDINATOR_H_
