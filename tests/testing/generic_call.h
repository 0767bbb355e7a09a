// Calls any poledger.v1 method by its descriptor, through gRPC's generic
// stub: for tests that go over every method (authorization, shards).
#ifndef POLEDGER_TESTS_TESTING_GENERIC_CALL_H_
#define POLEDGER_TESTS_TESTING_GENERIC_CALL_H_

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "grpcpp/channel.h"
#include "grpcpp/generic/generic_stub.h"

namespace poledger {
namespace testing {

// A request for `method` about `account`: its account_id set (if it has
// one), nothing else, so that no allowed call writes anything either.
inline std::string RequestBytes(
    const google::protobuf::MethodDescriptor* method,
    const std::string& account) {
  std::unique_ptr<google::protobuf::Message> request(
      google::protobuf::MessageFactory::generated_factory()
          ->GetPrototype(method->input_type())
          ->New());
  if (const auto* f = method->input_type()->FindFieldByName("account_id")) {
    request->GetReflection()->SetString(request.get(), f, account);
  }
  return request->SerializeAsString();
}

// Calls `method` with `request` (and `metadata`) through the generic stub.
// A stream that sends its first message counts as OK (then it is
// cancelled).
inline grpc::Status CallGeneric(
    grpc::Channel* channel, const google::protobuf::MethodDescriptor* method,
    const std::string& request,
    const std::map<std::string, std::string>& metadata = {}) {
  grpc::GenericStub stub(channel->shared_from_this());
  const std::string path =
      absl::StrCat("/", method->service()->full_name(), "/", method->name());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  for (const auto& [key, value] : metadata) ctx.AddMetadata(key, value);
  grpc::CompletionQueue cq;
  grpc::Slice slice(request);
  grpc::ByteBuffer in(&slice, 1);
  grpc::ByteBuffer out;
  grpc::Status status;
  void* tag;
  bool ok;
  bool got_message = false;
  if (!method->server_streaming()) {
    auto call = stub.PrepareUnaryCall(&ctx, path, in, &cq);
    call->StartCall();
    call->Finish(&out, &status, reinterpret_cast<void*>(1));
    cq.Next(&tag, &ok);
  } else {
    auto call = stub.PrepareCall(&ctx, path, &cq);
    call->StartCall(reinterpret_cast<void*>(1));
    cq.Next(&tag, &ok);
    if (ok) {
      call->Write(in, reinterpret_cast<void*>(2));
      cq.Next(&tag, &ok);
      call->WritesDone(reinterpret_cast<void*>(3));
      cq.Next(&tag, &ok);
      call->Read(&out, reinterpret_cast<void*>(4));
      cq.Next(&tag, &ok);
      got_message = ok;
    }
    if (got_message) ctx.TryCancel();
    call->Finish(&status, reinterpret_cast<void*>(5));
    while (cq.Next(&tag, &ok) && tag != reinterpret_cast<void*>(5)) {
    }
  }
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return got_message ? grpc::Status::OK : status;
}

}  // namespace testing
}  // namespace poledger

#endif  // POLEDGER_TESTS_TESTING_GENERIC_CALL_H_
