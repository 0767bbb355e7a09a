// The operator's key-encryption key for the personal data keys (README
// "Personal data"): from --data-key-file or POLEDGER_DATA_KEY, never from
// the data directory.
#ifndef POLEDGER_SERVER_DATA_KEY_H_
#define POLEDGER_SERVER_DATA_KEY_H_

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

}  // namespace poledger

#endif  // POLEDGER_SERVER_DATA_KEY_H_
