#!/usr/bin/env bash
# `copilot-gateway --check-config` on the config an overlay renders into its ConfigMap (the file
# the pods read), and `kubectl kustomize` of the overlay must succeed.
#
#   check_config.sh REPO OVERLAY GATEWAY WORK_DIR
set -euo pipefail
repo="$1" overlay="$2" gateway="$3" work="$4"
mkdir -p "$work"
here="$(cd "$(dirname "$0")" && pwd)"
/usr/bin/python3 - "$repo" "$overlay" "$work/gateway.yaml" "$here" <<'PY'
import sys
sys.path.insert(0, sys.argv[4])
import k8s_common as k
objects = k.render(sys.argv[1], sys.argv[2])
text, path, configmap = k.gateway_config(objects, k.one(objects, "Deployment", "copilot-gateway"))
open(sys.argv[3], "w").write(text)
print(f"ConfigMap {configmap['metadata']['name']} key for {path}: {len(text)} bytes")
PY
"$gateway" --check-config "$work/gateway.yaml"
