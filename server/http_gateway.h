// The HTTP/JSON gateway: the poledger.v1 API over HTTP/1.1 with JSON, and
// the web console's files.
//
// One mapping, for every method: POST to the method's gRPC path
// ("/poledger.v1.PurchaseOrderService/GetPurchaseOrder") with the request
// message as JSON (protobuf's JSON form, the one grpcurl shows), and
// "Content-Type: application/json". The answer is the response message as
// JSON, or an error: the HTTP status from the gRPC code, the body a
// google.rpc.Status in JSON (code, message, details). Server-streaming
// methods answer as server-sent events, one "data:" line per message.
//
// The gateway calls the gRPC server on its in-process channel, so a call
// over HTTP is validated, authorized, logged, counted and written exactly
// as one over gRPC. The caller's identity (a client certificate over
// HTTPS, or a bearer token that the policy maps to an identity) travels
// with the gateway's secret; see ServiceContext::gateway_secret.
//
// Thread safety: Start and Stop from one thread; requests are served on
// the gateway's own threads.
#ifndef POLEDGER_SERVER_HTTP_GATEWAY_H_
#define POLEDGER_SERVER_HTTP_GATEWAY_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "api/authz.h"
#include "server/tls.h"

namespace grpc {
class Channel;
}  // namespace grpc

namespace poledger {

struct HttpGatewayOptions {
  // host:port; port 0 picks a free one.
  std::string listen;
  // HTTPS with these files (those of the gRPC listener); all empty: plain
  // HTTP, for a server without TLS.
  TlsFiles tls;
  // With TLS every call needs an identity: a verified client certificate
  // or a bearer token the policy knows.
  bool require_identity = false;
  // The policy in force (its bearer tokens), asked at every request.
  std::function<std::shared_ptr<const api::Authorizer>()> authorizer;
  // The gRPC server's in-process channel, and the secret its calls carry.
  std::shared_ptr<grpc::Channel> channel;
  std::string secret;
  // The largest request body accepted.
  size_t max_body_bytes = 4 << 20;
  // Unary calls are cancelled after this.
  absl::Duration deadline = absl::Seconds(30);
  // Workers serving connections and calls. An event stream leaves the
  // workers when it starts (HttpWorkerPool), so streams never take them.
  int threads = 64;
  // Event streams served at once, each on a thread of its own parked on
  // its gRPC stream; one more is answered 503. Per caller, streams are
  // limited by the server's --max-streams-per-identity (429).
  size_t max_streams = 4096;
};

class HttpGateway {
 public:
  // Listens and serves. INVALID_ARGUMENT for bad options or TLS files,
  // UNAVAILABLE if it cannot listen.
  static absl::StatusOr<std::unique_ptr<HttpGateway>> Start(
      HttpGatewayOptions options);
  ~HttpGateway();

  int port() const;
  // Re-reads the TLS files for new connections; on error keeps the current
  // ones and says why.
  absl::Status ReloadTls();
  // Stops listening; requests in progress finish (streams end when the
  // gRPC server ends them). Wait joins the gateway's threads.
  void Stop();
  void Wait();

 private:
  struct Impl;
  explicit HttpGateway(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The HTTP status for a gRPC status code (google.rpc.Code's mapping).
int HttpStatusOf(int grpc_code);

}  // namespace poledger

#endif  // POLEDGER_SERVER_HTTP_GATEWAY_H_
