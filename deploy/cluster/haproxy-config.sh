#!/usr/bin/env bash
# Writes the HAProxy (2.6) configuration that puts N poledger shards behind
# one gRPC address.
#
#   bash deploy/cluster/haproxy-config.sh --listen=0.0.0.0:50051 \
#       shard-0.poledger:50051 shard-1.poledger:50051 shard-2.poledger:50051 \
#       > haproxy.cfg
#
# The I-th address is shard I of N (N = the number of addresses), each
# server started with --shard=I/N. A shard run as several nodes with
# automatic failover (--etcd-endpoints) is its nodes' addresses joined by
# commas, e.g. 10.0.0.1:50051,10.0.0.2:50051,10.0.0.3:50051: its calls go
# to the one node that passes the gRPC health check of the service
# poledger.v1.Leader (only the leader serves it), checked every 500ms, so
# that after a failover calls reach the new leader within a second.
# Options:
#   --listen=ADDR        where HAProxy takes calls (default 127.0.0.1:50051)
#   --stats-listen=ADDR  HAProxy's own stats page and Prometheus metrics
#                        (/stats, /metrics), if given
#   --check-interval=T   how often each shard's gRPC health is checked
#                        (default 2s)
#   --tls-cert=PEM       mutual TLS on --listen: the proxy's server
#                        certificate chain and key in one PEM file, and
#   --tls-client-ca=CA   the CA bundle of the callers' certificates
#   --backend-cert=PEM   TLS to the shards: the proxy's client certificate
#                        and key (one PEM file; its identity is the shards'
#                        --trusted-proxy-identity), and
#   --backend-ca=CA      the CA bundle that signs the shards' certificates
#   --dns                resolve the shards' names at run time (Kubernetes:
#                        a shard's pod may start after the proxy, or move)
#
# With TLS the proxy verifies each caller's certificate and forwards it to
# the shard in x-poledger-client-cert (any such header from the caller is
# removed first): the shard authorizes the caller, not the proxy.
#
# Routing (the same rule as core/shard.h):
#   x-poledger-account: ID  -> shard crc32(ID) mod N (every account-scoped
#                              call carries it; poledger's clients set it)
#   x-poledger-shard: I     -> shard I (calls about no one account: admin,
#                              whole-log reads, a batch of one shard's items)
#   neither                 -> shard 0
# A shard header that names no shard of this cluster is answered by the
# proxy itself with INVALID_ARGUMENT. A shard that is down makes only its
# own calls UNAVAILABLE.
#
# Timeouts suit long streams: subscriptions send a heartbeat every few
# seconds, so a connection quiet for 10 minutes is a dead one.
#
# Health: each shard's grpc.health.v1.Health/Check is called over HTTP/2 by
# a tcp-check (HAProxy 2.6's http-check cannot send a gRPC request body,
# which starts with a NUL byte): the bytes below are the HTTP/2 preface, an
# empty SETTINGS frame, the HEADERS of POST /grpc.health.v1.Health/Check
# (HPACK, no Huffman) and a DATA frame with the empty request; the check
# passes when the answer holds the message status: SERVING (00000000 02
# 0801). A shard still loading its log (NOT_SERVING) or stopping is out.
set -euo pipefail

listen="127.0.0.1:50051"
stats=""
interval="2s"
tls_cert=""
tls_ca=""
backend_cert=""
backend_ca=""
dns=0
addresses=()
for arg in "$@"; do
  case "$arg" in
    --listen=*) listen="${arg#*=}" ;;
    --stats-listen=*) stats="${arg#*=}" ;;
    --check-interval=*) interval="${arg#*=}" ;;
    --tls-cert=*) tls_cert="${arg#*=}" ;;
    --tls-client-ca=*) tls_ca="${arg#*=}" ;;
    --backend-cert=*) backend_cert="${arg#*=}" ;;
    --backend-ca=*) backend_ca="${arg#*=}" ;;
    --dns) dns=1 ;;
    -h|--help) sed -n '2,43p' "$0"; exit 0 ;;
    -*) echo "haproxy-config.sh: unknown option $arg" >&2; exit 2 ;;
    *) addresses+=("$arg") ;;
  esac
done
n=${#addresses[@]}
if [[ -z "$tls_cert" && -n "$tls_ca" || -n "$tls_cert" && -z "$tls_ca" ]]; then
  echo "haproxy-config.sh: --tls-cert and --tls-client-ca go together" >&2
  exit 2
fi
if [[ -z "$backend_cert" && -n "$backend_ca" || -n "$backend_cert" && -z "$backend_ca" ]]; then
  echo "haproxy-config.sh: --backend-cert and --backend-ca go together" >&2
  exit 2
fi
bind_tls=""
if [[ -n "$tls_cert" ]]; then
  # Callers without a certificate get through to the shard, which answers
  # UNAUTHENTICATED as it would to them directly; a certificate that does
  # not verify ends the handshake here.
  bind_tls=" ssl crt $tls_cert ca-file $tls_ca verify optional alpn h2"
fi
server_tls=""
if [[ -n "$backend_cert" ]]; then
  server_tls=" ssl crt $backend_cert ca-file $backend_ca verify required alpn h2 check-ssl check-alpn h2"
fi
server_dns=""
if [[ "$dns" == 1 ]]; then
  server_dns=" resolvers dns init-addr last,libc,none"
fi
if (( n < 1 )); then
  echo "haproxy-config.sh: give each shard's address, shard 0 first" >&2
  exit 2
fi

preface=505249202a20485454502f322e300d0a0d0a534d0d0a0d0a
settings=000000040000000000
headers=00004b010400000001
headers+=8386041c2f677270632e6865616c74682e76312e4865616c74682f436865636b
headers+=01096c6f63616c686f73740f10106170706c69636174696f6e2f67727063
headers+=0002746508747261696c657273
data=0000050001000000010000000000
health_request="$preface$settings$headers$data"
# The same call for the service poledger.v1.Leader: a DATA frame with
# HealthCheckRequest{service: "poledger.v1.Leader"}.
leader_data=00001900010000000100000000140a12706f6c65646765722e76312e4c6561646572
leader_request="$preface$settings$headers$leader_data"

shards=""
for ((i = 0; i < n; i++)); do shards+=" $i"; done

cat <<EOF
# Generated by deploy/cluster/haproxy-config.sh for $n shard(s).
global
  log stderr format raw local0 info
  maxconn 4096
  # As many calls per client connection as a poledger server takes.
  tune.h2.max-concurrent-streams 1000

defaults
  mode http
  log global
  option httplog
  timeout connect 5s
  timeout check 5s
  timeout client 10m
  timeout server 10m
  timeout http-request 10s

frontend grpc
  bind $listen proto h2$bind_tls
  # Only the proxy says which certificate a caller presented.
  http-request del-header x-poledger-client-cert
EOF
if [[ -n "$tls_cert" ]]; then
  cat <<EOF
  http-request set-header x-poledger-client-cert %[ssl_c_der,base64] if { ssl_c_used }
EOF
fi
cat <<EOF
  acl has_account req.hdr(x-poledger-account) -m found
  acl has_shard req.hdr(x-poledger-shard) -m found
  acl known_shard req.hdr(x-poledger-shard) -m str$shards
  http-request return status 200 hdr grpc-status 3 hdr grpc-message "x-poledger-shard: not a shard of this cluster (0 to $((n - 1)))" if !has_account has_shard !known_shard
  http-request set-var(txn.shard) req.hdr(x-poledger-account),crc32,mod($n) if has_account
  http-request set-var(txn.shard) req.hdr(x-poledger-shard) if !has_account has_shard
  use_backend shard%[var(txn.shard)] if { var(txn.shard) -m found }
  default_backend shard0
EOF
if [[ "$dns" == 1 ]]; then
  cat <<EOF

resolvers dns
  parse-resolv-conf
  hold valid 10s
EOF
fi
if [[ -n "$stats" ]]; then
  cat <<EOF

frontend stats
  bind $stats
  http-request use-service prometheus-exporter if { path /metrics }
  stats enable
  stats uri /stats
EOF
fi
for ((i = 0; i < n; i++)); do
  IFS=, read -r -a nodes <<< "${addresses[$i]}"
  if (( ${#nodes[@]} > 1 )); then
    cat <<EOF

backend shard$i
  # Only the leader passes: its node takes every call of the shard. A
  # leader that stops answering is out after one missed check.
  option tcp-check
  timeout check 1s
  tcp-check send-binary $leader_request
  tcp-check expect binary 00000000020801
  default-server inter 500ms fall 1 rise 1
  # While no node leads (a failover), UNAVAILABLE: clients retry.
  http-error status 503 hdr grpc-status 14 hdr grpc-message "poledger shard $i of $n has no leader now (a failover: retry)"
EOF
    for ((j = 0; j < ${#nodes[@]}; j++)); do
      echo "  server shard$i-node$j ${nodes[$j]} proto h2 check$server_tls$server_dns"
    done
    continue
  fi
  cat <<EOF

backend shard$i
  option tcp-check
  tcp-check send-binary $health_request
  tcp-check expect binary 00000000020801
  default-server inter $interval fall 2 rise 1
  # A shard that is down answers as a gRPC server would: UNAVAILABLE.
  http-error status 503 hdr grpc-status 14 hdr grpc-message "poledger shard $i of $n is unavailable (down, or still loading its log)"
  server shard$i ${addresses[$i]} proto h2 check$server_tls$server_dns
EOF
done
