// RocksDbEventStore's keys beside the log (KeyEntry): "K<id>" holds a key,
// "k<position><id>" says which record it was written with. Appends write
// both in their own batch (rocksdb_event_store.cc); these read and put them.
#include <memory>
#include <string>

#include "base/status_macros.h"
#include "eventstore/record_format.h"
#include "eventstore/rocks_status.h"
#include "eventstore/rocksdb_event_store.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"

namespace poledger {
namespace rf = record_format;
namespace {

absl::string_view View(const rocksdb::Slice& s) {
  return absl::string_view(s.data(), s.size());
}

}  // namespace

absl::StatusOr<std::optional<std::string>> RocksDbEventStore::ReadKey(
    absl::string_view id) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), rf::KeyKey(id), &value);
  if (s.IsNotFound()) return std::nullopt;
  RETURN_IF_ERROR(FromRocks(s, "reading a key"));
  return value;
}

absl::Status RocksDbEventStore::PutKeys(uint64_t position,
                                        const std::vector<KeyEntry>& keys) {
  if (options_.read_only) {
    return absl::FailedPreconditionError("event store is open read-only");
  }
  RETURN_IF_ERROR(rf::ValidateKeyList("keys", keys));
  rocksdb::WriteBatch batch;
  for (const KeyEntry& key : keys) {
    batch.Put(rf::KeyKey(key.id), key.value);
    if (position != 0) batch.Put(rf::KeyIndexKey(position, key.id), "");
  }
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  return FromRocks(db_->Write(wo, &batch), "writing keys");
}

absl::Status RocksDbEventStore::VisitKeys(const KeyVisitor& visit) const {
  rocksdb::ReadOptions ro;
  const rocksdb::Snapshot* view =
      options_.secondary_path.empty() ? db_->GetSnapshot() : nullptr;
  ro.snapshot = view;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  absl::Status status;
  const std::string first(1, rf::kKeyPrefix);
  for (it->Seek(first); status.ok() && it->Valid(); it->Next()) {
    if (it->key()[0] != rf::kKeyPrefix) break;
    absl::StatusOr<absl::string_view> id = rf::ParseKeyKey(View(it->key()));
    status = id.ok() ? visit(*id, View(it->value())) : id.status();
  }
  if (status.ok()) status = FromRocks(it->status(), "reading keys");
  it.reset();
  if (view != nullptr) db_->ReleaseSnapshot(view);
  return status;
}

absl::StatusOr<std::vector<KeyEntry>> RocksDbEventStore::KeysAddedIn(
    uint64_t first, uint64_t last) const {
  std::vector<KeyEntry> out;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(rf::KeyIndexKey(first, "")); it->Valid(); it->Next()) {
    if (it->key()[0] != rf::kKeyIndexPrefix) break;
    uint64_t position = 0;
    absl::string_view id;
    RETURN_IF_ERROR(rf::ParseKeyIndexKey(View(it->key()), &position, &id));
    if (position > last) break;
    ASSIGN_OR_RETURN(std::optional<std::string> value, ReadKey(id));
    if (value.has_value()) out.push_back({std::string(id), std::move(*value)});
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "reading the key index"));
  return out;
}

}  // namespace poledger
