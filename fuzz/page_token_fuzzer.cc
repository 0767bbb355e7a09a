// Fuzzes page tokens: any string as a token for any query. Properties:
// nothing crashes; a token is accepted only for the query it was issued
// for, and resumes where it was issued.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "api/page_token.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t cut = input.find('\n');
  const std::string query = cut == std::string::npos ? "" : input.substr(0, cut);
  const std::string token = cut == std::string::npos ? input : input.substr(cut + 1);
  (void)poledger::ParsePageToken(token, query);
  (void)poledger::ParseNumberPageToken(token, query);
  // Resume values are purchase order ids and numbers: short.
  if (token.size() > 256) return 0;
  const std::string issued = poledger::MakePageToken(query, token);
  absl::StatusOr<std::string> resumed = poledger::ParsePageToken(issued, query);
  if (!resumed.ok() || *resumed != token ||
      poledger::ParsePageToken(issued, query + "x").ok()) {
    std::fprintf(stderr, "a page token is not bound to its query\n");
    std::abort();
  }
  return 0;
}
