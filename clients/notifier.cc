// poledger-notifier: e-mails each notification of a poledger server to its
// recipients over SMTP (libcurl).
//
//   poledger-notifier --server=127.0.0.1:50051 --smtp-url=smtp://127.0.0.1:25
//       --from=poledger@example.com [--account=ID]
//       [--checkpoint=./notifier.checkpoint] [--smtp-user=U]
//       [--smtp-password-env=VAR] [--smtp-tls=none|try|required]
//
// Behind shards, --server lists every shard's address (shard 0 first): it
// follows each shard's log with its own checkpoint (--checkpoint.I), or
// with --account only the account's shard.
//
// It subscribes to NotificationService.SubscribeNotifications after the
// position in its checkpoint file and, for each notification with
// recipients, sends one mail (a stable Message-ID per notification) and only
// then advances the checkpoint (written to a temporary file, synced and
// renamed). Notifications without recipients (or only erased ones) are
// skipped and counted. While the SMTP server or the poledger server is down
// it retries with
// exponential backoff. SIGTERM/SIGINT finish the mail in hand, save the
// checkpoint and exit 0, so a restart neither loses nor repeats mail; after
// a SIGKILL between a mail's acceptance and its checkpoint that one mail is
// sent again with the same Message-ID, which receivers can deduplicate.
#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "clients/channel.h"
#include "clients/format.h"
#include "core/money.h"
#include "core/shard.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "poledger/v1/log.grpc.pb.h"

namespace poledger {
namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop = true; }

struct Options {
  // One server, or each shard's (shard 0 first).
  std::vector<std::string> servers = {"127.0.0.1:50051"};
  std::string account;
  std::string smtp_url;
  std::string from;
  std::string smtp_user;
  std::string smtp_password_env;
  std::string smtp_tls = "none";
  ClientTls tls;
  std::string checkpoint = "./notifier.checkpoint";
  int retry_initial_ms = 200;
  int retry_max_ms = 10000;
};

uint64_t LoadCheckpoint(const std::string& path) {
  std::ifstream in(path);
  uint64_t position = 0;
  std::string text;
  if (in >> text && absl::SimpleAtoi(text, &position)) return position;
  return 0;
}

bool SaveCheckpoint(const std::string& path, uint64_t position) {
  const std::string tmp = path + ".tmp";
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return false;
  const std::string text = absl::StrCat(position, "\n");
  const bool ok = write(fd, text.data(), text.size()) ==
                      static_cast<ssize_t>(text.size()) &&
                  fsync(fd) == 0;
  close(fd);
  return ok && rename(tmp.c_str(), path.c_str()) == 0;
}

struct Mail {
  std::vector<std::string> to;
  std::string subject;
  std::string body;
  std::string message_id;
};

Mail Compose(const Options& options, const v1::Notification& n) {
  const v1::Notification& r = n;
  Mail mail;
  // An erased recipient (README "Personal data") is never mailed: its
  // address no longer exists.
  for (const v1::Contact& c : r.recipients()) {
    if (!c.erased()) mail.to.push_back(c.email());
  }
  std::string id = absl::StrReplaceAll(r.notification_id(), {{"/", "."}});
  mail.message_id = absl::StrCat("<poledger.", id, "@notifications.poledger>");
  const std::string po = absl::StrCat(
      r.purchase_order_id(),
      r.purchase_order_description().empty()
          ? ""
          : absl::StrCat(" (", r.purchase_order_description(), ")"));
  std::string body = absl::StrCat("Account: ", n.account_id(), "\n",
                                  "Purchase order: ", po, "\n");
  switch (r.kind()) {
    case v1::NOTIFICATION_KIND_BALANCE_THRESHOLD:
      mail.subject = absl::StrCat("[poledger] Purchase order ", r.purchase_order_id(),
                                  ": line ", r.line_number(), " balance below ",
                                  r.threshold_percent(), "%");
      absl::StrAppend(
          &body, "Line item: ", r.line_number(), "\n",
          "Balance: ", FormatMoney(r.balance()), " of ",
          FormatMoney(r.total_value()), " (below ", r.threshold_percent(),
          "%)\n",
          r.invoice_id().empty()
              ? ""
              : absl::StrCat("Invoice: ", r.invoice_id(), "\n"),
          "\nWhat you can do: raise the line item's amount or quantity, add a "
          "line item or a new purchase order for the coming invoices, or "
          "accept the overrun: invoices keep matching this purchase order and "
          "its balance goes negative.\n");
      break;
    case v1::NOTIFICATION_KIND_EXPIRATION_REMINDER:
      mail.subject = absl::StrCat("[poledger] Purchase order ", r.purchase_order_id(),
                                  " expires on ", r.expiration_date());
      absl::StrAppend(&body, "Expiration date: ", r.expiration_date(), " (",
                      r.reminder_label(), ")\n",
                      "\nWhat you can do: extend the expiration month, or add a "
                      "new purchase order so that invoices after ",
                      r.expiration_date(), " still match one.\n");
      break;
    case v1::NOTIFICATION_KIND_EXPIRED:
      mail.subject = absl::StrCat("[poledger] Purchase order ", r.purchase_order_id(),
                                  " has expired");
      absl::StrAppend(&body, "Expired after: ", r.expiration_date(), "\n",
                      "\nIt no longer matches invoices. What you can do: extend "
                      "its expiration month to make it Active again, or add a "
                      "new purchase order.\n");
      break;
    default:
      mail.subject = absl::StrCat("[poledger] Purchase order ", r.purchase_order_id());
      break;
  }
  absl::StrAppend(&body, "\nNotification ", r.notification_id(), " (log position ",
                  n.position(), ")\n");
  mail.body = absl::StrCat(
      "From: ", options.from, "\r\n", "To: ", absl::StrJoin(mail.to, ", "), "\r\n",
      "Subject: ", mail.subject, "\r\n", "Message-ID: ", mail.message_id, "\r\n",
      "Date: ",
      absl::FormatTime("%a, %d %b %Y %H:%M:%S +0000", absl::Now(), absl::UTCTimeZone()),
      "\r\n", "MIME-Version: 1.0\r\n",
      "Content-Type: text/plain; charset=utf-8\r\n", "\r\n",
      absl::StrReplaceAll(body, {{"\n", "\r\n"}}));
  return mail;
}

struct Upload {
  const std::string* data;
  size_t offset = 0;
};

size_t ReadBody(char* buffer, size_t size, size_t count, void* user) {
  Upload* up = static_cast<Upload*>(user);
  const size_t n = std::min(size * count, up->data->size() - up->offset);
  memcpy(buffer, up->data->data() + up->offset, n);
  up->offset += n;
  return n;
}

// Sends one mail; returns "" on acceptance, else the error.
std::string Send(const Options& options, const Mail& mail) {
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return "curl_easy_init failed";
  curl_slist* rcpt = nullptr;
  for (const std::string& to : mail.to) rcpt = curl_slist_append(rcpt, to.c_str());
  Upload up{&mail.body};
  curl_easy_setopt(curl, CURLOPT_URL, options.smtp_url.c_str());
  curl_easy_setopt(curl, CURLOPT_MAIL_FROM, options.from.c_str());
  curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, rcpt);
  curl_easy_setopt(curl, CURLOPT_READFUNCTION, ReadBody);
  curl_easy_setopt(curl, CURLOPT_READDATA, &up);
  curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
  if (!options.smtp_user.empty()) {
    curl_easy_setopt(curl, CURLOPT_USERNAME, options.smtp_user.c_str());
    const char* password = options.smtp_password_env.empty()
                               ? nullptr
                               : std::getenv(options.smtp_password_env.c_str());
    if (password != nullptr) curl_easy_setopt(curl, CURLOPT_PASSWORD, password);
  }
  if (options.smtp_tls == "try") {
    curl_easy_setopt(curl, CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_TRY));
  } else if (options.smtp_tls == "required") {
    curl_easy_setopt(curl, CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_ALL));
  }
  const CURLcode code = curl_easy_perform(curl);
  curl_slist_free_all(rcpt);
  curl_easy_cleanup(curl);
  return code == CURLE_OK ? "" : curl_easy_strerror(code);
}

// Sleeps up to `d`, waking early on a stop signal.
void Backoff(absl::Duration d) {
  const absl::Time until = absl::Now() + d;
  while (!g_stop && absl::Now() < until) absl::SleepFor(absl::Milliseconds(20));
}

// Mails the notifications of one server (one shard's log) from the position
// in `checkpoint_path`; returns the exit status.
int Follow(const Options& options, const std::string& server,
           const std::string& checkpoint_path) {
  uint64_t checkpoint = LoadCheckpoint(checkpoint_path);
  uint64_t sent = 0, skipped = 0;
  std::fprintf(stderr, "poledger-notifier: %s from position %llu\n",
               server.c_str(), static_cast<unsigned long long>(checkpoint));
  auto credentials = ClientCredentials(options.tls);
  if (!credentials.ok()) {
    std::fprintf(stderr, "poledger-notifier: %s\n",
                 std::string(credentials.status().message()).c_str());
    return 2;
  }
  auto channel = NewClientChannel(server, *std::move(credentials));
  auto stub = v1::NotificationService::NewStub(channel);
  absl::Duration delay = absl::Milliseconds(options.retry_initial_ms);
  const absl::Duration max_delay = absl::Milliseconds(options.retry_max_ms);
  while (!g_stop) {
    grpc::ClientContext ctx;
    v1::SubscribeNotificationsRequest req;
    req.set_account_id(options.account);
    req.set_after_position(checkpoint);
    if (!options.account.empty()) {
      ctx.AddMetadata("x-poledger-account", options.account);
    }
    auto reader = stub->SubscribeNotifications(&ctx, req);
    // Cancels the stream when a stop signal arrives.
    std::atomic<bool> done{false};
    std::thread canceller([&] {
      while (!done && !g_stop) absl::SleepFor(absl::Milliseconds(50));
      if (g_stop) ctx.TryCancel();
    });
    v1::SubscribeNotificationsResponse msg;
    while (!g_stop && reader->Read(&msg)) {
      delay = absl::Milliseconds(options.retry_initial_ms);
      if (!msg.has_notification()) continue;
      const v1::Notification& n = msg.notification();
      const Mail mail = Compose(options, n);
      if (mail.to.empty()) {
        ++skipped;
      } else {
        absl::Duration smtp_delay = absl::Milliseconds(options.retry_initial_ms);
        bool accepted = false;
        for (;;) {
          const std::string error = Send(options, mail);
          if (error.empty()) {
            accepted = true;
            break;
          }
          std::fprintf(stderr, "smtp: %s; retrying in %s\n", error.c_str(),
                       absl::FormatDuration(smtp_delay).c_str());
          // Finish the mail in hand even when asked to stop, unless SMTP is
          // down: then stop without it (it is sent after the restart).
          if (g_stop) break;
          Backoff(smtp_delay);
          smtp_delay = std::min(smtp_delay * 2, max_delay);
        }
        // Stopped while SMTP was failing: this notification is not done.
        if (!accepted) break;
        ++sent;
        std::fprintf(stderr, "sent %s to %zu recipients\n", mail.message_id.c_str(),
                     mail.to.size());
      }
      checkpoint = n.position();
      if (!SaveCheckpoint(checkpoint_path, checkpoint)) {
        std::fprintf(stderr, "cannot write checkpoint %s\n",
                     checkpoint_path.c_str());
        done = true;
        canceller.join();
        return 1;
      }
    }
    // The canceller has cancelled the call if asked to stop; otherwise the
    // stream ended by itself and Finish gives the server's status.
    done = true;
    canceller.join();
    if (g_stop) ctx.TryCancel();
    const grpc::Status status = reader->Finish();
    if (g_stop) break;
    std::fprintf(stderr, "stream ended: %s: %s; reconnecting in %s\n",
                 CodeName(status.error_code()).c_str(), status.error_message().c_str(),
                 absl::FormatDuration(delay).c_str());
    Backoff(delay);
    delay = std::min(delay * 2, max_delay);
  }
  std::fprintf(
      stderr,
      "poledger-notifier: %s stopped at position %llu; %llu sent, %llu "
      "skipped without recipients\n",
      server.c_str(), static_cast<unsigned long long>(checkpoint),
      static_cast<unsigned long long>(sent),
      static_cast<unsigned long long>(skipped));
  return 0;
}

// Follows every server given (each shard has its own log and positions, so
// its own checkpoint: --checkpoint with ".<shard>" appended when there are
// several), or with --account only the shard that holds the account.
int Run(const Options& options) {
  const size_t n = options.servers.size();
  std::vector<size_t> shards;
  if (n > 1 && !options.account.empty()) {
    shards.push_back(core::ShardOf(options.account, static_cast<uint32_t>(n)));
  } else {
    for (size_t i = 0; i < n; ++i) shards.push_back(i);
  }
  std::vector<int> codes(n, 0);
  std::vector<std::thread> followers;
  for (size_t i : shards) {
    const std::string checkpoint =
        n == 1 ? options.checkpoint : absl::StrCat(options.checkpoint, ".", i);
    followers.emplace_back([&, i, checkpoint] {
      codes[i] = Follow(options, options.servers[i], checkpoint);
      // One shard's follower failing (its checkpoint cannot be written)
      // stops the others: the operator sees it, and none runs ahead alone.
      if (codes[i] != 0) g_stop = true;
    });
  }
  for (std::thread& t : followers) t.join();
  for (int code : codes) {
    if (code != 0) return code;
  }
  return 0;
}

}  // namespace
}  // namespace poledger

int main(int argc, char** argv) {
  poledger::Options options;
  CLI::App app("poledger-notifier: e-mail poledger notifications over SMTP");
  app.add_option("--server", options.servers,
                 "poledger server host:port; behind shards, every shard's, "
                 "comma-separated, shard 0 first")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--account", options.account, "Only this account's notifications");
  poledger::AddTlsOptions(&app, &options.tls);
  app.add_option("--smtp-url", options.smtp_url,
                 "smtp://host:port or smtps://host:port")
      ->required();
  app.add_option("--from", options.from, "Sender address")->required();
  app.add_option("--smtp-user", options.smtp_user, "SMTP user name");
  app.add_option("--smtp-password-env", options.smtp_password_env,
                 "Environment variable holding the SMTP password");
  app.add_option("--smtp-tls", options.smtp_tls, "STARTTLS: none, try, required")
      ->check(CLI::IsMember({"none", "try", "required"}))
      ->capture_default_str();
  app.add_option("--checkpoint", options.checkpoint,
                 "File holding the last position handled")
      ->capture_default_str();
  app.add_option("--retry-initial-ms", options.retry_initial_ms)->capture_default_str();
  app.add_option("--retry-max-ms", options.retry_max_ms)->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }
  struct sigaction sa = {};
  sa.sa_handler = poledger::OnSignal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const int rc = poledger::Run(options);
  curl_global_cleanup();
  return rc;
}
