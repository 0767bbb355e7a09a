// poctl admin ...: the server's own state.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "clients/poctl/session.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace poledger {
namespace poctl {
namespace {

int Info(Session& s) {
  v1::GetServerInfoResponse out;
  grpc::ClientContext ctx;
  s.PrepareForShard(&ctx);
  grpc::Status status =
      s.admin().GetServerInfo(&ctx, v1::GetServerInfoRequest(), &out);
  if (!status.ok()) return Report(status);
  return Print(s, out, [&] {
    std::vector<std::vector<std::string>> rows = {
        {"version", out.version()},
        {"head", absl::StrCat(out.head_position())},
        {"uptime", absl::StrCat(out.uptime().seconds(), "s")},
        {"clock", out.clock()},
        {"shard", absl::StrCat(out.shard_index(), "/", out.shard_count())},
        {"role", absl::StrCat(out.role(), " in term ", out.term(),
                              out.leader().empty()
                                  ? ""
                                  : absl::StrCat("; leader ", out.leader()))}};
    if (out.uncommitted_records() > 0 || out.sync_followers() > 0) {
      rows.push_back({"committed",
                      absl::StrCat(out.committed_position(), " (",
                                   out.uncommitted_records(),
                                   " records stored, not committed)")});
    }
    if (out.sync_followers() > 0) {
      rows.push_back({"sync followers",
                      absl::StrCat(out.sync_followers(), " needed per write")});
    }
    for (const v1::FollowerInfo& f : out.followers()) {
      rows.push_back(
          {absl::StrCat("follower ", f.node()),
           absl::StrCat(f.synchronous() ? "synchronous" : "read replica",
                        ", stores through ", f.durable_position(), ", ",
                        f.peer())});
    }
    if (out.has_replication()) {
      const v1::Replication& r = out.replication();
      const double lag =
          static_cast<double>(r.lag().seconds()) + r.lag().nanos() / 1e9;
      rows.push_back({"replica of", r.leader()});
      rows.push_back({"replication", r.state()});
      rows.push_back({"lag", absl::StrCat(r.lag_events(), " records, ",
                                          absl::SixDigits(lag), "s")});
      if (!r.last_error().empty())
        rows.push_back({"last error", r.last_error()});
    }
    if (out.has_scrub()) {
      const v1::Scrub& c = out.scrub();
      std::string last = "none finished yet";
      if (c.passes() > 0) {
        last = absl::StrCat(c.result(), " through position ",
                            c.verified_through_position(), ", finished ",
                            absl::FormatTime(absl::RFC3339_sec,
                                             absl::FromUnixSeconds(
                                                 c.finished_time().seconds()),
                                             absl::UTCTimeZone()));
      }
      rows.push_back({"scrub", absl::StrCat(c.running() ? "running; " : "",
                                            "last: ", last)});
    }
    PrintTable(rows);
  });
}

int Snapshot(Session& s) {
  v1::CreateSnapshotResponse out;
  grpc::ClientContext ctx;
  s.PrepareForShard(&ctx);
  grpc::Status status =
      s.admin().CreateSnapshot(&ctx, v1::CreateSnapshotRequest(), &out);
  if (!status.ok()) return Report(status);
  return Print(s, out, [&] {
    std::printf("snapshot at position %llu\n",
                static_cast<unsigned long long>(out.position()));
  });
}

// A verified backup of the log into DIR on the server's machine.
int Backup(Session& s, const std::string& dir) {
  v1::CreateBackupRequest req;
  req.set_directory(dir);
  v1::CreateBackupResponse out;
  grpc::ClientContext ctx;
  s.PrepareForShard(&ctx);
  grpc::Status status = s.admin().CreateBackup(&ctx, req, &out);
  if (!status.ok()) return Report(status);
  return Print(s, out, [&] {
    PrintTable({{"backup", out.directory()},
                {"position", absl::StrCat(out.position())},
                {"digest", out.chain_hash()}});
  });
}

// Erases a data subject (README "Personal data"): of the session's account
// (--account), or of every account of the server (or of --shard's).
int Erase(Session& s, const std::string& email, const std::string& reference) {
  v1::ErasePersonalDataRequest req;
  req.set_account_id(s.account());
  req.set_email(email);
  req.set_request_reference(reference);
  v1::ErasePersonalDataResponse out;
  grpc::ClientContext ctx;
  if (s.account().empty()) {
    s.PrepareForShard(&ctx);
  } else {
    s.Prepare(&ctx);
  }
  grpc::Status status = s.admin().ErasePersonalData(&ctx, req, &out);
  if (!status.ok()) return Report(status);
  return Print(s, out, [&] {
    std::vector<std::vector<std::string>> rows;
    for (const auto& e : out.erased()) {
      rows.push_back({e.account_id(),
                      e.position() == 0
                          ? std::string("erased before")
                          : absl::StrCat("erased at position ", e.position())});
    }
    PrintTable(rows);
  });
}

// grpc.health.v1 Check of the whole server: exit 0 when SERVING, 7 when
// not (still loading, shutting down) or unreachable.
int Health(Session& s) {
  grpc::health::v1::HealthCheckResponse out;
  grpc::ClientContext ctx;
  s.PrepareForShard(&ctx);
  grpc::Status status =
      s.health().Check(&ctx, grpc::health::v1::HealthCheckRequest(), &out);
  if (!status.ok()) return Report(status);
  const std::string name =
      grpc::health::v1::HealthCheckResponse::ServingStatus_Name(out.status());
  Print(s, out, [&] { std::printf("%s\n", name.c_str()); });
  return out.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 7;
}

}  // namespace

void AddAdminCommands(CLI::App* app, Run* run) {
  OnRun(
      app->add_subcommand("health", "Is the server serving? (grpc.health.v1)"),
      run, Health, /*needs_account=*/false);
  CLI::App* admin =
      app->add_subcommand("admin", "Administration")->require_subcommand(1);
  OnRun(admin->add_subcommand("info", "Server version and head"), run, Info,
        /*needs_account=*/false);
  OnRun(admin->add_subcommand("snapshot", "Save a snapshot now"), run, Snapshot,
        /*needs_account=*/false);
  auto dir = std::make_shared<std::string>();
  CLI::App* backup = admin->add_subcommand(
      "backup",
      "Write a verified copy of the log to a new directory on the "
      "server's machine (restore: start a server on it)");
  backup->add_option("directory", *dir, "Absolute path that does not exist")
      ->required();
  OnRun(
      backup, run, [dir](Session& s) { return Backup(s, *dir); },
      /*needs_account=*/false);
  auto email = std::make_shared<std::string>();
  auto reference = std::make_shared<std::string>();
  CLI::App* erase = admin->add_subcommand(
      "erase",
      "Erase a person's contact data: of --account, or of every account of "
      "the server (README \"Personal data\")");
  erase->add_option("email", *email, "The person's e-mail address")
      ->required();
  erase->add_option("--reference", *reference,
                    "The request this answers, for the audit trail (e.g. a "
                    "ticket number)");
  OnRun(
      erase, run,
      [email, reference](Session& s) { return Erase(s, *email, *reference); },
      /*needs_account=*/false);
}

}  // namespace poctl
}  // namespace poledger
