// Fuzzes snapshot part decoding as a restart meets it: an account part,
// then invoice parts added to it. Properties: nothing crashes; a part that
// loads saves back to a part that loads to the same state.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/account.h"
#include "poledger/v1/snapshot.pb.h"
#include "fuzz/quiet_protobuf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace poledger;  // NOLINT
  // Input: the account part's length (2 bytes, big-endian), the account
  // part, then an invoice part.
  if (size < 2) return 0;
  const size_t length = (size_t{data[0]} << 8) | data[1];
  if (length > size - 2) return 0;
  const size_t split = 2 + length;
  v1::AccountSnapshot account;
  if (!account.ParseFromArray(data + 2, static_cast<int>(length))) return 0;
  absl::StatusOr<core::AccountState> state = core::FromSnapshot(account);
  if (!state.ok()) return 0;
  v1::InvoiceSnapshot invoice;
  if (invoice.ParseFromArray(data + split, static_cast<int>(size - split))) {
    (void)core::AddInvoiceSnapshot(*state, invoice);
  }
  const std::string saved = core::ToSnapshot(*state).SerializeAsString();
  v1::AccountSnapshot reparsed;
  absl::StatusOr<core::AccountState> reloaded =
      reparsed.ParseFromString(saved) ? core::FromSnapshot(reparsed)
                                      : absl::DataLossError("unparsed");
  if (!reloaded.ok() ||
      core::ToSnapshot(*reloaded).SerializeAsString() != saved) {
    std::fprintf(stderr, "a loaded snapshot does not round-trip\n");
    std::abort();
  }
  return 0;
}
