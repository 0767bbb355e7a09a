// LogTail follows the head of the event log with one thread and offers
// each new record, read once, to the subscribers that want it: those of
// the record's account and those of every account. Subscribers that want
// nothing of a record cost the writers nothing; the writers never wait for
// a subscriber. With no subscriber it reads nothing and only moves its
// position to the head. Every tick it lets each subscriber send a
// heartbeat.
//
// A subscriber registers, learns the position P through which records were
// offered before it joined, reads what it needs up to P from the store
// itself, and gets every record after P offered. Offer, Tick and Close run
// on the tail's thread under the tail's lock: they must only queue and
// start writes, never block.
//
// Thread safety: safe for concurrent use.
#ifndef POLEDGER_SERVER_LOG_TAIL_H_
#define POLEDGER_SERVER_LOG_TAIL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "eventstore/event_store.h"

namespace poledger {

class LogTail {
 public:
  class Subscriber {
   public:
    virtual ~Subscriber() = default;
    // The account whose records it wants; "" for every account.
    virtual const std::string& account() const = 0;
    // A new record of that account (or any, for ""), in log order.
    virtual void Offer(const std::shared_ptr<const RecordedEvent>& record) = 0;
    // Every tick, with the head the tail has offered through.
    virtual void Tick(uint64_t head, absl::Time now) = 0;
    // The tail stops (the server shuts down): finish.
    virtual void Close() = 0;
    // The position through which it has written, or had no use for, every
    // record, the tail having offered it those through `offered`.
    virtual uint64_t Progress(uint64_t offered) const = 0;
    // Who may read what changed (a policy reload): check the caller's
    // access again, and end at once without it.
    virtual void Recheck() = 0;
  };

  // Starts following `store` (not owned) from its current head.
  LogTail(EventStore* store, absl::Duration tick);
  // Stops (closing every subscriber left) and joins the thread.
  ~LogTail();

  // Adds `s`; returns P: records after P will be offered to it, records up
  // to P are in the store. After Stop, closes `s` at once instead.
  uint64_t Register(Subscriber* s);
  // For a subscriber that fell behind and dropped offers: returns a new P
  // as Register does, atomically with `reset` (run under the tail's lock,
  // so no offer falls between the two).
  template <typename Fn>
  uint64_t Resync(Fn&& reset) {
    absl::MutexLock lock(&mu_);
    reset(position_);
    return position_;
  }
  // Removes `s`; once it returns, the tail calls `s` no more.
  void Unregister(Subscriber* s);
  // Closes every subscriber and refuses new ones (they are closed at once).
  void Stop();
  // Calls Recheck on every subscriber, under the lock Offer runs under:
  // once it returns, no subscriber whose access is gone is offered another
  // record.
  void RecheckAll();

  size_t subscribers() const;

  // How many records the slowest subscriber is behind the log's head: the
  // head minus its Progress (0 with no subscriber).
  uint64_t MaxLag() const;

 private:
  void Run();

  EventStore* const store_;
  const absl::Duration tick_;
  mutable absl::Mutex mu_;
  uint64_t position_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<std::string, absl::flat_hash_set<Subscriber*>> by_account_
      ABSL_GUARDED_BY(mu_);
  size_t count_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace poledger

#endif  // POLEDGER_SERVER_LOG_TAIL_H_
