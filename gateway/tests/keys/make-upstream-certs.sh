#!/usr/bin/env bash
# Regenerates the test PKI of the TLS-upstream tests (gateway/tests/it/upstream_tls.rs):
# a CA, a server certificate for localhost/127.0.0.1 and a client certificate, both
# signed by it. The CA's key is thrown away: nothing else is ever signed with it.
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
days=36500
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
  -subj "/CN=mcp upstream test CA" -keyout "$work/ca-key.pem" -out upstream-ca.pem \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
leaf() { # name, subject, extended key usage, extra extensions
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$2" \
    -keyout "upstream-$1-key.pem" -out "$work/$1.csr"
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\n%s\n' "$3" "$4" > "$work/$1.ext"
  openssl x509 -req -in "$work/$1.csr" -CA upstream-ca.pem -CAkey "$work/ca-key.pem" \
    -set_serial "0x$(openssl rand -hex 8)" -days "$days" -extfile "$work/$1.ext" -out "upstream-$1-cert.pem"
}
leaf server "/CN=localhost" serverAuth "subjectAltName=DNS:localhost,IP:127.0.0.1"
leaf client "/CN=mcp-gateway" clientAuth ""
