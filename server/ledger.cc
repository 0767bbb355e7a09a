#include "server/ledger.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/decide.h"
#include "core/errors.h"
#include "core/proto_time.h"
#include "poledger/v1/snapshot.pb.h"

namespace poledger {
namespace {

std::string StreamOf(const std::string& account_id) {
  return absl::StrCat(kAccountStreamPrefix, account_id);
}

// The event type recorded in the log: the name of the payload's oneof case.
std::string EventTypeOf(const v1::AccountEvent& event) {
  const google::protobuf::FieldDescriptor* field =
      v1::AccountEvent::descriptor()->FindFieldByNumber(event.event_case());
  return field == nullptr ? "unknown" : field->name();
}

}  // namespace

absl::Status ValidateAccountId(absl::string_view id) {
  if (id.empty() || id.size() > 64) {
    return core::InvalidField("account_id", "must be 1 to 64 characters");
  }
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' &&
        c != '_') {
      return core::InvalidField(
          "account_id", "may hold only letters, digits, '-' and '_'");
    }
  }
  return absl::OkStatus();
}

std::string AccountOfStream(absl::string_view stream_id) {
  if (!absl::StartsWith(stream_id, kAccountStreamPrefix)) return "";
  return std::string(stream_id.substr(sizeof(kAccountStreamPrefix) - 1));
}

absl::StatusOr<LoggedEvent> Ledger::Decode(const RecordedEvent& record) {
  LoggedEvent out;
  out.position = record.position;
  out.stream_version = record.stream_version;
  out.time = record.timestamp;
  if (!out.event.ParseFromString(record.payload)) {
    return absl::DataLossError(absl::StrCat(
        "event at position ", record.position, " is not an account event"));
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Ledger>> Ledger::Open(EventStore* store,
                                                     const Clock* clock,
                                                     LedgerOptions options) {
  std::unique_ptr<Ledger> ledger(new Ledger(store, clock, options));
  RETURN_IF_ERROR(ledger->Load());
  return ledger;
}

absl::Status Ledger::Load() {
  uint64_t next = 1;
  ASSIGN_OR_RETURN(std::optional<Snapshot> snapshot, store_->LoadLatestSnapshot());
  if (snapshot.has_value()) {
    absl::MutexLock snapshot_lock(&snapshot_mu_);
    last_snapshot_position_ = snapshot->position;
  }
  absl::MutexLock lock(&accounts_mu_);
  if (snapshot.has_value()) {
    v1::LedgerSnapshot blob;
    if (!blob.ParseFromString(snapshot->blob)) {
      return absl::DataLossError(absl::StrCat("snapshot at position ",
                                              snapshot->position,
                                              " does not decode"));
    }
    for (const v1::AccountSnapshot& a : blob.accounts()) {
      ASSIGN_OR_RETURN(core::AccountState state, core::FromSnapshot(a));
      auto account = std::make_unique<Account>();
      account->state = std::move(state);
      accounts_[a.account_id()] = std::move(account);
    }
    next = snapshot->position + 1;
  }
  for (;;) {
    ASSIGN_OR_RETURN(std::vector<RecordedEvent> batch,
                     store_->ReadForward(next, 4096));
    if (batch.empty()) break;
    for (const RecordedEvent& record : batch) {
      next = record.position + 1;
      const std::string account_id = AccountOfStream(record.stream_id);
      if (account_id.empty()) continue;
      ASSIGN_OR_RETURN(LoggedEvent logged, Decode(record));
      std::unique_ptr<Account>& account = accounts_[account_id];
      if (account == nullptr) {
        account = std::make_unique<Account>();
        account->state.account_id = account_id;
      }
      absl::MutexLock state_lock(&account->state_mu);
      if (record.stream_version != account->state.version + 1) {
        return absl::DataLossError(absl::StrCat(
            "event at position ", record.position, " is version ",
            record.stream_version, " of ", record.stream_id, ", expected ",
            account->state.version + 1));
      }
      absl::Status applied = core::Apply(account->state, logged.event);
      if (!applied.ok()) {
        return absl::DataLossError(absl::StrCat(
            "event at position ", record.position, ": ", applied.message()));
      }
    }
  }
  return absl::OkStatus();
}

Ledger::Account* Ledger::FindOrCreate(const std::string& account_id) {
  absl::MutexLock lock(&accounts_mu_);
  std::unique_ptr<Account>& account = accounts_[account_id];
  if (account == nullptr) {
    account = std::make_unique<Account>();
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
                                       appended.last_position -
                                           appended.first_position + 1));
  for (const RecordedEvent& r : records) {
    ASSIGN_OR_RETURN(LoggedEvent logged, Decode(r));
    result.events.push_back(std::move(logged));
  }
  return result;
}

absl::StatusOr<ExecuteResult> Ledger::Execute(const RequestContext& ctx,
                                              const core::Command& command) {
  RETURN_IF_ERROR(ValidateAccountId(ctx.account_id));
  if (ctx.request_id.size() > 128) {
    return core::InvalidField("request_id", "must be at most 128 characters");
  }
  Account* account = FindOrCreate(ctx.account_id);
  absl::StatusOr<ExecuteResult> result;
  {
    absl::MutexLock command_lock(&account->command_mu);
    result = ExecuteLocked(*account, ctx, command);
  }
  // Outside the account's lock: a snapshot takes every account's lock.
  if (result.ok() && !result->duplicate && !result->events.empty()) {
    MaybeSnapshot(result->events.back().position);
  }
  return result;
}

absl::StatusOr<ExecuteResult> Ledger::ExecuteLocked(
    Account& account_ref, const RequestContext& ctx,
    const core::Command& command) {
  Account* account = &account_ref;
  const std::string store_request_id =
      ctx.request_id.empty() ? ""
                             : absl::StrCat(ctx.account_id, "/", ctx.request_id);
  if (!store_request_id.empty()) {
    ASSIGN_OR_RETURN(std::optional<AppendResult> earlier,
                     store_->FindRequest(store_request_id));
    if (earlier.has_value()) return ReadAppended(*earlier);
  }
  const absl::Time now = clock_->Now();
  absl::StatusOr<core::Decision> decision;
  uint64_t version = 0;
  {
    absl::ReaderMutexLock state_lock(&account->state_mu);
    decision = core::Decide(account->state, command, now);
    version = account->state.version;
  }
  if (!decision.ok()) return decision.status();
  if (decision->duplicate_of_version != 0) {
    ASSIGN_OR_RETURN(std::vector<RecordedEvent> records,
                     store_->ReadStream(StreamOf(ctx.account_id),
                                        decision->duplicate_of_version, 1));
    ExecuteResult result;
    result.duplicate = true;
    for (const RecordedEvent& r : records) {
      ASSIGN_OR_RETURN(LoggedEvent logged, Decode(r));
      result.events.push_back(std::move(logged));
    }
    return result;
  }
  if (decision->events.empty()) return ExecuteResult{};
  AppendRequest request;
  StreamAppend& stream = request.streams.emplace_back();
  stream.stream_id = StreamOf(ctx.account_id);
  stream.expected_version = ExpectedVersion::Exact(version);
  for (const v1::AccountEvent& e : decision->events) {
    stream.events.push_back({EventTypeOf(e), e.SerializeAsString(), ""});
  }
  request.metadata.request_id = store_request_id;
  request.metadata.actor = ctx.actor;
  request.metadata.correlation_id = ctx.correlation_id;
  request.metadata.timestamp = now;
  absl::StatusOr<AppendResult> appended = store_->Append(request);
  if (!appended.ok()) {
    if (appended.status().code() == absl::StatusCode::kAlreadyExists) {
      return core::DomainError(absl::StatusCode::kAlreadyExists,
                               "REQUEST_ID_CONFLICT",
                               absl::StrCat("request_id \"", ctx.request_id,
                                            "\" was already used for a "
                                            "different request"));
    }
    return appended.status();
  }
  ExecuteResult result;
  {
    absl::MutexLock state_lock(&account->state_mu);
    for (size_t i = 0; i < decision->events.size(); ++i) {
      absl::Status applied =
          core::Apply(account->state, decision->events[i]);
      if (!applied.ok()) return applied;  // Decide and Apply disagree: a bug.
      result.events.push_back({appended->first_position + i, version + i + 1,
                               now, std::move(decision->events[i])});
    }
  }
  return result;
}

absl::Status Ledger::Read(
    const std::string& account_id,
    const std::function<void(const core::AccountState&)>& fn) {
  RETURN_IF_ERROR(ValidateAccountId(account_id));
  Account* account = nullptr;
  {
    absl::MutexLock lock(&accounts_mu_);
    auto it = accounts_.find(account_id);
    if (it != accounts_.end()) account = it->second.get();
  }
  if (account == nullptr) {
    core::AccountState empty;
    empty.account_id = account_id;
    fn(empty);
    return absl::OkStatus();
  }
  absl::ReaderMutexLock state_lock(&account->state_mu);
  fn(account->state);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<LoggedEvent>> Ledger::ReadAccountEvents(
    const std::string& account_id, uint64_t from_version, size_t limit) const {
  RETURN_IF_ERROR(ValidateAccountId(account_id));
  ASSIGN_OR_RETURN(std::vector<RecordedEvent> records,
                   store_->ReadStream(StreamOf(account_id), from_version, limit));
  std::vector<LoggedEvent> out;
  for (const RecordedEvent& r : records) {
    ASSIGN_OR_RETURN(LoggedEvent logged, Decode(r));
    out.push_back(std::move(logged));
  }
  return out;
}

absl::StatusOr<int> Ledger::TickAll() {
  std::vector<std::string> ids;
  {
    absl::MutexLock lock(&accounts_mu_);
    for (const auto& [id, account] : accounts_) ids.push_back(id);
  }
  int appended = 0;
  for (const std::string& id : ids) {
    RequestContext ctx;
    ctx.account_id = id;
    ctx.actor = "system:scheduler";
    ASSIGN_OR_RETURN(ExecuteResult result, Execute(ctx, core::Tick{}));
    appended += static_cast<int>(result.events.size());
  }
  return appended;
}

absl::StatusOr<core::AccountState> RebuildAccountAt(const EventStore& store,
                                                    const std::string& account_id,
                                                    uint64_t position) {
  RETURN_IF_ERROR(ValidateAccountId(account_id));
  core::AccountState state;
  state.account_id = account_id;
  uint64_t next_version = 1;
  for (;;) {
    ASSIGN_OR_RETURN(std::vector<RecordedEvent> records,
                     store.ReadStream(StreamOf(account_id), next_version, 1024));
    if (records.empty()) break;
    for (const RecordedEvent& r : records) {
      if (r.position > position) return state;
      ASSIGN_OR_RETURN(LoggedEvent logged, Ledger::Decode(r));
      absl::Status applied = core::Apply(state, logged.event);
      if (!applied.ok()) {
        return absl::DataLossError(absl::StrCat(
            "event at position ", r.position, ": ", applied.message()));
      }
      next_version = r.stream_version + 1;
    }
  }
  return state;
}

absl::StatusOr<uint64_t> AccountPositionAt(const EventStore& store,
                                           const std::string& account_id,
                                           absl::Time time) {
  RETURN_IF_ERROR(ValidateAccountId(account_id));
  uint64_t position = 0;
  uint64_t version = 1;
  for (;;) {
    ASSIGN_OR_RETURN(std::vector<RecordedEvent> records,
                     store.ReadStream(StreamOf(account_id), version, 1024));
    if (records.empty()) return position;
    for (const RecordedEvent& r : records) {
      if (r.timestamp > time) return position;
      position = r.position;
      version = r.stream_version + 1;
    }
  }
}

absl::StatusOr<core::AccountState> Ledger::AccountAt(
    const std::string& account_id, uint64_t position) const {
  return RebuildAccountAt(*store_, account_id, position);
}

absl::StatusOr<uint64_t> Ledger::CreateSnapshot() {
  absl::MutexLock snapshot_lock(&snapshot_mu_);
  v1::LedgerSnapshot blob;
  std::vector<std::pair<std::string, Account*>> by_id;
  {
    absl::MutexLock lock(&accounts_mu_);
    for (const auto& [id, account] : accounts_) {
      by_id.emplace_back(id, account.get());
    }
  }
  // Always the same lock order (by account id).
  std::sort(by_id.begin(), by_id.end());
  std::vector<Account*> accounts;
  for (const auto& [id, account] : by_id) accounts.push_back(account);
  // Hold every account's command lock so that no append lands between the
  // states taken and the head recorded.
  for (Account* a : accounts) a->command_mu.Lock();
  const uint64_t position = store_->Head().position;
  for (Account* a : accounts) {
    absl::ReaderMutexLock state_lock(&a->state_mu);
    *blob.add_accounts() = core::ToSnapshot(a->state);
  }
  for (Account* a : accounts) a->command_mu.Unlock();
  blob.set_position(position);
  std::string bytes;
  blob.SerializeToString(&bytes);
  RETURN_IF_ERROR(store_->SaveSnapshot({position, std::move(bytes)}));
  last_snapshot_position_ = position;
  return position;
}

void Ledger::MaybeSnapshot(uint64_t position) {
  if (options_.snapshot_every_events == 0) return;
  {
    absl::MutexLock lock(&snapshot_mu_);
    if (position < last_snapshot_position_ + options_.snapshot_every_events) {
      return;
    }
  }
  // Best effort: a failed snapshot only makes the next restart slower.
  (void)CreateSnapshot();
}

}  // namespace poledger
