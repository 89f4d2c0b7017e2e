#!/usr/bin/env bash
# Generates the Go code of copilot.v1 (messages and gRPC client/server stubs) from proto/ into
# OUT_DIR (default: build/clients/go) and builds the example program, offline, in GOPATH mode
# against Debian's Go packages (/usr/share/gocode: grpc-go 1.33, golang/protobuf 1.3, genproto's
# google.golang.org/genproto/googleapis/rpc/{status,errdetails}). Nothing is written into the
# source tree.
#
#   client/go/generate.sh [OUT_DIR]
#   OUT_DIR/bin/copilot-example
#
# OUT_DIR/gopath/src/copilotgateway/gen/go/copilot/v1  package copilotv1 (the protos' go_package)
# OUT_DIR/bin/copilot-example                          the example (client/go/example)
#
# Messages: Debian's /usr/bin/protoc-gen-go is 1.28 (APIv2); its output imports
# google.golang.org/protobuf, which Debian's grpc-go 1.33 and genproto do not use (they are
# built on github.com/golang/protobuf 1.3, APIv1) and which is not installed. So the messages are
# generated with the APIv1 protoc-gen-go built here from Debian's own golang/protobuf 1.3 sources,
# the generator genproto's errdetails were made with. The gRPC stubs come from Debian's
# /usr/bin/protoc-gen-go-grpc (grpc-go 1.33), whose output needs only grpc.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$repo/build/clients/go}"
gocode="${DEBIAN_GOCODE:-/usr/share/gocode}"
wkt="${PROTOBUF_INCLUDE_DIR:-/usr/include}"

export GO111MODULE=off GOFLAGS=
# go needs a build cache; without HOME (and no GOCACHE) keep it in OUT_DIR.
if [ -z "${GOCACHE:-}" ] && [ -z "${HOME:-}" ] && [ -z "${XDG_CACHE_HOME:-}" ]; then
  export GOCACHE="$out/go-cache"
fi
for tool in go protoc protoc-gen-go-grpc; do
  command -v "$tool" >/dev/null ||
    { echo "generate.sh: $tool not found (install golang-go, protobuf-compiler, protoc-gen-go-grpc)" >&2; exit 1; }
done
for dir in github.com/golang/protobuf/protoc-gen-go google.golang.org/grpc \
  google.golang.org/genproto/googleapis/rpc/errdetails; do
  [ -d "$gocode/src/$dir" ] ||
    { echo "generate.sh: $gocode/src/$dir is missing (install golang-google-grpc-dev)" >&2; exit 1; }
done

mkdir -p "$out/bin"
out="$(cd "$out" && pwd)"
gen_root="$out/gopath/src"
rm -rf "$out/gopath"
mkdir -p "$gen_root"

GOPATH="$gocode" go build -o "$out/bin/protoc-gen-go" github.com/golang/protobuf/protoc-gen-go

# The well-known types as golang/protobuf 1.3 has them (the .proto files name the APIv2 packages).
wkt_map="Mgoogle/protobuf/struct.proto=github.com/golang/protobuf/ptypes/struct"
wkt_map+=",Mgoogle/protobuf/timestamp.proto=github.com/golang/protobuf/ptypes/timestamp"
protoc -I "$repo/proto" -I "$wkt" \
  --plugin=protoc-gen-go="$out/bin/protoc-gen-go" --go_out="$wkt_map:$gen_root" \
  --plugin=protoc-gen-go-grpc="$(command -v protoc-gen-go-grpc)" --go-grpc_out="$gen_root" \
  copilot/v1/resources.proto copilot/v1/copilot_service.proto

cd "$repo/client/go/example"
GOPATH="$out/gopath:$gocode" go build -o "$out/bin/copilot-example" .
echo "generated Go code in $gen_root/copilotgateway/gen/go/copilot/v1; example: $out/bin/copilot-example"
