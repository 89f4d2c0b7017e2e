#!/usr/bin/python3
"""Proves that the deploy/kubernetes checks can fail: each mutation below breaks one thing in a
fresh copy of the files the checks read (k8s_common.INPUTS) under a temporary directory, runs
the check that must catch it, and requires that check to fail with the expected message. An
unmodified copy must pass every check first (so the failures come from the mutations), and a
mutation whose text is not found fails the self-test (so none silently stops mutating).

  check_selftest.py --repo ROOT --gateway PATH/copilot-gateway --npm NPM_DIR [--only NAME]
                    [--sanitizer KIND]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from k8s_common import INPUTS  # noqa: E402

PY = "/usr/bin/python3"
BASE = "deploy/kubernetes/base"
DEPLOYMENT = f"{BASE}/deployment.yaml"
CONFIG = f"{BASE}/gateway.yaml"
HA = "deploy/kubernetes/overlays/ha"
HA_CONFIG = f"{HA}/gateway.yaml"
REDIS = f"{HA}/redis.yaml"
END = "<end of file>"  # as a mutation's old text: append the new text


def commands(a, repo):
    """The checks, as ctest runs them, on the copy at `repo`."""
    def py(script, *rest):
        return [PY, os.path.join(HERE, script), "--repo", repo, *rest]
    return {
        "render": py("check_render.py", "--overlay", "ha"),
        "manifests-single": py("check_manifests.py", "--overlay", "single"),
        "manifests-ha": py("check_manifests.py", "--overlay", "ha"),
        "schema": py("check_schema.py", "--overlay", "ha", "--npm", a.npm),
        "probes": py("check_probes.py", "--overlay", "ha", "--gateway", a.gateway),
        "config": [os.path.join(HERE, "check_config.sh"), repo, "ha", a.gateway,
                   os.path.join(repo, "check-config")],
        "prometheusrule": py("check_prometheusrule.py"),
        "service-config": py("check_service_config.py", "--static-only"),
        "service-config-calls": py("check_service_config.py"),
        "dockerfile": py("check_dockerfile.py", "--gateway", a.gateway, "--npm", a.npm,
                         *(["--sanitizer", a.sanitizer] if a.sanitizer else [])),
        "entrypoint": py("check_entrypoint.py", "--overlay", "single", "--gateway", a.gateway),
    }


# (name, check, [(file, old, new)], text the failing check must print)
MUTATIONS = [
    ("overlay names a missing base", "render",
     [("deploy/kubernetes/overlays/ha/kustomization.yaml", "../../base", "../../bases")],
     "kubectl kustomize"),
    ("read-only root filesystem off", "manifests-single",
     [(DEPLOYMENT, "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false")],
     "readOnlyRootFilesystem"),
    ("privilege escalation allowed", "manifests-ha",
     [(DEPLOYMENT, "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true")],
     "allowPrivilegeEscalation"),
    ("capabilities not dropped", "manifests-ha",
     [(DEPLOYMENT, 'drop: ["ALL"]', 'drop: ["NET_RAW"]')], "capabilities.drop lacks ALL"),
    ("runAsUser differs from the image's USER", "manifests-ha",
     [(DEPLOYMENT, "runAsUser: 65532", "runAsUser: 1000")], "is not the image's USER"),
    ("readiness probe on the liveness service", "manifests-ha",
     [(DEPLOYMENT, "service: readiness", "service: liveness")], "not 'readiness'"),
    ("grace period not above shutdown_delay + shutdown_grace", "manifests-ha",
     [(DEPLOYMENT, "terminationGracePeriodSeconds: 75", "terminationGracePeriodSeconds: 65")],
     "must exceed shutdown_delay"),
    ("shutdown_grace raised past the grace period", "manifests-single",
     [(CONFIG, "shutdown_grace: 60s", "shutdown_grace: 80s")], "must exceed shutdown_delay"),
    ("a preStop sleep", "manifests-ha",
     [(DEPLOYMENT, "          resources:\n",
       "          lifecycle:\n            preStop:\n              exec:\n                command: "
       "[sleep, '5']\n          resources:\n")], "preStop"),
    ("rolling update may drop a pod", "manifests-ha",
     [(DEPLOYMENT, "maxUnavailable: 0", "maxUnavailable: 1")], "maxUnavailable 0"),
    ("metrics_listen port differs from the container port", "manifests-single",
     [(CONFIG, 'metrics_listen: "0.0.0.0:9464"', 'metrics_listen: "0.0.0.0:9465"')],
     "containerPort 'metrics'"),
    ("config mounted with subPath", "manifests-ha",
     [(DEPLOYMENT, "              mountPath: /etc/copilot-gateway\n",
       "              mountPath: /etc/copilot-gateway/gateway.yaml\n"
       "              subPath: gateway.yaml\n")], "subPath"),
    ("ConfigMap with a hash suffix", "manifests-single",
     [(f"{BASE}/kustomization.yaml", "disableNameSuffixHash: true",
       "disableNameSuffixHash: false")], "no hash suffix"),
    ("secret file on no Secret template key", "manifests-ha",
     [("deploy/kubernetes/secrets/secrets.example.yaml", "payroll.licence:", "payroll.lic:")],
     "template has no key payroll.licence"),
    ("a real value in a Secret template", "manifests-ha",
     [("deploy/kubernetes/secrets/secrets.example.yaml", 'api-key: "REPLACE_ME"',
       'api-key: "sk-live-123"')], "is not REPLACE_ME"),
    ("a Secret rendered by kustomize", "manifests-ha",
     [(f"{BASE}/kustomization.yaml", "\nconfigMapGenerator:\n",
       "\nsecretGenerator:\n  - name: copilot-gateway-upstream\n    literals: [api-key=x]\n"
       "configMapGenerator:\n")], "a Secret is rendered"),
    ("version label not the project version", "manifests-ha",
     [(f"{BASE}/kustomization.yaml", 'app.kubernetes.io/version: "0.1.0"',
       'app.kubernetes.io/version: "0.2.0"')], "is not the project version"),
    ("Service selects by version", "manifests-ha",
     [(f"{BASE}/service.yaml", "  selector:\n    app.kubernetes.io/name: copilot-gateway\n",
       "  selector:\n    app.kubernetes.io/version: 0.0.9\n    app.kubernetes.io/name: "
       "copilot-gateway\n")], "selector"),
    ("headless Service exposes metrics (double scrape)", "manifests-ha",
     [(f"{BASE}/service.yaml", END,
       "    - name: metrics\n      port: 9464\n      targetPort: metrics\n")],
     "with a 'metrics' port match the ServiceMonitor"),
    ("NetworkPolicy without egress to 443", "manifests-ha",
     [(f"{BASE}/networkpolicy.yaml", "        - port: 443\n", "        - port: 8443\n")],
     "egress lacks TCP 443"),
    ("NetworkPolicy opens metrics to everyone", "manifests-ha",
     [(f"{BASE}/networkpolicy.yaml",
       "            matchLabels:\n              kubernetes.io/metadata.name: monitoring\n",
       "            matchLabels: {}\n")], "more than the monitoring namespace"),
    ("single overlay keeps the HPA", "manifests-single",
     [("deploy/kubernetes/overlays/single/kustomization.yaml", "      $patch: delete\n", "")],
     "must not have a HorizontalPodAutoscaler"),
    ("single overlay PDB blocks drains", "manifests-single",
     [(f"{BASE}/pdb.yaml", "maxUnavailable: 1", "maxUnavailable: 0")], "lets a node drain"),
    ("ha PDB minAvailable 3 of 3", "manifests-ha",
     [("deploy/kubernetes/overlays/ha/kustomization.yaml", "value: 2\n", "value: 3\n")],
     "wanted minAvailable 2"),
    ("ha without zone spread", "manifests-ha",
     [("deploy/kubernetes/overlays/ha/kustomization.yaml", "topology.kubernetes.io/zone",
       "kubernetes.io/os")], "topology spread over"),
    ("ServiceMonitor job not the alerts' job", "manifests-ha",
     [(f"{BASE}/servicemonitor.yaml", "spec:\n", "spec:\n  jobLabel: app.kubernetes.io/part-of\n")],
     "does not select"),
    # overlays/ha: Redis for shared limits.
    ("ha redis.replicas not the Deployment's replicas", "manifests-ha",
     [(HA_CONFIG, "  replicas: 3\n", "  replicas: 2\n")], "must equal the Deployment's replicas"),
    ("ha HPA minimum not redis.replicas", "manifests-ha",
     [(f"{HA}/kustomization.yaml", "path: /spec/minReplicas\n        value: 3",
       "path: /spec/minReplicas\n        value: 4")], "must equal the Deployment's replicas"),
    ("ha config drifts from base/gateway.yaml", "manifests-ha",
     [(HA_CONFIG, "config_reload_interval: 5s", "config_reload_interval: 7s")],
     "differs from base/gateway.yaml"),
    ("ha without redis.url (limits per replica)", "manifests-ha",
     [(HA_CONFIG, '  url: "redis://copilot-redis:6379/0"\n', "")], "has no redis.url"),
    ("Redis Service selects other pods", "manifests-ha",
     [(REDIS, "  selector:\n    app.kubernetes.io/name: redis\n",
       "  selector:\n    app.kubernetes.io/name: redis-cache\n")],
     "does not select the Redis pods"),
    ("gateway egress to Redis on the wrong port", "manifests-ha",
     [(f"{HA}/kustomization.yaml", "\n            - port: 6379\n", "\n            - port: 6380\n")],
     "no egress to the Redis pods"),
    ("Redis NetworkPolicy admits everyone", "manifests-ha",
     [(REDIS, "      ports:\n        - port: redis\n",
       "        - ipBlock:\n            cidr: 0.0.0.0/0\n      ports:\n        - port: redis\n")],
     "not only the gateway pods"),
    ("Redis persists to disk", "manifests-ha",
     [(REDIS, "--save ''", "--save '60 1'")], "Redis persists"),
    ("Redis runs as root", "manifests-ha",
     [(REDIS, "        runAsUser: 999\n", "        runAsUser: 0\n")], "runAsUser 0"),
    ("Redis with a writable root filesystem", "manifests-ha",
     [(REDIS, "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false")],
     "Redis readOnlyRootFilesystem"),
    ("Redis password on the command line", "manifests-ha",
     [(REDIS, "requirepass $(cat /etc/redis/secret/redis-password)\n",
       "EOF\n              exec redis-server --requirepass x\n")], "requirepass is not read from"),
    ("misspelt field in the Redis Deployment", "schema",
     [(REDIS, "sizeLimit: 64Mi", "sizelimit: 64Mi")], "sizelimit"),
    ("Redis's password is not the gateway's (never ready)", "probes",
     [(REDIS, "requirepass $(cat /etc/redis/secret/redis-password)",
       "requirepass not-the-secret")], "FAIL: Redis readinessProbe: exec"),
    # Schemas.
    ("misspelt securityContext field", "schema",
     [(DEPLOYMENT, "readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true")],
     "readOnlyRootFileSystem"),
    ("unknown field in the ServiceMonitor", "schema",
     [(f"{BASE}/servicemonitor.yaml", "      interval: 30s\n",
       "      interval: 30s\n      scrapeEvery: 30s\n")], "scrapeEvery"),
    ("HPA utilization as a string", "schema",
     [(f"{BASE}/hpa.yaml", "averageUtilization: 70", 'averageUtilization: "70"')],
     "must be integer"),
    ("PrometheusRule 'for' not a duration", "schema",
     [(f"{BASE}/prometheusrule.yaml", "for: 10m", "for: ten minutes")], "must match pattern"),
    ("gRPC probe on a named port", "schema",
     [(DEPLOYMENT, "              port: 50051\n              service: liveness",
       "              port: grpc\n              service: liveness")], "must be integer"),
    # The running gateway.
    ("liveness probe on the metrics port", "probes",
     [(DEPLOYMENT, "              port: 50051\n              service: liveness",
       "              port: 9464\n              service: liveness")],
     "which is the metrics listener"),
    ("readiness probe on a service the gateway does not serve", "probes",
     [(DEPLOYMENT, "service: readiness", "service: copilot.v1.Readiness")],
     "later still readinessProbe: grpc.health.v1 Check('copilot.v1.Readiness') = NOT_FOUND"),
    ("startup probe on a path the gateway does not serve", "probes",
     [(DEPLOYMENT, "path: /healthz", "path: /health")], "never passed"),
    ("probe on a port no container port names", "probes",
     [(DEPLOYMENT, "path: /healthz\n              port: metrics",
       "path: /healthz\n              port: http")], "names no containerPort"),
    ("a config key the gateway rejects", "config",
     [(HA_CONFIG, "  command_timeout: 250ms\n", "  command_timeout: 250ms\n  address: x\n")],
     "unknown key"),
    ("ha redis.on_failure not a mode", "config",
     [(HA_CONFIG, "on_failure: fail_open", "on_failure: fail_soft")],
     "must be fail_open or fail_closed"),
    # PrometheusRule.
    ("PrometheusRule edited by hand", "prometheusrule",
     [(f"{BASE}/prometheusrule.yaml", "for: 10m", "for: 11m")], "is not generated"),
    ("alerts.yaml changed, PrometheusRule not regenerated", "prometheusrule",
     [("deploy/prometheus/alerts.yaml", ") > 0.05", ") > 0.06")], "differ from"),
    # Service config.
    ("retry on CreateThread", "service-config",
     [("deploy/kubernetes/service-config.json",
       '{ "service": "copilot.v1.CopilotService", "method": "GetUsage" }',
       '{ "service": "copilot.v1.CopilotService", "method": "GetUsage" },\n'
       '        { "service": "copilot.v1.CopilotService", "method": "Run" }')], "retries on"),
    ("misspelt method", "service-config",
     [("deploy/kubernetes/service-config.json", '"method": "ListMessages"',
       '"method": "ListMessage"')], "is not an rpc"),
    ("retry on INTERNAL", "service-config",
     [("deploy/kubernetes/service-config.json", '["UNAVAILABLE"]', '["UNAVAILABLE", "INTERNAL"]')],
     "retries on"),
    ("pick_first", "service-config",
     [("deploy/kubernetes/service-config.json", '"round_robin"', '"pick_first"')],
     "not round_robin"),
    ("invalid JSON", "service-config",
     [("deploy/kubernetes/service-config.json", '"maxAttempts": 4,', '"maxAttempts": 4')],
     "Expecting"),
    ("too few attempts to survive two failures (only the calls see it)", "service-config-calls",
     [("deploy/kubernetes/service-config.json", '"maxAttempts": 4', '"maxAttempts": 2')],
     "wanted OK after 3"),
    # Dockerfile.
    # These two compare with the binary's libraries: not in a sanitizer tree (see
    # check_dockerfile.py --sanitizer).
    ("a runtime library package missing", "dockerfile",
     [("Dockerfile", "      libyaml-cpp0.7 \\\n", "")], "libyaml-cpp0.7"),
    ("a package the binary does not need", "dockerfile",
     [("Dockerfile", "      libyaml-cpp0.7 \\\n", "      libyaml-cpp0.7 \\\n      curl \\\n")],
     "no library of the binary"),
    ("USER by name", "dockerfile", [("Dockerfile", "USER 65532:65532", "USER copilot")],
     "not numeric"),
    ("recommends installed", "dockerfile",
     [("Dockerfile", " && apt-get install -y --no-install-recommends \\\n      ca-certificates",
       " && apt-get install -y \\\n      ca-certificates")], "no-install-recommends"),
    ("base image without a tag", "dockerfile",
     [("Dockerfile", "ARG BASE_IMAGE=debian:bookworm-slim", "ARG BASE_IMAGE=debian")],
     "ARG BASE_IMAGE defaults to debian,"),
    ("a stage not on the base image", "dockerfile",
     [("Dockerfile", "FROM ${BASE_IMAGE} AS runtime", "FROM debian:bookworm AS runtime")],
     "is FROM debian:bookworm"),
    ("deprecated instruction (linters)", "dockerfile",
     [("Dockerfile", "USER 65532:65532", "USER 65532:65532\nMAINTAINER someone")],
     "MAINTAINER"),
    ("an undocumented test exclusion", "dockerfile",
     [("Dockerfile", "--exclude-regex '^proto_check_breaking$'",
       "--exclude-regex '^proto_check_breaking$|interop'")], "not the documented exclusions"),
    ("the build script not run", "dockerfile",
     [("Dockerfile", "RUN if [ \"$RUN_TESTS\" = true ]; then scripts/build.sh; else "
       "scripts/build.sh --target copilot-gateway; fi\n", "")],
     "does not RUN scripts/build.sh"),
    ("RUN_TESTS=false building something else", "dockerfile",
     [("Dockerfile", "else scripts/build.sh --target copilot-gateway;",
       "else scripts/build.sh --target copilot;")], "with RUN_TESTS=false, scripts/build.sh"),
    ("tests skipped by default", "dockerfile",
     [("Dockerfile", "ARG RUN_TESTS=true", "ARG RUN_TESTS=false")], "defaults to false"),
    ("metrics port not exposed", "dockerfile",
     [("Dockerfile", "EXPOSE 50051 9464", "EXPOSE 50051")], "EXPOSE"),
    ("version label not the project's", "dockerfile",
     [("Dockerfile", "ARG VERSION=0.1.0", "ARG VERSION=1.0.0")], "is not the project version"),
    (".git in the build context", "dockerfile", [(".dockerignore", "\n.git\n", "\n")],
     ".dockerignore lacks .git"),
    # The container command line.
    ("secret files unreadable by the image's user", "entrypoint",
     [(DEPLOYMENT, "            defaultMode: 0440\n            sources:",
       "            defaultMode: 0400\n            sources:")], "did not start"),
    ("CMD names a config path on no volume", "entrypoint",
     [("Dockerfile", 'CMD ["--config", "/etc/copilot-gateway/gateway.yaml"]',
       'CMD ["--config", "/etc/copilot/gateway.yaml"]')], "is on no volumeMount"),
]


# Mutations that only the comparison with the binary's own libraries catches.
BINARY_LIBRARIES = {"a runtime library package missing", "a package the binary does not need"}


def copy_inputs(src, dst):
    for relative in INPUTS:
        source = os.path.join(src, relative)
        target = os.path.join(dst, relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.isdir(source):
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)


def mutate(repo, edits):
    for relative, old, new in edits:
        path = os.path.join(repo, relative)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if old == END:
            text += new
        elif old not in text:
            return f"mutation text not found in {relative}: {old!r}"
        else:
            text = text.replace(old, new, 1)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return None


def run(argv):
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--npm", required=True)
    parser.add_argument("--only", help="run only mutations whose name contains this")
    parser.add_argument("--sanitizer", help="the gateway is from a sanitizer tree: the "
                        "Dockerfile's runtime packages are not compared with its libraries")
    args = parser.parse_args()
    args.gateway = os.path.abspath(args.gateway)
    args.npm = os.path.abspath(args.npm)
    root_only = {"entrypoint"} if os.geteuid() != 0 else set()
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="k8s-selftest-") as work:
        # The unmodified copy passes every check.
        clean = os.path.join(work, "clean")
        copy_inputs(args.repo, clean)
        for name, argv in commands(args, clean).items():
            if name in root_only:
                continue
            code, output, took = run(argv)
            if code == 0:
                passed += 1
                print(f"ok   unmodified copy passes {name} ({took:.1f}s)")
            else:
                failed += 1
                print(f"FAIL unmodified copy fails {name}:\n{output[-3000:]}")
        if failed:
            print(f"{passed} passed, {failed} failed")
            return 1
        for i, (name, check, edits, expected) in enumerate(MUTATIONS):
            if args.only and args.only not in name:
                continue
            if check in root_only:
                print(f"skip {name}: needs root")
                continue
            if args.sanitizer and name in BINARY_LIBRARIES:
                print(f"skip {name}: the binary is from a -fsanitize={args.sanitizer} tree")
                continue
            repo = os.path.join(work, f"m{i}")
            copy_inputs(args.repo, repo)
            problem = mutate(repo, edits)
            if problem:
                failed += 1
                print(f"FAIL {name}: {problem}")
                continue
            code, output, took = run(commands(args, repo)[check])
            if code != 0 and expected in output:
                passed += 1
                line = next((l for l in output.splitlines() if expected in l), "").strip()
                print(f"ok   {name}: {check} fails ({took:.1f}s): {line[:160]}")
            else:
                failed += 1
                print(f"FAIL {name}: {check} exited {code}, expected a failure saying "
                      f"{expected!r}; output:\n{output[-3000:]}")
            shutil.rmtree(repo, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
