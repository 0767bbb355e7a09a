// Ledger is the application service between the gRPC adapters and the
// domain: it keeps every account's state in memory (rebuilt at start from
// the latest snapshot plus the rest of the log), runs commands through
// core::Decide, appends their events to the account's stream with the
// state's version as the expected version, and applies them.
//
// Each account's events form one stream, "account/<account id>": the
// account is the consistency boundary (limits and matching look at all its
// purchase orders), so commands of one account run one at a time while
// commands of different accounts run, and group-commit, concurrently.
//
// Thread safety: safe for concurrent use.
#ifndef POLEDGER_LEDGER_LEDGER_H_
#define POLEDGER_LEDGER_LEDGER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/account.h"
#include "core/commands.h"
#include "eventstore/event_store.h"
#include "ledger/clock.h"
#include "ledger/personal_data.h"
#include "ledger/record_applier.h"
#include "poledger/v1/events.pb.h"

namespace poledger {

inline constexpr char kAccountStreamPrefix[] = "account/";

// Returns INVALID_ARGUMENT (field account_id) unless `id` is 1-64 letters,
// digits, '-' or '_'.
absl::Status ValidateAccountId(absl::string_view id);

// Returns the stream of account `account_id` ("account/<id>").
std::string AccountStream(const std::string& account_id);

// Returns the account id of an account stream, or "" for other streams.
std::string AccountOfStream(absl::string_view stream_id);

// Rebuilds an account as of log position `position` (inclusive) from the
// log alone. DATA_LOSS if an event does not decode or apply.
absl::StatusOr<core::AccountState> RebuildAccountAt(
    const EventStore& store, const std::string& account_id, uint64_t position);

// Returns the position of the account's last event at or before `time`
// (0 if none).
absl::StatusOr<uint64_t> AccountPositionAt(const EventStore& store,
                                           const std::string& account_id,
                                           absl::Time time);

// An event that changed one purchase order (see PurchaseOrderChanges).
struct PurchaseOrderChange {
  uint64_t position = 0;
  absl::Time time;
  std::string event_type;
  std::string actor;
};

// The events of the account that changed `purchase_order_id` (each one
// after which the purchase order differs: created, edited, an invoice
// matched to it, deleted...), oldest first: the last `limit` of them, and
// whether older ones were left out. NOT_FOUND if none ever did. DATA_LOSS
// as RebuildAccountAt.
struct PurchaseOrderHistory {
  std::vector<PurchaseOrderChange> changes;
  bool truncated = false;
};
absl::StatusOr<PurchaseOrderHistory> PurchaseOrderChanges(
    const EventStore& store, const std::string& account_id,
    const std::string& purchase_order_id, size_t limit);

// Who asks, for the log's metadata and idempotency.
struct RequestContext {
  std::string account_id;
  // A retry with the same (account, request id) returns the first result.
  std::string request_id;
  std::string actor;
  std::string correlation_id;
};

// How commands run.
struct ExecuteOptions {
  // Decide and answer exactly as a real run would, and write nothing: a
  // preview. Its events carry position 0 (they are not logged) and the
  // stream versions they would have had.
  bool validate_only = false;
  // Called once the events are applied, with the account's state then,
  // under its lock (quick, and no call into the ledger): an answer built
  // here shows what the command did, never a later command's change. Not
  // called for a preview, a repeated request or a command that changed
  // nothing.
  std::function<void(const core::AccountState&)> on_applied;
};

struct ExecuteResult {
  // The events the command appended, or, for a repeated request, those the
  // first one appended. Empty when the command changed nothing.
  std::vector<LoggedEvent> events;
  bool duplicate = false;
};

// A saved snapshot (position 0: none since start or load).
struct LedgerSnapshotInfo {
  uint64_t position = 0;
  absl::Time saved_at = absl::InfinitePast();
  absl::Duration took = absl::ZeroDuration();
};

struct LedgerOptions {
  // Called after every snapshot attempt (saved, or the error), on the
  // thread that made it.
  // Default: none
  std::function<void(const LedgerSnapshotInfo&, const absl::Status&)>
      on_snapshot;

  // Save a snapshot after this many events since the last one; 0: never
  // automatically. A restart replays at most this many events (plus those
  // of a snapshot in progress): ~130k events/s on the 2-vCPU development
  // machine, so ~2 s at the default. Lower trades write throughput for a
  // faster restart.
  // Default: 250000
  uint64_t snapshot_every_events = 250000;

  // Threads that apply appended commands, answer them and start the next
  // command of the account, off the event store's commit thread.
  // Default: 2
  int completion_threads = 2;

  // Load every account in the background after Open (the warm-up), rather
  // than each on its first use only.
  // Default: true
  bool warm_up = true;

  // Called once the warm-up has loaded every account (or met an account
  // that does not load: its error), on the warm-up's thread.
  // Default: none
  std::function<void(size_t accounts, absl::Duration took,
                     const absl::Status& status)>
      on_warm_up;

  // The personal data keys (not owned; must outlive the ledger): contacts
  // are sealed with them on the way into the log and snapshots, and opened
  // on the way out (README "Personal data"). None: contacts are kept as
  // given, for tests and tools that hold no personal data.
  // Default: none
  PersonalData* personal_data = nullptr;
};

class Ledger {
 public:
  // Opens the ledger on `store`: lists the accounts of the latest snapshot
  // and of the records after it, and returns. Each account's state (its
  // snapshot parts, then its events after them) is loaded on its first use
  // or by the warm-up, whichever comes first; an account whose events do
  // not apply answers every call with DATA_LOSS. Loading at open instead
  // would make the start as slow as the snapshot is large (10M invoices:
  // seconds).
  // `store` and `clock` are not owned and must outlive the ledger.
  // Errors: DATA_LOSS if a snapshot part's key is not an account id, or
  // whatever the store reports.
  static absl::StatusOr<std::unique_ptr<Ledger>> Open(EventStore* store,
                                                      const Clock* clock,
                                                      LedgerOptions options);
  ~Ledger();

  // Decides `command` for ctx.account_id at the clock's time, appends the
  // events and applies them. Errors are the domain's (core/errors.h), the
  // store's, or INVALID_ARGUMENT for a bad account id. Blocks until done.
  absl::StatusOr<ExecuteResult> Execute(const RequestContext& ctx,
                                        const core::Command& command);

  using ExecuteCallback = std::function<void(absl::StatusOr<ExecuteResult>)>;

  // Like Execute, but returns at once: `done` runs exactly once, when the
  // command is applied or refused, possibly on the event store's thread (it
  // must not block). Commands of one account run one at a time, in the order
  // they arrive; while one waits for its append, later ones queue.
  void ExecuteAsync(const RequestContext& ctx, core::Command command,
                    ExecuteCallback done);
  void ExecuteAsync(const RequestContext& ctx, core::Command command,
                    const ExecuteOptions& options, ExecuteCallback done);

  // One result per command of a batch, in the batch's order.
  using BatchResults = std::vector<absl::StatusOr<ExecuteResult>>;
  using BatchCallback = std::function<void(BatchResults)>;

  // Runs `commands` of one account in order, as one command of the account
  // (ExecuteAsync): each is decided on the state the ones before it leave
  // (one refused leaves it as it was, with its own error), and the events
  // of all are appended together, atomically. A repeated invoice answers
  // the first one's result, also when the first is earlier in the batch.
  // `done` runs once with a result per command. ctx.request_id must be
  // empty unless there is one command (INVALID_ARGUMENT for all).
  void ExecuteBatchAsync(const RequestContext& ctx,
                         std::vector<core::Command> commands,
                         const ExecuteOptions& options, BatchCallback done);
  // Like ExecuteBatchAsync; blocks until done.
  BatchResults ExecuteBatch(const RequestContext& ctx,
                            std::vector<core::Command> commands,
                            const ExecuteOptions& options = {});

  // Runs `fn` on the account's state under its read lock. An unknown account
  // reads as empty. `fn` must not call back into the ledger.
  //
  // The state's `invoices` holds only the entries changed since the last
  // snapshot and those looked up since (by commands or FindInvoice): a
  // snapshot saves each entry as its own part, and the entries saved and
  // not changed since leave memory, so that memory follows the recent
  // traffic, not the history. FindInvoice and ReadWholeState read the rest.
  absl::Status Read(const std::string& account_id,
                    const std::function<void(const core::AccountState&)>& fn);

  // The account's entry of an invoice or credit memo, or std::nullopt if it
  // has none: from memory, or else from its saved snapshot part.
  absl::StatusOr<std::optional<core::InvoiceEntry>> FindInvoice(
      const std::string& account_id, const std::string& invoice_id);

  // The account's state with every invoice and credit memo (those Read
  // shows, and the saved ones it does not hold). It costs what the
  // account's history costs: for audits, tests and listings. Exact when no
  // command of the account runs meanwhile; otherwise entries recorded
  // after the state's version are left out.
  absl::StatusOr<core::AccountState> ReadWholeState(
      const std::string& account_id);

  // The number of invoice and credit memo entries all accounts hold in
  // memory.
  size_t InvoicesInMemory();

  // Reads the events of an account's stream at versions [from, ...), up to
  // `limit`.
  absl::StatusOr<std::vector<LoggedEvent>> ReadAccountEvents(
      const std::string& account_id, uint64_t from_version, size_t limit) const;

  // The event at `version` of the account's stream, and, if it records an
  // invoice or credit memo, the notifications it raised (logged right after
  // it, in the same append). NOT_FOUND if the stream has no such version.
  absl::StatusOr<ExecuteResult> ReadRecord(const std::string& account_id,
                                           uint64_t version) const;
  // ReadRecord for each of `versions`, in their order. Versions close
  // together are read together: a batch's events share one record, which
  // is then read and verified once, not once per version.
  std::vector<absl::StatusOr<ExecuteResult>> ReadRecords(
      const std::string& account_id,
      const std::vector<uint64_t>& versions) const;

  // Runs Tick for every account at the clock's time, stopping early once
  // `stop` (if any) returns true. Returns the number of events appended,
  // or the first account's error: one account's failure (e.g. DATA_LOSS)
  // does not keep the others from their ticks.
  absl::StatusOr<int> TickAll(const std::function<bool()>& stop = nullptr);

  // The ids of every account the ledger holds.
  std::vector<std::string> AccountIds();

  // Whether every account listed at Open is loaded.
  bool AllLoaded() const { return all_loaded_.load(std::memory_order_acquire); }

  // Rebuilds an account as of log position `position` (inclusive), from the
  // log alone.
  absl::StatusOr<core::AccountState> AccountAt(const std::string& account_id,
                                               uint64_t position) const;

  // Saves what changed since the last snapshot, as the state at exactly
  // one log position P (the returned one): each account changed since the
  // last snapshot without its invoices as one snapshot part (key: the
  // account id), and each of its invoices that changed as its own part
  // (key: account id, NUL, invoice id). With the parts saved before, they
  // are the state after the log's first P records; a restart loads them and
  // replays only the records after P. Commands keep running meanwhile: an
  // account that a command changes before the snapshot has saved it is
  // saved first, as it was at P (copy on write).
  absl::StatusOr<uint64_t> CreateSnapshot();

  // The last saved snapshot (position 0: none since start or load).
  using SnapshotInfo = LedgerSnapshotInfo;
  SnapshotInfo last_snapshot() const {
    absl::MutexLock lock(&snapshot_info_mu_);
    return snapshot_info_;
  }

  // Applies records that a replica copied into the store
  // (EventStore::Replicate): the log's next records after those applied,
  // already durable. Accounts not loaded yet read them at their load.
  // Errors: FAILED_PRECONDITION if they are not the next records;
  // DATA_LOSS if one does not decode or apply (the replica must stop: its
  // state no longer follows the log).
  absl::Status ApplyReplicated(const std::vector<RecordedEvent>& records);

  // The log position through which every record is applied.
  uint64_t applied_through() const {
    absl::MutexLock lock(&apply_mu_);
    return applied_through_;
  }
  EventStore* store() const { return store_; }
  // The personal data keys (LedgerOptions), or nullptr.
  PersonalData* personal_data() const { return options_.personal_data; }
  const Clock* clock() const { return clock_; }

 private:
  struct Pending {
    RequestContext ctx;
    std::vector<core::Command> commands;
    ExecuteOptions options;
    BatchCallback done;
  };

  struct Account {
    // One command at a time: `busy` while one is deciding or appending;
    // later ones wait in `pending`.
    absl::Mutex queue_mu;
    bool busy ABSL_GUARDED_BY(queue_mu) = false;
    std::deque<Pending> pending ABSL_GUARDED_BY(queue_mu);
    // Held briefly: to decide (shared) and to apply (exclusive).
    absl::Mutex state_mu;
    core::AccountState state ABSL_GUARDED_BY(state_mu);
    // The invoice entries the running (or last) command reads: eviction
    // keeps them, so that what it decided on is still there to apply to.
    std::vector<std::string> pinned ABSL_GUARDED_BY(state_mu);
    // Whether some of its invoice entries may be on disk only (saved and
    // dropped, or not loaded at a restart); until then a missing entry is
    // no entry, and LoadInvoicesFor looks nothing up.
    bool invoices_on_disk ABSL_GUARDED_BY(state_mu) = false;
    // Whether `state` holds the account (set under apply_mu_ too): false
    // for an account listed at Open until LoadAccount installs its state;
    // records copied by a replica meanwhile are left to that load.
    bool installed ABSL_GUARDED_BY(state_mu) = true;
    // Accounts listed at Open are loaded once, on first use (EnsureLoaded);
    // those created later start loaded.
    std::atomic<bool> loaded{false};
    absl::Mutex load_mu;
    // The load's outcome: written once under load_mu before `loaded` is
    // set, read only after `loaded` is seen set.
    absl::Status load_status;
  };

  Ledger(EventStore* store, const Clock* clock, LedgerOptions options)
      : store_(store), clock_(clock), options_(options) {}
  // Lists the accounts (Open).
  absl::Status Load();
  // Loads `account` unless it is loaded; returns the load's outcome. Takes
  // no lock of the ledger's but apply_mu_ (after loading).
  absl::Status EnsureLoaded(Account* account);
  absl::Status LoadAccount(Account* account);
  // Loads every account listed at Open.
  absl::Status LoadAll();
  void WarmUp();
  // Runs `first`, then queued commands, until one is left appending.
  void RunCommands(Account* account, Pending first);
  // Starts a command: returns true if it completed at once, false if its
  // append is in flight (its callback continues with the queue).
  bool Start(Account* account, Pending p);
  // Pops the account's next command, or marks the account idle.
  std::optional<Pending> TakeNext(Account* account);

  // A command whose events are appended, waiting for its turn to apply.
  struct Appended {
    Account* account;
    std::shared_ptr<std::vector<v1::AccountEvent>> events;
    std::shared_ptr<Pending> pending;
    uint64_t version;
    absl::Time now;
    AppendResult positions;
    // Per command: its answer (set before the append for those refused or
    // repeating an earlier record; by ApplyLocked for the others) and which
    // of `events` are its own, or which one it repeats.
    BatchResults results;
    struct Item {
      size_t first = 0;
      size_t count = 0;
      std::optional<size_t> repeats;
    };
    std::vector<Item> items;
    // The personal data keys the append writes (PersonalData::Seal).
    std::vector<KeyEntry> keys;
  };
  // Continues a command once the store has answered its append: applies
  // appended commands in log order, answers them and runs their accounts'
  // next commands. Runs on a completion thread.
  void OnAppended(std::shared_ptr<Appended> appended,
                  absl::StatusOr<AppendResult> result);
  // Applies one command's events to its account (copying the account into
  // a snapshot in progress first, if that one has not saved it yet).
  void ApplyLocked(Appended& appended) ABSL_EXCLUSIVE_LOCKS_REQUIRED(apply_mu_);
  // If a snapshot in progress has not saved `account` yet, saves it now, as
  // it is (the state at the snapshot's position).
  void SaveIntoCutLocked(Account* account)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(apply_mu_, account->state_mu);
  // Sets the results of the commands that decided events (or repeat one
  // of the batch) from a.events, which it takes over, logged from
  // `first_position` (0: a preview, not logged).
  static void AnswerItems(Appended& a, uint64_t first_position);
  // Sets `error` as the result of those commands.
  static void FailItems(Appended& a, const absl::Status& error);
  // Answers a command and runs the account's next one.
  void Finish(Account* account, Pending& pending, BatchResults results);
  // Queues work for the completion threads.
  void Post(std::function<void()> work);
  // Whether one append is in flight, and no other.
  bool Alone();
  void WorkLoop();
  // Pins the invoice entries that `commands` read (core::InvoicesReadBy),
  // and adds to the account's state the saved ones it does not hold. Runs
  // as the account's command starts; the pins last until the next one's.
  absl::Status LoadInvoicesFor(Account* account,
                               const std::vector<core::Command>& commands);
  // After a snapshot is saved: drops from memory every entry that is saved
  // and unchanged since, but those pinned.
  void EvictSavedInvoices();
  // Records that `account` and its entries `invoices` changed since the
  // last snapshot.
  void MarkChanged(Account* account, const std::vector<std::string>& invoices)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(apply_mu_);
  Account* FindOrCreate(const std::string& account_id);
  absl::StatusOr<ExecuteResult> ReadAppended(
      const AppendResult& appended) const;
  // Decodes a record of the log, its contacts opened.
  absl::StatusOr<LoggedEvent> Decode(const RecordedEvent& record) const;
  // Forgets the key of the subject that `record` erases, if it is an
  // erasure (before it applies, on any node).
  absl::Status ForgetErased(const RecordedEvent& record);
  void MaybeSnapshot(uint64_t position);

  // Accounts changed since the last snapshot, with the ids of their
  // invoices that changed: a snapshot saves only these.
  using DirtyAccounts =
      absl::flat_hash_map<Account*, absl::flat_hash_set<std::string>>;
  // Appends the snapshot parts of `account` (its state without invoices,
  // and the invoices in `invoices`) to `parts`; returns their bytes.
  static size_t AppendParts(const Account& account,
                            const absl::flat_hash_set<std::string>& invoices,
                            std::vector<SnapshotPart>& parts)
      ABSL_SHARED_LOCKS_REQUIRED(account.state_mu);

  // A snapshot in progress: the log position it saves, and the accounts it
  // has yet to save.
  struct Cut {
    uint64_t position = 0;
    absl::Mutex mu;
    DirtyAccounts unsaved ABSL_GUARDED_BY(mu);
    // Saved by commands that were about to change an unsaved account.
    std::vector<SnapshotPart> copied ABSL_GUARDED_BY(mu);
  };

  EventStore* const store_;
  const Clock* const clock_;
  const LedgerOptions options_;

  absl::Mutex accounts_mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<Account>> accounts_
      ABSL_GUARDED_BY(accounts_mu_);

  // Completion work and the threads that run it.
  absl::Mutex work_mu_;
  std::deque<std::function<void()>> work_ ABSL_GUARDED_BY(work_mu_);
  bool stopping_ ABSL_GUARDED_BY(work_mu_) = false;
  std::vector<std::thread> workers_;

  // Appends whose callbacks have not finished; the destructor waits.
  absl::Mutex in_flight_mu_;
  int in_flight_ ABSL_GUARDED_BY(in_flight_mu_) = 0;

  // One snapshot at a time.
  absl::Mutex snapshot_mu_;
  mutable absl::Mutex snapshot_info_mu_;
  SnapshotInfo snapshot_info_ ABSL_GUARDED_BY(snapshot_info_mu_);
  std::atomic<uint64_t> last_snapshot_position_{0};

  // Commands are applied in log order, one at a time: every position up to
  // applied_through_ is applied and none after it, so the accounts always
  // hold the state at one log position. Appended commands that arrive ahead
  // of their turn wait in waiting_ (by first position).
  // Lock order: apply_mu_, then an account's state_mu, then a Cut's mu.
  mutable absl::Mutex apply_mu_;
  uint64_t applied_through_ ABSL_GUARDED_BY(apply_mu_) = 0;
  std::map<uint64_t, std::shared_ptr<Appended>> waiting_
      ABSL_GUARDED_BY(apply_mu_);
  DirtyAccounts dirty_ ABSL_GUARDED_BY(apply_mu_);
  Cut* cut_ ABSL_GUARDED_BY(apply_mu_) = nullptr;

  // The accounts listed at Open; set by Load, then only read.
  std::vector<Account*> listed_;
  std::atomic<bool> all_loaded_{false};
  std::atomic<bool> stop_warm_up_{false};
  std::thread warm_up_thread_;

  absl::Mutex snapshot_thread_mu_;
  bool snapshot_running_ ABSL_GUARDED_BY(snapshot_thread_mu_) = false;
  std::thread snapshot_thread_;
};

}  // namespace poledger

#endif  // POLEDGER_LEDGER_LEDGER_H_
