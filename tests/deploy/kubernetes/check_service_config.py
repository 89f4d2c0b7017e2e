#!/usr/bin/python3
"""Checks deploy/kubernetes/service-config.json, the gRPC service config for callers.

Statically: it parses; it balances round_robin; every method it names exists in
proto/copilot/v1/copilot_service.proto, once; retries (on UNAVAILABLE only) are configured for
exactly the safe methods ListAssistants, GetThread, ListMessages and DeleteThread, never for the
methods that create or generate something; the safe methods have a timeout.

Then for real, with a gRPC library (python3-grpcio, gRPC core as in C++): two local fake
CopilotService backends, a channel with this service config over both addresses:
  - ListAssistants failing UNAVAILABLE twice succeeds on the third attempt;
  - CreateThread failing UNAVAILABLE is attempted once (no retry of a call that may have created
    something);
  - calls alternate between the backends (round_robin);
  - a ListAssistants without a caller deadline that never answers ends DEADLINE_EXCEEDED after
    the configured timeout;
and, as the control, the same calls on a channel without the service config are attempted once
and all go to one backend, and the stalled call runs on until the control's own deadline.

  check_service_config.py --repo ROOT
"""

import argparse
import json
import os
import re
import sys
import threading
import time
from concurrent import futures

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from k8s_common import CheckError, fail_unless, run_checks  # noqa: E402

SAFE = {"ListAssistants", "GetThread", "ListMessages", "DeleteThread", "GetUsage"}
SERVICE = "copilot.v1.CopilotService"
DURATION = re.compile(r"^\d+(\.\d{1,9})?s$")


def seconds(text):
    fail_unless(isinstance(text, str) and DURATION.match(text), f"bad duration {text!r}")
    return float(text[:-1])


def proto_methods(repo):
    path = os.path.join(repo, "proto", "copilot", "v1", "copilot_service.proto")
    with open(path, encoding="utf-8") as f:
        text = re.sub(r"//[^\n]*", "", f.read())
    package = re.search(r"^\s*package\s+([\w.]+)\s*;", text, re.M).group(1)
    service = re.search(r"\bservice\s+(\w+)\s*\{", text)
    fail_unless(f"{package}.{service.group(1)}" == SERVICE, f"the proto's service is "
                f"{package}.{service.group(1)}")
    return set(re.findall(r"\brpc\s+(\w+)\s*\(", text))


class ServiceConfig:
    def __init__(self, repo):
        self.repo = repo
        path = os.path.join(repo, "deploy", "kubernetes", "service-config.json")
        try:
            with open(path, encoding="utf-8") as f:
                self.text = f.read()
            self.config = json.loads(self.text)
        except (OSError, ValueError) as e:
            raise CheckError(f"{path}: {e}")
        self.methods = proto_methods(repo)
        self.by_method = {}

    def structure(self):
        lb = self.config.get("loadBalancingConfig")
        fail_unless(lb == [{"round_robin": {}}], f"loadBalancingConfig {lb}, not round_robin")
        fail_unless("loadBalancingPolicy" not in self.config, "deprecated loadBalancingPolicy")
        for entry in self.config.get("methodConfig", []):
            for name in entry["name"]:
                fail_unless(name.get("service") == SERVICE, f"service {name.get('service')!r}")
                method = name.get("method")
                fail_unless(method in self.methods,
                            f"method {method!r} is not an rpc of {SERVICE} "
                            f"({', '.join(sorted(self.methods))})")
                fail_unless(method not in self.by_method, f"{method} configured twice")
                self.by_method[method] = entry
        return f"round_robin; {len(self.by_method)} methods named, all in the proto"

    def retries(self):
        retried = {m for m, e in self.by_method.items() if "retryPolicy" in e}
        fail_unless(retried == SAFE, f"retries on {sorted(retried)}; wanted exactly "
                    f"{sorted(SAFE)} (the others may have created or generated something)")
        for method in retried:
            policy = self.by_method[method]["retryPolicy"]
            fail_unless(policy.get("retryableStatusCodes") == ["UNAVAILABLE"],
                        f"{method}: retries on {policy.get('retryableStatusCodes')}")
            fail_unless(2 <= policy.get("maxAttempts", 0) <= 5,
                        f"{method}: maxAttempts {policy.get('maxAttempts')} (gRPC caps it at 5)")
            fail_unless(0 < seconds(policy["initialBackoff"]) <= seconds(policy["maxBackoff"]),
                        f"{method}: backoff")
            fail_unless(policy.get("backoffMultiplier", 0) > 0, f"{method}: backoffMultiplier")
            fail_unless("hedgingPolicy" not in self.by_method[method], f"{method}: hedging")
        throttling = self.config.get("retryThrottling")
        fail_unless(throttling and 0 < throttling.get("maxTokens", 0) <= 1000 and
                    0 < throttling.get("tokenRatio", 0), "retryThrottling")
        return f"UNAVAILABLE retried for {', '.join(sorted(retried))}"

    def timeouts(self):
        for method in SAFE | {"CreateThread", "AddMessage"}:
            entry = self.by_method.get(method)
            fail_unless(entry and "timeout" in entry, f"{method} has no timeout")
            fail_unless(0 < seconds(entry["timeout"]) <= 60, f"{method}: timeout {entry['timeout']}")
        return "quick methods have timeouts"

    def behaviour(self):
        import grpc

        config_timeout = seconds(self.by_method["ListAssistants"]["timeout"])
        script = Script()
        backends = [Backend(grpc, script) for _ in range(2)]
        target = "ipv4:" + ",".join(f"127.0.0.1:{b.port}" for b in backends)
        try:
            cap = config_timeout + 3  # the control's caller deadline
            with_config = exercise(grpc, target, backends, script,
                                   {"grpc.service_config": self.text}, None)
            without = exercise(grpc, target, backends, script, {"grpc.service_config": "{}"},
                               cap)
        finally:
            for b in backends:
                b.server.stop(0)
        fail_unless(with_config["list_code"] == "OK" and with_config["list_attempts"] == 3,
                    f"ListAssistants failing UNAVAILABLE twice: {with_config['list_code']} after "
                    f"{with_config['list_attempts']} attempt(s), wanted OK after 3")
        fail_unless(with_config["create_attempts"] == 1 and
                    with_config["create_code"] == "UNAVAILABLE",
                    f"CreateThread: {with_config['create_attempts']} attempts")
        fail_unless(min(with_config["spread"]) > 0,
                    f"calls per backend {with_config['spread']}: not round_robin")
        took = with_config["stalled_after"]
        fail_unless(with_config["stalled_code"] == "DEADLINE_EXCEEDED" and
                    config_timeout / 2 < took < config_timeout + 2,
                    f"a stalled ListAssistants without a caller deadline ended "
                    f"{with_config['stalled_code']} after {took:.1f}s, not DEADLINE_EXCEEDED "
                    f"after the configured {config_timeout:g}s")
        # The control: without the service config, no retry and no balancing.
        fail_unless(without["list_attempts"] == 1 and without["list_code"] == "UNAVAILABLE",
                    f"control: ListAssistants without the config: {without}")
        fail_unless(min(without["spread"]) == 0, f"control: pick_first spread {without['spread']}")
        fail_unless(without["stalled_after"] > config_timeout + 1,
                    f"control: the stalled call ended after {without['stalled_after']:.1f}s "
                    "without the service config")
        return (f"ListAssistants OK after 3 attempts, CreateThread 1 attempt, calls per backend "
                f"{with_config['spread']}, stalled call ended after {took:.1f}s; without the config: 1 "
                f"attempt, {without['spread']}")


class Script:
    """Failures shared by the backends: the next N calls of a method fail, whichever backend
    they reach."""

    def __init__(self):
        self.lock = threading.Lock()
        self.fail_next = {}
        self.stall = set()

    def stalls(self, method):
        with self.lock:
            return method in self.stall

    def take(self, method):
        with self.lock:
            failing = self.fail_next.get(method, 0)
            if failing:
                self.fail_next[method] = failing - 1
            return failing > 0

    def reset(self, fail_next, stall=()):
        with self.lock:
            self.fail_next = dict(fail_next)
            self.stall = set(stall)


class Backend:
    """A fake CopilotService that fails the calls the shared Script says."""

    def __init__(self, grpc, script):
        self.grpc = grpc
        self.script = script
        self.lock = threading.Lock()
        self.attempts = {}
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handlers = {m: grpc.unary_unary_rpc_method_handler(self.handler(m))
                    for m in ("ListAssistants", "CreateThread", "GetThread")}
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, handlers),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def handler(self, method):
        def handle(request, context):
            with self.lock:
                self.attempts[method] = self.attempts.get(method, 0) + 1
            if self.script.take(method):
                context.abort(self.grpc.StatusCode.UNAVAILABLE, "scripted failure")
            if self.script.stalls(method):
                stop = threading.Event()
                context.add_callback(stop.set)
                stop.wait(60)
            return b""
        return handle

    def reset(self):
        with self.lock:
            self.attempts = {}


def exercise(grpc, target, backends, script, options, timeout_cap):
    """Runs the scripted calls on a channel with `options`; returns what the backends saw."""
    out = {}
    with grpc.insecure_channel(target, options=list(options.items())) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)

        def call(method, timeout=None):
            stub = channel.unary_unary(f"/{SERVICE}/{method}")
            try:
                stub(b"", timeout=timeout)
                return "OK"
            except grpc.RpcError as e:
                return e.code().name

        # round_robin first. Warm up until both backends answered (round_robin picks only
        # connected subchannels; pick_first never reaches the second: 3 s), then count.
        script.reset({})
        for b in backends:
            b.reset()
        warm_until = time.monotonic() + 3
        while time.monotonic() < warm_until and not all(b.attempts for b in backends):
            call("GetThread", timeout=5)
            time.sleep(0.05)
        for b in backends:
            b.reset()
        for _ in range(10):
            call("GetThread", timeout=5)
        out["spread"] = [b.attempts.get("GetThread", 0) for b in backends]
        # The next two ListAssistants fail, and the next CreateThread.
        script.reset({"ListAssistants": 2, "CreateThread": 1})
        for b in backends:
            b.reset()
        out["list_code"] = call("ListAssistants", timeout=10)
        out["list_attempts"] = sum(b.attempts.get("ListAssistants", 0) for b in backends)
        out["create_code"] = call("CreateThread", timeout=10)
        out["create_attempts"] = sum(b.attempts.get("CreateThread", 0) for b in backends)
        # A ListAssistants without a caller deadline that never answers: the service config's
        # timeout ends it (gRPC applies it on the client; the server never sees it). gRPC core
        # 1.51 counts it from a cached clock, so it ends up to ~2 s early: the check allows that.
        script.reset({}, stall={"ListAssistants"})
        started = time.monotonic()
        out["stalled_code"] = call("ListAssistants", timeout=timeout_cap)
        out["stalled_after"] = time.monotonic() - started
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--static-only", action="store_true",
                        help="skip the calls through gRPC (check_selftest.py's static mutations)")
    args = parser.parse_args()
    try:
        config = ServiceConfig(args.repo)
    except CheckError as e:
        print(f"FAIL: {e}")
        print("0 passed, 1 failed")
        return 1
    checks = [("structure", config.structure), ("retries", config.retries),
              ("timeouts", config.timeouts)]
    if not args.static_only:
        checks.append(("behaviour", config.behaviour))
    return run_checks(checks)


if __name__ == "__main__":
    sys.exit(main())
