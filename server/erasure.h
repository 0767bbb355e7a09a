// ErasePersonalData's work (README "Personal data"): find the accounts that
// hold a data subject and erase it from each, through the ledger, so that
// each erasure is an event of the account's stream that destroys the
// subject's key in the same write.
#ifndef POLEDGER_SERVER_ERASURE_H_
#define POLEDGER_SERVER_ERASURE_H_

#include "absl/status/statusor.h"
#include "ledger/ledger.h"
#include "poledger/v1/log.pb.h"

namespace poledger {

// Erases the subject `request` names from its account, or from every
// account of `ledger` that holds it; `who` gives the actor and correlation
// id of the erasure events. Errors as AdminService.ErasePersonalData.
absl::StatusOr<v1::ErasePersonalDataResponse> ErasePersonalData(
    Ledger& ledger, const PersonalData& keys, const RequestContext& who,
    const v1::ErasePersonalDataRequest& request);

}  // namespace poledger

#endif  // POLEDGER_SERVER_ERASURE_H_
