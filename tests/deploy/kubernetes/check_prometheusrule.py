#!/usr/bin/python3
"""Checks that the PrometheusRule of deploy/kubernetes holds exactly the rules of
deploy/prometheus/alerts.yaml (the file promtool and alerts.test.yaml check): the committed
base/prometheusrule.yaml is what generate_prometheusrule.py makes from alerts.yaml today, and
the PrometheusRule every overlay renders has the same groups, parsed, as alerts.yaml.

  check_prometheusrule.py --repo ROOT
"""

import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from k8s_common import OVERLAYS, fail_unless, load_yaml, one, render, run_checks  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True)
    args = parser.parse_args()
    kubernetes = os.path.join(args.repo, "deploy", "kubernetes")
    alerts_path = os.path.join(args.repo, "deploy", "prometheus", "alerts.yaml")

    def generated():
        proc = subprocess.run(
            [sys.executable, os.path.join(kubernetes, "generate_prometheusrule.py"), "--check",
             "--alerts", alerts_path,
             "--output", os.path.join(kubernetes, "base", "prometheusrule.yaml")],
            capture_output=True, text=True)
        fail_unless(proc.returncode == 0, (proc.stdout + proc.stderr).strip())
        return "base/prometheusrule.yaml is generate_prometheusrule.py's output"

    def rendered(overlay):
        def check():
            groups = load_yaml(alerts_path)["groups"]
            rule = one(render(args.repo, overlay), "PrometheusRule")
            fail_unless(rule["spec"]["groups"] == groups,
                        f"the rendered PrometheusRule's groups differ from {alerts_path}")
            count = sum(len(g["rules"]) for g in groups)
            return f"{len(groups)} group(s), {count} rules, equal to alerts.yaml"
        return check

    return run_checks([("generated", generated)] +
                      [(f"rendered {o}", rendered(o)) for o in OVERLAYS])


if __name__ == "__main__":
    sys.exit(main())
