// The operator's key-encryption key for the personal data keys (README
// "Personal data"): from --data-key-file or POLEDGER_DATA_KEY, never from
// the data directory.
#ifndef POLEDGER_SERVER_DATA_KEY_H_
#define POLEDGER_SERVER_DATA_KEY_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"

namespace poledger {

// The key (kDataKeyBytes) from `key_file` or `key_text` (empty: the
// environment's POLEDGER_DATA_KEY), or "" when neither source gives one.
// INVALID_ARGUMENT if both are given, the file is in the data directory
// (`data_dir`), cannot be read, or holds no key.
absl::StatusOr<std::string> ReadDataKey(const std::string& key_file,
                                        const std::string& key_text,
                                        const std::string& data_dir);

// The key in `key_file`, which must be outside `data_dir`; errors as
// ReadDataKey.
absl::StatusOr<std::string> ReadDataKeyFile(const std::string& key_file,
                                            const std::string& data_dir);

// Rotates the key-encryption key of the stopped server's `data_dir`: from
// the one `old_file` (or POLEDGER_DATA_KEY) holds to the one in
// `new_file` (README "Personal data"). Returns the keys rewrapped. Errors
// as ReadDataKey and PersonalData::Rewrap; UNAVAILABLE while a server
// holds the directory.
absl::StatusOr<size_t> RotateDataKey(const std::string& data_dir,
                                     const std::string& old_file,
                                     const std::string& new_file);

}  // namespace poledger

#endif  // POLEDGER_SERVER_DATA_KEY_H_
