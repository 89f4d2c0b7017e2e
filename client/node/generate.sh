#!/usr/bin/env bash
# Prepares the Node.js client of copilot.v1 in OUT_DIR (default: build/clients/node). Node
# generates its code at run time: @grpc/proto-loader loads the .proto files into gRPC stubs and
# protobufjs loads the google.rpc error protos. This script gathers those files, the contract
# from proto/ and google/rpc/{status,error_details}.proto, into OUT_DIR/proto, checks that they
# load, and generates TypeScript definitions of every message and of the service into
# OUT_DIR/types (proto-loader-gen-types) for TypeScript callers. Nothing is written into the
# source tree.
#
#   client/node/generate.sh [OUT_DIR]
#   COPILOT_PROTO_DIR=OUT_DIR/proto node client/node/copilot_example.js
#
# Needs node and the npm packages of package.json (@grpc/grpc-js, @grpc/proto-loader; `npm
# install` at the repository root); the google.rpc protos come from
# golang-github-gogo-googleapis-dev. The well-known types (google/protobuf/*) are built into
# protobufjs.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$repo/build/clients/node}"
googleapis="${GOOGLEAPIS_PROTO_DIR:-/usr/share/gocode/src/github.com/gogo/googleapis}"

command -v node >/dev/null || { echo "generate.sh: node not found (install nodejs)" >&2; exit 1; }
for module in @grpc/grpc-js @grpc/proto-loader; do
  [ -d "$repo/node_modules/$module" ] ||
    { echo "generate.sh: $repo/node_modules/$module is missing (run npm install in $repo)" >&2; exit 1; }
done
[ -f "$googleapis/google/rpc/status.proto" ] ||
  { echo "generate.sh: $googleapis/google/rpc/status.proto is missing (install golang-github-gogo-googleapis-dev)" >&2; exit 1; }

mkdir -p "$out"
out="$(cd "$out" && pwd)"
rm -rf "$out/proto" "$out/types"
mkdir -p "$out/proto/copilot/v1" "$out/proto/google/rpc" "$out/types"
cp "$repo"/proto/copilot/v1/*.proto "$out/proto/copilot/v1/"
cp "$googleapis/google/rpc/status.proto" "$googleapis/google/rpc/error_details.proto" \
  "$out/proto/google/rpc/"

"$repo/node_modules/.bin/proto-loader-gen-types" --grpcLib=@grpc/grpc-js --outDir="$out/types" \
  --includeDirs="$out/proto" --longs=String --enums=String --defaults --oneofs \
  copilot/v1/copilot_service.proto google/rpc/status.proto google/rpc/error_details.proto \
  >/dev/null

# Load them the way the example does.
(cd "$repo/client/node" && COPILOT_PROTO_DIR="$out/proto" node -e \
  'require("./copilot_example.js").loadProtos(process.env.COPILOT_PROTO_DIR)')
echo "prepared Node.js protos in $out/proto, TypeScript definitions in $out/types"
