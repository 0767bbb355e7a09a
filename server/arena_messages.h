// ArenaMessages: a grpc::MessageAllocator that puts one call's request and
// response on a protobuf arena of their own.
//
// For calls whose messages hold many small sub-messages and strings (a
// batch of 1,000 invoices parsed, then as many results built), the heap
// allocations and the destructor's walk over every one of them cost more
// than the work the call does with them. On an arena they are bump-pointer
// allocations, freed at once when gRPC releases the call's messages.
//
// A handler that fills a response on an arena must build it in place:
// assigning a heap message to it (`*response = std::move(heap)`) copies.
#ifndef POLEDGER_SERVER_ARENA_MESSAGES_H_
#define POLEDGER_SERVER_ARENA_MESSAGES_H_

#include <grpcpp/support/message_allocator.h>

#include "google/protobuf/arena.h"

namespace poledger {

template <typename Request, typename Response>
class ArenaMessages final : public grpc::MessageAllocator<Request, Response> {
 public:
  grpc::MessageHolder<Request, Response>* AllocateMessages() override {
    return new Holder;
  }

 private:
  class Holder final : public grpc::MessageHolder<Request, Response> {
   public:
    Holder() : arena_(Options()) {
      this->set_request(
          google::protobuf::Arena::CreateMessage<Request>(&arena_));
      this->set_response(
          google::protobuf::Arena::CreateMessage<Response>(&arena_));
    }
    void Release() override { delete this; }

   private:
    static google::protobuf::ArenaOptions Options() {
      google::protobuf::ArenaOptions options;
      // Blocks grow from 4 KiB up to 256 KiB: a small call costs one small
      // block, a batch of 1,000 invoices (~1 MiB of messages) a few large.
      options.start_block_size = 4 << 10;
      options.max_block_size = 256 << 10;
      return options;
    }

    google::protobuf::Arena arena_;
  };
};

}  // namespace poledger

#endif  // POLEDGER_SERVER_ARENA_MESSAGES_H_
