// Included by the harnesses that parse protobuf: protobuf logs every string
// field that is not UTF-8, which would flood the fuzzer's output and slow
// it down many times over.
#ifndef POLEDGER_FUZZ_QUIET_PROTOBUF_H_
#define POLEDGER_FUZZ_QUIET_PROTOBUF_H_

#include "google/protobuf/stubs/logging.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

#endif  // POLEDGER_FUZZ_QUIET_PROTOBUF_H_
