// The server as grpcurl sees it: every service it lists through server
// reflection (v1alpha) has its descriptors served, and the health check
// works from those descriptors alone, with no compiled-in health stubs.
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/dynamic_message.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/byte_buffer.h"
#include "gtest/gtest.h"
#include "tests/eventstore/store_test_util.h"
#include "tests/testing/server_process.h"

namespace poledger {
namespace {

namespace refl = ::grpc::reflection::v1alpha;
using ::testing::Contains;

class ReflectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start(POLEDGER_SERVER_BINARY,
                              {"--data-dir=" + dir_.path() + "/data"}))
        << server_.output();
    channel_ = grpc::CreateChannel(server_.address(),
                                   grpc::InsecureChannelCredentials());
  }

  // One request on the reflection stream, one answer.
  refl::ServerReflectionResponse Ask(const refl::ServerReflectionRequest& req) {
    auto stub = refl::ServerReflection::NewStub(channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto stream = stub->ServerReflectionInfo(&ctx);
    refl::ServerReflectionResponse response;
    EXPECT_TRUE(stream->Write(req));
    stream->WritesDone();
    EXPECT_TRUE(stream->Read(&response));
    (void)stream->Finish();
    return response;
  }

  // Builds `symbol`'s file (and the files it imports) from the server's
  // answers into `pool`. Returns false, with why, if the server does not
  // serve them.
  bool Load(const std::string& symbol, google::protobuf::DescriptorPool& pool,
            std::string& why) {
    refl::ServerReflectionRequest req;
    req.set_file_containing_symbol(symbol);
    refl::ServerReflectionResponse answer = Ask(req);
    if (answer.has_error_response()) {
      why = answer.error_response().error_message();
      return false;
    }
    // The server sends the file and its imports; build imports first.
    std::vector<google::protobuf::FileDescriptorProto> files;
    for (const std::string& bytes :
         answer.file_descriptor_response().file_descriptor_proto()) {
      files.emplace_back().ParseFromString(bytes);
    }
    for (size_t built = 0, round = 0; built < files.size() && round < 10; ++round) {
      for (const auto& f : files) {
        if (pool.FindFileByName(f.name()) != nullptr) continue;
        bool ready = true;
        for (const std::string& dep : f.dependency()) {
          ready = ready && pool.FindFileByName(dep) != nullptr;
        }
        if (ready && pool.BuildFile(f) != nullptr) ++built;
      }
    }
    if (pool.FindServiceByName(symbol) == nullptr &&
        pool.FindMessageTypeByName(symbol) == nullptr) {
      why = "the served files do not define " + symbol;
      return false;
    }
    return true;
  }

  TempDir dir_;
  testing::ServerProcess server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(ReflectionTest, HealthCheckThroughReflectionAlone) {
  refl::ServerReflectionRequest list;
  list.set_list_services("");
  refl::ServerReflectionResponse services = Ask(list);
  std::vector<std::string> names;
  for (const auto& s : services.list_services_response().service()) {
    names.push_back(s.name());
  }
  EXPECT_THAT(names, Contains("grpc.health.v1.Health"));

  google::protobuf::DescriptorPool pool;
  std::string why;
  ASSERT_TRUE(Load("grpc.health.v1.Health", pool, why)) << why;
  const google::protobuf::ServiceDescriptor* service =
      pool.FindServiceByName("grpc.health.v1.Health");
  ASSERT_NE(service, nullptr);
  const google::protobuf::MethodDescriptor* check = service->FindMethodByName("Check");
  ASSERT_NE(check, nullptr);

  google::protobuf::DynamicMessageFactory factory(&pool);
  std::unique_ptr<google::protobuf::Message> request(
      factory.GetPrototype(check->input_type())->New());
  std::unique_ptr<google::protobuf::Message> response(
      factory.GetPrototype(check->output_type())->New());
  const std::string method = absl::StrCat("/", service->full_name(), "/", check->name());

  // Until the log is open the server is NOT_SERVING; then SERVING.
  std::string status;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (status != "SERVING" && absl::Now() < deadline) {
    grpc::GenericStub stub(channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::Slice slice(request->SerializeAsString());
    grpc::ByteBuffer in(&slice, 1);
    grpc::ByteBuffer out;
    std::promise<grpc::Status> done;
    stub.UnaryCall(&ctx, method, grpc::StubOptions(), &in, &out,
                   [&done](grpc::Status s) { done.set_value(std::move(s)); });
    const grpc::Status s = done.get_future().get();
    ASSERT_TRUE(s.ok()) << s.error_message();
    std::vector<grpc::Slice> slices;
    ASSERT_TRUE(out.Dump(&slices).ok());
    std::string bytes;
    for (const grpc::Slice& piece : slices) {
      bytes.append(reinterpret_cast<const char*>(piece.begin()), piece.size());
    }
    ASSERT_TRUE(response->ParseFromString(bytes));
    const google::protobuf::FieldDescriptor* field =
        response->GetDescriptor()->FindFieldByName("status");
    ASSERT_NE(field, nullptr);
    status = response->GetReflection()->GetEnum(*response, field)->name();
    if (status != "SERVING") absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(status, "SERVING");
}

// Every service the server lists has its descriptors served (what grpcurl
// needs for `describe` and for calls).
TEST_F(ReflectionTest, EveryListedServiceIsDescribed) {
  refl::ServerReflectionRequest list;
  list.set_list_services("");
  refl::ServerReflectionResponse services = Ask(list);
  ASSERT_GT(services.list_services_response().service_size(), 5);
  for (const auto& s : services.list_services_response().service()) {
    google::protobuf::DescriptorPool pool;
    std::string why;
    EXPECT_TRUE(Load(s.name(), pool, why)) << s.name() << ": " << why;
  }
}

}  // namespace
}  // namespace poledger
