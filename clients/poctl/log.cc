// poctl events ... and notifications ...: reading and following the log.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "clients/poctl/session.h"

namespace poledger {
namespace poctl {
namespace {

struct LogFlags {
  uint64_t after = 0;
  int page_size = 0;
  std::vector<std::string> event_types;
  std::string po_id;
};

std::vector<std::string> EventRow(const v1::Event& e) {
  return {absl::StrCat(e.position()),
          absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                           absl::FromUnixSeconds(e.time().seconds()),
                           absl::UTCTimeZone()),
          e.stream_id(), e.event_type(), e.actor()};
}

std::vector<std::string> NotificationRow(const v1::Notification& r) {
  return {absl::StrCat(r.position()),
          EnumShort(v1::NotificationKind_descriptor(), r.kind(),
                    "NOTIFICATION_KIND_"),
          r.purchase_order_id(),
          r.line_number() ? absl::StrCat(r.line_number()) : "-",
          r.reminder_label().empty() ? absl::StrCat(r.threshold_percent(), "%")
                                     : r.reminder_label(),
          absl::StrCat(r.recipients_size())};
}

// Prints one followed item as it arrives: a JSON line or a row.
void PrintLive(const Session& s, const google::protobuf::Message& m,
               const std::vector<std::string>& row) {
  if (s.json()) {
    std::printf("%s\n", Json(m, true).c_str());
  } else {
    std::printf("%s\n", absl::StrJoin(row, "  ").c_str());
  }
  std::fflush(stdout);
}

int ReadEvents(Session& s, const LogFlags& f) {
  v1::ReadEventsRequest req;
  req.set_from_position(f.after);
  req.set_page_size(f.page_size);
  req.set_account_id(s.account());
  for (const auto& t : f.event_types) req.add_event_types(t);
  v1::ReadEventsResponse out;
  grpc::ClientContext ctx;
  s.Prepare(&ctx);
  grpc::Status status = s.log().ReadEvents(&ctx, req, &out);
  if (!status.ok()) return Report(status);
  if (s.json()) {
    for (const auto& e : out.events())
      std::printf("%s\n", Json(e, true).c_str());
  } else {
    std::vector<std::vector<std::string>> rows = {
        {"POSITION", "TIME", "STREAM", "TYPE", "ACTOR"}};
    for (const auto& e : out.events()) rows.push_back(EventRow(e));
    PrintTable(rows);
  }
  return 0;
}

int TailEvents(Session& s, const LogFlags& f) {
  v1::SubscribeEventsRequest req;
  req.set_after_position(f.after);
  req.set_account_id(s.account());
  for (const auto& t : f.event_types) req.add_event_types(t);
  grpc::ClientContext ctx;
  s.Prepare(&ctx, /*streaming=*/true);
  auto reader = s.log().SubscribeEvents(&ctx, req);
  v1::SubscribeEventsResponse msg;
  while (reader->Read(&msg)) {
    if (msg.has_event()) PrintLive(s, msg.event(), EventRow(msg.event()));
  }
  grpc::Status status = reader->Finish();
  return status.ok() ? 0 : Report(status);
}

int ListNotifications(Session& s, const LogFlags& f) {
  v1::ListNotificationsRequest req;
  req.set_account_id(s.account());
  req.set_purchase_order_id(f.po_id);
  req.set_page_size(f.page_size);
  v1::ListNotificationsResponse out;
  grpc::ClientContext ctx;
  s.Prepare(&ctx);
  grpc::Status status = s.notifications().ListNotifications(&ctx, req, &out);
  if (!status.ok()) return Report(status);
  return Print(s, out, [&] {
    std::vector<std::vector<std::string>> rows = {
        {"POSITION", "KIND", "PO", "LINE", "TRIGGER", "RECIPIENTS"}};
    for (const auto& n : out.notifications())
      rows.push_back(NotificationRow(n));
    PrintTable(rows);
  });
}

int WatchNotifications(Session& s, const LogFlags& f) {
  v1::SubscribeNotificationsRequest req;
  req.set_account_id(s.account());
  req.set_after_position(f.after);
  grpc::ClientContext ctx;
  s.Prepare(&ctx, /*streaming=*/true);
  auto reader = s.notifications().SubscribeNotifications(&ctx, req);
  v1::SubscribeNotificationsResponse msg;
  while (reader->Read(&msg)) {
    if (msg.has_notification()) {
      PrintLive(s, msg.notification(), NotificationRow(msg.notification()));
    }
  }
  grpc::Status status = reader->Finish();
  return status.ok() ? 0 : Report(status);
}

}  // namespace

void AddLogCommands(CLI::App* app, Run* run) {
  auto f = std::make_shared<LogFlags>();
  auto with = [f](int (*body)(Session&, const LogFlags&)) -> Run {
    return [f, body](Session& s) { return body(s, *f); };
  };
  // The whole log is readable without an account; --account filters it.
  CLI::App* events =
      app->add_subcommand("events", "Event log")->require_subcommand(1);
  CLI::App* c = events->add_subcommand("read", "Read a page of events");
  c->add_option("--from", f->after, "First position");
  c->add_option("--type", f->event_types, "Only these types (repeat)");
  c->add_option("--page-size", f->page_size);
  OnRun(c, run, with(ReadEvents), /*needs_account=*/false);
  c = events->add_subcommand("tail", "Follow the log");
  c->add_option("--after", f->after, "Resume after this position");
  c->add_option("--type", f->event_types, "Only these types (repeat)");
  OnRun(c, run, with(TailEvents), /*needs_account=*/false);

  CLI::App* notifications =
      app->add_subcommand("notifications", "Notifications")
          ->require_subcommand(1);
  c = notifications->add_subcommand("list", "List notifications");
  c->add_option("--po", f->po_id);
  c->add_option("--page-size", f->page_size);
  OnRun(c, run, with(ListNotifications));
  c = notifications->add_subcommand("watch", "Follow notifications");
  c->add_option("--after", f->after, "Resume after this position");
  OnRun(c, run, with(WatchNotifications));
}

}  // namespace poctl
}  // namespace poledger
