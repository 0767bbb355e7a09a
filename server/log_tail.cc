#include "server/log_tail.h"

#include <cstdio>
#include <vector>

#include "base/thread_name.h"
#include "ledger/ledger.h"

namespace poledger {
namespace {

constexpr size_t kBatch = 512;
// Longest the thread waits for the head before it looks at the clock.
constexpr absl::Duration kMaxWait = absl::Milliseconds(100);

}  // namespace

LogTail::LogTail(EventStore* store, absl::Duration tick)
    : store_(store), tick_(tick) {
  {
    absl::MutexLock lock(&mu_);
    position_ = store_->Head().position;
  }
  thread_ = std::thread([this] {
    SetCurrentThreadName("pl-tail");
    Run();
  });
}

LogTail::~LogTail() {
  Stop();
  if (thread_.joinable()) thread_.join();
}

uint64_t LogTail::Register(Subscriber* s) {
  absl::MutexLock lock(&mu_);
  if (stopped_) {
    s->Close();
    return position_;
  }
  if (by_account_[s->account()].insert(s).second) ++count_;
  return position_;
}

void LogTail::Unregister(Subscriber* s) {
  absl::MutexLock lock(&mu_);
  auto it = by_account_.find(s->account());
  if (it == by_account_.end()) return;
  if (it->second.erase(s) > 0) --count_;
  if (it->second.empty()) by_account_.erase(it);
}

void LogTail::Stop() {
  absl::MutexLock lock(&mu_);
  if (stopped_) return;
  stopped_ = true;
  for (auto& [account, subscribers] : by_account_) {
    for (Subscriber* s : subscribers) s->Close();
  }
}

void LogTail::RecheckAll() {
  absl::MutexLock lock(&mu_);
  for (auto& [account, subscribers] : by_account_) {
    for (Subscriber* s : subscribers) s->Recheck();
  }
}

size_t LogTail::subscribers() const {
  absl::MutexLock lock(&mu_);
  return count_;
}

uint64_t LogTail::MaxLag() const {
  const uint64_t head = store_->Head().position;
  absl::MutexLock lock(&mu_);
  uint64_t lag = 0;
  for (const auto& [account, subscribers] : by_account_) {
    for (const Subscriber* s : subscribers) {
      const uint64_t progress = s->Progress(position_);
      if (progress < head) lag = std::max(lag, head - progress);
    }
  }
  return lag;
}

void LogTail::Run() {
  absl::Time next_tick = absl::Now() + tick_;
  for (;;) {
    uint64_t position;
    {
      absl::MutexLock lock(&mu_);
      if (stopped_) return;
      position = position_;
    }
    const absl::Time wake = std::min(next_tick, absl::Now() + kMaxWait);
    const uint64_t head = store_->WaitForPosition(position, wake);
    while (position < head) {
      {
        absl::MutexLock lock(&mu_);
        if (stopped_) return;
        if (count_ == 0) {
          // Nobody to offer these records to: skip them rather than read
          // and decode the whole write rate. Register hands a new
          // subscriber position_ under this lock, so it reads up to here
          // from the store itself and gets every later record offered.
          position_ = position = head;
          break;
        }
      }
      absl::StatusOr<std::vector<RecordedEvent>> batch =
          store_->ReadForward(position + 1, kBatch);
      if (!batch.ok() || batch->empty()) {
        // A record that does not read: subscribers meet it themselves when
        // they resync and end with its error; the tail tries again later.
        if (!batch.ok()) {
          std::fprintf(stderr, "log tail: %s\n",
                       batch.status().ToString().c_str());
        }
        absl::SleepFor(kMaxWait);
        break;
      }
      absl::MutexLock lock(&mu_);
      if (stopped_) return;
      for (RecordedEvent& r : *batch) {
        auto record = std::make_shared<const RecordedEvent>(std::move(r));
        const std::string account = AccountOfStream(record->stream_id);
        // Subscribers of this account, then those of every account ("").
        if (!account.empty()) {
          if (auto it = by_account_.find(account); it != by_account_.end()) {
            for (Subscriber* s : it->second) s->Offer(record);
          }
        }
        if (auto it = by_account_.find(""); it != by_account_.end()) {
          for (Subscriber* s : it->second) s->Offer(record);
        }
        position_ = position = record->position;
      }
    }
    const absl::Time now = absl::Now();
    if (now >= next_tick) {
      next_tick = now + tick_;
      absl::MutexLock lock(&mu_);
      for (auto& [account, subscribers] : by_account_) {
        for (Subscriber* s : subscribers) s->Tick(position_, now);
      }
    }
  }
}

}  // namespace poledger
