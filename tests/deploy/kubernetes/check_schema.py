#!/usr/bin/python3
"""Validates every object an overlay renders, and the Secret templates, against the Kubernetes
API schema (and the Prometheus Operator's for ServiceMonitor and PrometheusRule) with the npm
packages kubernetes-models and @kubernetes-models/prometheus-operator, plus TypeScript's excess
property checks for unknown fields (validate_schema.js).

  check_schema.py --repo ROOT --overlay single|ha --npm NPM_DIR
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from k8s_common import CheckError, load_yaml_all, render  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--overlay", required=True)
    parser.add_argument("--npm", required=True, help="directory with node_modules (npm_tools.sh)")
    args = parser.parse_args()
    try:
        objects = render(args.repo, args.overlay)
    except CheckError as e:
        print(f"FAIL: {e}")
        return 1
    objects += load_yaml_all(os.path.join(args.repo, "deploy", "kubernetes", "secrets",
                                          "secrets.example.yaml"))
    node = shutil.which("node")
    if not node:
        print("FAIL: node not found")
        return 1
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(objects, f)
        path = f.name
    try:
        return subprocess.run([node, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "validate_schema.js"), args.npm, path]).returncode
    finally:
        os.unlink(path)


if __name__ == "__main__":
    sys.exit(main())
