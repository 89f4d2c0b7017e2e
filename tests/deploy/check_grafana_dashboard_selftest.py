#!/usr/bin/python3
"""Proves check_grafana_dashboard.py can fail: broken copies of the dashboard must each be
refused with the expected message, and the dashboard itself accepted.

  check_grafana_dashboard_selftest.py DASHBOARD.json [--promtool PROMTOOL]
"""

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile

CHECKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "check_grafana_dashboard.py")


def targets(dashboard):
    for panel in dashboard["panels"]:
        yield from panel.get("targets", [])


def first_target(dashboard):
    return next(targets(dashboard))


def set_expr(dashboard, old, new):
    """Replaces `old` by `new` in the first query containing it."""
    for target in targets(dashboard):
        if old in target.get("expr", ""):
            target["expr"] = target["expr"].replace(old, new, 1)
            return
    raise AssertionError(f"no query contains {old!r}")


def broken_paren(d):
    t = first_target(d)
    t["expr"] = t["expr"][:-1]  # drop the last ")"


def unknown_metric(d):
    set_expr(d, "grpc_server_started_total", "grpc_server_started_totl")


def unknown_variable(d):
    set_expr(d, "$__rate_interval", "$__rate_intervall")


def no_datasource_variable(d):
    d["templating"]["list"] = [v for v in d["templating"]["list"] if v["name"] != "datasource"]


def hardcoded_datasource(d):
    d["panels"][1]["datasource"] = {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}


def no_instance_filter(d):
    set_expr(d, ', instance=~"$instance"', "")


def duplicate_id(d):
    d["panels"][2]["id"] = d["panels"][1]["id"]


def broken_variable_query(d):
    for var in d["templating"]["list"]:
        if var["name"] == "instance":
            var["query"]["query"] = 'label_values(copilot_gateway_build_info{job="$job", instance)'


def missing_family(d):
    d["panels"] = [p for p in d["panels"]
                   if "copilot_gateway_upstream_in_flight" not in json.dumps(p.get("targets", []))]


def unquoted_variable(d):
    set_expr(d, '=~"$instance"', "=~$instance")


MUTANTS = [
    # (name, change, text expected in the checker's output)
    ("broken parenthesis", broken_paren, "promtool check rules on the queries failed"),
    ("misspelt metric", unknown_metric, "'grpc_server_started_totl' is not one the gateway"),
    ("unknown variable", unknown_variable, "unknown variable $__rate_intervall"),
    ("no datasource variable", no_datasource_variable, "no template variable `datasource`"),
    ("hard-coded data source", hardcoded_datasource, "data source is not ${datasource}"),
    ("query ignoring $instance", no_instance_filter, "does not filter on $instance"),
    ("duplicate panel id", duplicate_id, "missing or not unique"),
    ("broken variable query", broken_variable_query, "promtool check rules on the queries failed"),
    ("required family missing", missing_family, "no panel shows copilot_gateway_upstream_in_flight"),
    ("variable outside quotes", unquoted_variable, "promtool check rules on the queries failed"),
]


def run(path, promtool):
    result = subprocess.run([sys.executable, CHECKER, path, "--promtool", promtool],
                            capture_output=True, text=True, check=False)
    return result.returncode, result.stdout + result.stderr


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dashboard")
    parser.add_argument("--promtool", default="promtool")
    args = parser.parse_args()
    with open(args.dashboard, encoding="utf-8") as f:
        text = f.read()
    original = json.loads(text)
    failures = 0

    rc, out = run(args.dashboard, args.promtool)
    if rc != 0:
        print(f"FAIL: the dashboard itself is refused:\n{out}")
        return 1
    print("ok: the dashboard itself is accepted")

    with tempfile.TemporaryDirectory(prefix="grafana-selftest-") as tmp:
        cases = [("not JSON", text[: len(text) // 2], "not valid JSON")]
        for name, change, expected in MUTANTS:
            mutant = copy.deepcopy(original)
            change(mutant)
            cases.append((name, json.dumps(mutant, indent=2), expected))
        for name, content, expected in cases:
            path = os.path.join(tmp, "mutant.json")
            with open(path, "w", encoding="utf-8") as f:
                f.write(content)
            rc, out = run(path, args.promtool)
            if rc == 1 and expected in out:
                print(f"ok: {name}: refused ({expected})")
            else:
                failures += 1
                print(f"FAIL: {name}: exit {rc}, expected 1 and {expected!r} in:\n{out}")

    print(f"{len(cases) + 1 - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
