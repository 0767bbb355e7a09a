// EtcdCoordinator is the Coordinator on etcd (Debian 12's etcd-server 3.4),
// through its v3 JSON gateway over HTTP (libcurl): no gRPC stubs of etcd's
// to build.
//
// Keys, under the shard's prefix: "<prefix>/leader" (the term, node and
// address, one a line; bound to the leader's lease), "<prefix>/term" (the
// shard's last term, in decimal) and "<prefix>/heads/<node>" (each node's
// durable head's rank: its term and position, each 20 decimal digits, so
// that etcd's byte comparison is the ranks' order). A campaign is one transaction: if the leader key does not
// exist, the term key is unchanged since read, and no other node's head is
// past the candidate's, put the leader key on a fresh lease and the term
// plus one.
//
// Every call tries the endpoints in turn, each for at most call_timeout,
// and answers UNAVAILABLE if none answers.
//
// Thread safety: safe for concurrent use.
#ifndef POLEDGER_SERVER_ETCD_COORDINATOR_H_
#define POLEDGER_SERVER_ETCD_COORDINATOR_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/coordinator.h"

namespace google::protobuf {
class Message;
}  // namespace google::protobuf

namespace poledger {

struct EtcdCoordinatorOptions {
  // etcd's client URLs, e.g. "http://127.0.0.1:2379".
  std::vector<std::string> endpoints;
  // The shard's keys live under it, e.g. "/poledger/shard-0".
  std::string prefix;
  // How long one HTTP call to one endpoint may take.
  absl::Duration call_timeout = absl::Seconds(2);
};

class EtcdCoordinator : public Coordinator {
 public:
  // INVALID_ARGUMENT if there is no endpoint, one is not http(s)://, or the
  // prefix is empty. Does not connect.
  static absl::StatusOr<std::unique_ptr<EtcdCoordinator>> Create(
      EtcdCoordinatorOptions options);

  absl::StatusOr<Leadership> Campaign(const Candidacy& c) override;
  absl::Status Renew() override;
  absl::Status Resign() override;
  absl::StatusOr<std::optional<Leadership>> Leader() override;
  absl::StatusOr<uint64_t> Term() override;
  absl::Status PublishHead(const std::string& node, LogRank head) override;
  absl::StatusOr<std::map<std::string, LogRank>> Heads() override;

 private:
  explicit EtcdCoordinator(EtcdCoordinatorOptions options)
      : options_(std::move(options)) {}

  // POSTs `request` as JSON to `path` ("/v3/kv/range"...) and parses the
  // answer into `response`: UNAVAILABLE if no endpoint answers, the
  // gateway's error otherwise.
  absl::Status Call(const std::string& path,
                    const google::protobuf::Message& request,
                    google::protobuf::Message* response);

  std::string LeaderKey() const { return options_.prefix + "/leader"; }
  std::string TermKey() const { return options_.prefix + "/term"; }
  std::string HeadsPrefix() const { return options_.prefix + "/heads/"; }

  const EtcdCoordinatorOptions options_;
  absl::Mutex mu_;
  // The lease this node's leader key is bound to (0: none).
  int64_t lease_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace poledger

#endif  // POLEDGER_SERVER_ETCD_COORDINATOR_H_
