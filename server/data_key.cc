#include "server/data_key.h"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "ledger/personal_data.h"
#include "server/log.h"

namespace poledger {

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
  if (key_file.empty()) {
    if (key_text.empty()) return std::string();
    absl::StatusOr<std::string> key = ParseDataKey(key_text);
    if (!key.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("POLEDGER_DATA_KEY: ", key.status().message()));
    }
    return key;
  }
  std::error_code error;
  const std::filesystem::path file =
      std::filesystem::weakly_canonical(key_file, error);
  const std::filesystem::path dir =
      std::filesystem::weakly_canonical(data_dir, error);
  const std::string dir_prefix = dir.string() + "/";
  if (absl::StartsWith(file.string(), dir_prefix)) {
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

}  // namespace poledger
