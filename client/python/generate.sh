#!/usr/bin/env bash
# Generates the Python code of copilot.v1 (messages and gRPC stubs) and of the google.rpc error
# protos (google.rpc.Status and its details) from proto/ into OUT_DIR (default:
# build/clients/python). Nothing is written into the source tree.
#
#   client/python/generate.sh [OUT_DIR]
#   PYTHONPATH=OUT_DIR /usr/bin/python3 client/python/copilot_example.py
#
# Uses Debian's python3-grpcio and python3-protobuf (for /usr/bin/python3): grpc_tools.protoc
# when that module is installed, else protoc with grpc_python_plugin (protobuf-compiler-grpc).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$repo/build/clients/python}"
python="${PYTHON:-/usr/bin/python3}"
googleapis="${GOOGLEAPIS_PROTO_DIR:-/usr/share/gocode/src/github.com/gogo/googleapis}"
wkt="${PROTOBUF_INCLUDE_DIR:-/usr/include}"

for f in "$googleapis/google/rpc/status.proto" "$wkt/google/protobuf/struct.proto"; do
  [ -f "$f" ] || { echo "generate.sh: $f is missing (install golang-github-gogo-googleapis-dev and libprotobuf-dev)" >&2; exit 1; }
done

mkdir -p "$out"
out="$(cd "$out" && pwd)"
# Start from an empty tree so that a proto removed from proto/ leaves no stale module behind.
rm -rf "$out/copilot" "$out/google"

protos=(copilot/v1/resources.proto copilot/v1/copilot_service.proto)
rpc_protos=(google/rpc/status.proto google/rpc/error_details.proto)
if "$python" -c 'import grpc_tools.protoc' 2>/dev/null; then
  protoc=("$python" -m grpc_tools.protoc)
  plugin=()
else
  command -v protoc >/dev/null || { echo "generate.sh: protoc not found (install protobuf-compiler)" >&2; exit 1; }
  grpc_plugin="$(command -v grpc_python_plugin || true)"
  [ -n "$grpc_plugin" ] || { echo "generate.sh: grpc_python_plugin not found (install protobuf-compiler-grpc)" >&2; exit 1; }
  protoc=(protoc)
  plugin=("--plugin=protoc-gen-grpc_python=$grpc_plugin")
fi

"${protoc[@]}" "${plugin[@]}" -I "$repo/proto" -I "$wkt" \
  --python_out="$out" --grpc_python_out="$out" "${protos[@]}"
"${protoc[@]}" -I "$googleapis" -I "$wkt" --python_out="$out" "${rpc_protos[@]}"

# Make the import check with the interpreter the example runs on.
PYTHONPATH="$out" "$python" -c \
  'import copilot.v1.copilot_service_pb2_grpc, google.rpc.status_pb2, google.rpc.error_details_pb2'
echo "generated Python code in $out"
