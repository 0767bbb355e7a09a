// Names the calling thread, as `top -H`, `ps -L`, perf and gdb show it.
// Threads otherwise inherit the name of the thread that created them (for
// a thread started from a gRPC callback, gRPC's "nexting_thread").
#ifndef POLEDGER_BASE_THREAD_NAME_H_
#define POLEDGER_BASE_THREAD_NAME_H_

#include <pthread.h>

namespace poledger {

// `name`: at most 15 characters; Linux refuses a longer one (ERANGE) and
// the thread keeps its old name. Best effort.
inline void SetCurrentThreadName(const char* name) {
  (void)pthread_setname_np(pthread_self(), name);
}

}  // namespace poledger

#endif  // POLEDGER_BASE_THREAD_NAME_H_
