#!/usr/bin/python3
"""Runs the image's command line as a container runtime would, without a container runtime:
the Dockerfile's ENTRYPOINT + CMD verbatim, with nothing rewritten, in its own namespaces:

  - a PID namespace: the gateway is PID 1 (as in the container; PID 1 gets no default signal
    handling from the kernel, so this shows SIGTERM really reaches its handler);
  - a network namespace with only loopback: the config's own ports (0.0.0.0:50051 and :9464)
    are used unchanged, without clashing with anything on this machine;
  - a mount namespace laid out like the pod: the built binary at the ENTRYPOINT path
    (/usr/local/bin, an overlay), the rendered ConfigMap's files at the volumeMount the CMD's
    --config path is on, the secret volumes at their mountPaths (files from the Secret
    templates' keys with test values, mode and group as defaultMode and fsGroup make them),
    then every mount but /proc, /sys and /dev remounted read-only (readOnlyRootFilesystem);
  - the Dockerfile's USER (numeric UID:GID, with the pod's fsGroup as supplementary group), no
    capabilities, no_new_privs, and an empty environment but PATH and HOSTNAME.

Then, from inside the network namespace (nsenter), every probe of the Deployment as kubelet
runs it, gRPC readiness SERVING and GET /readyz 200; SIGHUP to PID 1 must reload the config
(the reload counter on /metrics); SIGTERM must turn readiness NOT_SERVING and /readyz 503, and
the process must exit 0 within terminationGracePeriodSeconds.

Needs root (namespaces, mounts): skipped (exit 77) without. The libraries are this machine's,
not the image's (the image is not built here: no Docker engine).

  check_entrypoint.py --repo ROOT --overlay single --gateway PATH/copilot-gateway
"""

import argparse
import base64
import os
import re
import secrets as random_secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from k8s_common import (CheckError, config_arg, fail_unless, gateway_config,  # noqa: E402
                        gateway_container, host_port, load_yaml_all, one, read_dockerfile,
                        render, start_gateway)
import yaml  # noqa: E402

SKIP = 77
SETUP = r"""
set -eu
t="$1"; shift
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$t/etc-up,workdir=$t/etc-work" /etc
mount -t overlay overlay -o "lowerdir=/usr/local,upperdir=$t/usrlocal-up,workdir=$t/usrlocal-work" /usr/local
mount -t tmpfs -o mode=0755 tmpfs /run
while read -r name target; do
  mkdir -p "$target"
  mount --bind "$t/volumes/$name" "$target"
done < "$t/mounts"
ip link set lo up
# readOnlyRootFilesystem, and read-only volume mounts: everything but /proc, /sys and /dev.
findmnt -rno TARGET | sort -u | while read -r m; do
  case "$m" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
  mount -o remount,bind,ro "$m" 2>/dev/null || true
done
ids="$(cat "$t/ids")"
exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOSTNAME=copilot-gateway-0 \
  setpriv $ids --no-new-privs --inh-caps=-all --bounding-set=-all -- "$@"
"""


def prepare(work, args, objects, deployment, stage):
    """Lays out the upper layers and volumes under `work`; returns the command line."""
    container = gateway_container(deployment)
    pod_spec = deployment["spec"]["template"]["spec"]
    entrypoint, cmd = stage["ENTRYPOINT"], stage["CMD"]
    fail_unless(len(entrypoint) == 1 and entrypoint[0].startswith("/usr/local/"),
                f"ENTRYPOINT {entrypoint}: expected one binary under /usr/local")
    for d in ("etc-up", "etc-work", "usrlocal-up", "usrlocal-work", "volumes"):
        os.makedirs(os.path.join(work, d))
    binary = os.path.join(work, "usrlocal-up", os.path.relpath(entrypoint[0], "/usr/local"))
    os.makedirs(os.path.dirname(binary), exist_ok=True)
    shutil.copy2(args.gateway, binary)
    os.chmod(binary, 0o755)

    user = stage.get("USER", "")
    m = re.fullmatch(r"(\d+):(\d+)", user)
    fail_unless(m, f"Dockerfile USER {user!r} is not UID:GID")
    uid, gid = int(m.group(1)), int(m.group(2))
    fs_group = pod_spec.get("securityContext", {}).get("fsGroup")
    groups = sorted({gid} | ({fs_group} if fs_group is not None else set()))
    with open(os.path.join(work, "ids"), "w") as f:
        f.write(f"--reuid {uid} --regid {gid} --groups {','.join(map(str, groups))}")

    # The Secret templates' keys, with test values.
    templates = {t["metadata"]["name"]: t.get("stringData", {}) for t in load_yaml_all(
        os.path.join(args.repo, "deploy", "kubernetes", "secrets", "secrets.example.yaml"))}

    def secret_value(key):
        if "signing" in key or "user-id" in key:
            return base64.b64encode(random_secrets.token_bytes(48)).decode() + "\n"
        return f"test-value-of-{key}\n"

    mounts = []
    for mount in container.get("volumeMounts", []):
        fail_unless("subPath" not in mount, f"{mount['mountPath']}: subPath")
        target = mount["mountPath"]
        fail_unless(re.match(r"^/(etc|run|var/run)/", target),
                    f"{target}: this check lays out volumes under /etc and /run only")
        spec = next(v for v in pod_spec["volumes"] if v["name"] == mount["name"])
        directory = os.path.join(work, "volumes", mount["name"])
        os.makedirs(directory)
        files = {}  # relative path -> (content, mode, group)
        if "configMap" in spec:
            configmap = one(objects, "ConfigMap", spec["configMap"]["name"])
            mode = spec["configMap"].get("defaultMode", 0o644)
            for key, value in configmap.get("data", {}).items():
                files[key] = (value, mode, 0)
        else:
            sources = ([{"secret": dict(spec["secret"], name=spec["secret"]["secretName"])}]
                       if "secret" in spec else spec["projected"]["sources"])
            mode = spec.get("secret", spec.get("projected", {})).get("defaultMode", 0o644)
            for source in sources:
                s = source["secret"]
                fail_unless(s["name"] in templates, f"Secret {s['name']} has no template")
                items = s.get("items") or [{"key": k, "path": k} for k in templates[s["name"]]]
                for item in items:
                    fail_unless(item["key"] in templates[s["name"]],
                                f"Secret {s['name']} template has no key {item['key']}")
                    files[item["path"]] = (secret_value(item["key"]), mode,
                                           fs_group if fs_group is not None else 0)
        for relative, (content, mode, group) in files.items():
            path = os.path.join(directory, relative)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(content)
            os.chown(path, 0, group)
            os.chmod(path, mode)
        mounts.append(f"{mount['name']} {target}")
    with open(os.path.join(work, "mounts"), "w") as f:
        f.write("\n".join(mounts) + "\n")
    # The gateway's user must reach the volumes and the binary.
    for root, dirs, _ in os.walk(work):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
    os.chmod(work, 0o755)

    config_path = config_arg(cmd)
    fail_unless(any(config_path.startswith(m["mountPath"].rstrip("/") + "/")
                    for m in container.get("volumeMounts", [])),
                f"CMD's --config {config_path} is on no volumeMount")
    return entrypoint + cmd, uid


def in_netns(pid, argv, timeout=20):
    return subprocess.run(["nsenter", "--target", str(pid), "--net", "--"] + argv,
                          capture_output=True, text=True, timeout=timeout)


def probe_in(pid, kind, spec, grpc_target, http_base):
    code = ("import sys, json; sys.path.insert(0, sys.argv[1]); import k8s_common as k; "
            "ok, seen = k.probe(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4], sys.argv[5]); "
            "print(json.dumps([ok, seen]))")
    import json
    proc = in_netns(pid, ["/usr/bin/python3", "-c", code, HERE, kind, json.dumps(spec),
                          grpc_target, http_base])
    if proc.returncode != 0:
        raise CheckError(f"probe in the namespace failed: {proc.stderr.strip()[-500:]}")
    ok, seen = json.loads(proc.stdout)
    return ok, seen


def reloads_ok(pid, metrics_port):
    proc = in_netns(pid, ["curl", "-s", "--max-time", "3",
                          f"http://127.0.0.1:{metrics_port}/metrics"])
    m = re.search(r'^copilot_gateway_config_reloads_total\{result="ok"\} (\S+)$', proc.stdout,
                  re.M)
    fail_unless(m, "no copilot_gateway_config_reloads_total{result=\"ok\"} in /metrics")
    return float(m.group(1))


def child_pid(parent, timeout=10):
    deadline = time.monotonic() + timeout
    path = f"/proc/{parent}/task/{parent}/children"
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                children = f.read().split()
            if children:
                return int(children[0])
        except OSError:
            pass
        time.sleep(0.05)
    raise CheckError("unshare started no child")


def run(args):
    for tool in ("unshare", "nsenter", "setpriv", "findmnt", "ip"):
        if not shutil.which(tool):
            print(f"SKIP: {tool} not found")
            return SKIP
    if os.geteuid() != 0:
        print("SKIP: needs root (mount, PID and network namespaces)")
        return SKIP
    objects = render(args.repo, args.overlay)
    deployment = one(objects, "Deployment", "copilot-gateway")
    container = gateway_container(deployment)
    stage = read_dockerfile(args.repo)[-1]
    text, _, _ = gateway_config(objects, deployment)
    config = yaml.safe_load(text)
    period = deployment["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    _, grpc_port = host_port(config.get("listen", "0.0.0.0:50051"))
    _, metrics_port = host_port(config.get("metrics_listen", "0.0.0.0:9464"))

    with tempfile.TemporaryDirectory(prefix="k8s-entrypoint-") as work:
        argv, uid = prepare(work, args, objects, deployment, stage)
        print(f"     container command line: {' '.join(argv)} (USER {stage['USER']})")
        unshare = ["unshare", "--mount", "--net", "--pid", "--fork", "--propagation", "private",
                   "--kill-child", "--", "/bin/sh", "-c", SETUP, "sh", work] + argv
        proc, addresses = start_gateway(unshare)
        gateway = child_pid(proc.pid)
        try:
            check(proc, gateway, addresses, container, config, grpc_port, metrics_port, uid,
                  period)
        finally:
            if proc.poll() is None:
                os.kill(gateway, signal.SIGKILL)
                proc.wait(10)
    return 0


def check(proc, gateway, addresses, container, config, grpc_port, metrics_port, uid, period):
    fail_unless(addresses["grpc"] == config["listen"] and
                addresses.get("metrics") == config["metrics_listen"],
                f"listening on {addresses}, not the config's {config['listen']} and "
                f"{config['metrics_listen']}")
    print(f"ok   listening on {addresses['grpc']} and {addresses['metrics']} (config unchanged)")

    with open(f"/proc/{gateway}/status") as f:
        status = f.read()
    uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", status, re.M).groups()
    nspid = re.search(r"^NSpid:\s+(.*)$", status, re.M).group(1).split()
    caps = re.search(r"^CapEff:\s+(\S+)", status, re.M).group(1)
    fail_unless(uids == (str(uid), str(uid)), f"runs as UID {uids}, not {uid}")
    fail_unless(nspid[-1] == "1", f"PID {nspid[-1]} in its namespace, not 1")
    fail_unless(int(caps, 16) == 0, f"effective capabilities {caps}")
    with open(f"/proc/{gateway}/mountinfo") as f:
        writable = []
        for line in f:
            fields = line.split()
            target, options = fields[4], fields[5].split(",")
            if "rw" in options and not re.match(r"^/(proc|sys|dev)(/|$)", target):
                writable.append(target)
    fail_unless(not writable, f"writable mounts: {writable}")
    print(f"ok   PID 1, UID {uid}, no capabilities, every mount but /proc, /sys, /dev read-only")

    grpc_target = f"127.0.0.1:{grpc_port}"
    http_base = f"http://127.0.0.1:{metrics_port}"
    probes = {k: container[k] for k in ("startupProbe", "livenessProbe", "readinessProbe")
              if k in container}
    for kind, spec in probes.items():
        spec = dict(spec)
        ok, seen = probe_in(gateway, kind, spec, grpc_target, http_base)
        fail_unless(ok, seen)
        print(f"ok   {seen}")
    ok, seen = probe_in(gateway, "readiness", {"grpc": {"port": grpc_port,
                                                         "service": "readiness"}},
                        grpc_target, http_base)
    fail_unless(ok, seen)
    ok2, seen2 = probe_in(gateway, "readyz", {"httpGet": {"path": "/readyz"}}, grpc_target,
                          http_base)
    fail_unless(ok2 and seen2.endswith("= 200"), seen2)
    print(f"ok   {seen}; {seen2}")

    # SIGHUP to PID 1 (`kubectl exec ... -- sh -c 'kill -HUP 1'`): an immediate reload.
    before = reloads_ok(gateway, metrics_port)
    os.kill(gateway, signal.SIGHUP)
    deadline = time.monotonic() + 5
    after = before
    while after <= before and time.monotonic() < deadline:
        time.sleep(0.2)
        after = reloads_ok(gateway, metrics_port)
    fail_unless(after == before + 1, f"SIGHUP to PID 1: config reloads ok {before} -> {after}")
    print(f"ok   SIGHUP to PID 1 reloads: copilot_gateway_config_reloads_total{{result=\"ok\"}} "
          f"{before:g} -> {after:g}")

    started = time.monotonic()
    os.kill(gateway, signal.SIGTERM)
    time.sleep(0.3)
    ok, seen = probe_in(gateway, "readiness", {"grpc": {"port": grpc_port,
                                                         "service": "readiness"}},
                        grpc_target, http_base)
    fail_unless(not ok and "NOT_SERVING" in seen, f"after SIGTERM: {seen}")
    ok2, seen2 = probe_in(gateway, "readyz", {"httpGet": {"path": "/readyz"}}, grpc_target,
                          http_base)
    fail_unless(seen2.endswith("= 503"), f"after SIGTERM: {seen2}")
    print(f"ok   SIGTERM to PID 1: {seen}; {seen2}")
    try:
        code = proc.wait(timeout=period)
    except subprocess.TimeoutExpired:
        raise CheckError(f"still running {period}s (terminationGracePeriodSeconds) after SIGTERM")
    took = time.monotonic() - started
    stderr = proc.stderr.read()
    fail_unless(code == 0, f"exit status {code}; stderr: {stderr[-1500:]}")
    fail_unless('"msg":"shut down"' in stderr, "no 'shut down' log line")
    print(f"ok   exit 0 after {took:.1f}s (terminationGracePeriodSeconds {period})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--overlay", default="single")
    parser.add_argument("--gateway", required=True)
    args = parser.parse_args()
    try:
        status = run(args)
    except CheckError as e:
        print(f"FAIL: {e}")
        return 1
    if status == 0:
        print("the image's ENTRYPOINT + CMD: all checks passed")
    return status


if __name__ == "__main__":
    sys.exit(main())
