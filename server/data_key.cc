#include "server/data_key.h"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "eventstore/rocksdb_event_store.h"
#include "ledger/personal_data.h"
#include "server/log.h"

namespace poledger {

absl::StatusOr<std::string> ReadDataKeyFile(const std::string& key_file,
                                            const std::string& data_dir) {
  std::error_code error;
  const std::filesystem::path file =
      std::filesystem::weakly_canonical(key_file, error);
  const std::filesystem::path dir =
      std::filesystem::weakly_canonical(data_dir, error);
  if (absl::StartsWith(file.string(), dir.string() + "/")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data_key_file: ", key_file, " is inside the data directory ",
        data_dir, "; the key must live elsewhere, or every copy of the "
        "directory (a backup, a replica's disk) would carry what opens it"));
  }
  std::ifstream in(key_file);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("data_key_file: cannot read ", key_file));
  }
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<std::string> key = ParseDataKey(text.str());
  if (!key.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data_key_file: ", key_file, ": ", key.status().message()));
  }
  struct stat st;
  if (::stat(key_file.c_str(), &st) == 0 && (st.st_mode & S_IROTH) != 0) {
    log::Warning("data_key_readable",
                 absl::StrCat("the data key file ", key_file,
                              " is readable by every user: chmod 600 it"));
  }
  return key;
}

absl::StatusOr<std::string> ReadDataKey(const std::string& key_file,
                                        const std::string& given_text,
                                        const std::string& data_dir) {
  std::string key_text = given_text;
  if (const char* env = std::getenv("POLEDGER_DATA_KEY");
      key_text.empty() && env != nullptr) {
    key_text = env;
  }
  if (!key_file.empty() && !key_text.empty()) {
    return absl::InvalidArgumentError(
        "data_key_file: give the data key by --data-key-file or by "
        "POLEDGER_DATA_KEY, not both");
  }
  if (!key_file.empty()) return ReadDataKeyFile(key_file, data_dir);
  if (key_text.empty()) return std::string();
  absl::StatusOr<std::string> key = ParseDataKey(key_text);
  if (!key.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("POLEDGER_DATA_KEY: ", key.status().message()));
  }
  return key;
}

absl::StatusOr<size_t> RotateDataKey(const std::string& data_dir,
                                     const std::string& old_file,
                                     const std::string& new_file) {
  absl::StatusOr<std::string> old_kek = ReadDataKey(old_file, "", data_dir);
  if (!old_kek.ok()) return old_kek.status();
  if (old_kek->empty()) {
    return absl::InvalidArgumentError(
        "data_key_file: give the current key (--data-key-file or "
        "POLEDGER_DATA_KEY) to rotate it");
  }
  if (new_file.empty()) {
    return absl::InvalidArgumentError("new_data_key_file: is required");
  }
  // The new key comes from its file only.
  absl::StatusOr<std::string> new_kek = ReadDataKeyFile(new_file, data_dir);
  if (!new_kek.ok()) return new_kek.status();
  RocksDbEventStoreOptions options;
  options.path = data_dir;
  options.create_if_missing = false;
  absl::StatusOr<std::unique_ptr<RocksDbEventStore>> store =
      RocksDbEventStore::Open(options);
  if (!store.ok()) return store.status();
  return PersonalData::Rewrap(store->get(), *old_kek, *new_kek);
}

}  // namespace poledger
