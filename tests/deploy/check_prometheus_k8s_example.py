#!/usr/bin/python3
"""Checks the commented kubernetes_sd job of deploy/prometheus/prometheus.example.yaml, which
`promtool check config` alone never sees: the lines between `# BEGIN kubernetes_sd example` and
`# END kubernetes_sd example` are uncommented in place of the static job (between
`# BEGIN static example` and `# END static example`), and the result goes to
`promtool check config`.

Debian's Prometheus is built without Kubernetes service discovery (its promtool refuses
`kubernetes_sd_configs` as an unknown field), so the kubernetes_sd_configs block is checked here
(role, namespaces) and then replaced by a placeholder static target; everything else of the job,
the relabelling above all, is checked by promtool.

  check_prometheus_k8s_example.py CONFIG.yaml [--promtool PROMTOOL]
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:
    sys.exit("FAIL: PyYAML is missing (apt-get install python3-yaml)")


def block(lines, name):
    """(first, last) line indexes of the BEGIN/END markers of `name`."""
    begin = [i for i, l in enumerate(lines) if re.match(rf"\s*# BEGIN {name}\b", l)]
    end = [i for i, l in enumerate(lines) if re.match(rf"\s*# END {name}\b", l)]
    if len(begin) != 1 or len(end) != 1 or begin[0] > end[0]:
        raise ValueError(f"expected one '# BEGIN {name}' ... '# END {name}' block")
    return begin[0], end[0]


ROLES = {"node", "pod", "service", "endpoints", "endpointslice", "ingress"}
SD_KEYS = {"role", "namespaces", "selectors", "api_server", "kubeconfig_file", "attach_metadata",
           "basic_auth", "authorization", "oauth2", "tls_config", "proxy_url", "follow_redirects",
           "enable_http2"}


def check_kubernetes_sd(sd):
    if not isinstance(sd, dict):
        raise ValueError(f"kubernetes_sd_configs entry {sd!r} is not a mapping")
    unknown = set(sd) - SD_KEYS
    if unknown:
        raise ValueError(f"kubernetes_sd_configs: unknown keys {sorted(unknown)}")
    if sd.get("role") not in ROLES:
        raise ValueError(f"kubernetes_sd_configs: role {sd.get('role')!r} is none of {sorted(ROLES)}")
    namespaces = sd.get("namespaces", {})
    if set(namespaces) - {"names", "own_namespace"} or not all(
            isinstance(n, str) for n in namespaces.get("names", [])):
        raise ValueError(f"kubernetes_sd_configs: bad namespaces {namespaces!r}")


def kubernetes_variant(text, config_dir):
    lines = text.splitlines()
    k_begin, k_end = block(lines, "kubernetes_sd example")
    uncommented = [re.sub(r"^(\s*)# ?", r"\1", l) for l in lines[k_begin + 1:k_end]]
    s_begin, s_end = block(lines, "static example")
    if not s_end < k_begin:
        raise ValueError("the static example must come before the kubernetes_sd one")
    variant = lines[:s_begin] + lines[s_end + 1:k_begin] + uncommented + lines[k_end + 1:]
    doc = yaml.safe_load("\n".join(variant) + "\n")
    jobs = doc.get("scrape_configs") or []
    if not any("kubernetes_sd_configs" in job for job in jobs):
        raise ValueError("the uncommented block has no job with kubernetes_sd_configs")
    if any("static_configs" in job for job in jobs):
        raise ValueError("the static job is still there")
    for job in jobs:
        for sd in job.pop("kubernetes_sd_configs", None) or []:
            check_kubernetes_sd(sd)
            job["static_configs"] = [{"targets": ["placeholder.invalid:9464"]}]
    # The copy lives elsewhere: point it at the rule files beside the original.
    doc["rule_files"] = [os.path.join(config_dir, f) for f in doc.get("rule_files", [])]
    return doc


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--promtool", default="promtool")
    args = parser.parse_args()
    with open(args.config, encoding="utf-8") as f:
        text = f.read()
    try:
        doc = kubernetes_variant(text, os.path.dirname(os.path.abspath(args.config)))
    except (ValueError, yaml.YAMLError) as e:
        print(f"FAIL: {args.config}: {e}")
        return 1
    with tempfile.TemporaryDirectory(prefix="prometheus-k8s-") as tmp:
        path = os.path.join(tmp, "prometheus.kubernetes.yaml")
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump(doc, f, sort_keys=False)
        result = subprocess.run([args.promtool, "check", "config", path], capture_output=True,
                                text=True, check=False)
        print(result.stdout + result.stderr)
        if result.returncode != 0:
            print("FAIL: the kubernetes_sd variant of the example does not pass promtool")
            return 1
    print("OK: the kubernetes_sd variant passes promtool check config")
    return 0


if __name__ == "__main__":
    sys.exit(main())
