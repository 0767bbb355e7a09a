#include "eventstore/log_rewind.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "eventstore/record_format.h"
#include "eventstore/rocks_status.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/write_batch.h"

namespace poledger {

namespace rf = record_format;

namespace {

constexpr char kMagic[] = "poledger set-aside 1\n";

absl::string_view Sv(const rocksdb::Slice& s) {
  return absl::string_view(s.data(), s.size());
}

// The first key after every key that starts with `prefix`'s one byte.
std::string PrefixEnd(char prefix) { return std::string(1, prefix + 1); }

// Writes `records` to a new file at `path`, synced before it returns.
absl::Status WriteSetAside(const std::string& path,
                           const std::vector<std::pair<uint64_t, std::string>>&
                               records) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    return absl::AlreadyExistsError(absl::StrCat(path, " exists"));
  }
  std::FILE* f = std::fopen(path.c_str(), "wbx");
  if (f == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot create ", path));
  }
  std::string out(kMagic);
  for (const auto& [position, value] : records) {
    out += rf::EncodeFixed64(position);
    const uint32_t n = static_cast<uint32_t>(value.size());
    for (int shift = 24; shift >= 0; shift -= 8) {
      out.push_back(static_cast<char>((n >> shift) & 0xff));
    }
    out += value;
  }
  const bool written = std::fwrite(out.data(), 1, out.size(), f) == out.size();
  const bool synced = std::fflush(f) == 0 && fsync(fileno(f)) == 0;
  const bool closed = std::fclose(f) == 0;
  if (!written || !synced || !closed) {
    return absl::UnavailableError(absl::StrCat("cannot write ", path));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<RewindResult> RewindLog(const std::string& data_dir,
                                       uint64_t keep_through,
                                       const std::string& set_aside_path) {
  rocksdb::Options options;
  options.create_if_missing = false;
  options.paranoid_checks = true;
  rocksdb::DB* raw = nullptr;
  RETURN_IF_ERROR(FromRocks(rocksdb::DB::Open(options, data_dir, &raw),
                            absl::StrCat("opening event log at ", data_dir)));
  std::unique_ptr<rocksdb::DB> db(raw);
  const rocksdb::ReadOptions ro;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro));
  // A record is kept or taken whole: the cut goes before the record that
  // holds the first position past `keep_through`.
  it->SeekForPrev(rf::LogKey(keep_through + 1));
  if (it->Valid() && !it->key().empty() && it->key()[0] == rf::kLogPrefix) {
    ASSIGN_OR_RETURN(uint64_t first, rf::ParseLogKey(Sv(it->key())));
    ASSIGN_OR_RETURN(uint32_t count, rf::RecordEventCount(Sv(it->value())));
    if (first + count > keep_through + 1) keep_through = first - 1;
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "reading the log"));
  std::string value;
  rocksdb::Status s = db->Get(ro, rf::MetaCommittedKey(), &value);
  if (s.ok()) {
    ASSIGN_OR_RETURN(uint64_t committed, rf::DecodeFixed64(value));
    if (committed > keep_through) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the log is committed through ", committed,
          ": it cannot be rewound to ", keep_through));
    }
  } else if (!s.IsNotFound()) {
    return FromRocks(s, "reading the committed mark");
  }

  RewindResult result;
  rocksdb::WriteBatch batch;
  std::vector<std::pair<uint64_t, std::string>> taken;
  const std::string log_end = PrefixEnd(rf::kLogPrefix);
  std::vector<RecordedEvent> record;
  std::vector<std::pair<std::string, uint64_t>> stream_entries;
  for (it->Seek(rf::LogKey(keep_through + 1));
       it->Valid() && it->key().compare(log_end) < 0; it->Next()) {
    ASSIGN_OR_RETURN(uint64_t position, rf::ParseLogKey(Sv(it->key())));
    record.clear();
    RETURN_IF_ERROR(rf::DecodeRecordValue(position, Sv(it->value()),
                                          /*verify=*/false, &record));
    batch.Delete(it->key());
    stream_entries.clear();
    rf::AppendStreamEntries(record, &stream_entries);
    for (const auto& entry : stream_entries) batch.Delete(entry.first);
    taken.emplace_back(position, it->value().ToString());
    result.records += record.size();
    result.last = record.back().position;
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "reading the log's tail"));
  if (taken.empty()) return result;
  result.first = taken.front().first;

  // Request entries of appends that reach past the position.
  const std::string request_end = PrefixEnd(rf::kRequestPrefix);
  for (it->Seek(std::string(1, rf::kRequestPrefix));
       it->Valid() && it->key().compare(request_end) < 0; it->Next()) {
    ASSIGN_OR_RETURN(rf::RequestEntry entry,
                     rf::DecodeRequestValue(Sv(it->value())));
    if (entry.result.last_position > keep_through) batch.Delete(it->key());
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "reading the request entries"));

  // Every saved part: a snapshot taken past the position, and the parts
  // that the removed appends saved with themselves (AppendRequest::
  // saved_parts), which nothing else names. The ledger replays instead.
  batch.DeleteRange(std::string(1, rf::kSnapshotPrefix),
                    PrefixEnd(rf::kSnapshotPrefix));
  batch.Delete(rf::MetaSnapshotKey());

  // The verified-through mark, back to the kept head.
  s = db->Get(ro, rf::MetaVerifiedKey(), &value);
  if (s.ok()) {
    absl::StatusOr<rf::VerifiedMark> mark = rf::DecodeVerifiedMark(value);
    if (!mark.ok() || mark->position > keep_through) {
      batch.Delete(rf::MetaVerifiedKey());
      if (keep_through > 0) {
        it->SeekForPrev(rf::LogKey(keep_through));
        RETURN_IF_ERROR(FromRocks(it->status(), "reading the kept head"));
        if (!it->Valid()) return absl::DataLossError("the kept head is missing");
        ASSIGN_OR_RETURN(uint64_t first, rf::ParseLogKey(Sv(it->key())));
        record.clear();
        RETURN_IF_ERROR(
            rf::DecodeRecordValue(first, Sv(it->value()), true, &record));
        if (record.back().position != keep_through) {
          return absl::DataLossError("the kept head is not a record's end");
        }
        batch.Put(rf::MetaVerifiedKey(),
                  rf::EncodeVerifiedMark({keep_through, record.back().hash}));
      }
    }
  } else if (!s.IsNotFound()) {
    return FromRocks(s, "reading the verified-through mark");
  }
  it.reset();

  RETURN_IF_ERROR(WriteSetAside(set_aside_path, taken));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  RETURN_IF_ERROR(FromRocks(db->Write(wo, &batch), "rewinding the log"));
  RETURN_IF_ERROR(FromRocks(db->Close(), "closing the event log"));
  return result;
}

absl::StatusOr<std::vector<RecordedEvent>> ReadSetAside(
    const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  const std::string data((std::istreambuf_iterator<char>(in)),
                         std::istreambuf_iterator<char>());
  const std::string magic(kMagic);
  if (data.compare(0, magic.size(), magic) != 0) {
    return absl::DataLossError(
        absl::StrCat(path, " is not a set-aside file of poledger"));
  }
  std::vector<RecordedEvent> records;
  size_t at = magic.size();
  while (at < data.size()) {
    if (data.size() - at < 12) {
      return absl::DataLossError(
          absl::StrCat(path, ": truncated after ", records.size(), " records"));
    }
    ASSIGN_OR_RETURN(uint64_t position, rf::DecodeFixed64(data.substr(at, 8)));
    uint32_t n = 0;
    for (int i = 0; i < 4; ++i) {
      n = (n << 8) | static_cast<uint8_t>(data[at + 8 + i]);
    }
    at += 12;
    if (data.size() - at < n) {
      return absl::DataLossError(
          absl::StrCat(path, ": truncated in the record at ", position));
    }
    std::vector<RecordedEvent> record;
    RETURN_IF_ERROR(rf::DecodeRecordValue(
        position, absl::string_view(data).substr(at, n), true, &record));
    at += n;
    if (!records.empty() &&
        (position != records.back().position + 1 ||
         record.front().prev_hash != records.back().hash)) {
      return absl::DataLossError(absl::StrCat(
          path, ": the record at ", position,
          " does not follow the one before it"));
    }
    for (RecordedEvent& e : record) records.push_back(std::move(e));
  }
  return records;
}

}  // namespace poledger
