#!/usr/bin/python3
"""Checks deploy/prometheus/alerts.yaml and its unit tests beyond what promtool checks.

  check_alert_rules.py lint   --rules R --tests T --readme README
  check_alert_rules.py mutate --rules R --tests T --promtool PROMTOOL

lint: every alert has a `for:` of at least 1m, a severity, a templated summary and description
and a runbook_url whose anchor is the alert's own heading in README; every metric an expression
names is one the gateway exports (or `up`, or a recording rule of the file); every alert has a
test in which it fires and one, later than its `for:`, in which it must not; every alert a test
names exists (a test of a misspelt alert that expects nothing would pass forever).

mutate: proves the unit tests can fail. For each alert in turn, its expression is replaced by one
that never fires (its tests expecting it to fire must then fail) and by one that always fires
(its tests expecting it not to fire, at or after its `for:`, must then fail); those tests must
pass with the unchanged rules in the same harness, and so must the whole file.

Exit status 0 when all is well, 1 with the problems listed otherwise.
"""

import argparse
import copy
import os
import re
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:
    sys.exit("FAIL: PyYAML is missing (apt-get install python3-yaml)")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import promql_names  # noqa: E402

SEVERITIES = {"critical", "warning", "info"}
GROUP = "copilot-gateway"
# Prometheus itself writes `up` for every target.
BUILTIN_METRICS = {"up"}

_DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")


def seconds(duration):
    """Prometheus duration ("1h30m", "5m", "0s") in seconds; ValueError if it is not one."""
    m = _DURATION.match(str(duration))
    if not m or not str(duration):
        raise ValueError(f"not a duration: {duration!r}")
    y, w, d, h, mi, s, ms = (int(g) if g else 0 for g in m.groups())
    return (((y * 365 + w * 7 + d) * 24 + h) * 60 + mi) * 60 + s + ms / 1000


def github_anchor(heading):
    """The anchor GitHub gives a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def readme_anchors(path):
    anchors = set()
    in_code = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("```"):
                in_code = not in_code
            elif not in_code and re.match(r"^#{1,6} ", line):
                anchors.add(github_anchor(line.lstrip("#")))
    return anchors


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def all_rules(rules_doc):
    return [rule for group in rules_doc["groups"] for rule in group["rules"]]


def alerts_of(rules_doc):
    return {r["alert"]: r for r in all_rules(rules_doc) if "alert" in r}


def lint(args):
    problems = []
    rules_doc = load(args.rules)
    tests_doc = load(args.tests)
    anchors = readme_anchors(args.readme)

    groups = [g["name"] for g in rules_doc.get("groups", [])]
    if GROUP not in groups:
        problems.append(f"no rule group named {GROUP!r} (groups: {groups})")

    records = {r["record"] for r in all_rules(rules_doc) if "record" in r}
    for rule in all_rules(rules_doc):
        name = rule.get("alert") or rule.get("record")
        allowed = promql_names.EXPORTED | (BUILTIN_METRICS | records if "alert" in rule else set())
        for metric in sorted(promql_names.metric_names(rule["expr"]) - allowed):
            problems.append(f"{name}: uses {metric!r}, which the gateway does not export")
        if "record" in rule and ":" not in rule["record"]:
            problems.append(f"recording rule {name}: name it level:metric:operations")

    alerts = alerts_of(rules_doc)
    if not alerts:
        problems.append("no alerts")
    for name, rule in alerts.items():
        try:
            if seconds(rule.get("for", "0s")) < 60:
                problems.append(f"{name}: `for:` missing or under 1m")
        except ValueError as e:
            problems.append(f"{name}: {e}")
        severity = rule.get("labels", {}).get("severity")
        if severity not in SEVERITIES:
            problems.append(f"{name}: severity {severity!r} is none of {sorted(SEVERITIES)}")
        annotations = rule.get("annotations", {})
        for key in ("summary", "description"):
            text = annotations.get(key, "")
            if not text:
                problems.append(f"{name}: no {key} annotation")
            elif not re.search(r"\{\{[^}]*\$(labels|value)", text):
                problems.append(f"{name}: {key} uses neither $labels nor $value")
        url = annotations.get("runbook_url", "")
        anchor = url.rpartition("#")[2] if "#" in url else ""
        if anchor != name.lower():
            problems.append(f"{name}: runbook_url {url!r} does not end in #{name.lower()}")
        elif anchor not in anchors:
            problems.append(f"{name}: {args.readme} has no heading with anchor #{anchor}")

    fires, stays_quiet = set(), set()
    for group in tests_doc.get("tests", []):
        for test in group.get("alert_rule_test", []) or []:
            name = test["alertname"]
            if name not in alerts:
                problems.append(f"test {group.get('name')!r}: no alert named {name!r}")
                continue
            if test.get("exp_alerts"):
                fires.add(name)
            elif seconds(test["eval_time"]) >= seconds(alerts[name].get("for", "0s")):
                stays_quiet.add(name)
    for name in alerts:
        if name not in fires:
            problems.append(f"{name}: no test in which it fires")
        if name not in stays_quiet:
            problems.append(f"{name}: no test in which it must not fire (at or after its `for:`)")

    return problems, f"{len(alerts)} alerts, {len(records)} recording rules"


def run_promtool(promtool, rules_doc, tests_doc, workdir, label):
    """Writes both documents to workdir and runs `promtool test rules`; its exit status."""
    rules_path = os.path.join(workdir, f"{label}.rules.yaml")
    tests_path = os.path.join(workdir, f"{label}.test.yaml")
    tests_doc = copy.deepcopy(tests_doc)
    tests_doc["rule_files"] = [os.path.basename(rules_path)]
    with open(rules_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(rules_doc, f, sort_keys=False)
    with open(tests_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(tests_doc, f, sort_keys=False)
    result = subprocess.run([promtool, "test", "rules", tests_path], capture_output=True,
                            text=True, check=False)
    return result.returncode, result.stdout + result.stderr


def with_expr(rules_doc, alert, expr):
    mutated = copy.deepcopy(rules_doc)
    for rule in all_rules(mutated):
        if rule.get("alert") == alert:
            rule["expr"] = expr
    return mutated


def tests_of(tests_doc, alert, firing, for_seconds=0):
    """Only the tests of `alert` that expect it to fire (firing=True), or not to fire at or after
    its `for:` (firing=False)."""
    filtered = copy.deepcopy(tests_doc)
    groups = []
    for group in filtered.get("tests", []):
        kept = [t for t in group.get("alert_rule_test", []) or []
                if t["alertname"] == alert and bool(t.get("exp_alerts")) == firing
                and (firing or seconds(t["eval_time"]) >= for_seconds)]
        if kept:
            group["alert_rule_test"] = kept
            group.pop("promql_expr_test", None)
            groups.append(group)
    filtered["tests"] = groups
    return filtered


def mutate(args):
    problems = []
    rules_doc = load(args.rules)
    tests_doc = load(args.tests)
    alerts = alerts_of(rules_doc)
    with tempfile.TemporaryDirectory(prefix="alerts-mutate-") as workdir:
        rc, out = run_promtool(args.promtool, rules_doc, tests_doc, workdir, "baseline")
        if rc != 0:
            return [f"the unchanged rules fail their tests in this harness:\n{out}"], ""
        for name, rule in alerts.items():
            mutations = [
                ("never fires", "vector(1) < 0", "its firing tests",
                 tests_of(tests_doc, name, True)),
                ("always fires", "vector(1)", "its not-firing tests",
                 tests_of(tests_doc, name, False, seconds(rule.get("for", "0s")))),
            ]
            for what, expr, which, subset in mutations:
                if not subset["tests"]:
                    problems.append(f"{name}: it has no {which[4:]}")
                    continue
                rc, out = run_promtool(args.promtool, rules_doc, subset, workdir, name)
                if rc != 0:
                    problems.append(f"{name}: {which} fail on their own:\n{out}")
                    continue
                rc, _ = run_promtool(args.promtool, with_expr(rules_doc, name, expr), subset,
                                     workdir, name)
                print(f"{name}: {what} -> {which} fail: {'yes' if rc != 0 else 'NO'}")
                if rc == 0:
                    problems.append(f"{name}: {which} pass with an expression that {what}")
    return problems, f"{len(alerts)} alerts, 2 mutations each"


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["lint", "mutate"])
    parser.add_argument("--rules", required=True)
    parser.add_argument("--tests", required=True)
    parser.add_argument("--readme")
    parser.add_argument("--promtool", default="promtool")
    args = parser.parse_args()
    if args.mode == "lint" and not args.readme:
        parser.error("lint needs --readme")
    problems, summary = lint(args) if args.mode == "lint" else mutate(args)
    for problem in problems:
        print(f"FAIL: {problem}")
    if problems:
        print(f"{len(problems)} problem(s)")
        return 1
    print(f"OK: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
