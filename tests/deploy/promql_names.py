"""The metric families copilot-gateway exports, and the metric names a PromQL expression uses.

Shared by check_alert_rules.py and check_grafana_dashboard.py: an alert or a panel that names a
metric the gateway does not export (a typo, a renamed family) parses fine and silently shows
nothing, so both checks compare every name against this list.
"""

import re

# Issue #6 "Operations": the families the gateway exports (gRPC ones under go-grpc-prometheus
# names), plus those of the limits issue (#5) that the alerts already cover.
COUNTERS = {
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "grpc_server_msg_received_total",
    "grpc_server_msg_sent_total",
    "copilot_gateway_upstream_requests_total",
    "copilot_gateway_tenant_calls_total",
    "copilot_gateway_config_reloads_total",
    "copilot_gateway_limit_decisions_total",  # issue #5
    "copilot_gateway_usage_answers_total",  # issue #18
    "copilot_gateway_usage_characters_total",
    "copilot_gateway_usage_upstream_seconds_total",
    "copilot_gateway_usage_threads_created_total",
    "copilot_gateway_upstream_retries_total",  # issue #16
    "copilot_gateway_upstream_retries_denied_total",
    "copilot_gateway_upstream_circuit_transitions_total",
    "copilot_gateway_upstream_circuit_rejected_total",
    "copilot_gateway_grpc_connections_refused_total",  # issue #13
    "copilot_gateway_grpc_connections_cut_total",  # HTTP/2 rapid reset (server.max_calls_per_connection)
    "copilot_gateway_upstream_read_yields_total",
    "copilot_gateway_log_lines_dropped_total",  # issue #17 (the log writer)
    "process_cpu_seconds_total",
}
HISTOGRAMS = {
    "grpc_server_handling_seconds",
    "copilot_gateway_upstream_request_duration_seconds",
    "copilot_gateway_upstream_time_to_first_byte_seconds",
    "copilot_gateway_overhead_seconds",
}
GAUGES = {
    "copilot_gateway_upstream_in_flight",
    "copilot_gateway_config_last_reload_successful",
    "copilot_gateway_config_info",
    "copilot_gateway_build_info",
    "copilot_gateway_ready",
    "copilot_gateway_calls_in_flight",
    "copilot_gateway_redis_degraded",  # issue #5
    "copilot_gateway_tenant_quota_used",  # issue #18
    "copilot_gateway_tenant_quota_limit",
    "copilot_gateway_upstream_circuit_state",  # issue #16
    "copilot_gateway_grpc_connections",  # issue #13
    "copilot_gateway_log_buffered_bytes",  # issue #17
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
    "process_threads",
}

EXPORTED = (COUNTERS | GAUGES
            | {h + suffix for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")})

# Not metric names: keywords, modifiers and the number literals PromQL spells with letters.
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}
# Followed by a parenthesised list of label names.
_LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}

_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def _skip_string(expr, i):
    quote = expr[i]
    i += 1
    while i < len(expr) and expr[i] != quote:
        i += 2 if expr[i] == "\\" and quote != "`" else 1
    return i + 1


def _skip_bracketed(expr, i, opening, closing):
    depth = 0
    while i < len(expr):
        c = expr[i]
        if c in "\"'`":
            i = _skip_string(expr, i)
            continue
        if c == opening:
            depth += 1
        elif c == closing:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


def metric_names(expr):
    """Metric names an expression selects (identifiers that are not functions, keywords, label
    names or literals). Assumes an expression that parses; `{__name__=...}` is not looked at."""
    names = set()
    i = 0
    while i < len(expr):
        c = expr[i]
        if c in "\"'`":
            i = _skip_string(expr, i)
        elif c == "#":  # comment to the end of the line
            end = expr.find("\n", i)
            i = len(expr) if end < 0 else end
        elif c == "{":
            i = _skip_bracketed(expr, i, "{", "}")
        elif c == "[":
            i = _skip_bracketed(expr, i, "[", "]")
        elif c.isdigit() or (c == "." and i + 1 < len(expr) and expr[i + 1].isdigit()):
            # Numbers and durations: 0.99, 1e-3, 0x1f, 5m, 1h30m.
            i += 1
            while i < len(expr) and (expr[i].isalnum() or expr[i] in "._"):
                i += 1
        elif c.isalpha() or c in "_:":
            m = _IDENT.match(expr, i)
            word = m.group(0)
            i = m.end()
            rest = expr[i:].lstrip()
            if word.lower() in _LABEL_LIST_KEYWORDS:
                if rest.startswith("("):
                    i = _skip_bracketed(expr, len(expr) - len(rest), "(", ")")
            elif word.lower() in _KEYWORDS:
                pass
            elif rest.startswith("(") or re.match(r"(?i)(by|without)\s*\(", rest):
                pass  # a function, or an aggregation (`sum by (job) (...)`)
            else:
                names.add(word)
        else:
            i += 1
    return names
