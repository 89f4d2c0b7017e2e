#!/usr/bin/python3
"""Checks deploy/grafana/copilot-gateway.json.

  check_grafana_dashboard.py DASHBOARD.json [--promtool PROMTOOL]

- valid JSON, schemaVersion 36 or later, a uid and a title;
- template variables: `datasource` (type datasource, Prometheus) and `instance` (a query);
- every panel (rows' nested panels too) has a unique id and a gridPos, and it and each of its
  targets use the data source `${datasource}`;
- every query parses as PromQL: Grafana's variables ($__rate_interval, $job, ${instance}, ...)
  are replaced by sample values, a variable the dashboard does not define is an error, and the
  queries go to `promtool check rules` as one recording rule each; label_values() variable
  queries are checked the same way through their selector;
- every metric a query names is one the gateway exports (promql_names.py), every selector of
  one filters on $instance, and the families the dashboard is meant to show all appear.

Exit status 0 when all is well, 1 with the problems listed otherwise.
"""

import argparse
import json
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

DATASOURCE_REFS = {"${datasource}", "$datasource"}

# Grafana's own variables, with values to put in their place for parsing.
GRAFANA_BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "30s",
    "__interval_ms": "30000",
    "__range": "6h",
    "__range_s": "21600",
    "__range_ms": "21600000",
}
# Values for the dashboard's own variables; any other variable gets "x".
SAMPLE_VALUES = {"job": "copilot-gateway", "instance": "gw-a:9464"}

# What the dashboard is for: each of these families must appear in some panel.
REQUIRED_METRICS = {
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "grpc_server_handling_seconds_bucket",
    "copilot_gateway_overhead_seconds_bucket",
    "copilot_gateway_upstream_requests_total",
    "copilot_gateway_upstream_time_to_first_byte_seconds_bucket",
    "copilot_gateway_upstream_in_flight",
    "copilot_gateway_calls_in_flight",
    "copilot_gateway_grpc_connections",
    "copilot_gateway_grpc_connections_refused_total",
    "copilot_gateway_grpc_connections_cut_total",
    "copilot_gateway_tenant_calls_total",
    "copilot_gateway_limit_decisions_total",
    "copilot_gateway_usage_answers_total",
    "copilot_gateway_usage_characters_total",
    "copilot_gateway_tenant_quota_used",
    "copilot_gateway_config_reloads_total",
    "copilot_gateway_ready",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_threads",
}

_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*(\w+)\s*\)\s*$", re.S)


def flatten(panels):
    for panel in panels:
        yield panel
        yield from flatten(panel.get("panels", []) or [])


def substitute(expr, variables):
    """expr with the variables replaced, and the names of those the dashboard lacks."""
    unknown = []

    def replace(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in GRAFANA_BUILTINS:
            return GRAFANA_BUILTINS[name]
        if name in variables:
            return SAMPLE_VALUES.get(name, "x")
        if name.isdigit():  # "$1" in a label_replace() replacement
            return m.group(0)
        unknown.append(name)
        return m.group(0)

    return _VARIABLE.sub(replace, expr), unknown


def ds_ok(ref):
    return isinstance(ref, dict) and ref.get("uid") in DATASOURCE_REFS and \
        ref.get("type", "prometheus") == "prometheus"


def unfiltered_selectors(expr, names):
    """Selectors of `names` in expr that do not filter on the instance variable."""
    bad = []
    for name in names:
        pattern = re.compile(r"(?<![\w:])" + re.escape(name) + r"(?![\w:])\s*(\{[^}]*\})?")
        for m in pattern.finditer(expr):
            if not m.group(1) or not re.search(r"\$\{?instance\b", m.group(1)):
                bad.append(m.group(0))
    return bad


def check(path, promtool):
    problems = []
    try:
        with open(path, encoding="utf-8") as f:
            dashboard = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        return [f"not valid JSON: {e}"], ""

    schema = dashboard.get("schemaVersion")
    if not isinstance(schema, int) or schema < 36:
        problems.append(f"schemaVersion {schema!r}: expected 36 or later")
    for key in ("uid", "title"):
        if not dashboard.get(key):
            problems.append(f"no {key}")

    template_vars = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    ds_var = template_vars.get("datasource")
    if not ds_var or ds_var.get("type") != "datasource" or ds_var.get("query") != "prometheus":
        problems.append("no template variable `datasource` of type datasource, query prometheus")
    instance_var = template_vars.get("instance")
    if not instance_var or instance_var.get("type") != "query":
        problems.append("no template variable `instance` of type query")

    queries = []  # (where, expr)
    for name, var in template_vars.items():
        if var.get("type") != "query":
            continue
        if not ds_ok(var.get("datasource")):
            problems.append(f"variable {name}: data source is not ${{datasource}}")
        query = var.get("query")
        query = query.get("query", "") if isinstance(query, dict) else (query or "")
        m = _LABEL_VALUES.match(query)
        if not m:
            problems.append(f"variable {name}: query {query!r} is not label_values(selector, label)")
            continue
        queries.append((f"variable {name}", m.group(1)))

    seen_ids = set()
    panel_count = 0
    for panel in flatten(dashboard.get("panels", [])):
        title = panel.get("title", "?")
        pid = panel.get("id")
        if pid in seen_ids or not isinstance(pid, int):
            problems.append(f"panel {title!r}: id {pid!r} missing or not unique")
        seen_ids.add(pid)
        grid = panel.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in ("h", "w", "x", "y")):
            problems.append(f"panel {title!r}: gridPos incomplete")
        if panel.get("type") == "row":
            continue
        panel_count += 1
        if not ds_ok(panel.get("datasource")):
            problems.append(f"panel {title!r}: data source is not ${{datasource}}")
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"panel {title!r}: no targets")
        refs = set()
        for target in targets:
            ref = target.get("refId")
            if not ref or ref in refs:
                problems.append(f"panel {title!r}: refId {ref!r} missing or not unique")
            refs.add(ref)
            if not ds_ok(target.get("datasource")):
                problems.append(f"panel {title!r} {ref}: data source is not ${{datasource}}")
            expr = target.get("expr", "")
            if not expr.strip():
                problems.append(f"panel {title!r} {ref}: empty expr")
                continue
            queries.append((f"panel {pid} {title!r} {ref}", expr))

    used = set()
    rules = []
    for where, expr in queries:
        concrete, unknown = substitute(expr, template_vars)
        for name in unknown:
            problems.append(f"{where}: unknown variable ${name}")
        names = promql_names.metric_names(concrete)
        used |= names
        for name in sorted(names - promql_names.EXPORTED):
            problems.append(f"{where}: metric {name!r} is not one the gateway exports")
        if not where.startswith("variable"):
            for selector in unfiltered_selectors(expr, names):
                problems.append(f"{where}: {selector!r} does not filter on $instance")
        rules.append({"name": where, "rules": [
            {"record": f"grafana_check:query_{len(rules)}", "expr": concrete}]})
    for name in sorted(REQUIRED_METRICS - used):
        problems.append(f"no panel shows {name}")

    with tempfile.TemporaryDirectory(prefix="grafana-check-") as tmp:
        rules_path = os.path.join(tmp, "dashboard-queries.rules.yaml")
        with open(rules_path, "w", encoding="utf-8") as f:
            yaml.safe_dump({"groups": rules}, f, sort_keys=False)
        result = subprocess.run([promtool, "check", "rules", rules_path], capture_output=True,
                                text=True, check=False)
        if result.returncode != 0:
            problems.append("promtool check rules on the queries failed:\n"
                            + result.stdout + result.stderr)

    return problems, f"{panel_count} panels, {len(queries)} queries parsed by promtool"


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dashboard")
    parser.add_argument("--promtool", default="promtool")
    args = parser.parse_args()
    problems, summary = check(args.dashboard, args.promtool)
    for problem in problems:
        print(f"FAIL: {problem}")
    if problems:
        print(f"{len(problems)} problem(s) in {args.dashboard}")
        return 1
    print(f"OK: {args.dashboard}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
