// LogSubscription: one server-streaming call on gRPC's callback API that
// follows the event log: it catches up from the store after the client's
// position, sends a caught_up marker, then the records LogTail offers it,
// with heartbeats when idle. No thread of its own and no polling.
//
// Memory is bounded: at most `queue_limit` offered records wait for a slow
// client; past that it drops them and, once its queue is drained, reads
// from the store again from the last record it sent (a resync), so a
// client that stops reading stalls nobody and misses nothing. One write is
// in flight at a time; whoever holds `busy_` (a reaction or the tail's
// offer to an idle stream) does the work, so records go out in log order.
//
// The call ends like a unary call, through ToGrpcStatus: CANCELLED when the
// client goes away, UNAVAILABLE naming the position to resume after when
// the server shuts down, DATA_LOSS for a record that does not decode, the
// store's error.
//
// Thread safety: gRPC's reactions and the tail's calls may run at once;
// the state is under mu_.
#ifndef POLEDGER_SERVER_SUBSCRIPTION_H_
#define POLEDGER_SERVER_SUBSCRIPTION_H_

#include <algorithm>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "eventstore/event_store.h"
#include "eventstore/positions.h"
#include "grpcpp/support/server_callback.h"
#include "ledger/ledger.h"
#include "server/log_tail.h"
#include "server/status_mapping.h"

namespace poledger {

template <typename Response>
class LogSubscription final : public grpc::ServerWriteReactor<Response>,
                              public LogTail::Subscriber {
 public:
  struct Hooks {
    // Whether the client asked for `record` (account and other filters).
    std::function<bool(const RecordedEvent&)> wants;
    // The response for a record it wants; DATA_LOSS if it does not decode.
    std::function<absl::StatusOr<Response>(const RecordedEvent&)> render;
    // The caught_up and heartbeat markers, with the head position.
    std::function<Response(uint64_t)> caught_up;
    std::function<Response(uint64_t)> heartbeat;
    // When the call is done, with the last position sent (optional).
    std::function<void(uint64_t)> on_done;
    // Checks the caller's access again (optional): an error ends the call
    // with it. Called after a policy reload, and at Start when the policy
    // changed since the call was authorized (`authorized_generation`
    // against `policy_generation()`), so that a reload racing the call's
    // start cannot leave it open.
    std::function<absl::Status()> recheck;
    std::function<uint64_t()> policy_generation;
    uint64_t authorized_generation = 0;
    // When the caller's client certificate expires (optional): the call
    // ends then, UNAUTHENTICATED.
    std::optional<absl::Time> expires;
    std::function<absl::Status()> expired;
  };

  static constexpr size_t kReadBatch = 256;

  // Starts the call: registers with `tail` and begins catching up after
  // `after`. Deletes itself when the call is done.
  static LogSubscription* Start(EventStore* store, LogTail* tail,
                                std::string account, uint64_t after,
                                absl::Duration heartbeat_interval,
                                size_t queue_limit, Hooks hooks) {
    auto* s =
        new LogSubscription(store, tail, std::move(account), after,
                            heartbeat_interval, queue_limit, std::move(hooks));
    s->busy_ = true;  // Held until the first pump is done.
    // Catch up through the head as the client saw it, even where the tail
    // has not offered that far yet: what it then offers again is skipped
    // by position.
    const uint64_t head = store->Head().position;
    const uint64_t offered = tail->Register(s);
    {
      absl::MutexLock lock(&s->mu_);
      s->through_ = std::max(head, offered);
    }
    if (s->hooks_.policy_generation &&
        s->hooks_.policy_generation() != s->hooks_.authorized_generation) {
      s->Recheck();
    }
    s->Pump();
    return s;
  }

  void Recheck() override {
    if (!hooks_.recheck || finishing()) return;
    absl::Status allowed = hooks_.recheck();
    if (!allowed.ok()) EndWith(std::move(allowed), false);
  }

  const std::string& account() const override { return account_; }

  void Offer(const std::shared_ptr<const RecordedEvent>& record) override {
    if (!hooks_.wants(*record)) return;
    bool pump = false;
    {
      absl::MutexLock lock(&mu_);
      if (finishing_ || overflowed_) return;
      if (queued_.size() >= queue_limit_) {
        // Too far behind: drop the queue, read from the store later.
        overflowed_ = true;
        queued_.clear();
        return;
      }
      queued_.push_back(record);
      if (!busy_ && !catching_up_) pump = busy_ = true;
    }
    if (pump) Pump();
  }

  void Tick(uint64_t head, absl::Time now) override {
    if (hooks_.expires.has_value() && now >= *hooks_.expires && !finishing()) {
      EndWith(hooks_.expired ? hooks_.expired()
                             : absl::UnauthenticatedError("certificate expired"),
              false);
      return;
    }
    bool pump = false;
    {
      absl::MutexLock lock(&mu_);
      if (busy_ || catching_up_ || finishing_ ||
          now - last_write_ < heartbeat_interval_) {
        return;
      }
      heartbeat_head_ = head;
      pump = busy_ = true;
    }
    if (pump) Pump();
  }

  uint64_t Progress(uint64_t offered) const override {
    absl::MutexLock lock(&mu_);
    // Everything through `offered` unless something below it waits: a
    // record held by Pump, one being written, the next to catch up on or
    // to read, the next queued one, or those dropped after the last sent.
    uint64_t progress = offered;
    auto below = [&](uint64_t position) {
      progress = std::min(progress, PositionBefore(position));
    };
    if (taken_ != 0) below(taken_);
    if (in_flight_position_ > last_sent_) below(in_flight_position_);
    if (!catch_up_.empty()) below(catch_up_.front()->position);
    if (catching_up_) below(read_next_);
    if (!queued_.empty()) below(queued_.front()->position);
    if (overflowed_) progress = std::min(progress, last_sent_);
    return progress;
  }

  void Close() override {
    EndWith(absl::UnavailableError(""), /*shutdown=*/true);
  }

  void OnCancel() override {
    EndWith(absl::CancelledError("client cancelled"), false);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      // The stream is broken (the client went away): finish now.
      {
        absl::MutexLock lock(&mu_);
        finishing_ = true;
        if (finished_) return;
        finished_ = true;
      }
      this->Finish(
          ToGrpcStatus(absl::CancelledError("client stopped reading")));
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      if (in_flight_position_ != 0) last_sent_ = in_flight_position_;
      last_write_ = absl::Now();
    }
    Pump();  // busy_ is still ours.
  }

  void OnDone() override {
    tail_->Unregister(this);
    if (hooks_.on_done) {
      uint64_t last_sent = 0;
      {
        absl::MutexLock lock(&mu_);
        last_sent = last_sent_;
      }
      hooks_.on_done(last_sent);
    }
    delete this;
  }

 private:
  LogSubscription(EventStore* store, LogTail* tail, std::string account,
                  uint64_t after, absl::Duration heartbeat_interval,
                  size_t queue_limit, Hooks hooks)
      : store_(store),
        tail_(tail),
        account_(std::move(account)),
        heartbeat_interval_(heartbeat_interval),
        queue_limit_(std::max<size_t>(1, queue_limit)),
        hooks_(std::move(hooks)),
        read_next_(after + 1),
        last_sent_(after) {}

  bool finishing() const {
    absl::MutexLock lock(&mu_);
    return finishing_;
  }

  // Ends the call with `status` (UNAVAILABLE on shutdown names the
  // position to resume after) once no write is in flight.
  void EndWith(absl::Status status, bool shutdown) {
    bool finish_now = false;
    {
      absl::MutexLock lock(&mu_);
      if (finishing_) return;
      finishing_ = true;
      end_ = shutdown ? absl::UnavailableError(absl::StrCat(
                            "server is shutting down; resume after position ",
                            last_sent_))
                      : std::move(status);
      if (!busy_) finish_now = busy_ = true;
    }
    if (finish_now) Pump();
  }

  // Does the next piece of work; the caller holds busy_. Returns with a
  // write in flight (busy_ still held), the call finished, or nothing to
  // do (busy_ released).
  void Pump() {
    for (;;) {
      std::shared_ptr<const RecordedEvent> record;
      std::optional<Response> marker;
      uint64_t read_from = 0, read_to = 0;
      bool resync = false;
      absl::Status end;
      {
        absl::MutexLock lock(&mu_);
        if (finishing_) {
          if (finished_) return;
          finished_ = true;
          end = end_;
        } else if (!catch_up_.empty()) {
          record = std::move(catch_up_.front());
          catch_up_.pop_front();
          taken_ = record->position;
        } else if (catching_up_ && read_next_ <= through_) {
          read_from = read_next_;
          read_to = std::min(through_, read_next_ + kReadBatch - 1);
        } else if (catching_up_) {
          catching_up_ = false;
          if (!sent_caught_up_) {
            sent_caught_up_ = true;
            marker = hooks_.caught_up(through_);
          }
        } else if (!queued_.empty()) {
          record = std::move(queued_.front());
          queued_.pop_front();
          taken_ = record->position;
        } else if (overflowed_) {
          resync = true;
        } else if (heartbeat_head_.has_value()) {
          marker = hooks_.heartbeat(*heartbeat_head_);
          heartbeat_head_.reset();
        } else {
          busy_ = false;
          return;
        }
      }
      if (!end.ok()) {
        this->Finish(ToGrpcStatus(end));
        return;
      }
      if (resync) {
        tail_->Resync([this](uint64_t position) {
          absl::MutexLock lock(&mu_);
          overflowed_ = false;
          queued_.clear();
          catching_up_ = true;
          read_next_ = last_sent_ + 1;
          through_ = position;
        });
        continue;
      }
      if (read_to != 0) {
        if (!account_.empty()) {
          ReadAccount(read_from, read_to);
        } else {
          ReadLog(read_from, read_to);
        }
        continue;
      }
      if (record == nullptr && !marker.has_value()) {
        continue;  // Caught up again after a resync: no second marker.
      }
      if (record != nullptr) {
        absl::StatusOr<Response> rendered = hooks_.render(*record);
        absl::MutexLock lock(&mu_);
        taken_ = 0;
        if (!rendered.ok()) {
          finishing_ = true;
          end_ = rendered.status();
          continue;
        }
        if (record->position <= last_sent_) continue;  // Sent already.
        in_flight_ = *std::move(rendered);
        in_flight_position_ = record->position;
      } else {
        absl::MutexLock lock(&mu_);
        in_flight_ = *std::move(marker);
        in_flight_position_ = 0;
      }
      this->StartWrite(&in_flight_);
      return;
    }
  }

  // Catching up on every account: the log itself from `from` through `to`.
  void ReadLog(uint64_t from, uint64_t to) {
    absl::StatusOr<std::vector<RecordedEvent>> batch =
        store_->ReadForward(from, to - from + 1);
    absl::MutexLock lock(&mu_);
    if (!batch.ok() || batch->empty()) {
      finishing_ = true;
      end_ = batch.ok() ? absl::DataLossError(absl::StrCat(
                              "record at position ", from, " missing"))
                        : batch.status();
      return;
    }
    for (RecordedEvent& r : *batch) {
      if (r.position > to) break;
      read_next_ = PositionAfter(r.position);
      if (hooks_.wants(r)) {
        catch_up_.push_back(
            std::make_shared<const RecordedEvent>(std::move(r)));
      }
    }
  }

  // Catching up on one account: its stream only (not every account's
  // records), from the stream version where the last read stopped.
  void ReadAccount(uint64_t from, uint64_t to) {
    uint64_t version;
    {
      absl::MutexLock lock(&mu_);
      version = next_version_;
    }
    absl::StatusOr<std::vector<RecordedEvent>> batch = store_->ReadStream(
        absl::StrCat(kAccountStreamPrefix, account_), version, kReadBatch);
    absl::MutexLock lock(&mu_);
    if (!batch.ok()) {
      finishing_ = true;
      end_ = batch.status();
      return;
    }
    bool done = batch->size() < kReadBatch;
    for (RecordedEvent& r : *batch) {
      if (r.position > to) {
        done = true;  // Offered live.
        break;
      }
      next_version_ = r.stream_version + 1;
      if (r.position < from) continue;  // Sent before.
      if (hooks_.wants(r)) {
        catch_up_.push_back(
            std::make_shared<const RecordedEvent>(std::move(r)));
      }
    }
    if (done) read_next_ = to + 1;
  }

  EventStore* const store_;
  LogTail* const tail_;
  const std::string account_;
  const absl::Duration heartbeat_interval_;
  const size_t queue_limit_;
  const Hooks hooks_;

  mutable absl::Mutex mu_;
  bool busy_ ABSL_GUARDED_BY(mu_) = false;
  bool catching_up_ ABSL_GUARDED_BY(mu_) = true;
  bool sent_caught_up_ ABSL_GUARDED_BY(mu_) = false;
  bool overflowed_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status end_ ABSL_GUARDED_BY(mu_);
  // Next position to read from the store while catching up, through_ the
  // last one to read (offers start after it).
  uint64_t read_next_ ABSL_GUARDED_BY(mu_);
  uint64_t through_ ABSL_GUARDED_BY(mu_) = 0;
  // One account's catch-up: the next version of its stream to read.
  uint64_t next_version_ ABSL_GUARDED_BY(mu_) = 1;
  // The last record written to the client.
  uint64_t last_sent_ ABSL_GUARDED_BY(mu_);
  absl::Time last_write_ ABSL_GUARDED_BY(mu_) = absl::Now();
  std::optional<uint64_t> heartbeat_head_ ABSL_GUARDED_BY(mu_);
  std::deque<std::shared_ptr<const RecordedEvent>> catch_up_
      ABSL_GUARDED_BY(mu_);
  std::deque<std::shared_ptr<const RecordedEvent>> queued_ ABSL_GUARDED_BY(mu_);
  // A record Pump has taken from a queue and not yet written (0: none).
  uint64_t taken_ ABSL_GUARDED_BY(mu_) = 0;
  // The response being written and its record's position (0: a marker).
  Response in_flight_;
  uint64_t in_flight_position_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace poledger

#endif  // POLEDGER_SERVER_SUBSCRIPTION_H_
