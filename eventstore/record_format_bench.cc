// Google Benchmark micro-benchmarks of the record codec: what one record
// costs to seal (encode + hash), decode, and decode with verification.
#include <string>

#include "benchmark/benchmark.h"
#include "eventstore/record_format.h"

namespace poledger {
namespace record_format {
namespace {

RecordedEvent Sample() {
  RecordedEvent r;
  r.position = 123456;
  r.stream_id = "account/123456789012";
  r.stream_version = 4242;
  r.event_type = "poledger.v1.InvoiceRecorded";
  r.payload.assign(300, 'x');
  r.event_id = "evt-123456";
  r.request_id = "req-abcdef";
  r.actor = "billing-service";
  r.timestamp = absl::FromUnixSeconds(1767225600);
  return r;
}

void BM_SealRecord(benchmark::State& state) {
  RecordedEvent r = Sample();
  for (auto _ : state) benchmark::DoNotOptimize(SealRecord(&r));
}
BENCHMARK(BM_SealRecord);

void BM_DecodeRecord(benchmark::State& state) {
  RecordedEvent r = Sample();
  const std::string value = SealRecord(&r);
  const bool verify = state.range(0) != 0;
  std::vector<RecordedEvent> out;
  for (auto _ : state) {
    out.clear();
    benchmark::DoNotOptimize(DecodeRecordValue(r.position, value, verify, &out));
  }
}
BENCHMARK(BM_DecodeRecord)->Arg(0)->Arg(1)->ArgName("verify");

}  // namespace
}  // namespace record_format
}  // namespace poledger

BENCHMARK_MAIN();
