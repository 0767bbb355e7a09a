#include "server/status_mapping.h"

#include "api/error_model.h"

namespace poledger {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const google::rpc::Status details = api::ToRpcStatus(status);
  return grpc::Status(static_cast<grpc::StatusCode>(details.code()),
                      details.message(), details.SerializeAsString());
}

}  // namespace poledger
