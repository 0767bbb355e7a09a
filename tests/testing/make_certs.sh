#!/usr/bin/env bash
# Makes the certificates the security tests use, in DIR, with the openssl
# command: never committed, made fresh each run.
#
#   ca.pem, ca.key           the CA the server trusts for client certificates
#                            (and that signs the server's certificate)
#   other-ca.pem             a CA the server does not trust
#   server.pem, server.key   127.0.0.1 / localhost
#   server2.pem, server2.key the same names, another key (rotation)
#   NAME.pem, NAME.key       clients with URI SAN spiffe://poledger.test/NAME,
#                            for each NAME given after DIR
#   cn-only.pem/.key         a client with subject CN "cn-only" and no SAN
#   untrusted.pem/.key       spiffe://poledger.test/admin, signed by other-ca
set -euo pipefail
dir=$1
shift
mkdir -p "$dir"
cd "$dir"
days=2

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

make_ca() {  # name cn
  new_key "$1.key"
  openssl req -x509 -new -key "$1.key" -out "$1.pem" -days $days -subj "/CN=$2" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}

sign() {  # name cn ca extensions
  new_key "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$2"
  printf '%s\n' "$4" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial \
    -out "$1.pem" -days $days -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

make_ca ca poledger-test-ca
make_ca other-ca poledger-untrusted-ca
server_ext='subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth'
sign server poledger-server ca "$server_ext"
sign server2 poledger-server-rotated ca "$server_ext"
for name in "$@"; do
  sign "$name" "$name" ca "subjectAltName=URI:spiffe://poledger.test/$name
extendedKeyUsage=clientAuth"
done
sign cn-only cn-only ca 'extendedKeyUsage=clientAuth'
sign untrusted untrusted other-ca 'subjectAltName=URI:spiffe://poledger.test/admin
extendedKeyUsage=clientAuth'
chmod 600 ./*.key
