#include "server/http_gateway.h"

#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "api/authz.h"
#include "base/status_macros.h"
#include "core/errors.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/util/json_util.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/impl/codegen/client_unary_call.h"
#include "grpcpp/impl/codegen/rpc_method.h"
#include "grpcpp/impl/codegen/sync_stream.h"
#include "grpcpp/support/byte_buffer.h"
#include "httplib.h"
#include "openssl/err.h"
#include "openssl/sha.h"
#include "openssl/ssl.h"
#include "openssl/x509.h"
#include "server/console_assets.h"
#include "server/http_pool.h"
#include "server/log.h"
#include "server/log_limit.h"
#include "server/services.h"

namespace poledger {

namespace pb = ::google::protobuf;

int HttpStatusOf(int grpc_code) {
  switch (static_cast<grpc::StatusCode>(grpc_code)) {
    case grpc::OK:
      return 200;
    case grpc::CANCELLED:
      return 499;
    case grpc::INVALID_ARGUMENT:
    case grpc::FAILED_PRECONDITION:
    case grpc::OUT_OF_RANGE:
      return 400;
    case grpc::DEADLINE_EXCEEDED:
      return 504;
    case grpc::NOT_FOUND:
      return 404;
    case grpc::ALREADY_EXISTS:
    case grpc::ABORTED:
      return 409;
    case grpc::PERMISSION_DENIED:
      return 403;
    case grpc::UNAUTHENTICATED:
      return 401;
    case grpc::RESOURCE_EXHAUSTED:
      return 429;
    case grpc::UNIMPLEMENTED:
      return 501;
    case grpc::UNAVAILABLE:
      return 503;
    default:
      return 500;
  }
}

namespace {

constexpr char kJson[] = "application/json";

std::string ToJson(const pb::Message& message) {
  std::string out;
  pb::util::JsonPrintOptions options;
  options.add_whitespace = false;
  // The generated pool resolves the Any details (ErrorInfo, BadRequest).
  if (!pb::util::MessageToJsonString(message, &out, options).ok()) {
    return "{}";
  }
  return out;
}

// A gRPC status as google.rpc.Status: the server's own (with its details)
// when it sent one, else code and message.
google::rpc::Status RpcStatusOf(const grpc::Status& status) {
  google::rpc::Status out;
  if (!status.error_details().empty() &&
      out.ParseFromString(status.error_details())) {
    return out;
  }
  out.Clear();
  out.set_code(status.error_code());
  out.set_message(status.error_message());
  return out;
}

void ReplyError(httplib::Response& res, const google::rpc::Status& status) {
  res.status = HttpStatusOf(status.code());
  res.set_content(ToJson(status), kJson);
}

void ReplyError(httplib::Response& res, grpc::StatusCode code,
                std::string message) {
  google::rpc::Status status;
  status.set_code(code);
  status.set_message(std::move(message));
  ReplyError(res, status);
}

grpc::ByteBuffer ToByteBuffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

bool FromByteBuffer(const grpc::ByteBuffer& buffer, pb::Message* message) {
  grpc::Slice slice;
  if (!buffer.DumpToSingleSlice(&slice).ok()) return false;
  return message->ParseFromArray(slice.begin(), static_cast<int>(slice.size()));
}

std::string Sha256Hex(absl::string_view text) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(),
         digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * sizeof(digest));
  for (unsigned char c : digest) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

// When the peer's verified client certificate expires; nullopt without one.
std::optional<absl::Time> ExpiryOfPeer(const SSL* ssl) {
  if (ssl == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) {
    return std::nullopt;
  }
  X509* cert = SSL_get_peer_certificate(ssl);
  if (cert == nullptr) return std::nullopt;
  std::optional<absl::Time> expiry;
  unsigned char* der = nullptr;
  const int n = i2d_X509(cert, &der);
  if (n > 0) {
    expiry = CertificateExpiryOfDer(
        absl::string_view(reinterpret_cast<char*>(der), n));
    OPENSSL_free(der);
  }
  X509_free(cert);
  return expiry;
}

// The peer's verified client certificate's identity, "" without one.
std::string IdentityOfPeer(const SSL* ssl) {
  if (ssl == nullptr) return "";
  X509* cert = SSL_get_peer_certificate(ssl);
  if (cert == nullptr) return "";
  std::string identity;
  if (SSL_get_verify_result(ssl) == X509_V_OK) {
    unsigned char* der = nullptr;
    const int n = i2d_X509(cert, &der);
    if (n > 0) {
      identity =
          IdentityOfDer(absl::string_view(reinterpret_cast<char*>(der), n));
      OPENSSL_free(der);
    }
  }
  X509_free(cert);
  return identity;
}

std::string PeerOf(const httplib::Request& req) {
  return absl::StrCat(req.remote_addr, ":", req.remote_port);
}

// A request the gateway answered itself, without a call: logged as the
// server logs calls it refuses (never the body or the token).
void LogRejected(const httplib::Request& req, int http_status,
                 absl::string_view message) {
  if (http_status == 401) {
    log::WriteLimited(log::Level::kWarning, "http_refused",
                 absl::StrCat("http_refused|", req.path, "|", req.remote_addr),
                 absl::StrCat("HTTP ", req.path, " refused: ", message),
                 {{"code", "UNAUTHENTICATED"},
                  {"path", req.path},
                  {"peer", PeerOf(req)}});
    return;
  }
  log::WriteLimited(
      log::Level::kInfo, "http_rejected",
      absl::StrCat("http_rejected|", http_status, "|", req.path, "|",
                   req.remote_addr),
      absl::StrCat("HTTP ", req.method, " ", req.path, ": ", http_status, " ",
                   message),
      {{"status", http_status}, {"path", req.path}, {"peer", PeerOf(req)}});
}

// Headers every answer carries: no caching of account data, no sniffing,
// no framing, and scripts only from the console itself.
void SetCommonHeaders(httplib::Response& res) {
  res.set_header("Cache-Control", "no-store");
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("Referrer-Policy", "no-referrer");
  res.set_header("Content-Security-Policy",
                 "default-src 'self'; frame-ancestors 'none'; "
                 "base-uri 'none'; form-action 'none'");
}

// Sets up a server context from the TLS files: false if one does not load.
bool Configure(SSL_CTX* ctx, const TlsFiles& files) {
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(ctx, files.cert.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, files.key.c_str(), SSL_FILETYPE_PEM) !=
          1 ||
      SSL_CTX_check_private_key(ctx) != 1 ||
      SSL_CTX_load_verify_locations(ctx, files.client_ca.c_str(), nullptr) !=
          1) {
    return false;
  }
  STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(files.client_ca.c_str());
  if (names == nullptr) return false;
  // Ask for a client certificate and verify one that is given; a caller
  // without one may still send a bearer token.
  SSL_CTX_set_client_CA_list(ctx, names);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  // A resumed session keeps its verified certificate; without a context id
  // OpenSSL refuses to resume once peers are verified, and browsers resume
  // on every parallel connection.
  static constexpr unsigned char kSessionContext[] = "poledger-http";
  SSL_CTX_set_session_id_context(ctx, kSessionContext,
                                 sizeof(kSessionContext) - 1);
  return true;
}

absl::StatusOr<SSL_CTX*> NewHttpsContext(const TlsFiles& files) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return absl::InternalError("SSL_CTX_new failed");
  if (!Configure(ctx, files)) {
    char error[256] = "";
    ERR_error_string_n(ERR_get_error(), error, sizeof(error));
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return absl::InvalidArgumentError(absl::StrCat(
        "the HTTPS certificate (", files.cert, "), key (", files.key,
        ") or client CA (", files.client_ca, ") does not load: ", error));
  }
  return ctx;
}

// The HTTPS listener's certificates, replaceable at reload: every new
// connection takes the current context at its ClientHello (before the
// certificate is chosen or a client's verified); connections made before
// keep theirs.
class HttpsContexts {
 public:
  explicit HttpsContexts(SSL_CTX* ctx) : current_(ctx) {}
  ~HttpsContexts() { SSL_CTX_free(current_); }

  void Set(SSL_CTX* ctx) {
    absl::MutexLock lock(&mu_);
    std::swap(ctx, current_);
    SSL_CTX_free(ctx);
  }

  static int OnClientHello(SSL* ssl, int*, void* arg) {
    auto* self = static_cast<HttpsContexts*>(arg);
    absl::MutexLock lock(&self->mu_);
    SSL_set_SSL_CTX(ssl, self->current_);  // Takes its own reference.
    return SSL_CLIENT_HELLO_SUCCESS;
  }

 private:
  absl::Mutex mu_;
  SSL_CTX* current_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

struct HttpGateway::Impl {
  HttpGatewayOptions options;
  // Outlives the listener, whose connections call into it.
  std::unique_ptr<HttpsContexts> contexts;
  std::unique_ptr<httplib::Server> http;
  std::thread thread;
  int port = 0;

  // The caller's identity; an error status if it has none where one is
  // needed.
  absl::StatusOr<std::string> Authenticate(const httplib::Request& req) const {
    if (!options.require_identity) return std::string();
    std::string identity = IdentityOfPeer(req.ssl);
    if (!identity.empty()) return identity;
    if (TokenHashOf(req).empty()) {
      return absl::UnauthenticatedError(
          "this server needs a client certificate or an "
          "\"Authorization: Bearer TOKEN\" header");
    }
    std::shared_ptr<const api::Authorizer> authorizer = options.authorizer();
    if (authorizer != nullptr) {
      identity = authorizer->IdentityOfTokenHash(TokenHashOf(req));
    }
    if (identity.empty()) {
      return absl::UnauthenticatedError(
          "the bearer token is not one the policy knows");
    }
    return identity;
  }

  // The SHA-256 (hex) of the request's bearer token, "" without one.
  static std::string TokenHashOf(const httplib::Request& req) {
    const std::string authorization = req.get_header_value("Authorization");
    if (!absl::StartsWithIgnoreCase(authorization, "Bearer ")) return "";
    const std::string token(absl::StripAsciiWhitespace(
        absl::string_view(authorization).substr(7)));
    if (token.empty()) return "";
    return Sha256Hex(token);
  }

  // Marks a call as the gateway's, made for `identity`, with the routing
  // headers the caller sent (a proxy routes HTTP calls by them, and the
  // server checks them against the body, as over gRPC).
  void Vouch(const httplib::Request& req, const std::string& identity,
             grpc::ClientContext* context) const {
    context->AddMetadata(kGatewaySecretHeader, options.secret);
    context->AddMetadata(kGatewayIdentityHeader, identity);
    context->AddMetadata(kGatewayPeerHeader,
                         absl::StrCat(req.remote_addr, ":", req.remote_port));
    if (options.require_identity && IdentityOfPeer(req.ssl).empty()) {
      // A bearer token's identity: each check of the call (a stream's after
      // a policy reload too) asks whether the policy still holds the token.
      context->AddMetadata(kGatewayTokenHashHeader, TokenHashOf(req));
    }
    if (options.require_identity) {
      if (std::optional<absl::Time> expiry = ExpiryOfPeer(req.ssl)) {
        context->AddMetadata(kGatewayCertExpiryHeader,
                             absl::StrCat(absl::ToUnixSeconds(*expiry)));
      }
    }
    for (const char* header : {kAccountHeader, kShardHeader}) {
      if (req.has_header(header)) {
        context->AddMetadata(header, req.get_header_value(header));
      }
    }
  }

  void Call(const httplib::Request& req, httplib::Response& res) const {
    SetCommonHeaders(res);
    const std::string path = req.path;
    const auto* method = pb::DescriptorPool::generated_pool()->FindMethodByName(
        absl::StrReplaceAll(path.substr(1), {{"/", "."}}));
    if (method == nullptr ||
        !absl::StartsWith(method->service()->full_name(), "poledger.v1.") ||
        method->client_streaming()) {
      ReplyError(res, grpc::UNIMPLEMENTED,
                 absl::StrCat("no method ", path,
                              ": POST to /poledger.v1.SERVICE/METHOD"));
      res.status = 404;
      LogRejected(req, res.status, "no such method");
      return;
    }
    const std::string content_type = req.get_header_value("Content-Type");
    if (!absl::StartsWithIgnoreCase(content_type, kJson)) {
      ReplyError(res, grpc::INVALID_ARGUMENT,
                 absl::StrCat("Content-Type must be application/json, not \"",
                              content_type, "\""));
      res.status = 415;
      LogRejected(req, res.status, "not JSON");
      return;
    }
    absl::StatusOr<std::string> identity = Authenticate(req);
    if (!identity.ok()) {
      ReplyError(res, grpc::UNAUTHENTICATED,
                 std::string(identity.status().message()));
      LogRejected(req, res.status, identity.status().message());
      return;
    }
    std::unique_ptr<pb::Message> request(
        pb::MessageFactory::generated_factory()
            ->GetPrototype(method->input_type())
            ->New());
    pb::util::JsonParseOptions parse;
    parse.ignore_unknown_fields = false;
    const auto parsed = pb::util::JsonStringToMessage(
        req.body.empty() ? std::string("{}") : req.body, request.get(), parse);
    if (!parsed.ok()) {
      ReplyError(
          res, grpc::INVALID_ARGUMENT,
          absl::StrCat("the body is not a ", method->input_type()->full_name(),
                       " in JSON: ", std::string(parsed.message())));
      LogRejected(req, res.status, "the body is not the request in JSON");
      return;
    }
    std::string bytes;
    request->SerializeToString(&bytes);
    const std::string rpc_path =
        absl::StrCat("/", method->service()->full_name(), "/", method->name());
    if (method->server_streaming()) {
      Stream(req, method, rpc_path, *identity, ToByteBuffer(bytes), res);
      return;
    }
    grpc::ClientContext context;
    Vouch(req, *identity, &context);
    context.set_deadline(absl::ToChronoTime(absl::Now() + options.deadline));
    grpc::ByteBuffer response_bytes;
    const grpc::Status status =
        grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
            options.channel.get(),
            grpc::internal::RpcMethod(rpc_path.c_str(),
                                      grpc::internal::RpcMethod::NORMAL_RPC),
            &context, ToByteBuffer(bytes), &response_bytes);
    if (!status.ok()) {
      ReplyError(res, RpcStatusOf(status));
      return;
    }
    std::unique_ptr<pb::Message> response(
        pb::MessageFactory::generated_factory()
            ->GetPrototype(method->output_type())
            ->New());
    if (!FromByteBuffer(response_bytes, response.get())) {
      ReplyError(res, grpc::INTERNAL, "the answer does not parse");
      return;
    }
    res.status = 200;
    res.set_content(ToJson(*response), kJson);
  }

  // A server-streaming call as server-sent events. The first message (or
  // the refusal) is awaited before answering, so a refused stream gets its
  // HTTP status; the streams send one at once (a caught-up marker).
  void Stream(const httplib::Request& req, const pb::MethodDescriptor* method,
              const std::string& rpc_path, const std::string& identity,
              grpc::ByteBuffer request, httplib::Response& res) const {
    struct Call {
      grpc::ClientContext context;
      std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>> reader;
      const pb::Message* prototype = nullptr;
      grpc::ByteBuffer next;
      bool have_next = false;
      bool finished = false;
    };
    auto call = std::make_shared<Call>();
    Vouch(req, identity, &call->context);
    call->prototype = pb::MessageFactory::generated_factory()->GetPrototype(
        method->output_type());
    call->reader.reset(
        grpc::internal::ClientReaderFactory<grpc::ByteBuffer>::Create(
            options.channel.get(),
            grpc::internal::RpcMethod(
                rpc_path.c_str(), grpc::internal::RpcMethod::SERVER_STREAMING),
            &call->context, request));
    if (!call->reader->Read(&call->next)) {
      call->finished = true;
      ReplyError(res, RpcStatusOf(call->reader->Finish()));
      return;
    }
    call->have_next = true;
    if (!HttpWorkerPool::DetachForStream()) {
      call->context.TryCancel();
      grpc::ByteBuffer ignored;
      while (call->reader->Read(&ignored)) {
      }
      (void)call->reader->Finish();
      call->finished = true;
      ReplyError(res, grpc::UNAVAILABLE,
                 absl::StrCat("the HTTP gateway already serves ",
                              options.max_streams,
                              " streams; retry later, or stream over gRPC"));
      return;
    }
    res.status = 200;
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [call](size_t, httplib::DataSink& sink) {
          if (!call->have_next && !call->reader->Read(&call->next)) {
            call->finished = true;
            const grpc::Status status = call->reader->Finish();
            const std::string event = absl::StrCat(
                "event: error\ndata: ", ToJson(RpcStatusOf(status)), "\n\n");
            sink.write(event.data(), event.size());
            sink.done();
            return true;
          }
          call->have_next = false;
          std::unique_ptr<pb::Message> message(call->prototype->New());
          std::string event = "data: {}\n\n";
          if (FromByteBuffer(call->next, message.get())) {
            event = absl::StrCat("data: ", ToJson(*message), "\n\n");
          }
          if (!sink.write(event.data(), event.size())) {
            call->context.TryCancel();
            return false;
          }
          return true;
        },
        [call](bool) {
          if (call->finished) return;
          call->context.TryCancel();
          grpc::ByteBuffer ignored;
          while (call->reader->Read(&ignored)) {
          }
          (void)call->reader->Finish();
        });
  }
};

HttpGateway::HttpGateway(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpGateway::~HttpGateway() {
  Stop();
  Wait();
}

int HttpGateway::port() const { return impl_->port; }

absl::StatusOr<std::unique_ptr<HttpGateway>> HttpGateway::Start(
    HttpGatewayOptions options) {
  const size_t colon = options.listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(options.listen.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--http-listen: '", options.listen, "' is not HOST:PORT"));
  }
  std::string host = options.listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  const HttpGatewayOptions& o = impl->options;
  if (!o.tls.cert.empty()) {
    absl::StatusOr<SSL_CTX*> first = NewHttpsContext(o.tls);
    if (!first.ok()) return first.status();
    impl->contexts = std::make_unique<HttpsContexts>(*first);
    const TlsFiles files = o.tls;
    HttpsContexts* contexts = impl->contexts.get();
    auto https =
        std::make_unique<httplib::SSLServer>([files, contexts](SSL_CTX& ctx) {
          if (!Configure(&ctx, files)) return false;
          SSL_CTX_set_client_hello_cb(&ctx, &HttpsContexts::OnClientHello,
                                      contexts);
          return true;
        });
    if (!https->is_valid()) {
      return absl::InvalidArgumentError(
          "--http-listen: the TLS certificate, key or client CA does not load");
    }
    impl->http = std::move(https);
  } else {
    impl->http = std::make_unique<httplib::Server>();
  }
  httplib::Server& http = *impl->http;
  const int threads = o.threads;
  const size_t max_streams = o.max_streams;
  http.new_task_queue = [threads, max_streams] {
    return new HttpWorkerPool(threads, max_streams);
  };
  http.set_payload_max_length(o.max_body_bytes);
  http.set_keep_alive_timeout(2);
  http.set_read_timeout(10);
  Impl* raw = impl.get();
  http.Post(R"(/poledger\.v1\.[A-Za-z]+/[A-Za-z]+)",
            [raw](const httplib::Request& req, httplib::Response& res) {
              raw->Call(req, res);
            });
  // The console: its files, compiled in.
  for (const ConsoleAsset& asset : ConsoleAssets()) {
    const std::string path = absl::StrCat("/console/", std::string(asset.name));
    http.Get(path, [asset](const httplib::Request&, httplib::Response& res) {
      SetCommonHeaders(res);
      res.set_content(asset.body.data(), asset.body.size(),
                      std::string(asset.content_type).c_str());
    });
  }
  http.Get("/favicon.ico", [](const httplib::Request&, httplib::Response& res) {
    res.status = 204;
  });
  http.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_redirect("/console/index.html");
  });
  http.Get("/console/?", [](const httplib::Request&, httplib::Response& res) {
    res.set_redirect("/console/index.html");
  });
  http.set_error_handler(
      [](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return;
        SetCommonHeaders(res);
        google::rpc::Status status;
        status.set_code(res.status == 413 ? grpc::INVALID_ARGUMENT
                                          : grpc::UNIMPLEMENTED);
        status.set_message(
            res.status == 413
                ? "the request body is larger than the server accepts"
                : absl::StrCat("nothing at ", req.method, " ", req.path));
        res.set_content(ToJson(status), kJson);
      });
  if (port == 0) {
    impl->port = http.bind_to_any_port(host);
  } else if (http.bind_to_port(host, port)) {
    impl->port = port;
  }
  if (impl->port <= 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", impl->options.listen));
  }
  impl->thread = std::thread([raw] { raw->http->listen_after_bind(); });
  return std::unique_ptr<HttpGateway>(new HttpGateway(std::move(impl)));
}

absl::Status HttpGateway::ReloadTls() {
  if (impl_->contexts == nullptr) return absl::OkStatus();
  ASSIGN_OR_RETURN(SSL_CTX * ctx, NewHttpsContext(impl_->options.tls));
  impl_->contexts->Set(ctx);
  return absl::OkStatus();
}

void HttpGateway::Stop() {
  if (impl_->http != nullptr) impl_->http->stop();
}

void HttpGateway::Wait() {
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace poledger
