// Page tokens of the List and Read methods: opaque to clients, checked by
// the server. A token is base64url of the value to resume at and a 12-byte
// tag, SHA-256 over the token's purpose, the query it was issued for and
// that value. A token the server did not issue, or issued for another
// query (another account or filter), is INVALID_ARGUMENT. Tokens are not
// secret and carry no expiry: they stay valid across restarts, and a
// client that forged one could only have asked for that page anyway.
//
// Thread safety: pure functions.
#ifndef POLEDGER_API_PAGE_TOKEN_H_
#define POLEDGER_API_PAGE_TOKEN_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace poledger {

// Returns the token that resumes `query` at `resume`.
std::string MakePageToken(absl::string_view query, absl::string_view resume);

// Returns the resume value of `token` for `query`; "" for an empty token.
// INVALID_ARGUMENT (field page_token) if the server did not issue `token`
// for `query`.
absl::StatusOr<std::string> ParsePageToken(absl::string_view token,
                                           absl::string_view query);

// The same for tokens that resume at a number.
std::string MakeNumberPageToken(absl::string_view query, uint64_t resume);
absl::StatusOr<uint64_t> ParseNumberPageToken(absl::string_view token,
                                              absl::string_view query);

}  // namespace poledger

#endif  // POLEDGER_API_PAGE_TOKEN_H_
