#include "server/erasure.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/commands.h"
#include "core/errors.h"

namespace poledger {
namespace {

constexpr size_t kMaxEmail = 320;

absl::Status Validate(const v1::ErasePersonalDataRequest& request) {
  if (!request.account_id().empty()) {
    RETURN_IF_ERROR(ValidateAccountId(request.account_id()));
  }
  if (request.email().empty() == request.subject_ref().empty()) {
    return core::InvalidField(
        "email", "give the subject's e-mail address or its subject_ref, "
                 "exactly one");
  }
  if (request.email().size() > kMaxEmail) {
    return core::InvalidField(
        "email", absl::StrCat("is over ", kMaxEmail, " characters"));
  }
  if (!request.subject_ref().empty() &&
      request.subject_ref().size() != core::kSubjectRefBytes) {
    return core::InvalidField(
        "subject_ref", absl::StrCat("is ", request.subject_ref().size(),
                                    " bytes; a reference is ",
                                    core::kSubjectRefBytes));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::ErasePersonalDataResponse> ErasePersonalData(
    Ledger& ledger, const PersonalData& keys, const RequestContext& who,
    const v1::ErasePersonalDataRequest& request) {
  RETURN_IF_ERROR(Validate(request));
  if (!keys.can_seal()) {
    return core::DomainError(absl::StatusCode::kFailedPrecondition,
                             core::reason::kNoDataKey,
                             "erasing personal data needs --data-key-file");
  }
  const std::vector<std::string> accounts =
      request.account_id().empty()
          ? ledger.AccountIds()
          : std::vector<std::string>{request.account_id()};
  v1::ErasePersonalDataResponse out;
  for (const std::string& account : accounts) {
    std::string ref = request.subject_ref();
    if (ref.empty()) {
      ASSIGN_OR_RETURN(ref, keys.ReferenceOf(account, request.email()));
      if (ref.empty()) continue;  // No personal data in this account.
    }
    ASSIGN_OR_RETURN(PersonalData::Subject subject,
                     keys.SubjectState(account, ref));
    if (subject == PersonalData::Subject::kUnknown) continue;
    v1::ErasePersonalDataResponse::Erased* erased = out.add_erased();
    erased->set_account_id(account);
    erased->set_subject_ref(ref);
    if (subject == PersonalData::Subject::kErased) continue;
    RequestContext ctx = who;
    ctx.account_id = account;
    ctx.request_id.clear();
    ASSIGN_OR_RETURN(
        ExecuteResult result,
        ledger.Execute(ctx, core::ErasePersonalData{
                                ref, request.request_reference()}));
    if (!result.events.empty()) {
      erased->set_position(result.events.front().position);
    }
  }
  if (out.erased().empty()) {
    return core::DomainError(
        absl::StatusCode::kNotFound, core::reason::kSubjectNotFound,
        request.account_id().empty()
            ? std::string("no account holds this subject")
            : absl::StrCat("account ", core::Quote(request.account_id()),
                           " holds no such subject"));
  }
  return out;
}

}  // namespace poledger
