#include "server/etcd_coordinator.h"

#include <curl/curl.h>

#include <algorithm>
#include <mutex>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/util/json_util.h"
#include "poledger/etcd/gateway.pb.h"

namespace poledger {
namespace {

namespace gw = ::poledger::etcd;

size_t Collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// One POST; the HTTP status and body, or why no answer came.
absl::StatusOr<std::pair<long, std::string>> Post(const std::string& url,
                                                  const std::string& body,
                                                  absl::Duration timeout) {
  static std::once_flag init;
  std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(),
                                              curl_easy_cleanup);
  if (curl == nullptr) return absl::InternalError("curl_easy_init failed");
  std::string answer;
  curl_slist* headers =
      curl_slist_append(nullptr, "Content-Type: application/json");
  curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDSIZE,
                   static_cast<long>(body.size()));
  curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(timeout)));
  curl_easy_setopt(curl.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, Collect);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &answer);
  const CURLcode code = curl_easy_perform(curl.get());
  curl_slist_free_all(headers);
  if (code != CURLE_OK) {
    return absl::UnavailableError(
        absl::StrCat(url, ": ", curl_easy_strerror(code)));
  }
  long status = 0;
  curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &status);
  return std::make_pair(status, std::move(answer));
}

// "term\nnode\naddress".
std::string EncodeLeader(const Leadership& l) {
  return absl::StrCat(l.term, "\n", l.node, "\n", l.address);
}

absl::StatusOr<Leadership> DecodeLeader(const std::string& value) {
  std::vector<std::string> parts = absl::StrSplit(value, '\n');
  Leadership l;
  if (parts.size() != 3 || !absl::SimpleAtoi(parts[0], &l.term)) {
    return absl::DataLossError(
        absl::StrCat("the leader key holds no leadership: ", value));
  }
  l.node = parts[1];
  l.address = parts[2];
  return l;
}

// A number in 20 decimal digits.
std::string Padded(uint64_t n) {
  std::string digits = absl::StrCat(n);
  return std::string(20 - digits.size(), '0') + digits;
}

// A head as etcd compares it: "<term>/<position>", each fixed-width, so
// that the byte order of two heads is their ranks' order.
std::string EncodeHead(const LogRank& head) {
  return absl::StrCat(Padded(head.term), "/", Padded(head.position));
}

bool DecodeHead(absl::string_view value, LogRank* head) {
  const size_t slash = value.find('/');
  if (slash == absl::string_view::npos) return false;
  return absl::SimpleAtoi(value.substr(0, slash), &head->term) &&
         absl::SimpleAtoi(value.substr(slash + 1), &head->position);
}

// The end of the range of keys that start with `prefix`.
std::string PrefixEnd(std::string prefix) {
  ++prefix.back();  // Prefixes here end in '/', which is not 0xff.
  return prefix;
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdCoordinator>> EtcdCoordinator::Create(
    EtcdCoordinatorOptions options) {
  if (options.endpoints.empty()) {
    return absl::InvalidArgumentError("etcd endpoints: none given");
  }
  for (const std::string& e : options.endpoints) {
    if (!absl::StartsWith(e, "http://") && !absl::StartsWith(e, "https://")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "etcd endpoint '", e, "' is not an http:// or https:// URL"));
    }
  }
  if (options.prefix.empty() || options.prefix.back() == '/') {
    return absl::InvalidArgumentError(
        "etcd prefix: must be non-empty and not end in '/'");
  }
  return std::unique_ptr<EtcdCoordinator>(
      new EtcdCoordinator(std::move(options)));
}

absl::Status EtcdCoordinator::Call(const std::string& path,
                                   const google::protobuf::Message& request,
                                   google::protobuf::Message* response) {
  std::string body;
  google::protobuf::util::JsonPrintOptions print;
  print.preserve_proto_field_names = true;
  if (auto s = google::protobuf::util::MessageToJsonString(request, &body,
                                                           print);
      !s.ok()) {
    return absl::InternalError(s.ToString());
  }
  std::string errors;
  for (const std::string& endpoint : options_.endpoints) {
    absl::StatusOr<std::pair<long, std::string>> answer =
        Post(endpoint + path, body, options_.call_timeout);
    if (!answer.ok()) {
      absl::StrAppend(&errors, errors.empty() ? "" : "; ",
                      answer.status().message());
      continue;
    }
    const auto& [status, text] = *answer;
    if (status == 404 && absl::StrContains(text, "lease not found")) {
      return absl::NotFoundError(absl::StrCat("etcd: ", text));
    }
    if (status != 200) {
      // A member that lost its quorum answers 503: try the next.
      absl::StrAppend(&errors, errors.empty() ? "" : "; ", endpoint, ": HTTP ",
                      status, " ", text);
      if (status >= 500) continue;
      return absl::InternalError(absl::StrCat("etcd ", path, ": ", errors));
    }
    google::protobuf::util::JsonParseOptions parse;
    parse.ignore_unknown_fields = true;
    if (auto s =
            google::protobuf::util::JsonStringToMessage(text, response, parse);
        !s.ok()) {
      return absl::InternalError(absl::StrCat("etcd ", path, " answered '",
                                              text, "': ", s.ToString()));
    }
    return absl::OkStatus();
  }
  return absl::UnavailableError(absl::StrCat("etcd ", path, ": ", errors));
}

absl::StatusOr<Leadership> EtcdCoordinator::Campaign(const Candidacy& c) {
  const Leadership& me = c.me;
  const absl::Duration ttl = c.ttl;
  // The other candidates' heads: none may be past this node's, in the
  // transaction below too (a head published meanwhile fails it).
  absl::StatusOr<std::map<std::string, LogRank>> heads = Heads();
  if (!heads.ok()) return heads.status();
  for (const auto& [node, head] : *heads) {
    if (node != me.node && node != c.lost_leader && head > c.head) {
      return absl::FailedPreconditionError(absl::StrCat(
          node, " is ahead: it stores through ", head.ToString(),
          ", this node ", c.head.ToString()));
    }
  }
  // The term as it is now, and the revision that wrote it.
  gw::RangeRequest read_term;
  read_term.set_key(TermKey());
  gw::RangeResponse term_now;
  if (absl::Status s = Call("/v3/kv/range", read_term, &term_now); !s.ok()) {
    return s;
  }
  uint64_t term = 0;
  int64_t term_revision = 0;
  if (term_now.kvs_size() > 0) {
    if (!absl::SimpleAtoi(term_now.kvs(0).value(), &term)) {
      return absl::DataLossError(absl::StrCat(
          "the term key holds no number: ", term_now.kvs(0).value()));
    }
    term_revision = term_now.kvs(0).mod_revision();
  }
  gw::LeaseGrantRequest grant;
  grant.set_ttl(std::max<int64_t>(1, absl::ToInt64Seconds(absl::Ceil(
                                         ttl, absl::Seconds(1)))));
  gw::LeaseGrantResponse granted;
  if (absl::Status s = Call("/v3/lease/grant", grant, &granted); !s.ok()) {
    return s;
  }
  if (granted.id() == 0) {
    return absl::UnavailableError(
        absl::StrCat("etcd granted no lease: ", granted.error()));
  }
  Leadership led = me;
  led.term = term + 1;
  gw::TxnRequest txn;
  gw::Compare* absent = txn.add_compare();
  absent->set_target(gw::Compare::CREATE);
  absent->set_key(LeaderKey());
  absent->set_create_revision(0);
  gw::Compare* same_term = txn.add_compare();
  same_term->set_target(gw::Compare::MOD);
  same_term->set_key(TermKey());
  same_term->set_mod_revision(term_revision);
  for (const auto& [node, head] : *heads) {
    if (node == me.node || node == c.lost_leader) continue;
    gw::Compare* behind = txn.add_compare();
    behind->set_target(gw::Compare::VALUE);
    behind->set_result(gw::Compare::LESS);
    behind->set_key(HeadsPrefix() + node);
    // At most c.head: below the rank just after it.
    behind->set_value(EncodeHead({c.head.term, c.head.position + 1}));
  }
  gw::PutRequest* put_leader = txn.add_success()->mutable_request_put();
  put_leader->set_key(LeaderKey());
  put_leader->set_value(EncodeLeader(led));
  put_leader->set_lease(granted.id());
  gw::PutRequest* put_term = txn.add_success()->mutable_request_put();
  put_term->set_key(TermKey());
  put_term->set_value(absl::StrCat(led.term));
  txn.add_failure()->mutable_request_range()->set_key(LeaderKey());
  gw::TxnResponse done;
  absl::Status s = Call("/v3/kv/txn", txn, &done);
  if (s.ok() && done.succeeded()) {
    absl::MutexLock lock(&mu_);
    lease_ = granted.id();
    return led;
  }
  gw::LeaseRevokeRequest revoke;
  revoke.set_id(granted.id());
  gw::ResponseHeader ignored;
  (void)Call("/v3/lease/revoke", revoke, &ignored);
  if (!s.ok()) return s;
  for (const gw::ResponseOp& op : done.responses()) {
    if (op.response_range().kvs_size() > 0) {
      absl::StatusOr<Leadership> holder =
          DecodeLeader(op.response_range().kvs(0).value());
      if (!holder.ok()) return holder.status();
      return absl::FailedPreconditionError(
          absl::StrCat(holder->node, " (", holder->address, ") leads in term ",
                       holder->term));
    }
  }
  return absl::AbortedError(
      "another node took the leadership, or published a head past this "
      "node's, meanwhile");
}

absl::Status EtcdCoordinator::Renew() {
  int64_t lease;
  {
    absl::MutexLock lock(&mu_);
    lease = lease_;
  }
  if (lease == 0) return absl::NotFoundError("this node holds no lease");
  gw::LeaseKeepAliveRequest keep;
  keep.set_id(lease);
  gw::LeaseKeepAliveResult kept;
  if (absl::Status s = Call("/v3/lease/keepalive", keep, &kept); !s.ok()) {
    return s;
  }
  // An expired lease comes back with no TTL.
  if (kept.result().ttl() <= 0) {
    absl::MutexLock lock(&mu_);
    if (lease_ == lease) lease_ = 0;
    return absl::NotFoundError("this node's lease expired");
  }
  return absl::OkStatus();
}

absl::Status EtcdCoordinator::Resign() {
  int64_t lease;
  {
    absl::MutexLock lock(&mu_);
    lease = lease_;
    lease_ = 0;
  }
  if (lease == 0) return absl::OkStatus();
  gw::LeaseRevokeRequest revoke;
  revoke.set_id(lease);
  gw::ResponseHeader ignored;
  absl::Status s = Call("/v3/lease/revoke", revoke, &ignored);
  if (absl::IsNotFound(s)) return absl::OkStatus();  // Expired already.
  return s;
}

absl::StatusOr<std::optional<Leadership>> EtcdCoordinator::Leader() {
  gw::RangeRequest read;
  read.set_key(LeaderKey());
  gw::RangeResponse found;
  if (absl::Status s = Call("/v3/kv/range", read, &found); !s.ok()) return s;
  if (found.kvs_size() == 0) return std::optional<Leadership>();
  absl::StatusOr<Leadership> l = DecodeLeader(found.kvs(0).value());
  if (!l.ok()) return l.status();
  return std::optional<Leadership>(*std::move(l));
}

absl::StatusOr<uint64_t> EtcdCoordinator::Term() {
  gw::RangeRequest read;
  read.set_key(TermKey());
  gw::RangeResponse found;
  if (absl::Status s = Call("/v3/kv/range", read, &found); !s.ok()) return s;
  uint64_t term = 0;
  if (found.kvs_size() > 0 && !absl::SimpleAtoi(found.kvs(0).value(), &term)) {
    return absl::DataLossError("the term key holds no number");
  }
  return term;
}

absl::Status EtcdCoordinator::PublishHead(const std::string& node,
                                          LogRank head) {
  gw::PutRequest put;
  put.set_key(HeadsPrefix() + node);
  put.set_value(EncodeHead(head));
  gw::ResponseHeader ignored;
  return Call("/v3/kv/put", put, &ignored);
}

absl::StatusOr<std::map<std::string, LogRank>> EtcdCoordinator::Heads() {
  gw::RangeRequest read;
  read.set_key(HeadsPrefix());
  read.set_range_end(PrefixEnd(HeadsPrefix()));
  gw::RangeResponse found;
  if (absl::Status s = Call("/v3/kv/range", read, &found); !s.ok()) return s;
  std::map<std::string, LogRank> heads;
  for (const gw::KeyValue& kv : found.kvs()) {
    LogRank head;
    if (!DecodeHead(kv.value(), &head)) continue;
    heads[kv.key().substr(HeadsPrefix().size())] = head;
  }
  return heads;
}

}  // namespace poledger
