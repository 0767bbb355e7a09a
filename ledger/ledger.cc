#include "ledger/ledger.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <utility>
#include <variant>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "base/status_macros.h"
#include "base/thread_name.h"
#include "core/decide.h"
#include "core/errors.h"
#include "eventstore/positions.h"
#include "poledger/v1/snapshot.pb.h"

namespace poledger {
namespace {

// The event type recorded in the log: the name of the payload's oneof case.
std::string EventTypeOf(const v1::AccountEvent& event) {
  const google::protobuf::FieldDescriptor* field =
      v1::AccountEvent::descriptor()->FindFieldByNumber(event.event_case());
  return field == nullptr ? "unknown" : field->name();
}

// OK unless `command` brings contacts (personal data) to a ledger that
// cannot seal them.
absl::Status CheckSealableWith(const PersonalData* keys,
                               const core::Command& command) {
  if (keys == nullptr || keys->can_seal()) return absl::OkStatus();
  const v1::PurchaseOrderHeader* header = nullptr;
  if (auto* c = std::get_if<core::CreatePurchaseOrder>(&command)) {
    header = &c->header;
  } else if (auto* u = std::get_if<core::UpdatePurchaseOrder>(&command)) {
    header = &u->header;
  } else if (std::holds_alternative<core::ErasePersonalData>(command)) {
    return core::DomainError(absl::StatusCode::kFailedPrecondition,
                             core::reason::kNoDataKey,
                             "erasing personal data needs --data-key-file");
  }
  if (header == nullptr) return absl::OkStatus();
  for (const v1::Contact& c : header->contacts()) {
    if (c.erased() || !c.sealed().empty()) continue;
    return core::DomainError(
        absl::StatusCode::kFailedPrecondition, core::reason::kNoDataKey,
        "contacts are personal data, which this server seals with keys it "
        "does not have: start it with --data-key-file");
  }
  return absl::OkStatus();
}

// Whether `event` is a notification raised by the invoice or credit memo
// that `record` logged.
bool RaisedBy(const v1::AccountEvent& event, const v1::AccountEvent& record) {
  if (!event.has_notification_raised()) return false;
  const std::string& invoice = event.notification_raised().invoice_id();
  if (invoice.empty()) return false;
  if (record.has_invoice_recorded()) {
    return invoice == record.invoice_recorded().invoice().invoice_id();
  }
  if (record.has_credit_memo_recorded()) {
    return invoice == record.credit_memo_recorded().credit_memo().invoice_id();
  }
  return false;
}

// At most this many notifications follow one record (one per threshold of
// a line; the domain allows a few).
constexpr size_t kMaxRaisedWith = 32;

}  // namespace

absl::Status ValidateAccountId(absl::string_view id) {
  if (id.empty() || id.size() > 64) {
    return core::InvalidField("account_id", "must be 1 to 64 characters");
  }
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' &&
        c != '_') {
      return core::InvalidField("account_id",
                                "may hold only letters, digits, '-' and '_'");
    }
  }
  return absl::OkStatus();
}

std::string AccountStream(const std::string& account_id) {
  return absl::StrCat(kAccountStreamPrefix, account_id);
}

std::string AccountOfStream(absl::string_view stream_id) {
  if (!absl::StartsWith(stream_id, kAccountStreamPrefix)) return "";
  return std::string(stream_id.substr(sizeof(kAccountStreamPrefix) - 1));
}

absl::StatusOr<std::unique_ptr<Ledger>> Ledger::Open(EventStore* store,
                                                     const Clock* clock,
                                                     LedgerOptions options) {
  std::unique_ptr<Ledger> ledger(new Ledger(store, clock, options));
  RETURN_IF_ERROR(ledger->Load());
  for (int i = 0; i < std::max(1, options.completion_threads); ++i) {
    ledger->workers_.emplace_back([l = ledger.get()] {
      SetCurrentThreadName("pl-complete");
      l->WorkLoop();
    });
  }
  if (ledger->listed_.empty()) {
    ledger->all_loaded_ = true;
  } else if (options.warm_up) {
    ledger->warm_up_thread_ = std::thread([l = ledger.get()] {
      SetCurrentThreadName("pl-warm-up");
      l->WarmUp();
    });
  }
  return ledger;
}

absl::Status Ledger::Load() {
  absl::MutexLock lock(&accounts_mu_);
  auto list = [&](absl::string_view account_id) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    std::unique_ptr<Account>& account = accounts_[account_id];
    if (account != nullptr) return;
    account = std::make_unique<Account>();
    account->state.account_id = std::string(account_id);
    account->installed = false;
    listed_.push_back(account.get());
  };
  // The accounts of the snapshot: its top-level parts (the store skips the
  // invoices under them).
  ASSIGN_OR_RETURN(const uint64_t snapshot_position,
                   store_->ReadSnapshotParts(
                       {.top_level_only = true},
                       [&](absl::string_view key, absl::string_view) {
                         if (!ValidateAccountId(key).ok()) {
                           return absl::DataLossError(absl::StrCat(
                               "the snapshot has a part ", core::Quote(key),
                               " that names no account"));
                         }
                         list(key);
                         return absl::OkStatus();
                       }));
  last_snapshot_position_ = snapshot_position;
  // And those of the records after it: accounts created since.
  uint64_t next = PositionAfter(snapshot_position);
  for (;;) {
    ASSIGN_OR_RETURN(std::vector<RecordedEvent> batch,
                     store_->ReadForward(next, 4096));
    if (batch.empty()) break;
    for (const RecordedEvent& record : batch) {
      next = PositionAfter(record.position);
      const std::string account_id = AccountOfStream(record.stream_id);
      if (!account_id.empty()) list(account_id);
    }
  }
  absl::MutexLock apply_lock(&apply_mu_);
  applied_through_ = next - 1;
  return absl::OkStatus();
}

absl::Status Ledger::EnsureLoaded(Account* account) {
  if (!account->loaded.load(std::memory_order_acquire)) {
    absl::MutexLock lock(&account->load_mu);
    if (!account->loaded.load(std::memory_order_relaxed)) {
      account->load_status = LoadAccount(account);
      account->loaded.store(true, std::memory_order_release);
    }
  }
  return account->load_status;
}

absl::Status Ledger::LoadAccount(Account* account) {
  std::string id;
  {
    absl::ReaderMutexLock state_lock(&account->state_mu);
    id = account->state.account_id;
  }
  core::AccountState state;
  state.account_id = id;
  // The account's snapshot part, without its invoices: those are read one
  // by one when a command needs them (LoadInvoicesFor).
  ASSIGN_OR_RETURN(std::optional<std::string> part,
                   store_->ReadSnapshotPart(id));
  if (part.has_value()) {
    v1::AccountSnapshot a;
    if (!a.ParseFromString(*part) || a.account_id() != id) {
      return absl::DataLossError(absl::StrCat(
          "the snapshot of account ", core::Quote(id), " does not decode"));
    }
    if (options_.personal_data != nullptr) {
      for (v1::PurchaseOrderSnapshot& po : *a.mutable_purchase_orders()) {
        RETURN_IF_ERROR(options_.personal_data->OpenContacts(
            id, *po.mutable_header()->mutable_contacts()));
      }
    }
    ASSIGN_OR_RETURN(state, core::FromSnapshot(a));
  }
  // Then its events after the part. No command of this account has run
  // since Open, so these are all it has, but for records a replica copies
  // meanwhile (ApplyReplicated): those up to applied_through_ are replayed
  // below, under apply_mu_, and the later ones applied once it is installed.
  absl::flat_hash_set<std::string> changed;
  bool replayed = false;
  // Only an account with a saved part may have saved invoice entries.
  const EventStore* saved = part.has_value() ? store_ : nullptr;
  auto replay = [&](uint64_t through) -> absl::Status {
    for (;;) {
      ASSIGN_OR_RETURN(
          std::vector<RecordedEvent> records,
          store_->ReadStream(AccountStream(id), state.version + 1, 4096));
      if (records.empty()) return absl::OkStatus();
      for (const RecordedEvent& record : records) {
        if (record.position > through) return absl::OkStatus();
        RETURN_IF_ERROR(ForgetErased(record));
        ASSIGN_OR_RETURN(
            std::vector<std::string> touched,
            ApplyRecord(state, record, saved, options_.personal_data));
        for (std::string& invoice : touched) changed.insert(std::move(invoice));
        replayed = true;
      }
    }
  };
  uint64_t applied;
  {
    absl::MutexLock apply_lock(&apply_mu_);
    applied = applied_through_;
  }
  RETURN_IF_ERROR(replay(applied));
  // The replayed entries are not in the saved snapshot: the next one saves
  // them (and keeps them in memory until then).
  absl::MutexLock apply_lock(&apply_mu_);
  RETURN_IF_ERROR(replay(applied_through_));
  absl::MutexLock state_lock(&account->state_mu);
  account->state = std::move(state);
  account->installed = true;
  // Its saved invoices were not loaded.
  account->invoices_on_disk = part.has_value();
  if (replayed) {
    dirty_[account].insert(changed.begin(), changed.end());
  }
  return absl::OkStatus();
}

absl::Status Ledger::LoadInvoicesFor(
    Account* account, const std::vector<core::Command>& commands) {
  std::vector<std::string> read;
  for (const core::Command& c : commands) {
    for (std::string& id : core::InvoicesReadBy(c)) {
      read.push_back(std::move(id));
    }
  }
  std::string account_id;
  uint64_t version;
  absl::flat_hash_set<std::string> missing;
  {
    // Pinned before anything is looked at: from here on, eviction keeps
    // the entries found in memory.
    absl::MutexLock state_lock(&account->state_mu);
    account_id = account->state.account_id;
    version = account->state.version;
    if (account->invoices_on_disk) {
      for (const std::string& id : read) {
        if (!account->state.invoices.contains(id)) missing.insert(id);
      }
    }
    account->pinned = std::move(read);
  }
  if (missing.empty()) return absl::OkStatus();
  std::vector<v1::InvoiceSnapshot> found;
  for (const std::string& id : missing) {
    ASSIGN_OR_RETURN(std::optional<v1::InvoiceSnapshot> saved,
                     ReadSavedInvoice(*store_, account_id, id, version));
    if (saved.has_value()) found.push_back(std::move(*saved));
  }
  if (found.empty()) return absl::OkStatus();
  // The account runs only these commands: nothing else adds entries
  // meanwhile.
  absl::MutexLock state_lock(&account->state_mu);
  for (const v1::InvoiceSnapshot& invoice : found) {
    RETURN_IF_ERROR(core::AddInvoiceSnapshot(account->state, invoice));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<core::InvoiceEntry>> Ledger::FindInvoice(
    const std::string& account_id, const std::string& invoice_id) {
  std::optional<core::InvoiceEntry> entry;
  uint64_t version = 0;
  RETURN_IF_ERROR(Read(account_id, [&](const core::AccountState& s) {
    version = s.version;
    if (auto it = s.invoices.find(invoice_id); it != s.invoices.end()) {
      entry = it->second;
    }
  }));
  if (entry.has_value()) return entry;
  // Not in memory: saved before it left (eviction saves first, and an
  // append saves what it records), or none.
  ASSIGN_OR_RETURN(std::optional<v1::InvoiceSnapshot> saved,
                   ReadSavedInvoice(*store_, account_id, invoice_id, version));
  if (saved.has_value()) entry = core::InvoiceEntryOf(*saved);
  return entry;
}

absl::StatusOr<core::AccountState> Ledger::ReadWholeState(
    const std::string& account_id) {
  core::AccountState state;
  RETURN_IF_ERROR(
      Read(account_id, [&](const core::AccountState& s) { state = s; }));
  RETURN_IF_ERROR(
      store_
          ->ReadSnapshotParts(
              {.family = account_id},
              [&](absl::string_view key, absl::string_view blob) {
                const size_t nul = key.find('\0');
                if (nul == key.npos) return absl::OkStatus();
                const absl::string_view id = key.substr(nul + 1);
                if (state.invoices.contains(id)) return absl::OkStatus();
                v1::InvoiceSnapshot invoice;
                if (!invoice.ParseFromArray(blob.data(),
                                            static_cast<int>(blob.size())) ||
                    invoice.invoice_id() != id) {
                  return absl::DataLossError(
                      absl::StrCat("the snapshot of invoice ", core::Quote(id),
                                   " of account ", core::Quote(account_id),
                                   " does not decode"));
                }
                // Saved by a snapshot after the state was read.
                if (invoice.recorded_version() > state.version) {
                  return absl::OkStatus();
                }
                return core::AddInvoiceSnapshot(state, invoice);
              })
          .status());
  return state;
}

size_t Ledger::InvoicesInMemory() {
  size_t n = 0;
  absl::ReaderMutexLock lock(&accounts_mu_);
  for (const auto& [id, account] : accounts_) {
    absl::ReaderMutexLock state_lock(&account->state_mu);
    n += account->state.invoices.size();
  }
  return n;
}

void Ledger::EvictSavedInvoices() {
  std::vector<Account*> accounts;
  {
    absl::ReaderMutexLock lock(&accounts_mu_);
    accounts.reserve(accounts_.size());
    for (const auto& [id, account] : accounts_) {
      accounts.push_back(account.get());
    }
  }
  for (Account* account : accounts) {
    core::AccountState::InvoiceMap dropped;
    absl::MutexLock apply_lock(&apply_mu_);
    absl::MutexLock state_lock(&account->state_mu);
    auto& invoices = account->state.invoices;
    if (invoices.empty()) continue;
    // Those changed since the snapshot's cut stay until one saves them;
    // those pinned stay for the command that reads them.
    core::AccountState::InvoiceMap kept;
    auto keep = [&](const std::string& id) {
      if (auto it = invoices.find(id); it != invoices.end()) kept.insert(*it);
    };
    if (auto dirty = dirty_.find(account); dirty != dirty_.end()) {
      for (const std::string& id : dirty->second) keep(id);
    }
    for (const std::string& id : account->pinned) keep(id);
    if (kept.size() < invoices.size()) account->invoices_on_disk = true;
    dropped.swap(invoices);
    invoices.swap(kept);
    // `dropped` is freed after the locks are released.
  }
}

absl::Status Ledger::LoadAll() {
  if (all_loaded_.load(std::memory_order_acquire)) return absl::OkStatus();
  for (Account* account : listed_) RETURN_IF_ERROR(EnsureLoaded(account));
  all_loaded_.store(true, std::memory_order_release);
  return absl::OkStatus();
}

void Ledger::WarmUp() {
  const absl::Time start = absl::Now();
  absl::Status first_error;
  for (Account* account : listed_) {
    if (stop_warm_up_.load(std::memory_order_relaxed)) return;
    absl::Status loaded = EnsureLoaded(account);
    if (!loaded.ok() && first_error.ok()) first_error = std::move(loaded);
  }
  if (first_error.ok()) all_loaded_.store(true, std::memory_order_release);
  if (options_.on_warm_up) {
    options_.on_warm_up(listed_.size(), absl::Now() - start, first_error);
  }
}

Ledger::Account* Ledger::FindOrCreate(const std::string& account_id) {
  {
    // Most commands are for known accounts: readers do not exclude each
    // other.
    absl::ReaderMutexLock lock(&accounts_mu_);
    auto it = accounts_.find(account_id);
    if (it != accounts_.end()) return it->second.get();
  }
  absl::MutexLock lock(&accounts_mu_);
  std::unique_ptr<Account>& account = accounts_[account_id];
  if (account == nullptr) {
    // Not listed at Open: the log has nothing of it.
    account = std::make_unique<Account>();
    account->loaded.store(true, std::memory_order_release);
    absl::MutexLock state_lock(&account->state_mu);
    account->state.account_id = account_id;
  }
  return account.get();
}

absl::StatusOr<ExecuteResult> Ledger::ReadAppended(
    const AppendResult& appended) const {
  ExecuteResult result;
  result.duplicate = appended.deduplicated;
  ASSIGN_OR_RETURN(std::vector<RecordedEvent> records,
                   store_->ReadForward(appended.first_position,
                                       EventCount(appended)));
  for (const RecordedEvent& r : records) {
    ASSIGN_OR_RETURN(LoggedEvent logged, Decode(r));
    result.events.push_back(std::move(logged));
  }
  return result;
}

absl::StatusOr<ExecuteResult> Ledger::Execute(const RequestContext& ctx,
                                              const core::Command& command) {
  // Shared with the callback, which may still be returning from Notify
  // when this thread wakes.
  struct Waiter {
    absl::Notification done;
    absl::StatusOr<ExecuteResult> out;
  };
  auto waiter = std::make_shared<Waiter>();
  ExecuteAsync(ctx, command, [waiter](absl::StatusOr<ExecuteResult> result) {
    waiter->out = std::move(result);
    waiter->done.Notify();
  });
  waiter->done.WaitForNotification();
  return std::move(waiter->out);
}

void Ledger::ExecuteAsync(const RequestContext& ctx, core::Command command,
                          ExecuteCallback done) {
  ExecuteAsync(ctx, std::move(command), ExecuteOptions{}, std::move(done));
}

void Ledger::ExecuteAsync(const RequestContext& ctx, core::Command command,
                          const ExecuteOptions& options, ExecuteCallback done) {
  std::vector<core::Command> commands;
  commands.push_back(std::move(command));
  ExecuteBatchAsync(ctx, std::move(commands), options,
                    [done = std::move(done)](BatchResults results) {
                      done(std::move(results[0]));
                    });
}

Ledger::BatchResults Ledger::ExecuteBatch(const RequestContext& ctx,
                                          std::vector<core::Command> commands,
                                          const ExecuteOptions& options) {
  struct Waiter {
    absl::Notification done;
    BatchResults out;
  };
  auto waiter = std::make_shared<Waiter>();
  ExecuteBatchAsync(ctx, std::move(commands), options,
                    [waiter](BatchResults results) {
                      waiter->out = std::move(results);
                      waiter->done.Notify();
                    });
  waiter->done.WaitForNotification();
  return std::move(waiter->out);
}

void Ledger::ExecuteBatchAsync(const RequestContext& ctx,
                               std::vector<core::Command> commands,
                               const ExecuteOptions& options,
                               BatchCallback done) {
  const size_t n = commands.size();
  if (n == 0) {
    done({});
    return;
  }
  auto refuse = [&](absl::Status s) { done(BatchResults(n, std::move(s))); };
  if (absl::Status s = ValidateAccountId(ctx.account_id); !s.ok()) {
    refuse(std::move(s));
    return;
  }
  if (!ctx.request_id.empty()) {
    if (n > 1) {
      refuse(core::InvalidField(
          "request_id",
          "a batch's commands are idempotent by their own ids; a request id "
          "is for one command"));
      return;
    }
    if (absl::Status s =
            core::ValidateId(ctx.request_id, "request_id", core::kMaxRequestId);
        !s.ok()) {
      refuse(std::move(s));
      return;
    }
  }
  Account* account = FindOrCreate(ctx.account_id);
  if (absl::Status loaded = EnsureLoaded(account); !loaded.ok()) {
    refuse(std::move(loaded));
    return;
  }
  Pending pending{ctx, std::move(commands), options, std::move(done)};
  {
    absl::MutexLock lock(&account->queue_mu);
    if (account->busy) {
      account->pending.push_back(std::move(pending));
      return;
    }
    account->busy = true;
  }
  RunCommands(account, std::move(pending));
}

void Ledger::RunCommands(Account* account, Pending first) {
  std::optional<Pending> next(std::move(first));
  while (next.has_value()) {
    if (!Start(account, std::move(*next))) return;  // Its append is in flight.
    next = TakeNext(account);
  }
}

std::optional<Ledger::Pending> Ledger::TakeNext(Account* account) {
  absl::MutexLock lock(&account->queue_mu);
  if (account->pending.empty()) {
    account->busy = false;
    return std::nullopt;
  }
  Pending next = std::move(account->pending.front());
  account->pending.pop_front();
  return next;
}

bool Ledger::Start(Account* account, Pending p) {
  const RequestContext& ctx = p.ctx;
  const size_t n = p.commands.size();
  const std::string store_request_id =
      ctx.request_id.empty()
          ? ""
          : absl::StrCat(ctx.account_id, "/", ctx.request_id);
  if (!store_request_id.empty()) {  // One command (ExecuteBatchAsync).
    absl::StatusOr<std::optional<AppendResult>> earlier =
        store_->FindRequest(store_request_id);
    if (!earlier.ok()) {
      p.done(BatchResults(n, earlier.status()));
      return true;
    }
    if (earlier->has_value()) {
      BatchResults results;
      results.push_back(ReadAppended(**earlier));
      p.done(std::move(results));
      return true;
    }
  }
  if (absl::Status loaded = LoadInvoicesFor(account, p.commands);
      !loaded.ok()) {
    p.done(BatchResults(n, loaded));
    return true;
  }
  const absl::Time now = clock_->Now();
  auto appended = std::make_shared<Appended>();
  appended->account = account;
  appended->events = std::make_shared<std::vector<v1::AccountEvent>>();
  appended->now = now;
  appended->results.resize(n);
  appended->items.resize(n);
  std::vector<v1::AccountEvent>& events = *appended->events;
  // Commands repeating a record logged before this batch: its version.
  std::vector<uint64_t> repeats_logged(n, 0);
  std::vector<SnapshotPart> saved_parts;
  {
    absl::ReaderMutexLock state_lock(&account->state_mu);
    const uint64_t version = account->state.version;
    appended->version = version;
    // The state the next command of the batch sees: the account's own
    // until a command that is followed by others decides events.
    std::optional<core::AccountState> scratch;
    for (size_t i = 0; i < n; ++i) {
      if (absl::Status sealable =
              CheckSealableWith(options_.personal_data, p.commands[i]);
          !sealable.ok()) {
        appended->results[i] = std::move(sealable);
        continue;
      }
      const core::AccountState& decided_on =
          scratch.has_value() ? *scratch : account->state;
      absl::StatusOr<core::Decision> decision =
          core::Decide(decided_on, p.commands[i], now);
      if (!decision.ok()) {
        appended->results[i] = decision.status();
        continue;
      }
      if (const uint64_t v = decision->duplicate_of_version; v != 0) {
        if (v <= version) {
          repeats_logged[i] = v;
        } else {
          appended->items[i].repeats = v - version - 1;
        }
        continue;
      }
      if (decision->events.empty()) {
        appended->results[i] = ExecuteResult{};
        continue;
      }
      // The invoices it records are saved with its append, so a snapshot
      // need not write them again.
      for (size_t k = 0; k < decision->events.size(); ++k) {
        absl::StatusOr<std::optional<v1::InvoiceSnapshot>> recorded =
            core::RecordedInvoice(decided_on, decision->events[k],
                                  version + events.size() + k + 1);
        if (!recorded.ok()) {  // Decide and Apply disagree: a bug.
          p.done(BatchResults(n, recorded.status()));
          return true;
        }
        if (!recorded->has_value()) continue;
        SnapshotPart& part = saved_parts.emplace_back();
        part.key = InvoicePartKey(ctx.account_id, (*recorded)->invoice_id());
        (*recorded)->SerializeToString(&part.blob);
      }
      appended->items[i].first = events.size();
      appended->items[i].count = decision->events.size();
      if (i + 1 < n) {
        if (!scratch.has_value()) {
          scratch = core::ScratchFor(account->state, p.commands);
        }
        for (const v1::AccountEvent& e : decision->events) {
          if (absl::Status applied = core::Apply(*scratch, e); !applied.ok()) {
            // Decide and Apply disagree: a bug. Nothing is written.
            p.done(BatchResults(n, applied));
            return true;
          }
        }
      }
      for (v1::AccountEvent& e : decision->events) {
        events.push_back(std::move(e));
      }
    }
  }
  std::vector<uint64_t> repeated;
  for (uint64_t v : repeats_logged) {
    if (v != 0) repeated.push_back(v);
  }
  if (!repeated.empty()) {
    std::vector<absl::StatusOr<ExecuteResult>> firsts =
        ReadRecords(ctx.account_id, repeated);
    for (size_t i = 0, k = 0; i < n; ++i) {
      if (repeats_logged[i] == 0) continue;
      absl::StatusOr<ExecuteResult>& first = firsts[k++];
      if (first.ok()) first->duplicate = true;
      appended->results[i] = std::move(first);
    }
  }
  if (events.empty() || p.options.validate_only) {
    // Nothing to write: answer with the events as they would be logged.
    AnswerItems(*appended, 0);
    p.done(std::move(appended->results));
    return true;
  }
  AppendRequest request;
  if (options_.personal_data != nullptr) {
    // Contacts go into the log sealed, with the keys they need.
    if (absl::Status sealed = options_.personal_data->Seal(
            ctx.account_id, events, appended->keys);
        !sealed.ok()) {
      p.done(BatchResults(n, sealed));
      return true;
    }
    request.keys = appended->keys;
  }
  StreamAppend& stream = request.streams.emplace_back();
  stream.stream_id = AccountStream(ctx.account_id);
  stream.expected_version = ExpectedVersion::Exact(appended->version);
  for (const v1::AccountEvent& e : events) {
    stream.events.push_back(
        {EventTypeOf(e), PersonalData::StoredPayload(e), ""});
  }
  request.metadata.request_id = store_request_id;
  request.metadata.actor = ctx.actor;
  request.metadata.correlation_id = ctx.correlation_id;
  request.metadata.timestamp = now;
  request.saved_parts = std::move(saved_parts);
  appended->pending = std::make_shared<Pending>(std::move(p));
  {
    absl::MutexLock lock(&in_flight_mu_);
    ++in_flight_;
  }
  // The account takes no other command until this one is applied, so the
  // state the decision saw is the state it applies to.
  store_->AppendAsync(
      std::move(request), [this, appended = std::move(appended)](
                              absl::StatusOr<AppendResult> result) {
        // Applying, answering and starting the account's next command run
        // on the ledger's completion threads, so that the store's commit
        // thread goes back to committing; but a lone append (nothing else
        // in flight) completes here: waking a completion thread would cost
        // its caller more than the work (1.10x the calls a second at 1 in
        // flight, README "Benchmarks").
        if (Alone()) {
          OnAppended(std::move(appended), std::move(result));
          return;
        }
        Post([this, appended, result = std::move(result)]() mutable {
          OnAppended(std::move(appended), std::move(result));
        });
      });
  return false;
}

void Ledger::AnswerItems(Appended& a, uint64_t first_position) {
  std::vector<v1::AccountEvent>& events = *a.events;
  std::vector<LoggedEvent> logged;
  logged.reserve(events.size());
  for (size_t k = 0; k < events.size(); ++k) {
    // Applied (or previewed): the answer takes the event over.
    logged.push_back({NthPosition(first_position, k),
                      a.version + k + 1, a.now, std::move(events[k])});
  }
  for (size_t i = 0; i < a.items.size(); ++i) {
    if (!a.items[i].repeats.has_value()) continue;
    ExecuteResult result;
    result.duplicate = true;
    const size_t first = *a.items[i].repeats;
    result.events.push_back(logged[first]);
    for (size_t k = first + 1;
         k < logged.size() && RaisedBy(logged[k].event, logged[first].event);
         ++k) {
      result.events.push_back(logged[k]);
    }
    a.results[i] = std::move(result);
  }
  for (size_t i = 0; i < a.items.size(); ++i) {
    const Appended::Item& item = a.items[i];
    if (item.count == 0) continue;
    ExecuteResult result;
    result.events.reserve(item.count);
    for (size_t k = item.first; k < item.first + item.count; ++k) {
      result.events.push_back(std::move(logged[k]));
    }
    a.results[i] = std::move(result);
  }
}

void Ledger::FailItems(Appended& a, const absl::Status& error) {
  for (size_t i = 0; i < a.items.size(); ++i) {
    if (a.items[i].count != 0 || a.items[i].repeats.has_value()) {
      a.results[i] = error;
    }
  }
}

void Ledger::OnAppended(std::shared_ptr<Appended> a,
                        absl::StatusOr<AppendResult> result) {
  if (!result.ok()) {
    absl::Status error = result.status();
    if (error.code() == absl::StatusCode::kAlreadyExists) {
      error = core::DomainError(
          absl::StatusCode::kAlreadyExists, core::reason::kRequestIdConflict,
          absl::StrCat("request_id ", core::Quote(a->pending->ctx.request_id),
                       " was already used for a different request"));
    } else if (error.code() == absl::StatusCode::kUnavailable &&
               core::ReasonOf(error).empty()) {
      // The store refuses writes (a full disk, a failed sync): nothing was
      // applied; the same request may be sent again once it writes.
      error = core::WithMetadata(
          core::DomainError(absl::StatusCode::kUnavailable,
                            core::reason::kStorageUnavailable,
                            absl::StrCat("the event log cannot be written: ",
                                         error.message())),
          core::kRetryDelayMsKey, "1000");
    }
    FailItems(*a, error);
    Finish(a->account, *a->pending, std::move(a->results));
    return;
  }
  a->positions = *result;
  if (options_.personal_data != nullptr && !a->positions.deduplicated) {
    options_.personal_data->Remember(a->keys);
  }
  if (a->positions.deduplicated) {
    // The store found the request id (one command) committed before: those
    // events are applied already; answer as the first time.
    BatchResults results;
    results.push_back(ReadAppended(a->positions));
    Finish(a->account, *a->pending, std::move(results));
    return;
  }
  // In log order: a command whose turn has not come waits in waiting_, and
  // the thread that applies the one before it applies it too.
  std::vector<std::shared_ptr<Appended>> applied;
  uint64_t last = 0;
  {
    absl::MutexLock lock(&apply_mu_);
    waiting_[a->positions.first_position] = std::move(a);
    while (!waiting_.empty() &&
           waiting_.begin()->first == applied_through_ + 1) {
      std::shared_ptr<Appended> next = std::move(waiting_.begin()->second);
      waiting_.erase(waiting_.begin());
      ApplyLocked(*next);
      applied_through_ = last = next->positions.last_position;
      applied.push_back(std::move(next));
    }
  }
  // Before the answers: once the last is answered, the ledger may go away.
  if (last != 0) MaybeSnapshot(last);
  for (std::shared_ptr<Appended>& done : applied) {
    Finish(done->account, *done->pending, std::move(done->results));
  }
}

absl::Status Ledger::ApplyReplicated(
    const std::vector<RecordedEvent>& records) {
  if (records.empty()) return absl::OkStatus();
  std::vector<Account*> accounts;
  accounts.reserve(records.size());
  for (const RecordedEvent& record : records) {
    const std::string account_id = AccountOfStream(record.stream_id);
    accounts.push_back(account_id.empty() ? nullptr
                                          : FindOrCreate(account_id));
  }
  // An erasure's key goes before its record applies, so that nothing reads
  // the subject's contacts in between.
  for (const RecordedEvent& record : records) {
    RETURN_IF_ERROR(ForgetErased(record));
  }
  {
    absl::MutexLock lock(&apply_mu_);
    if (records.front().position != applied_through_ + 1) {
      return absl::FailedPreconditionError(absl::StrCat(
          "replicated records start at position ", records.front().position,
          ", the ledger has applied the log through ", applied_through_));
    }
    for (size_t i = 0; i < records.size(); ++i) {
      Account* account = accounts[i];
      if (account == nullptr) continue;
      absl::MutexLock state_lock(&account->state_mu);
      // Not loaded yet: its load reads these records from the log.
      if (!account->installed) continue;
      SaveIntoCutLocked(account);
      absl::StatusOr<std::vector<std::string>> touched = ApplyRecord(
          account->state, records[i],
          account->invoices_on_disk ? store_ : nullptr, options_.personal_data);
      if (!touched.ok()) {
        return absl::DataLossError(absl::StrCat(
            "a replicated record does not apply: ", touched.status().message()));
      }
      MarkChanged(account, *touched);
    }
    applied_through_ = records.back().position;
  }
  MaybeSnapshot(records.back().position);
  return absl::OkStatus();
}

void Ledger::ApplyLocked(Appended& a) {
  Account* account = a.account;
  absl::MutexLock state_lock(&account->state_mu);
  SaveIntoCutLocked(account);
  // The entries the command read were loaded before it decided (and are
  // pinned): nothing is looked up on disk.
  absl::Status applied;
  for (size_t k = 0; k < a.events->size() && applied.ok(); ++k) {
    absl::StatusOr<std::vector<std::string>> touched =
        ApplyEvent(account->state, (*a.events)[k],
                   NthPosition(a.positions.first_position, k), nullptr);
    if (touched.ok()) {
      // The entry it records (named first) was saved with the append; a
      // credit memo's original is the next snapshot's to save.
      if (!touched->empty() && core::RecordsAnInvoice((*a.events)[k])) {
        touched->erase(touched->begin());
      }
      MarkChanged(account, *touched);
    } else {
      applied = touched.status();
    }
  }
  if (applied.ok()) {
    if (a.pending->options.on_applied) {
      a.pending->options.on_applied(account->state);
    }
    AnswerItems(a, a.positions.first_position);
  } else {
    FailItems(a, applied);  // Decide and Apply disagree: a bug.
  }
}

void Ledger::Finish(Account* account, Pending& pending, BatchResults results) {
  pending.done(std::move(results));
  if (std::optional<Pending> next = TakeNext(account)) {
    RunCommands(account, std::move(*next));
  }
  absl::MutexLock lock(&in_flight_mu_);
  --in_flight_;
}

bool Ledger::Alone() {
  absl::MutexLock lock(&in_flight_mu_);
  return in_flight_ == 1;
}

void Ledger::Post(std::function<void()> work) {
  absl::MutexLock lock(&work_mu_);
  work_.push_back(std::move(work));
}

void Ledger::WorkLoop() {
  for (;;) {
    std::function<void()> work;
    {
      absl::MutexLock lock(&work_mu_);
      work_mu_.Await(absl::Condition(
          +[](Ledger* l) ABSL_EXCLUSIVE_LOCKS_REQUIRED(l->work_mu_) {
            return !l->work_.empty() || l->stopping_;
          },
          this));
      if (work_.empty()) return;  // Stopping and drained.
      work = std::move(work_.front());
      work_.pop_front();
    }
    work();
  }
}

absl::Status Ledger::Read(
    const std::string& account_id,
    const std::function<void(const core::AccountState&)>& fn) {
  RETURN_IF_ERROR(ValidateAccountId(account_id));
  Account* account = nullptr;
  {
    absl::ReaderMutexLock lock(&accounts_mu_);
    auto it = accounts_.find(account_id);
    if (it != accounts_.end()) account = it->second.get();
  }
  if (account == nullptr) {
    core::AccountState empty;
    empty.account_id = account_id;
    fn(empty);
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(EnsureLoaded(account));
  absl::ReaderMutexLock state_lock(&account->state_mu);
  fn(account->state);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<LoggedEvent>> Ledger::ReadAccountEvents(
    const std::string& account_id, uint64_t from_version, size_t limit) const {
  RETURN_IF_ERROR(ValidateAccountId(account_id));
  ASSIGN_OR_RETURN(
      std::vector<RecordedEvent> records,
      store_->ReadStream(AccountStream(account_id), from_version, limit));
  std::vector<LoggedEvent> out;
  for (const RecordedEvent& r : records) {
    ASSIGN_OR_RETURN(LoggedEvent logged, Decode(r));
    out.push_back(std::move(logged));
  }
  return out;
}

absl::StatusOr<ExecuteResult> Ledger::ReadRecord(const std::string& account_id,
                                                 uint64_t version) const {
  return std::move(ReadRecords(account_id, {version}).front());
}

std::vector<absl::StatusOr<ExecuteResult>> Ledger::ReadRecords(
    const std::string& account_id, const std::vector<uint64_t>& versions) const {
  if (absl::Status valid = ValidateAccountId(account_id); !valid.ok()) {
    return std::vector<absl::StatusOr<ExecuteResult>>(versions.size(), valid);
  }
  // One read covers the versions within kSpan of its first.
  constexpr uint64_t kSpan = 1024;
  std::vector<uint64_t> sorted = versions;
  std::sort(sorted.begin(), sorted.end());
  absl::flat_hash_map<uint64_t, RecordedEvent> read;
  absl::Status failed;
  for (size_t i = 0; i < sorted.size() && failed.ok();) {
    const uint64_t from = sorted[i];
    if (read.contains(from)) {
      ++i;
      continue;
    }
    size_t last = i;
    while (last + 1 < sorted.size() && sorted[last + 1] - from < kSpan) ++last;
    absl::StatusOr<std::vector<RecordedEvent>> events = store_->ReadStream(
        AccountStream(account_id), from, sorted[last] - from + 1 + kMaxRaisedWith);
    if (!events.ok()) {
      failed = events.status();
      break;
    }
    for (RecordedEvent& e : *events) read.emplace(e.stream_version, std::move(e));
    i = last + 1;
  }
  std::vector<absl::StatusOr<ExecuteResult>> out;
  out.reserve(versions.size());
  for (uint64_t version : versions) {
    if (!failed.ok()) {
      out.push_back(failed);
      continue;
    }
    ExecuteResult result;
    absl::Status decoded;
    for (uint64_t v = version; v <= version + kMaxRaisedWith; ++v) {
      auto it = read.find(v);
      if (it == read.end()) break;
      absl::StatusOr<LoggedEvent> logged = Decode(it->second);
      if (!logged.ok()) {
        decoded = logged.status();
        break;
      }
      if (!result.events.empty() &&
          !RaisedBy(logged->event, result.events.front().event)) {
        break;
      }
      result.events.push_back(*std::move(logged));
    }
    if (!decoded.ok()) {
      out.push_back(decoded);
    } else if (result.events.empty()) {
      out.push_back(absl::NotFoundError(absl::StrCat(
          "no event at version ", version, " of account ", account_id)));
    } else {
      out.push_back(std::move(result));
    }
  }
  return out;
}

absl::StatusOr<int> Ledger::TickAll(const std::function<bool()>& stop) {
  int appended = 0;
  absl::Status first_error;
  for (const std::string& id : AccountIds()) {
    if (stop && stop()) break;
    RequestContext ctx;
    ctx.account_id = id;
    ctx.actor = "system:scheduler";
    absl::StatusOr<ExecuteResult> result = Execute(ctx, core::Tick{});
    if (result.ok()) {
      appended += static_cast<int>(result->events.size());
    } else if (first_error.ok()) {
      first_error = result.status();
    }
  }
  if (!first_error.ok()) return first_error;
  return appended;
}

std::vector<std::string> Ledger::AccountIds() {
  absl::ReaderMutexLock lock(&accounts_mu_);
  std::vector<std::string> ids;
  ids.reserve(accounts_.size());
  for (const auto& [id, account] : accounts_) ids.push_back(id);
  return ids;
}

absl::StatusOr<core::AccountState> Ledger::AccountAt(
    const std::string& account_id, uint64_t position) const {
  ASSIGN_OR_RETURN(core::AccountState state,
                   RebuildAccountAt(*store_, account_id, position));
  if (options_.personal_data != nullptr) {
    for (auto& [id, po] : state.purchase_orders) {
      RETURN_IF_ERROR(options_.personal_data->OpenContacts(
          account_id, *po.header.mutable_contacts()));
    }
  }
  return state;
}

absl::StatusOr<LoggedEvent> Ledger::Decode(const RecordedEvent& record) const {
  return DecodeRecord(record, options_.personal_data);
}

absl::Status Ledger::ForgetErased(const RecordedEvent& record) {
  if (options_.personal_data == nullptr ||
      record.event_type != "personal_data_erased") {
    return absl::OkStatus();
  }
  v1::AccountEvent event;
  if (!event.ParseFromString(record.payload)) {
    return absl::DataLossError(absl::StrCat(
        "event at position ", record.position, " is not an account event"));
  }
  return options_.personal_data->Forget(
      AccountOfStream(record.stream_id),
      event.personal_data_erased().subject_ref(), store_);
}

}  // namespace poledger
