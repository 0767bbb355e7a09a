// The child of eventstore_crash_test: appends from many threads until it is
// killed, writing one Ack to stdout for each event of each acknowledged
// append. Appends take one, two or three events in turn, so the log holds
// records of one event and of several.
//
// Usage: eventstore_crash_child DIR CYCLE THREADS
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "eventstore/rocksdb_event_store.h"
#include "tests/eventstore/crash_protocol.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s DIR CYCLE THREADS\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const uint32_t cycle = static_cast<uint32_t>(std::atoi(argv[2]));
  const int threads = std::atoi(argv[3]);
  poledger::RocksDbEventStoreOptions options;
  options.path = dir;
  auto store = poledger::RocksDbEventStore::Open(options);
  if (!store.ok()) {
    std::fprintf(stderr, "open: %s\n", store.status().ToString().c_str());
    return 1;
  }
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      const uint32_t thread = static_cast<uint32_t>(t);
      for (uint32_t seq = 0, round = 0;; ++round) {
        const uint32_t events = 1 + round % 3;
        poledger::AppendRequest request;
        poledger::StreamAppend& stream = request.streams.emplace_back();
        stream.stream_id = poledger::crash::StreamId(cycle, thread);
        stream.expected_version = poledger::ExpectedVersion::Exact(seq);
        for (uint32_t k = 0; k < events; ++k) {
          stream.events.push_back(
              {"CrashTestEvent",
               poledger::crash::Payload(cycle, thread, seq + k), ""});
        }
        auto result = (*store)->Append(request);
        if (!result.ok()) {
          std::fprintf(stderr, "append: %s\n",
                       result.status().ToString().c_str());
          std::_Exit(1);
        }
        for (uint32_t k = 0; k < events; ++k) {
          poledger::crash::Ack ack{result->first_position + k, thread,
                                   seq + k};
          // Acks are smaller than PIPE_BUF, so each write is atomic.
          if (write(STDOUT_FILENO, &ack, sizeof(ack)) != sizeof(ack)) {
            std::_Exit(1);
          }
        }
        seq += events;
      }
    });
  }
  for (std::thread& w : workers) w.join();
  return 0;
}
