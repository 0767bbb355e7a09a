// poledger-audit: verify, replay and export a poledger event log.
//
//   poledger-audit verify  --data-dir=DIR [--expect=POSITION:DIGEST ...]
//   poledger-audit check-snapshot --data-dir=DIR
//   poledger-audit export  --data-dir=DIR [--account=A] [--po=P]
//                          [--type=T ...] [--from=N] [--to=N]
//   poledger-audit replay  --data-dir=DIR --account=A [--po=P]
//                          (--position=N | --time=RFC3339)
//   poledger-audit history --data-dir=DIR --account=A --po=P
//   poledger-audit terms   --data-dir=DIR
//   poledger-audit set-aside FILE
//
// Behind shards, --data-dir and --server take every shard's (comma-
// separated, shard 0 first): verify and check-snapshot check each (verify
// also that every record's account belongs to its shard); the others read
// the shard that holds --account.
//
// DIR may be a running server's data directory: it is opened as a RocksDB
// secondary instance, read-only. Instead of --data-dir, --server=HOST:PORT
// reads a running server's log through EventLogService (records' hashes
// are recomputed client-side). Exit status: 0 fine, 1 the log is broken
// (verify) or the data is damaged, 2 bad usage, 3 anything else (not found,
// I/O). terms lists the leaders' terms a replicated shard's log records;
// set-aside prints the records a former leader took off its log when it
// rejoined (DIR/set-aside/*.log), as export does. verify --expect fails (1) unless the log still has that digest at
// that position: keep digests from GetLogDigest outside the server.
// check-snapshot fails (1) unless the state loaded from the snapshot plus
// the rest of the log equals the state rebuilt from the whole log.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/time/time.h"
#include "clients/audit.h"
#include "clients/channel.h"
#include "clients/remote_event_store.h"
#include "core/shard.h"
#include "eventstore/log_rewind.h"
#include "ledger/ledger.h"
#include "ledger/term_record.h"

namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "poledger-audit: %s\n", status.ToString().c_str());
  return status.code() == absl::StatusCode::kDataLoss ? 1 : 3;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("poledger-audit: verify, replay and export a poledger event log");
  app.require_subcommand(1);
  std::vector<std::string> data_dirs;
  std::string account;
  std::string po;
  std::vector<std::string> types;
  uint64_t from = 1;
  uint64_t to = UINT64_MAX;
  uint64_t position = 0;
  std::string time;

  std::vector<std::string> servers;
  poledger::ClientTls tls;
  auto source = [&](CLI::App* c) {
    auto* dir = c->add_option("--data-dir", data_dirs,
                              "Server data directory (offline; safe while "
                              "the server runs); behind shards, every "
                              "shard's, comma-separated, shard 0 first")
                    ->delimiter(',');
    auto* srv = c->add_option("--server", servers,
                              "Or a running server (online, host:port), or "
                              "every shard's")
                    ->delimiter(',');
    dir->excludes(srv);
    poledger::AddTlsOptions(c, &tls);
  };
  // The personal data keys' key-encryption key: with it, replay opens the
  // contacts of a data directory.
  std::string data_key_file;
  CLI::App* verify = app.add_subcommand(
      "verify", "Check every record's hash and chain link; print the digest");
  source(verify);
  std::vector<std::string> expects;
  verify->add_option("--expect", expects,
                     "POSITION:DIGEST from GetLogDigest, kept elsewhere: fail "
                     "unless the log still has that digest there");

  CLI::App* check_snapshot = app.add_subcommand(
      "check-snapshot",
      "Compare the state loaded from the snapshot plus the log after it with "
      "the state rebuilt from the whole log");
  check_snapshot
      ->add_option("--data-dir", data_dirs,
                   "Server data directory (safe while the server runs)")
      ->required();

  CLI::App* export_cmd = app.add_subcommand(
      "export", "Write events as JSON lines, optionally filtered");
  source(export_cmd);
  export_cmd->add_option("--account", account, "Only this account");
  export_cmd->add_option("--po", po, "Only events about this purchase order");
  export_cmd->add_option("--type", types,
                         "Only these event types (e.g. invoice_recorded)");
  export_cmd->add_option("--from", from, "First position");
  export_cmd->add_option("--to", to, "Last position");

  CLI::App* replay = app.add_subcommand(
      "replay", "Rebuild purchase orders as of a position or a time");
  source(replay);
  replay->add_option("--account", account, "Account")->required();
  replay->add_option("--po", po, "Only this purchase order");
  auto* at_position = replay->add_option("--position", position, "Log position");
  auto* at_time = replay->add_option("--time", time, "RFC 3339 time");
  at_position->excludes(at_time);

  CLI::App* history = app.add_subcommand(
      "history", "One purchase order's changes, who made them, balances");
  source(history);
  history->add_option("--account", account, "Account")->required();
  history->add_option("--po", po, "Purchase order")->required();
  replay->add_option("--data-key-file", data_key_file,
                     "With --data-dir: the file of the key that opens the "
                     "contacts (without it, contacts show no fields)");

  CLI::App* terms = app.add_subcommand(
      "terms", "The terms of a replicated shard's log: who led from where");
  source(terms);

  std::string set_aside_file;
  CLI::App* set_aside = app.add_subcommand(
      "set-aside", "The records a rejoining former leader set aside");
  set_aside->add_option("file", set_aside_file, "A set-aside file")
      ->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }

  if (set_aside->parsed()) {
    auto records = poledger::ReadSetAside(set_aside_file);
    if (!records.ok()) return Fail(records.status());
    const absl::Status written =
        poledger::audit::ExportRecords(*records, std::cout);
    std::cout.flush();
    return written.ok() ? 0 : Fail(written);
  }
  if (data_dirs.empty() == servers.empty()) {
    std::fprintf(stderr, "give --data-dir or --server\n");
    return 2;
  }
  // One log, or each shard's (shard I is the I-th).
  std::vector<std::shared_ptr<poledger::EventStore>> stores;
  std::vector<std::shared_ptr<poledger::RocksDbEventStore>> local_stores;
  if (!servers.empty()) {
    auto credentials = poledger::ClientCredentials(tls);
    if (!credentials.ok()) {
      std::fprintf(stderr, "%s\n",
                   std::string(credentials.status().message()).c_str());
      return 2;
    }
    for (const std::string& server : servers) {
      stores.push_back(std::make_shared<poledger::RemoteEventStore>(
          poledger::NewClientChannel(server, *credentials)));
      local_stores.push_back(nullptr);
    }
  } else {
    for (const std::string& dir : data_dirs) {
      auto local = poledger::audit::OpenDataDir(dir);
      if (!local.ok()) return Fail(local.status());
      local_stores.push_back(*local);
      stores.push_back(*std::move(local));
    }
  }
  const uint32_t shards = static_cast<uint32_t>(stores.size());
  if (shards > poledger::core::kMaxShards) {
    std::fprintf(stderr, "at most %u shards\n", poledger::core::kMaxShards);
    return 2;
  }
  // An account's commands read the shard that holds it.
  size_t only = 0;
  if (shards > 1 && !check_snapshot->parsed() && !verify->parsed()) {
    if (account.empty()) {
      std::fprintf(stderr,
                   "with several shards, export needs --account (or give "
                   "one shard's log: positions are each shard's own)\n");
      return 2;
    }
    only = poledger::core::ShardOf(account, shards);
  }
  const std::shared_ptr<poledger::EventStore> store = stores[only];
  // Heads each shard's part of the output when there are several.
  auto heading = [&](size_t i) {
    if (shards > 1) std::printf("shard %zu of %u:\n", i, shards);
  };

  // A bad --expect is bad usage.
  std::vector<std::pair<uint64_t, std::string>> pinned;
  for (const std::string& e : expects) {
    const size_t colon = e.find(':');
    uint64_t at = 0;
    if (colon == std::string::npos ||
        !absl::SimpleAtoi(absl::string_view(e).substr(0, colon), &at) ||
        e.size() - colon - 1 != 64) {
      std::fprintf(stderr, "--expect: want POSITION:DIGEST (64 hex digits)\n");
      return 2;
    }
    pinned.emplace_back(at, absl::AsciiStrToLower(e.substr(colon + 1)));
  }
  if (!pinned.empty() && shards > 1) {
    std::fprintf(stderr, "--expect: with one shard's log at a time\n");
    return 2;
  }

  if (check_snapshot->parsed()) {
    bool differs = false;
    for (size_t i = 0; i < stores.size(); ++i) {
      heading(i);
      auto report = poledger::audit::CheckSnapshot(*stores[i]);
      if (!report.ok()) return Fail(report.status());
      std::printf(
          "snapshot position: %llu\nhead: %llu\naccounts: %llu\nparts: %llu\n",
          static_cast<unsigned long long>(report->snapshot_position),
          static_cast<unsigned long long>(report->head),
          static_cast<unsigned long long>(report->accounts),
          static_cast<unsigned long long>(report->parts));
      for (const std::string& p : report->problems) {
        std::printf("DIFFERS: %s\n", p.c_str());
      }
      differs = differs || !report->problems.empty();
    }
    if (differs) return 1;
    std::printf("OK\n");
    return 0;
  }

  if (verify->parsed()) {
    const bool tty = isatty(STDERR_FILENO);
    bool fine = true;
    for (size_t i = 0; i < stores.size(); ++i) {
      heading(i);
      const poledger::core::Shard shard{static_cast<uint32_t>(i), shards};
      auto report = poledger::audit::Verify(
          *stores[i],
          [tty](uint64_t done, uint64_t total) {
            if (!tty || total == 0) return;
            const int width = 40;
            const int filled = static_cast<int>(width * done / total);
            std::fprintf(stderr, "\r[%s%s] %llu/%llu",
                         std::string(filled, '#').c_str(),
                         std::string(width - filled, ' ').c_str(),
                         static_cast<unsigned long long>(done),
                         static_cast<unsigned long long>(total));
          },
          shards > 1 ? &shard : nullptr);
      if (tty) std::fprintf(stderr, "\n");
      if (!report.ok()) return Fail(report.status());
      std::printf("records: %llu\nhead: %llu\ndigest: %s\n",
                  static_cast<unsigned long long>(report->records),
                  static_cast<unsigned long long>(report->head.position),
                  poledger::HashToHex(report->head.hash).c_str());
      if (!report->problem.empty()) {
        std::printf("BROKEN at position %llu: %s\n",
                    static_cast<unsigned long long>(report->first_broken),
                    report->problem.c_str());
        return 1;
      }
      if (report->foreign_records > 0) {
        std::printf(
            "WRONG SHARD: %llu records of other shards' accounts, "
            "the first at %s\n",
            static_cast<unsigned long long>(report->foreign_records),
            report->first_foreign.c_str());
        fine = false;
      }
      for (const auto& [at, digest] : pinned) {
        const std::string why =
            poledger::audit::CheckPinnedDigest(*stores[i], *report, at, digest);
        if (why.empty()) {
          std::printf("pinned %llu: matches\n",
                      static_cast<unsigned long long>(at));
        } else {
          std::printf("PINNED DIGEST MISMATCH: %s\n", why.c_str());
          fine = false;
        }
      }
      // The mark a server trusts at open must name a record of this log.
      if (local_stores[i] != nullptr) {
        const absl::Status mark = local_stores[i]->CheckVerifiedMark();
        if (mark.ok()) {
          // On stderr: the online answer (through a server) has no mark to
          // show, and stdout is the same either way.
          if (const uint64_t at = local_stores[i]->VerifiedMarkPosition();
              at > 0) {
            std::fprintf(stderr, "verified-through mark: %llu (holds)\n",
                         static_cast<unsigned long long>(at));
          }
        } else {
          std::printf("MARK DIFFERS: %s\n",
                      std::string(mark.message()).c_str());
          fine = false;
        }
      }
    }
    if (!fine) return 1;
    std::printf("OK\n");
    return 0;
  }
  if (terms->parsed()) {
    auto listed = poledger::ListTerms(*store);
    if (!listed.ok()) return Fail(listed.status());
    for (const poledger::TermInfo& t : *listed) {
      std::printf("term %llu from position %llu: %s (%s) since %s\n",
                  static_cast<unsigned long long>(t.term),
                  static_cast<unsigned long long>(t.position), t.node.c_str(),
                  t.address.c_str(),
                  absl::FormatTime(absl::RFC3339_full, t.time,
                                   absl::UTCTimeZone())
                      .c_str());
    }
    return 0;
  }
  if (export_cmd->parsed()) {
    poledger::audit::ExportFilter filter;
    filter.account_id = account;
    filter.purchase_order_id = po;
    filter.event_types = types;
    filter.from_position = from;
    filter.to_position = to;
    auto written = poledger::audit::Export(*store, filter, std::cout);
    std::cout.flush();
    if (!written.ok()) return Fail(written.status());
    std::fprintf(stderr, "%llu events\n", static_cast<unsigned long long>(*written));
    return 0;
  }
  if (replay->parsed()) {
    uint64_t at = position;
    if (!time.empty()) {
      absl::Time t;
      std::string error;
      if (!absl::ParseTime(absl::RFC3339_full, time, &t, &error)) {
        std::fprintf(stderr, "--time: %s\n", error.c_str());
        return 2;
      }
      auto found = poledger::AccountPositionAt(*store, account, t);
      if (!found.ok()) return Fail(found.status());
      at = *found;
    } else if (at_position->count() == 0) {
      at = store->Head().position;
    }
    auto keys = poledger::audit::OpenKeys(
        local_stores[only].get(), data_key_file);
    if (!keys.ok()) return Fail(keys.status());
    absl::Status s = poledger::audit::Replay(*store, account, po, at,
                                             keys->get(), std::cout);
    return s.ok() ? 0 : Fail(s);
  }
  absl::Status s = poledger::audit::History(*store, account, po, std::cout);
  return s.ok() ? 0 : Fail(s);
}
