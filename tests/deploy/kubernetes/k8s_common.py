"""Shared helpers of the deploy/kubernetes checks (tests/deploy/kubernetes/*.py).

Everything is read from a repository root given on the command line (--repo), so that the
self-test (check_selftest.py) can run the same checks on broken copies under a temporary
directory. Run with /usr/bin/python3 (PyYAML and python3-grpcio from Debian).
"""

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time

try:
    import yaml
except ImportError:
    sys.exit("FAIL: PyYAML is missing (apt-get install python3-yaml)")

# The files the checks read, relative to the repository root (the self-test copies these).
INPUTS = [
    "Dockerfile",
    ".dockerignore",
    "CMakeLists.txt",
    "README.md",
    "scripts/test.sh",
    "deploy/kubernetes",
    "deploy/prometheus/alerts.yaml",
    "proto/copilot/v1/copilot_service.proto",
]

OVERLAYS = ("single", "ha")


class CheckError(Exception):
    """A failed check: the message says what is wrong and where."""


def fail_unless(condition, message):
    if not condition:
        raise CheckError(message)


def run_checks(checks):
    """Runs (name, callable) pairs; prints one line each; returns the process exit status."""
    failed = 0
    for name, check in checks:
        try:
            note = check()
            print(f"ok   {name}" + (f": {note}" if note else ""))
        except CheckError as e:
            failed += 1
            print(f"FAIL {name}: {e}")
    print(f"{len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


def kubectl():
    path = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not path:
        raise CheckError("kubectl not found (it renders the kustomizations: `kubectl kustomize`)")
    return path


def overlay_dir(repo, overlay):
    return os.path.join(repo, "deploy", "kubernetes", "overlays", overlay)


def render(repo, overlay):
    """The objects `kubectl kustomize` renders for an overlay (a list of dicts)."""
    directory = overlay_dir(repo, overlay)
    proc = subprocess.run([kubectl(), "kustomize", directory], capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        raise CheckError(f"kubectl kustomize {directory} failed: {proc.stderr.strip()}")
    objects = [doc for doc in yaml.safe_load_all(proc.stdout) if doc is not None]
    if not objects:
        raise CheckError(f"kubectl kustomize {directory} rendered nothing")
    return objects


def find(objects, kind, name=None):
    found = [o for o in objects if o.get("kind") == kind and
             (name is None or o.get("metadata", {}).get("name") == name)]
    return found


def one(objects, kind, name=None):
    found = find(objects, kind, name)
    fail_unless(len(found) == 1,
                f"expected exactly one {kind}{' ' + name if name else ''}, found {len(found)}")
    return found[0]


def gateway_container(deployment):
    containers = deployment["spec"]["template"]["spec"]["containers"]
    named = [c for c in containers if c.get("name") == "gateway"]
    fail_unless(len(named) == 1, "the Deployment has no container named 'gateway'")
    return named[0]


def config_arg(args):
    """The value of --config in an argument list."""
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    raise CheckError(f"no --config in {args}")


def mount_for(container, path):
    """(volumeMount, relative path) of the mount that holds `path`."""
    best = None
    for mount in container.get("volumeMounts", []):
        root = mount["mountPath"].rstrip("/") + "/"
        if path == mount["mountPath"]:  # a file mounted on its own (subPath)
            best = (mount, "")
        elif path.startswith(root) and (best is None or
                                        len(root) > len(best[0]["mountPath"]) + 1):
            best = (mount, path[len(root):])
    fail_unless(best is not None, f"{path} is on no volumeMount of container 'gateway'")
    fail_unless("subPath" not in best[0] and "subPathExpr" not in best[0],
                f"{path} is mounted with subPath (subPath mounts never see updates)")
    return best


def volume(deployment, name):
    volumes = [v for v in deployment["spec"]["template"]["spec"].get("volumes", [])
               if v["name"] == name]
    fail_unless(len(volumes) == 1, f"no volume {name} in the Deployment")
    return volumes[0]


def container_args(deployment, dockerfile_stage=None):
    """The container's argv after the entrypoint: args, or the image's CMD."""
    container = gateway_container(deployment)
    if "args" in container:
        return list(container["args"])
    fail_unless(dockerfile_stage is not None, "the container has no args and no image CMD given")
    return list(dockerfile_stage["CMD"])


def gateway_config(objects, deployment):
    """(config text, path of --config, ConfigMap) of the rendered Deployment's gateway."""
    container = gateway_container(deployment)
    path = config_arg(container_args(deployment))
    mount, relative = mount_for(container, path)
    source = volume(deployment, mount["name"])
    fail_unless("configMap" in source, f"{path} is not on a ConfigMap volume")
    configmap = one(objects, "ConfigMap", source["configMap"]["name"])
    items = source["configMap"].get("items")
    key = relative
    if items:
        matches = [i["key"] for i in items if i["path"] == relative]
        fail_unless(matches, f"the ConfigMap volume has no item at {relative}")
        key = matches[0]
    data = configmap.get("data", {})
    fail_unless(key in data, f"ConfigMap {configmap['metadata']['name']} has no key {key}")
    return data[key], path, configmap


def secret_refs(node, prefix=""):
    """(yaml path, value) of every key ending in _file or _env in a config, recursively."""
    refs = []
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, str) and (str(key).endswith("_file") or
                                           str(key).endswith("_env")):
                refs.append((path, key, value))
            else:
                refs.extend(secret_refs(value, path))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            refs.extend(secret_refs(value, f"{prefix}[{i}]"))
    return refs


def host_port(address):
    match = re.fullmatch(r"\[?([^\]]*)\]?:(\d+)", str(address))
    fail_unless(match, f"{address!r} is not HOST:PORT")
    return match.group(1), int(match.group(2))


def container_port(container, port):
    """(name, number) of the container port a probe names (a name or a number)."""
    ports = container.get("ports", [])
    if isinstance(port, str):
        named = [p for p in ports if p.get("name") == port]
        fail_unless(named, f"port name {port!r} names no containerPort")
        return port, named[0]["containerPort"]
    numbered = [p for p in ports if p.get("containerPort") == port]
    fail_unless(numbered, f"port {port} is no containerPort")
    return numbered[0].get("name"), port


# ---- Dockerfile

def dockerfile_instructions(text):
    """[(line number, INSTRUCTION, arguments)] with continuations joined and comments dropped."""
    out = []
    pending, start = None, 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if pending is None:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            pending, start = "", number
        elif line.lstrip().startswith("#"):
            continue  # comment lines inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        word, _, rest = pending.strip().partition(" ")
        out.append((start, word, rest.strip()))
        pending = None
    if pending is not None:
        raise CheckError("Dockerfile ends inside a continued line")
    return out


def dockerfile_stages(text):
    """The stages: [{'name', 'from', 'instructions': [...], 'ENTRYPOINT', 'CMD', ...}]."""
    stages = []
    for number, word, rest in dockerfile_instructions(text):
        upper = word.upper()
        if upper == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append({"name": name, "from": parts[0], "instructions": [], "line": number})
            continue
        if upper in ("ARG",) and not stages:
            continue
        fail_unless(stages, f"Dockerfile line {number}: {word} before FROM")
        stages[-1]["instructions"].append((number, upper, rest))
        if upper in ("ENTRYPOINT", "CMD"):
            try:
                value = json.loads(rest)
            except ValueError:
                raise CheckError(f"Dockerfile line {number}: {upper} is not in exec (JSON) form")
            fail_unless(isinstance(value, list) and all(isinstance(v, str) for v in value),
                        f"Dockerfile line {number}: {upper} is not a JSON array of strings")
            stages[-1][upper] = value
        elif upper in ("USER", "STOPSIGNAL", "WORKDIR"):
            stages[-1][upper] = rest
        elif upper == "EXPOSE":
            stages[-1].setdefault("EXPOSE", []).extend(rest.split())
    fail_unless(stages, "Dockerfile has no FROM")
    return stages


def read_dockerfile(repo):
    with open(os.path.join(repo, "Dockerfile"), encoding="utf-8") as f:
        return dockerfile_stages(f.read())


# ---- Processes and probes

def start_gateway(argv, env=None, cwd=None):
    """Starts the gateway; returns (process, {'grpc': HOST:PORT, 'metrics': HOST:PORT})."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=cwd)
    addresses = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "grpc" not in addresses:
        line = proc.stdout.readline()
        if not line:
            break
        match = re.match(r"copilot-gateway (metrics )?listening on (\S+)", line)
        if match:
            addresses["metrics" if match.group(1) else "grpc"] = match.group(2)
    if "grpc" not in addresses:
        stop(proc)
        raise CheckError(f"{shlex.join(argv)} did not start; stderr: {proc.stderr.read()[-2000:]}")
    return proc, addresses


def stop(proc, timeout=30):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


HEALTH_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def grpc_health(target, service, timeout=3.0):
    """grpc.health.v1.Health/Check as kubelet's gRPC probe sends it: the serving status name
    (SERVING, NOT_SERVING, ...) or the failed call's status code name (NOT_FOUND, ...).
    HealthCheckRequest{string service = 1} and HealthCheckResponse{ServingStatus status = 1}
    are encoded by hand (grpc-proto's health.proto), so no generated code is needed."""
    import grpc  # python3-grpcio

    data = service.encode()
    request = (b"\x0a" + _varint(len(data)) + data) if data else b""
    with grpc.insecure_channel(target) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        try:
            response = check(request, timeout=timeout)
        except grpc.RpcError as e:
            return e.code().name
    status, i = 0, 0
    while i < len(response):
        tag = response[i]
        i += 1
        if tag != 0x08:
            break
        value, shift = 0, 0
        while True:
            byte = response[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        status = value
    return HEALTH_STATUS.get(status, f"status {status}")


def http_get(url, timeout=3):
    """HTTP status of GET url (curl, as an httpGet probe does), or 0 when it does not answer."""
    proc = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time",
                           str(timeout), url], capture_output=True, text=True)
    try:
        return int(proc.stdout.strip() or 0)
    except ValueError:
        return 0


def probe(kind, spec, grpc_target, http_base):
    """Runs one Kubernetes probe the way kubelet does; returns (success, what it saw)."""
    if "grpc" in spec:
        service = spec["grpc"].get("service", "")
        status = grpc_health(grpc_target, service, timeout=spec.get("timeoutSeconds", 1) + 2)
        return status == "SERVING", f"{kind}: grpc.health.v1 Check({service!r}) = {status}"
    if "httpGet" in spec:
        path = spec["httpGet"].get("path", "/")
        code = http_get(http_base + path, timeout=spec.get("timeoutSeconds", 1) + 2)
        return 200 <= code < 400, f"{kind}: GET {path} = {code}"
    raise CheckError(f"{kind}: only grpc and httpGet probes are checked, not {sorted(spec)}")


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_yaml_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def project_version(repo):
    with open(os.path.join(repo, "CMakeLists.txt"), encoding="utf-8") as f:
        match = re.search(r"project\(\s*\S+\s+VERSION\s+([0-9.]+)", f.read())
    fail_unless(match, "CMakeLists.txt has no project(... VERSION x.y.z)")
    return match.group(1)


def duration_seconds(text):
    """'5s', '1m30s', '300ms', '1h' -> seconds (the gateway's duration syntax)."""
    text = str(text).strip()
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    fail_unless(parts and "".join(a + b for a, b in parts) == text, f"bad duration {text!r}")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(a) * scale[b] for a, b in parts)
