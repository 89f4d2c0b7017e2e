#!/usr/bin/python3
"""Runs the real gateway with an overlay's rendered config and container args, and checks every
probe of the rendered Deployment against it, the way kubelet would run them.

The config is the rendered ConfigMap's, with only these rewritten: `listen` and `metrics_listen`
to 127.0.0.1 port 0 (the gateway prints the ports it got), and every *_file secret path to a
temporary file made here (the thread signing and user-ID keys 48 random bytes, base64). The probe ports are
mapped back through the container ports: a probe on containerPort 50051 ("grpc", = listen's
port) goes to the gRPC listener, one on "metrics" (= metrics_listen's) to the HTTP listener.

Then, as on a pod's deletion: SIGTERM; readiness must fail at once (gRPC "readiness"
NOT_SERVING, /readyz 503) while liveness still passes (a draining pod must not be restarted),
and the process must exit 0 within terminationGracePeriodSeconds.

With `redis.url` in the config (overlays/ha), Redis first: the gateway is started with the url
rewritten to a free loopback port where nothing listens yet. Startup and liveness must pass
while readiness must fail (the documented behaviour: NOT_SERVING until Redis first answers), and
the Redis pod's readiness probe must fail too. Then redis-server is started with the rendered
Redis container's own command (only its port, /data and secret paths rewritten: no
persistence, requirepass from the same generated password file the gateway reads), its probes
must pass, and the gateway's readiness must turn SERVING; the checks above follow.

Last, the Secret templates' own placeholder values must be refused at start-up (the signing key
REPLACE_ME is shorter than 32 bytes), so the templates cannot run by accident.

  check_probes.py --repo ROOT --overlay single|ha --gateway PATH/copilot-gateway
"""

import argparse
import base64
import os
import secrets as random_secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from k8s_common import (CheckError, config_arg, container_args, container_port,  # noqa: E402
                        fail_unless, gateway_config, gateway_container, grpc_health, host_port,
                        http_get, load_yaml_all, one, probe, read_dockerfile, render, secret_refs,
                        start_gateway, stop)
import yaml  # noqa: E402

PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


def write_secret(directory, path, key, value):
    """A temporary file standing in for the secret at `value`; returns its path."""
    target = os.path.join(directory, "secrets", value.strip("/").replace("/", "_"))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "w") as f:
        if "signing_key" in key or "user_id_key" in key:
            f.write(base64.b64encode(random_secrets.token_bytes(48)).decode() + "\n")
        elif path.startswith("redis."):
            f.write(random_secrets.token_hex(32) + "\n")
        else:
            f.write(f"test-value-of-{path}\n")
    os.chmod(target, 0o400)
    return target


def rewrite(config, replace_secret):
    """The config with listeners on 127.0.0.1:0 and each *_file through replace_secret()."""
    config = dict(config)
    config["listen"] = "127.0.0.1:0"
    config["metrics_listen"] = "127.0.0.1:0"
    if "tls" in config:
        config["tls"] = dict(config["tls"], listen="127.0.0.1:0")

    def walk(node, prefix):
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                path = f"{prefix}.{key}" if prefix else key
                if isinstance(value, str) and str(key).endswith("_file"):
                    out[key] = replace_secret(path, key, value)
                else:
                    out[key] = walk(value, path)
            return out
        if isinstance(node, list):
            return [walk(v, f"{prefix}[{i}]") for i, v in enumerate(node)]
        return node
    return walk(config, "")


def gateway_argv(gateway, deployment, stage, config_file):
    """The container's command line: the image's ENTRYPOINT (the gateway) and the container's
    args (or the image's CMD), with the --config path pointing at config_file."""
    container = gateway_container(deployment)
    fail_unless("command" not in container, "the container overrides the ENTRYPOINT")
    entrypoint = stage["ENTRYPOINT"]
    fail_unless(len(entrypoint) == 1 and entrypoint[0].endswith("/copilot-gateway"),
                f"ENTRYPOINT {entrypoint} is not the gateway alone")
    args = container_args(deployment, stage)
    path = config_arg(args)
    return [gateway] + [config_file if a == path else
                        (f"--config={config_file}" if a == f"--config={path}" else a)
                        for a in args]


def run(args):
    objects = render(args.repo, args.overlay)
    deployment = one(objects, "Deployment", "copilot-gateway")
    container = gateway_container(deployment)
    stage = read_dockerfile(args.repo)[-1]
    text, _, _ = gateway_config(objects, deployment)
    config = yaml.safe_load(text)
    period = deployment["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)

    # Which listener each container port is.
    _, grpc_port = host_port(config.get("listen", "0.0.0.0:50051"))
    _, metrics_port = host_port(config.get("metrics_listen", "0.0.0.0:9464"))
    listener_of = {grpc_port: "grpc", metrics_port: "metrics"}
    probes = {kind: container[kind] for kind in PROBES if kind in container}
    fail_unless({"livenessProbe", "readinessProbe"} <= set(probes), "liveness/readiness missing")
    for kind, spec in probes.items():
        action = spec.get("grpc") or spec.get("httpGet")
        fail_unless(action, f"{kind}: neither grpc nor httpGet")
        name, number = container_port(container, action["port"])
        fail_unless(number in listener_of,
                    f"{kind}: port {action['port']} (containerPort {number}) is neither listen "
                    f"({grpc_port}) nor metrics_listen ({metrics_port})")
        wanted = "grpc" if "grpc" in spec else "metrics"
        fail_unless(listener_of[number] == wanted,
                    f"{kind}: a {'gRPC' if wanted == 'grpc' else 'HTTP'} probe on port "
                    f"{number}, which is the {listener_of[number]} listener")
        print(f"ok   {kind}: port {action['port']} -> containerPort {number} ({name}) -> "
              f"{listener_of[number]} listener")

    redis_url = (config.get("redis") or {}).get("url")
    with tempfile.TemporaryDirectory(prefix="k8s-probes-") as work:
        secret_files = {}

        def replace(path, key, value):
            secret_files[path] = write_secret(work, path, key, value)
            return secret_files[path]
        rewritten = rewrite(config, replace)
        redis = None
        if redis_url:
            redis = RedisServer(objects, work, free_port(), secret_files.get("redis.password_file"))
            rewritten["redis"] = dict(rewritten["redis"], url=redis.url(redis_url))
            print(f"     redis.url {redis_url} -> {rewritten['redis']['url']} (not started yet)")
        config_file = os.path.join(work, "gateway.yaml")
        with open(config_file, "w") as f:
            yaml.safe_dump(rewritten, f, sort_keys=False)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for path, key, value in secret_refs(config):
            if key.endswith("_env"):
                env[value] = f"test-value-of-{path}"
        argv = gateway_argv(args.gateway, deployment, stage, config_file)
        print(f"     running {' '.join(argv)} (secrets: {', '.join(secret_files)})")
        proc, addresses = start_gateway(argv, env=env)
        try:
            if redis:
                check_redis(redis, proc, addresses, probes)
            check_running(proc, addresses, probes, period)
        finally:
            stop(proc)
            if redis:
                redis.stop()
        check_templates_refused(args, config, deployment, stage, work)


def free_port():
    """A free loopback port below the kernel's ephemeral range. Redis binds it seconds after
    the gateway is configured with it; a port from the ephemeral range (what bind to port 0
    gives) was meanwhile taken by another process's connection or listener once in CI, and
    Redis failed with "Address already in use"."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(200):
        port = random_secrets.randbelow(max(low - 10000, 1)) + 10000
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise CheckError(f"no free loopback port between 10000 and {low}")


class RedisServer:
    """The rendered Redis container (overlays/ha/redis.yaml) run here: its command and probes
    with only the port (to a free loopback one), /data and the Secret mount rewritten."""

    def __init__(self, objects, work, port, password_file):
        fail_unless(password_file, "redis.url without redis.password_file")
        self.port = port
        self.proc = None
        deployment = one(objects, "Deployment", "copilot-redis")
        pod = deployment["spec"]["template"]["spec"]
        fail_unless(len(pod["containers"]) == 1, "the Redis pod has more than one container")
        self.container = pod["containers"][0]
        ports = [p["containerPort"] for p in self.container.get("ports", [])]
        fail_unless(len(ports) == 1, f"the Redis container has ports {ports}, not one")
        self.container_port = ports[0]
        # Each volume mount to a directory here; the Secret's files from the generated password.
        self.paths = {}
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for mount in self.container.get("volumeMounts", []):
            local = os.path.join(work, "redis", mount["name"])
            os.makedirs(local)
            source = volumes[mount["name"]]
            if "secret" in source:
                with open(password_file) as f:
                    password = f.read()
                for item in source["secret"].get("items", []):
                    with open(os.path.join(local, item["path"]), "w") as f:
                        f.write(password)
            self.paths[mount["mountPath"]] = local

    def url(self, url):
        host = url.split("://", 1)[1].split("/", 1)[0]
        return url.replace(host, f"127.0.0.1:{self.port}", 1)

    def _local(self, text, server=False):
        for mount, local in sorted(self.paths.items(), key=lambda kv: -len(kv[0])):
            text = text.replace(mount, local)
        if server:
            return text.replace(f"--port {self.container_port}",
                                f"--port {self.port} --bind 127.0.0.1")
        return text.replace(str(self.container_port), str(self.port))

    def start(self):
        argv = [self._local(a, server=True) for a in
                self.container.get("command", []) + self.container.get("args", [])]
        fail_unless(argv, "the Redis container has no command (the image's would run)")
        fail_unless(any(f"--port {self.port} " in a for a in argv),
                    f"the Redis command has no --port {self.container_port}")
        print(f"     starting Redis: {shlex.join(argv)}")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)

    def probe(self, kind):
        spec = self.container[kind]
        if "exec" in spec:
            argv = [self._local(a) for a in spec["exec"]["command"]]
            try:
                code = subprocess.run(argv, capture_output=True,
                                      timeout=spec.get("timeoutSeconds", 1) + 2).returncode
            except subprocess.TimeoutExpired:
                code = "timeout"
            return code == 0, f"Redis {kind}: exec {argv[-1][:60]}... = exit {code}"
        if "tcpSocket" in spec:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
                return True, f"Redis {kind}: tcpSocket :{self.port} connects"
            except OSError as e:
                return False, f"Redis {kind}: tcpSocket :{self.port}: {e}"
        raise CheckError(f"Redis {kind}: neither exec nor tcpSocket")

    def stop(self):
        if self.proc:
            stop(self.proc, timeout=10)


def check_redis(redis, proc, addresses, probes):
    """Before Redis answers: the pod starts and lives but is not ready; then Redis starts (its
    own command and probes) and the gateway turns ready."""
    grpc_target = addresses["grpc"]
    http_base = "http://" + addresses["metrics"]
    startup = probes.get("startupProbe")
    if startup:
        deadline = time.monotonic() + 30
        while True:
            ok, seen = probe("startupProbe", startup, grpc_target, http_base)
            if ok or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        fail_unless(ok, f"without Redis, the startup probe never passed: {seen} (kubelet would "
                    "restart the pod while Redis is down)")
        print(f"ok   without Redis: {seen}")
    # For several seconds (longer than connect_timeout plus retries): not ready, but alive.
    until = time.monotonic() + 3
    while time.monotonic() < until:
        ok, seen = probe("readinessProbe", probes["readinessProbe"], grpc_target, http_base)
        fail_unless(not ok, f"without Redis reachable, {seen}: the gateway would take calls "
                    "with limits it cannot share")
        alive, seen_alive = probe("livenessProbe", probes["livenessProbe"], grpc_target,
                                  http_base)
        fail_unless(alive, f"without Redis reachable, {seen_alive}: kubelet would restart it")
        time.sleep(0.5)
    readyz = http_get(http_base + "/readyz")
    fail_unless(readyz == 503, f"without Redis reachable, GET /readyz = {readyz}, not 503")
    default = grpc_health(grpc_target, "")
    fail_unless(default != "SERVING", f"without Redis reachable, grpc.health.v1 Check('') = "
                f"{default}: the overall health must not be SERVING either")
    print(f"ok   without Redis for 3 s: {seen}; Check('') = {default}; GET /readyz = {readyz}; "
          f"{seen_alive}")
    ok, seen = redis.probe("readinessProbe")
    fail_unless(not ok, f"before Redis runs, {seen}: the Redis probe cannot fail")
    print(f"ok   control: before Redis runs, {seen}")
    fail_unless(proc.poll() is None, "the gateway exited while Redis was unreachable")

    started = time.monotonic()
    redis.start()
    deadline = started + 20
    for kind in ("livenessProbe", "readinessProbe"):
        while True:
            ok, seen = redis.probe(kind)
            if ok or time.monotonic() > deadline or redis.proc.poll() is not None:
                break
            time.sleep(0.2)
        if not ok and redis.proc.poll() is not None:
            seen += f"; redis-server exited {redis.proc.returncode}: " + \
                redis.proc.stdout.read()[-1500:]
        fail_unless(ok, seen)
        print(f"ok   {seen} ({time.monotonic() - started:.1f}s)")
    while True:
        ok, seen = probe("readinessProbe", probes["readinessProbe"], grpc_target, http_base)
        if ok or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    fail_unless(ok, f"Redis answers, but 20 s later still {seen}")
    readyz = http_get(http_base + "/readyz")
    fail_unless(readyz == 200, f"Redis answers, readiness passes, but GET /readyz = {readyz}")
    print(f"ok   Redis up: {seen}, GET /readyz = {readyz} "
          f"({time.monotonic() - started:.1f}s after starting redis-server)")


def check_running(proc, addresses, probes, period):
    grpc_target = addresses["grpc"]
    fail_unless("metrics" in addresses, "no metrics listener printed")
    http_base = "http://" + addresses["metrics"]

    # Like kubelet: the startup probe until it passes (within failureThreshold x periodSeconds),
    # then liveness and readiness.
    startup = probes.get("startupProbe")
    if startup:
        budget = startup.get("failureThreshold", 3) * startup.get("periodSeconds", 10)
        deadline = time.monotonic() + budget
        while True:
            ok, seen = probe("startupProbe", startup, grpc_target, http_base)
            if ok or time.monotonic() > deadline:
                break
            time.sleep(min(startup.get("periodSeconds", 10), 1))
        fail_unless(ok, f"startup probe never passed within {budget}s: {seen}")
        print(f"ok   {seen}")
    for kind in ("livenessProbe", "readinessProbe"):
        ok, seen = probe(kind, probes[kind], grpc_target, http_base)
        fail_unless(ok, f"{seen} (kubelet would {'restart' if kind == 'livenessProbe' else 'not route to'} the pod)")
        print(f"ok   {seen}")

    # Controls: the same client must see a failure where there is one.
    unknown = grpc_health(grpc_target, "no.such.Service")
    fail_unless(unknown == "NOT_FOUND", f"Check('no.such.Service') = {unknown}, not NOT_FOUND")
    missing = http_get(http_base + "/no-such-path")
    fail_unless(not 200 <= missing < 400, f"GET /no-such-path = {missing}")
    print(f"ok   controls: Check('no.such.Service') = {unknown}, GET /no-such-path = {missing}")

    # Pod deletion: SIGTERM.
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    readiness = probes["readinessProbe"]
    deadline = started + 2
    while True:
        ok, seen = probe("readinessProbe", readiness, grpc_target, http_base)
        if not ok or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    fail_unless(not ok, f"after SIGTERM, still {seen}: the draining pod would keep getting calls")
    readyz = http_get(http_base + "/readyz")
    fail_unless(readyz == 503, f"after SIGTERM, GET /readyz = {readyz}, not 503")
    print(f"ok   draining: {seen}; GET /readyz = {readyz}")
    if proc.poll() is None:
        ok, seen = probe("livenessProbe", probes["livenessProbe"], grpc_target, http_base)
        fail_unless(ok, f"draining: {seen}: kubelet would kill a pod finishing its calls")
        print(f"ok   draining: {seen}")
    try:
        code = proc.wait(timeout=period)
    except subprocess.TimeoutExpired:
        raise CheckError(f"still running {period}s (terminationGracePeriodSeconds) after SIGTERM")
    took = time.monotonic() - started
    fail_unless(code == 0, f"exit status {code} after SIGTERM; stderr: {proc.stderr.read()[-1500:]}")
    print(f"ok   SIGTERM: exit 0 after {took:.1f}s (terminationGracePeriodSeconds {period})")


def check_templates_refused(args, config, deployment, stage, work):
    """The Secret templates' REPLACE_ME values must not make a running gateway."""
    templates = {t["metadata"]["name"]: t.get("stringData", {}) for t in load_yaml_all(
        os.path.join(args.repo, "deploy", "kubernetes", "secrets", "secrets.example.yaml"))}
    flat = {}
    for values in templates.values():
        flat.update(values)
    directory = os.path.join(work, "templates")
    os.makedirs(directory)

    def replace(path, key, value):
        name = os.path.basename(value)
        fail_unless(name in flat, f"{path}: no Secret template key {name}")
        target = os.path.join(directory, name)
        with open(target, "w") as f:
            f.write(flat[name])
        return target
    config_file = os.path.join(work, "templates.yaml")
    with open(config_file, "w") as f:
        yaml.safe_dump(rewrite(config, replace), f, sort_keys=False)
    argv = gateway_argv(args.gateway, deployment, stage, config_file)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        raise CheckError("the gateway runs with the Secret templates' placeholder values")
    fail_unless(proc.returncode != 0, "the gateway started with the REPLACE_ME secrets")
    reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    fail_unless("at least 32 bytes" in reason, f"refused, but not for the signing key: {reason}")
    print(f"ok   the Secret templates' placeholders are refused: exit {proc.returncode}, {reason}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--overlay", required=True)
    parser.add_argument("--gateway", required=True)
    args = parser.parse_args()
    try:
        run(args)
    except CheckError as e:
        print(f"FAIL: {e}")
        return 1
    print(f"probes of overlay {args.overlay}: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
