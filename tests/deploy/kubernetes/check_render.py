#!/usr/bin/python3
"""`kubectl kustomize` renders an overlay of deploy/kubernetes: prints kubectl's version and the
objects rendered, and fails when kustomize fails or renders no Deployment copilot-gateway.

  check_render.py --repo ROOT --overlay single|ha
"""

import argparse
import os
import subprocess
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from k8s_common import CheckError, fail_unless, kubectl, render  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--overlay", required=True)
    args = parser.parse_args()
    try:
        version = subprocess.run([kubectl(), "version", "--client"], capture_output=True,
                                 text=True).stdout.replace("\n", "; ").strip("; ")
        print(f"kubectl: {version}")
        objects = render(args.repo, args.overlay)
        kinds = Counter(o["kind"] for o in objects)
        gateways = [o for o in objects if o["kind"] == "Deployment" and
                    o["metadata"].get("name") == "copilot-gateway"]
        fail_unless(len(gateways) == 1, "no Deployment copilot-gateway rendered")
        print(f"ok   overlay {args.overlay}: {len(objects)} objects: " +
              ", ".join(f"{k} x{n}" if n > 1 else k for k, n in sorted(kinds.items())))
    except CheckError as e:
        print(f"FAIL: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
