// jemalloc's options for the binaries that link it (poledger-server and its
// benchmarks), read by jemalloc at start-up from this symbol; the
// MALLOC_CONF environment variable still overrides them.
//
// thp:always backs jemalloc's arenas and metadata with transparent huge
// pages: the ledger's state grows by every purchase order and invoice, and
// faulting that memory in 4 KiB pages took ~15% of the write path's cycles
// (ledger_bench: CreatePurchaseOrder 45 -> 36 CPU us per command).
extern "C" {
extern const char* malloc_conf;
const char* malloc_conf = "thp:always,metadata_thp:always";
}
