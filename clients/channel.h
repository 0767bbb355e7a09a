// The channel every shipped client opens: with poledger's service config
// (clients/service_config.json): a 10 s deadline for unary calls, and
// UNAVAILABLE retried up to 5 attempts with exponential backoff (0.5 s
// doubling, jittered). Writes are safe to retry because they carry request ids
// (and invoices their ids); streams are not retried, their callers resume after
// a position.
#ifndef POLEDGER_CLIENTS_CHANNEL_H_
#define POLEDGER_CLIENTS_CHANNEL_H_

#include <memory>
#include <string>

#include "clients/service_config.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace poledger {

inline std::shared_ptr<grpc::Channel> NewClientChannel(
    const std::string& address, grpc::ChannelArguments args = {}) {
  args.SetServiceConfigJSON(kServiceConfigJson);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(),
                                   args);
}

}  // namespace poledger

#endif  // POLEDGER_CLIENTS_CHANNEL_H_
