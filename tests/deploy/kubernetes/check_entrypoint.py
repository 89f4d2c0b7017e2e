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
not the image's.

With --image NAME:TAG (issue #19) it runs the built image instead (buildah: `buildah from`,
`buildah mount`): the image's own root filesystem, read-only, as the root directory, with its
configured Entrypoint, Cmd, User and Env (which must be the Dockerfile's), /proc, a minimal
/dev and a tmpfs /run, the volumes mounted into it. Then, besides the checks above, it serves a
call: the ConfigMap's base_url points at a haufe-emulator in the same network namespace and the
payroll tenant's token hash at a test token; `copilot ask` through the gateway must answer.

  check_entrypoint.py --repo ROOT --overlay single --gateway PATH/copilot-gateway
  check_entrypoint.py --repo ROOT --overlay single --image copilot-gateway:0.1.0 \
      --emulator PATH/haufe-emulator --cli PATH/copilot
"""

import argparse
import base64
import hashlib
import json
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


# The same in an image's root filesystem ($2), entered with chroot (RUNNER): the volumes' targets
# in "$t/mounts" are already resolved inside the image (/var/run -> /run).
SETUP_IMAGE = r"""
set -eu
t="$1"; r="$2"; shift 2
mount --bind "$r" "$r"
mount -t proc proc "$r/proc"
mount -t tmpfs -o mode=0755,nosuid tmpfs "$r/dev"
for d in null zero full random urandom tty; do
  touch "$r/dev/$d"
  mount --bind "/dev/$d" "$r/dev/$d"
done
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$r/run"
while read -r name target; do
  mkdir -p "$r$target"
  mount --bind "$t/volumes/$name" "$r$target"
done < "$t/mounts"
ip link set lo up
findmnt -rno TARGET | sort -u | while read -r m; do
  case "$m" in "$r"|"$r"/*) ;; *) continue ;; esac
  case "$m" in "$r/proc"|"$r/proc/"*|"$r/dev"|"$r/dev/"*) continue ;; esac
  mount -o remount,bind,ro "$m"
done
exec /usr/bin/python3 -c "$RUNNER" "$r" "$t/process.json" "$@"
"""
# What a container runtime does last: the image's root, user, no capabilities, no_new_privs,
# the image's environment, then exec of Entrypoint + Cmd (PID 1 stays PID 1).
RUNNER = r"""
import ctypes, json, os, sys
root, spec_path, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(spec_path) as f:
    spec = json.load(f)
libc = ctypes.CDLL(None, use_errno=True)
os.chroot(root)
os.chdir(spec["cwd"])
for cap in range(64):
    libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP
os.setgroups(spec["groups"])
os.setgid(spec["gid"])
os.setuid(spec["uid"])
if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
    sys.exit("prctl(PR_SET_NO_NEW_PRIVS) failed")
os.execve(argv[0], argv, dict(e.split("=", 1) for e in spec["env"]))
"""


def resolve_in_root(root, path):
    """`path` inside the root filesystem `root`, its symlinks followed there (not on the host)."""
    parts = [p for p in path.split("/") if p]
    resolved = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            resolved = resolved[:-1]
            continue
        candidate = os.path.join(root, *resolved, part)
        if os.path.islink(candidate):
            hops += 1
            fail_unless(hops < 40, f"{path}: too many symlinks in the image")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        resolved.append(part)
    return "/" + "/".join(resolved)


def prepare(work, args, objects, deployment, stage):
    """Lays out the upper layers and volumes under `work`; returns the command line."""
    container = gateway_container(deployment)
    pod_spec = deployment["spec"]["template"]["spec"]
    entrypoint, cmd = stage["ENTRYPOINT"], stage["CMD"]
    fail_unless(len(entrypoint) == 1 and entrypoint[0].startswith("/usr/local/"),
                f"ENTRYPOINT {entrypoint}: expected one binary under /usr/local")
    for d in ("etc-up", "etc-work", "usrlocal-up", "usrlocal-work", "volumes"):
        os.makedirs(os.path.join(work, d))
    if not args.image:
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
    if args.image:
        env = dict(e.split("=", 1) for e in stage.get("Env") or [])
        env["HOSTNAME"] = "copilot-gateway-0"
        with open(os.path.join(work, "process.json"), "w") as f:
            json.dump({"uid": uid, "gid": gid, "groups": groups, "cwd": stage.get("WORKDIR") or "/",
                       "env": [f"{k}={v}" for k, v in env.items()]}, f)

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
        if args.image:
            target = resolve_in_root(args.rootfs, target)
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
    for tool in ("unshare", "nsenter", "setpriv", "findmnt", "ip") + (
            ("buildah", "curl") if args.image else ()):
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
    if args.image:
        point_at_emulator(objects)
    text, _, _ = gateway_config(objects, deployment)
    config = yaml.safe_load(text)
    period = deployment["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    _, grpc_port = host_port(config.get("listen", "0.0.0.0:50051"))
    _, metrics_port = host_port(config.get("metrics_listen", "0.0.0.0:9464"))

    with tempfile.TemporaryDirectory(prefix="k8s-entrypoint-") as work:
        container_id = None
        try:
            env = None
            if args.image:
                container_id, args.rootfs, stage = open_image(args.image, stage)
                env = dict(os.environ, RUNNER=RUNNER)
            argv, uid = prepare(work, args, objects, deployment, stage)
            print(f"     container command line: {' '.join(argv)} (USER {stage['USER']})")
            setup = [SETUP_IMAGE, "sh", work, args.rootfs] if args.image else [SETUP, "sh", work]
            unshare = ["unshare", "--mount", "--net", "--pid", "--fork", "--propagation",
                       "private", "--kill-child", "--", "/bin/sh", "-c"] + setup + argv
            proc, addresses = start_gateway(unshare, env=env)
            gateway = child_pid(proc.pid)
            try:
                check(proc, gateway, addresses, container, config, grpc_port, metrics_port, uid,
                      period, (lambda: serve_call(args, gateway, grpc_port)) if args.image
                      else None)
            finally:
                if proc.poll() is None:
                    os.kill(gateway, signal.SIGKILL)
                    proc.wait(10)
        finally:
            if container_id:
                buildah("umount", container_id)
                buildah("rm", container_id)
    return 0


# ---- The built image (--image)

EMULATOR_PORT = 18080
TEST_TOKEN = "image-test-token"
API_KEY = "test-value-of-api-key"  # secret_value("api-key"), trimmed as the gateway reads it
LICENCE = "test-value-of-payroll.licence"
TAX_ASSISTANT = "7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0001"  # the emulator's; it needs a licence


def buildah(*argv):
    proc = subprocess.run(["buildah", "--storage-driver", "vfs"] + list(argv),
                          capture_output=True, text=True, timeout=300)
    fail_unless(proc.returncode == 0, f"buildah {' '.join(argv)}: {proc.stderr.strip()[-500:]}")
    return proc.stdout.strip()


def open_image(image, dockerfile_stage):
    """A container of `image`, mounted: (container ID, root filesystem, stage as configured)."""
    config = json.loads(buildah("inspect", "--type", "image", image))["OCIv1"]["config"]
    configured = {"ENTRYPOINT": config.get("Entrypoint"), "CMD": config.get("Cmd"),
                  "USER": config.get("User"), "Env": config.get("Env") or [],
                  "WORKDIR": config.get("WorkingDir") or "/",
                  "STOPSIGNAL": config.get("StopSignal"),
                  "EXPOSE": sorted(p.split("/")[0] for p in config.get("ExposedPorts", {}))}
    dockerfile_stage = dict(dockerfile_stage, EXPOSE=sorted(dockerfile_stage.get("EXPOSE", [])))
    for key in ("ENTRYPOINT", "CMD", "USER", "STOPSIGNAL", "EXPOSE"):
        fail_unless(configured[key] == dockerfile_stage.get(key),
                    f"the image's {key} {configured[key]} is not the Dockerfile's "
                    f"{dockerfile_stage.get(key)}")
    container_id = buildah("from", "--pull=never", "--quiet", image)
    try:
        rootfs = buildah("mount", container_id)
    except CheckError:
        buildah("rm", container_id)
        raise
    print(f"ok   image {image}: container {container_id} mounted at {rootfs}; "
          f"Entrypoint, Cmd, User, StopSignal and ports as in the Dockerfile")
    return container_id, rootfs, configured


def point_at_emulator(objects):
    """The rendered ConfigMap's gateway.yaml with the emulator as upstream and a test token."""
    zero = "0" * 64
    for configmap in (o for o in objects if o.get("kind") == "ConfigMap"):
        for key, value in configmap.get("data", {}).items():
            if "base_url:" in value and zero in value:
                value = re.sub(r'base_url: "[^"]*"',
                               f'base_url: "http://127.0.0.1:{EMULATOR_PORT}/agents"', value)
                configmap["data"][key] = value.replace(
                    zero, hashlib.sha256(TEST_TOKEN.encode()).hexdigest())
                return
    raise CheckError("no ConfigMap with base_url and the all-zero token digest")


def serve_call(args, gateway, grpc_port):
    """A question through the image's gateway to an emulator in its network namespace."""
    emulator = subprocess.Popen(
        ["nsenter", "--target", str(gateway), "--net", "--", args.emulator, "--listen",
         f"127.0.0.1:{EMULATOR_PORT}", "--api-key", API_KEY, "--stream-delay-ms", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = emulator.stdout.readline()
        fail_unless("listening on" in line, f"the emulator did not start: {line!r}")
        ask = in_netns(gateway, [args.cli, "--target", f"127.0.0.1:{grpc_port}", "--token",
                                 TEST_TOKEN, "--timeout", "30", "ask", "--assistant",
                                 TAX_ASSISTANT, "How is overtime taxed?"], timeout=60)
        fail_unless(ask.returncode == 0 and ask.stdout.strip(),
                    f"copilot ask through the image: exit {ask.returncode}: "
                    f"{ask.stderr.strip()[-500:]}")
        record = in_netns(gateway, ["curl", "-s", "--max-time", "5",
                                    f"http://127.0.0.1:{EMULATOR_PORT}/_emulator/requests"])
        requests = json.loads(record.stdout)
        runs = [r for r in requests if r.get("route") in ("run", "run_stream")]
        fail_unless(runs and all(LICENCE in str(r.get("body")) and r["status"] == 200 and
                                 r["headers"].get("api-key") == API_KEY for r in runs),
                    f"the run did not reach the emulator with the tenant's licence and the "
                    f"API key from the secrets: {runs}")
        answer = " ".join(ask.stdout.split())
        print(f"ok   served a call: copilot ask -> {answer[:70]}... ({len(requests)} upstream "
              f"requests, the tenant's licence injected)")
    finally:
        emulator.terminate()
        emulator.wait(10)


def check(proc, gateway, addresses, container, config, grpc_port, metrics_port, uid, period,
          serve=None):
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

    if serve:
        serve()

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
    parser.add_argument("--gateway", help="the binary (without --image)")
    parser.add_argument("--image", help="run this built image (buildah) instead")
    parser.add_argument("--emulator", help="haufe-emulator (with --image)")
    parser.add_argument("--cli", help="the copilot CLI (with --image)")
    args = parser.parse_args()
    if bool(args.image) == bool(args.gateway) or (args.image and not
                                                   (args.emulator and args.cli)):
        parser.error("--gateway, or --image with --emulator and --cli")
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
