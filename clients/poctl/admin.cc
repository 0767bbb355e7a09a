// poctl admin ...: the server's own state.
#include <cstdio>
#include <memory>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "clients/poctl/session.h"

namespace poledger {
namespace poctl {
namespace {

int Info(Session& s) {
  v1::GetServerInfoResponse out;
  grpc::ClientContext ctx;
  s.Prepare(&ctx);
  grpc::Status status =
      s.admin().GetServerInfo(&ctx, v1::GetServerInfoRequest(), &out);
  if (!status.ok()) return Report(status);
  return Print(s, out, [&] {
    PrintTable({{"version", out.version()},
                {"head", absl::StrCat(out.head_position())},
                {"uptime", absl::StrCat(out.uptime().seconds(), "s")},
                {"clock", out.clock()}});
  });
}

int Snapshot(Session& s) {
  v1::CreateSnapshotResponse out;
  grpc::ClientContext ctx;
  s.Prepare(&ctx);
  grpc::Status status =
      s.admin().CreateSnapshot(&ctx, v1::CreateSnapshotRequest(), &out);
  if (!status.ok()) return Report(status);
  return Print(s, out, [&] {
    std::printf("snapshot at position %llu\n",
                static_cast<unsigned long long>(out.position()));
  });
}

}  // namespace

void AddAdminCommands(CLI::App* app, Run* run) {
  CLI::App* admin =
      app->add_subcommand("admin", "Administration")->require_subcommand(1);
  OnRun(admin->add_subcommand("info", "Server version and head"), run, Info,
        /*needs_account=*/false);
  OnRun(admin->add_subcommand("snapshot", "Save a snapshot now"), run, Snapshot,
        /*needs_account=*/false);
}

}  // namespace poctl
}  // namespace poledger
