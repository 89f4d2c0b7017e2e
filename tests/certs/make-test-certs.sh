#!/usr/bin/env bash
# Makes the TLS test certificates in OUT_DIR (EC P-256 keys, valid for 2 days):
#
#   ca.pem, ca.key                the test CA that signs everything below except stranger
#   server.pem, server.key        server cert, SAN DNS:localhost, IP:127.0.0.1
#   server2.pem, server2.key      a second server cert for the same names (rotation tests)
#   elsewhere.pem, elsewhere.key  server cert for another host only, SAN DNS:redis.elsewhere.example
#                                 (host name verification must refuse it for localhost/127.0.0.1)
#   tenant-a.pem, tenant-a.key    client cert, SAN URI:spiffe://example.org/ns/a/sa/app
#   tenant-b.pem, tenant-b.key    client cert, SAN URI:spiffe://example.org/ns/b/sa/app
#   dns-client.pem, dns-client.key  client cert, SAN DNS:batch.internal.example
#   other-ca.pem, other-ca.key    an unrelated CA
#   expired.pem, expired.key      server cert for localhost/127.0.0.1 whose validity ended a day
#                                 before it began (any verifier refuses it as expired)
#   stranger.pem, stranger.key    client cert signed by other-ca with tenant-a's SPIFFE ID (an
#                                 impostor: a server trusting ca.pem must refuse it)
#
# Usage: make-test-certs.sh [--if-stale] OUT_DIR
#   --if-stale  do nothing when OUT_DIR already holds every file, made by this very script, and
#               every certificate stays valid for at least another day (the build calls it so)
#
# Needs only the openssl CLI ($OPENSSL, default: openssl on PATH). Never use these outside tests:
# the keys are unencrypted and short-lived by design.
set -euo pipefail

usage() {
  echo "usage: $0 [--if-stale] OUT_DIR" >&2
  exit 64
}

if_stale=false
if [[ "${1:-}" == "--if-stale" ]]; then
  if_stale=true
  shift
fi
[[ $# -eq 1 && -n "$1" ]] || usage
out_dir=$1
openssl=${OPENSSL:-openssl}

certs=(ca server server2 elsewhere tenant-a tenant-b dns-client other-ca stranger expired)
script_hash=$(sha256sum "$0" | cut -d' ' -f1)
stamp="$out_dir/.made-by-make-test-certs"

fresh() {
  [[ -f "$stamp" && "$(cat "$stamp")" == "$script_hash" ]] || return 1
  local name
  for name in "${certs[@]}"; do
    [[ -f "$out_dir/$name.pem" && -f "$out_dir/$name.key" ]] || return 1
    [[ "$name" == expired ]] && continue
    "$openssl" x509 -in "$out_dir/$name.pem" -noout -checkend 86400 >/dev/null || return 1
  done
}

if $if_stale && fresh; then exit 0; fi

mkdir -p "$out_dir"
work=$(mktemp -d "$out_dir/.make-test-certs.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The CA section, and one section for every leaf: its extended key usage and SAN come from the
# environment (OpenSSL expands $ENV:: when it reads the file, so they always need a value).
cat >"$work/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
[dn]

[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash

[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
extendedKeyUsage = $ENV::EKU
subjectAltName = $ENV::SAN
EOF
export EKU=clientAuth SAN=DNS:unused

key() {
  "$openssl" genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/$1.key"
}

# ca NAME CN
ca() {
  key "$1"
  "$openssl" req -x509 -config "$work/openssl.cnf" -extensions ca -key "$work/$1.key" \
    -subj "/CN=$2" -days 2 -set_serial "0x$("$openssl" rand -hex 16)" -out "$work/$1.pem"
}

# leaf NAME CN EXTENDED_KEY_USAGE SAN ISSUER [DAYS]
leaf() {
  key "$1"
  "$openssl" req -new -config "$work/openssl.cnf" -key "$work/$1.key" -subj "/CN=$2" \
    -out "$work/$1.csr"
  EKU=$3 SAN=$4 "$openssl" x509 -req -in "$work/$1.csr" -CA "$work/$5.pem" \
    -CAkey "$work/$5.key" -days "${6:-2}" -set_serial "0x$("$openssl" rand -hex 16)" \
    -extfile "$work/openssl.cnf" -extensions leaf -out "$work/$1.pem" 2>/dev/null
}

ca ca "copilot-gateway test CA"
ca other-ca "unrelated test CA"
leaf server localhost serverAuth DNS:localhost,IP:127.0.0.1 ca
leaf server2 localhost serverAuth DNS:localhost,IP:127.0.0.1 ca
leaf elsewhere redis.elsewhere.example serverAuth DNS:redis.elsewhere.example ca
leaf tenant-a tenant-a clientAuth URI:spiffe://example.org/ns/a/sa/app ca
leaf tenant-b tenant-b clientAuth URI:spiffe://example.org/ns/b/sa/app ca
leaf dns-client dns-client clientAuth DNS:batch.internal.example ca
leaf stranger tenant-a clientAuth URI:spiffe://example.org/ns/a/sa/app other-ca
leaf expired localhost serverAuth DNS:localhost,IP:127.0.0.1 ca -1

for name in "${certs[@]}"; do
  chmod 600 "$work/$name.key"
  mv -f "$work/$name.key" "$work/$name.pem" "$out_dir/"
done
echo "$script_hash" >"$stamp"
