#!/usr/bin/python3
"""Checks what an overlay of deploy/kubernetes renders against the rules of issue #7 and against
the other files it must agree with: gateway.yaml (ports, shutdown timings, secret files), the
Dockerfile (user, CMD, exposed ports), the Secret templates, deploy/prometheus/alerts.yaml (the
job name) and the CMake project version.

  check_manifests.py --repo ROOT --overlay single|ha
"""

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from k8s_common import (CheckError, container_port, duration_seconds, fail_unless, find,  # noqa: E402
                        gateway_config, gateway_container, host_port, load_yaml_all, mount_for,
                        one, project_version, read_dockerfile, render, run_checks, secret_refs,
                        volume)
import yaml  # noqa: E402

NAME = "copilot-gateway"
SELECTOR = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": NAME}
# overlays/ha's Redis for shared limits (overlays/ha/redis.yaml).
REDIS = "copilot-redis"
REDIS_SELECTOR = {"app.kubernetes.io/name": "redis", "app.kubernetes.io/instance": REDIS}
REDIS_PORT = 6379
LABEL_KEYS = ["app.kubernetes.io/" + k for k in
              ("name", "instance", "version", "component", "part-of", "managed-by")]

# What each overlay must be (issue #7).
OVERLAY_RULES = {
    "single": {"replicas": 1, "hpa_min": None, "pdb": "max_unavailable",
               "spread_keys": {"kubernetes.io/hostname"}, "redis": False},
    "ha": {"replicas": 3, "hpa_min": 3, "pdb_min_available": 2, "pdb": "min_available",
           "spread_keys": {"topology.kubernetes.io/zone", "kubernetes.io/hostname"},
           "spread_hard": True, "redis": True},
}


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def is_redis(o):
    """An object of the Redis for shared limits (its own labels, not the gateway's)."""
    return o.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/component") == \
        "limits-store"


class Manifests:
    def __init__(self, repo, overlay):
        self.repo = repo
        self.overlay = overlay
        self.rules = OVERLAY_RULES[overlay]
        self.objects = render(repo, overlay)
        self.deployment = one(self.objects, "Deployment", NAME)
        self.pod = self.deployment["spec"]["template"]
        self.pod_spec = self.pod["spec"]
        self.container = gateway_container(self.deployment)
        text, self.config_path, self.configmap = gateway_config(self.objects, self.deployment)
        self.config = yaml.safe_load(text)
        self.stage = read_dockerfile(repo)[-1]
        self.secret_templates = load_yaml_all(
            os.path.join(repo, "deploy", "kubernetes", "secrets", "secrets.example.yaml"))

    # ---- checks

    def kinds(self):
        wanted = {"ServiceAccount", "ConfigMap", "Service", "Deployment", "PodDisruptionBudget",
                  "NetworkPolicy", "ServiceMonitor", "PrometheusRule"}
        if self.rules["hpa_min"]:
            wanted.add("HorizontalPodAutoscaler")
        have = {o["kind"] for o in self.objects}
        fail_unless(wanted <= have, f"missing kinds {sorted(wanted - have)}")
        if not self.rules["hpa_min"]:
            fail_unless(not find(self.objects, "HorizontalPodAutoscaler"),
                        f"overlay {self.overlay} must not have a HorizontalPodAutoscaler")
        fail_unless(not find(self.objects, "Secret"),
                    "a Secret is rendered: `kubectl apply -k` would overwrite the real secrets "
                    "(Secrets are created by hand, secrets/secrets.example.yaml)")
        namespaces = {o["metadata"].get("namespace") for o in self.objects}
        fail_unless(len(namespaces) == 1 and None not in namespaces,
                    f"objects are not all in one namespace: {namespaces}")
        return f"{len(self.objects)} objects: {', '.join(sorted(have))}"

    def labels(self):
        version = project_version(self.repo)
        redis = [o for o in self.objects if is_redis(o)]
        redis_pods = [o["spec"]["template"] for o in redis if o["kind"] == "Deployment"]
        for o in redis + redis_pods:
            labels = o["metadata"].get("labels", {})
            what = f"{o.get('kind', 'Redis pod template')} {o['metadata'].get('name', '')}"
            missing = [k for k in LABEL_KEYS if k not in labels]
            fail_unless(not missing, f"{what}: labels {missing} missing")
            fail_unless(matches(REDIS_SELECTOR, labels),
                        f"{what}: name/instance labels are not {REDIS_SELECTOR}")
            fail_unless(labels["app.kubernetes.io/part-of"] == "copilot", f"{what}: part-of")
        for o in [o for o in self.objects if not is_redis(o)] + [self.pod]:
            labels = o["metadata"].get("labels", {})
            what = f"{o.get('kind', 'pod template')} {o['metadata'].get('name', '')}"
            missing = [k for k in LABEL_KEYS if k not in labels]
            fail_unless(not missing, f"{what}: labels {missing} missing")
            fail_unless(matches(SELECTOR, labels), f"{what}: name/instance labels are not {SELECTOR}")
            fail_unless(labels["app.kubernetes.io/version"] == version,
                        f"{what}: app.kubernetes.io/version {labels['app.kubernetes.io/version']} "
                        f"is not the project version {version}")
        selector = self.deployment["spec"]["selector"]["matchLabels"]
        fail_unless(selector == SELECTOR,
                    f"Deployment selector {selector} must be exactly {SELECTOR} (immutable; no "
                    "version in it)")
        image = self.container["image"]
        fail_unless(image.endswith(":" + version), f"image {image} is not tagged {version}")
        return (f"6 app.kubernetes.io labels on every object, version {version}, image {image}" +
                (f"; {len(redis)} Redis objects labelled {REDIS_SELECTOR}, component "
                 "limits-store" if redis else ""))

    def security(self):
        pod_sc = self.pod_spec.get("securityContext", {})
        sc = self.container.get("securityContext", {})
        user = self.stage.get("USER", "")
        uid, _, gid = user.partition(":")
        fail_unless(uid.isdigit() and int(uid) != 0,
                    f"Dockerfile USER {user!r} is not a numeric non-root UID")
        for where, ctx in (("pod", pod_sc), ("container", sc)):
            fail_unless(ctx.get("runAsNonRoot") is True, f"{where} securityContext.runAsNonRoot")
            fail_unless(ctx.get("runAsUser") == int(uid),
                        f"{where} runAsUser {ctx.get('runAsUser')} is not the image's USER {uid}")
            fail_unless(ctx.get("seccompProfile", {}).get("type") == "RuntimeDefault",
                        f"{where} seccompProfile is not RuntimeDefault")
        fail_unless(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation")
        fail_unless(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
        fail_unless(sc.get("privileged") in (None, False), "privileged")
        caps = sc.get("capabilities", {})
        fail_unless("ALL" in caps.get("drop", []), "capabilities.drop lacks ALL")
        fail_unless(not caps.get("add"), f"capabilities.add {caps.get('add')}")
        fail_unless(pod_sc.get("fsGroup") == int(gid or uid),
                    "fsGroup is not the image's group (the 0440 secret files must be readable)")
        fail_unless(self.pod_spec.get("automountServiceAccountToken") is False,
                    "automountServiceAccountToken must be false (the gateway never calls the API)")
        fail_unless(not self.pod_spec.get("hostNetwork") and not self.pod_spec.get("hostPID"),
                    "host namespaces")
        return f"non-root {uid}, read-only root, no privilege escalation, caps drop ALL"

    def resources(self):
        res = self.container.get("resources", {})
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                fail_unless(r in res.get(part, {}), f"resources.{part}.{r} missing")
        return f"requests {res['requests']}, limits {res['limits']}"

    def shutdown(self):
        delay = duration_seconds(self.config.get("shutdown_delay", "5s"))
        grace = duration_seconds(self.config.get("shutdown_grace", "10s"))
        period = self.pod_spec.get("terminationGracePeriodSeconds", 30)
        fail_unless(period > delay + grace,
                    f"terminationGracePeriodSeconds {period} must exceed shutdown_delay {delay:g}s "
                    f"+ shutdown_grace {grace:g}s")
        lifecycle = self.container.get("lifecycle", {})
        fail_unless("preStop" not in lifecycle,
                    "a preStop hook only lengthens shutdown: the gateway's shutdown_delay does it")
        strategy = self.deployment["spec"].get("strategy", {})
        rolling = strategy.get("rollingUpdate", {})
        fail_unless(strategy.get("type") == "RollingUpdate" and rolling.get("maxUnavailable") == 0
                    and rolling.get("maxSurge", 0) not in (0, "0%"),
                    f"rolling update must be maxUnavailable 0, maxSurge > 0: {strategy}")
        fail_unless(self.stage.get("STOPSIGNAL") == "SIGTERM", "Dockerfile STOPSIGNAL SIGTERM")
        return (f"terminationGracePeriodSeconds {period} > {delay:g}s + {grace:g}s; "
                "maxUnavailable 0; no preStop")

    def ports_and_probes(self):
        _, grpc_port = host_port(self.config.get("listen", "0.0.0.0:50051"))
        metrics = self.config.get("metrics_listen", "0.0.0.0:9464")
        fail_unless(metrics != "off", "metrics_listen is off: no /metrics, /healthz, /readyz")
        _, metrics_port = host_port(metrics)
        ports = {p["name"]: p["containerPort"] for p in self.container.get("ports", [])}
        fail_unless(ports.get("grpc") == grpc_port,
                    f"containerPort 'grpc' {ports.get('grpc')} is not listen's port {grpc_port}")
        fail_unless(ports.get("metrics") == metrics_port,
                    f"containerPort 'metrics' {ports.get('metrics')} is not metrics_listen's "
                    f"port {metrics_port}")
        exposed = {int(p.split("/")[0]) for p in self.stage.get("EXPOSE", [])}
        fail_unless(set(ports.values()) <= exposed,
                    f"container ports {sorted(ports.values())} not all EXPOSEd ({sorted(exposed)})")
        seen = []
        for kind, service in (("livenessProbe", "liveness"), ("readinessProbe", "readiness")):
            spec = self.container.get(kind)
            fail_unless(spec and "grpc" in spec, f"{kind} is not a gRPC probe")
            fail_unless(spec["grpc"].get("service") == service,
                        f"{kind} checks service {spec['grpc'].get('service')!r}, not {service!r}")
            name, number = container_port(self.container, spec["grpc"]["port"])
            fail_unless(name == "grpc", f"{kind} port {number} is not the 'grpc' port")
            seen.append(f"{kind} grpc:{number}/{service}")
        startup = self.container.get("startupProbe")
        fail_unless(startup, "no startupProbe")
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            spec = self.container[kind]
            if "httpGet" in spec:
                name, number = container_port(self.container, spec["httpGet"]["port"])
                fail_unless(name == "metrics", f"{kind}: HTTP port {number} is not 'metrics'")
                fail_unless(spec["httpGet"].get("path") in ("/healthz", "/readyz"),
                            f"{kind}: path {spec['httpGet'].get('path')}")
                seen.append(f"{kind} GET {name}{spec['httpGet']['path']}")
        return "; ".join(seen)

    def config_volume(self):
        mount, relative = mount_for(self.container, self.config_path)
        fail_unless(mount.get("readOnly") is True, "config mount is not readOnly")
        name = self.configmap["metadata"]["name"]
        fail_unless(name == "copilot-gateway-config",
                    f"ConfigMap is {name}: the documented choice is no hash suffix (in-place "
                    "reload); see base/kustomization.yaml")
        return f"{self.config_path} from ConfigMap {name} mounted as a directory at " \
               f"{mount['mountPath']}"

    def _secret_sources(self, volume_spec):
        """[(secret name, key, path in the volume or None for 'every key')] of a volume."""
        if "secret" in volume_spec:
            s = volume_spec["secret"]
            if s.get("items"):
                return [(s["secretName"], i["key"], i["path"]) for i in s["items"]]
            return [(s["secretName"], None, None)]
        if "projected" in volume_spec:
            out = []
            for source in volume_spec["projected"]["sources"]:
                fail_unless("secret" in source, f"projected source {source} is not a Secret")
                s = source["secret"]
                if s.get("items"):
                    out += [(s["name"], i["key"], i["path"]) for i in s["items"]]
                else:
                    out.append((s["name"], None, None))
            return out
        raise CheckError(f"volume {volume_spec['name']} is neither a secret nor projected")

    def secrets(self):
        templates = {}
        for t in self.secret_templates:
            fail_unless(t.get("kind") == "Secret", f"secrets.example.yaml: {t.get('kind')}")
            values = dict(t.get("stringData", {}))
            fail_unless(not t.get("data"), "secrets.example.yaml: use stringData placeholders")
            for key, value in values.items():
                fail_unless(value == "REPLACE_ME",
                            f"secret template {t['metadata']['name']}.{key} is not REPLACE_ME")
            templates[t["metadata"]["name"]] = set(values)
        checked = []
        env_names = {e["name"] for e in self.container.get("env", [])}
        for path, key, value in secret_refs(self.config):
            if key.endswith("_env"):
                fail_unless(value in env_names, f"{path}: env {value} not set on the container")
                continue
            mount, relative = mount_for(self.container, value)
            fail_unless(mount.get("readOnly") is True, f"{path}: mount not readOnly")
            spec = volume(self.deployment, mount["name"])
            sources = self._secret_sources(spec)
            found = None
            for secret, skey, spath in sources:
                if spath == relative:
                    found = (secret, skey)
                elif spath is None:
                    found = found or (secret, relative)
            fail_unless(found, f"{path}: {value} is in no Secret of volume {mount['name']}")
            secret, skey = found
            fail_unless(secret in templates, f"{path}: Secret {secret} has no template")
            fail_unless(skey in templates[secret],
                        f"{path}: Secret {secret} template has no key {skey}")
            mode = spec.get("secret", spec.get("projected", {})).get("defaultMode")
            fail_unless(mode == 0o440, f"volume {mount['name']}: defaultMode {mode} is not 0440")
            checked.append(f"{path} <- {secret}/{skey}")
        for v in self.pod_spec.get("volumes", []):
            if "secret" in v or "projected" in v:
                for secret, _, _ in self._secret_sources(v):
                    fail_unless(secret in templates, f"volume {v['name']}: Secret {secret} has "
                                "no template in secrets/secrets.example.yaml")
        fail_unless(checked, "the config names no secret file")
        return "; ".join(checked)

    def services(self):
        services = [s for s in find(self.objects, "Service") if not is_redis(s)]
        pod_labels = self.pod["metadata"]["labels"]
        ports = {p["name"] for p in self.container["ports"]}
        for s in services:
            fail_unless(matches(s["spec"]["selector"], pod_labels) and
                        s["spec"]["selector"] == SELECTOR,
                        f"Service {s['metadata']['name']} selector {s['spec']['selector']}")
            for p in s["spec"]["ports"]:
                fail_unless(p.get("targetPort") in ports,
                            f"Service {s['metadata']['name']} port {p['name']} targets "
                            f"{p.get('targetPort')}, not a named container port")
        main = one(self.objects, "Service", NAME)
        fail_unless(main["spec"].get("type", "ClusterIP") == "ClusterIP" and
                    main["spec"].get("clusterIP") != "None", "copilot-gateway is not a ClusterIP")
        by_name = {p["name"]: p for p in main["spec"]["ports"]}
        fail_unless(by_name.get("grpc", {}).get("port") == 50051 and
                    by_name["grpc"].get("appProtocol") == "grpc",
                    "Service copilot-gateway: port grpc 50051 appProtocol grpc")
        fail_unless(by_name.get("metrics", {}).get("port") == 9464,
                    "Service copilot-gateway: port metrics 9464")
        headless = one(self.objects, "Service", NAME + "-headless")
        fail_unless(headless["spec"].get("clusterIP") == "None", "headless Service clusterIP None")
        fail_unless([p["name"] for p in headless["spec"]["ports"]] == ["grpc"],
                    "the headless Service has only the grpc port (so it is never scraped)")
        return f"{NAME} (ClusterIP: grpc, metrics), {NAME}-headless (grpc)"

    def monitoring(self):
        monitor = one(self.objects, "ServiceMonitor")
        selector = monitor["spec"]["selector"].get("matchLabels", {})
        endpoints = monitor["spec"]["endpoints"]
        fail_unless(len(endpoints) == 1 and endpoints[0].get("port") == "metrics",
                    "ServiceMonitor: one endpoint on port 'metrics'")
        fail_unless(endpoints[0].get("path", "/metrics") == "/metrics", "scrape path /metrics")
        scraped = [s for s in find(self.objects, "Service")
                   if matches(selector, s["metadata"].get("labels", {})) and
                   any(p["name"] == "metrics" for p in s["spec"]["ports"])]
        fail_unless(len(scraped) == 1,
                    f"{len(scraped)} Services with a 'metrics' port match the ServiceMonitor: each "
                    "pod must be scraped once")
        job = scraped[0]["metadata"]["name"]
        with open(os.path.join(self.repo, "deploy", "prometheus", "alerts.yaml")) as f:
            alerts = f.read()
        fail_unless(f'job="{job}"' in alerts and "jobLabel" not in monitor["spec"],
                    f"the Prometheus job will be {job!r}, which deploy/prometheus/alerts.yaml "
                    "does not select")
        return f"job {job} (as alerts.yaml), port metrics, path /metrics"

    def network_policy(self):
        policy = one(self.objects, "NetworkPolicy", NAME)
        spec = policy["spec"]
        fail_unless(matches(spec["podSelector"]["matchLabels"], self.pod["metadata"]["labels"]),
                    "NetworkPolicy podSelector does not select the gateway pods")
        fail_unless(set(spec.get("policyTypes", [])) == {"Ingress", "Egress"},
                    "policyTypes must be Ingress and Egress")
        ports = {p["name"]: p["containerPort"] for p in self.container["ports"]}
        allowed = {}
        for rule in spec.get("ingress", []):
            fail_unless(rule.get("ports"), "an ingress rule without ports opens every port")
            fail_unless(rule.get("from"), "an ingress rule without 'from' admits everyone")
            for p in rule["ports"]:
                number = ports.get(p["port"], p["port"])
                allowed.setdefault(number, []).extend(rule["from"])
        fail_unless(set(allowed) == set(ports.values()),
                    f"ingress opens {sorted(allowed)}, the container listens on "
                    f"{sorted(ports.values())}")
        grpc_from = allowed[ports["grpc"]]
        fail_unless(any("copilot-gateway/caller" in (f.get("namespaceSelector", {})
                                                     .get("matchLabels", {})) for f in grpc_from),
                    "gRPC ingress is not open to namespaces labelled copilot-gateway/caller")
        fail_unless(any("copilot-gateway/caller" in (f.get("podSelector", {})
                                                     .get("matchLabels", {})) for f in grpc_from),
                    "gRPC ingress is not open to pods labelled copilot-gateway/caller")
        for f in grpc_from:
            fail_unless("app.kubernetes.io/name" not in f.get("podSelector", {})
                        .get("matchLabels", {}), "caller pod selector carries the gateway's labels")
        metrics_from = allowed[ports["metrics"]]
        fail_unless(all(f.get("namespaceSelector", {}).get("matchLabels", {})
                        .get("kubernetes.io/metadata.name") == "monitoring" for f in metrics_from),
                    "metrics ingress is open to more than the monitoring namespace")
        egress = {(p.get("protocol", "TCP"), p["port"])
                  for rule in spec.get("egress", []) for p in rule.get("ports", [])}
        for wanted in (("UDP", 53), ("TCP", 53), ("TCP", 443)):
            fail_unless(wanted in egress, f"egress lacks {wanted[0]} {wanted[1]}")
        fail_unless(all(rule.get("ports") for rule in spec.get("egress", [])),
                    "an egress rule without ports")
        return "in: grpc from callers, metrics from monitoring; out: DNS, 443"

    def availability(self):
        rules = self.rules
        replicas = self.deployment["spec"].get("replicas", 1)
        fail_unless(replicas == rules["replicas"],
                    f"replicas {replicas}, overlay {self.overlay} wants {rules['replicas']}")
        hpas = find(self.objects, "HorizontalPodAutoscaler")
        notes = [f"replicas {replicas}"]
        if rules["hpa_min"]:
            hpa = hpas[0]
            fail_unless(hpa["apiVersion"] == "autoscaling/v2", "HPA is not autoscaling/v2")
            target = hpa["spec"]["scaleTargetRef"]
            fail_unless(target["kind"] == "Deployment" and target["name"] == NAME,
                        f"HPA scales {target}")
            fail_unless(hpa["spec"]["minReplicas"] == rules["hpa_min"] == replicas,
                        f"HPA minReplicas {hpa['spec']['minReplicas']}, wanted {rules['hpa_min']} "
                        f"(= replicas)")
            fail_unless(hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"], "HPA max <= min")
            fail_unless(any(m.get("resource", {}).get("name") == "cpu"
                            for m in hpa["spec"].get("metrics", [])), "HPA has no CPU metric")
            notes.append(f"HPA {hpa['spec']['minReplicas']}-{hpa['spec']['maxReplicas']} on CPU")
        pdbs = find(self.objects, "PodDisruptionBudget")
        for pdb in pdbs:
            fail_unless(pdb["spec"]["selector"]["matchLabels"] == SELECTOR, "PDB selector")
            spec = pdb["spec"]
            if rules["pdb"] == "max_unavailable":
                fail_unless("minAvailable" not in spec and spec.get("maxUnavailable", 0) not in
                            (0, "0", "0%"),
                            f"PDB {spec}: with {replicas} replica(s) only maxUnavailable >= 1 "
                            "lets a node drain")
            else:
                fail_unless(spec.get("minAvailable") == rules["pdb_min_available"] and
                            "maxUnavailable" not in spec,
                            f"PDB {spec}: wanted minAvailable {rules['pdb_min_available']}")
                fail_unless(spec["minAvailable"] < replicas, "PDB minAvailable >= replicas "
                            "blocks every drain")
            notes.append(f"PDB {({k: v for k, v in spec.items() if k != 'selector'})}")
        spread = self.pod_spec.get("topologySpreadConstraints", [])
        keys = {c["topologyKey"] for c in spread}
        fail_unless(keys == rules["spread_keys"],
                    f"topology spread over {sorted(keys)}, wanted {sorted(rules['spread_keys'])}")
        for c in spread:
            fail_unless(matches(c["labelSelector"]["matchLabels"], self.pod["metadata"]["labels"])
                        and c["labelSelector"]["matchLabels"] == SELECTOR,
                        f"topology spread {c['topologyKey']} selects other pods")
            if rules.get("spread_hard"):
                fail_unless(c["whenUnsatisfiable"] == "DoNotSchedule",
                            f"topology spread {c['topologyKey']} is not a hard rule")
        notes.append(f"spread over {', '.join(sorted(keys))}")
        return "; ".join(notes)

    def redis(self):
        """overlays/ha: the gateways share their limits in the Redis of redis.yaml; single: in
        process, no Redis at all."""
        redis_objects = [o for o in self.objects if is_redis(o)]
        config = self.config.get("redis") or {}
        if not self.rules["redis"]:
            fail_unless(not config.get("url"), f"overlay {self.overlay} sets redis.url: its "
                        "limits are in process")
            fail_unless(not redis_objects, f"overlay {self.overlay} renders Redis objects")
            return "no redis.url, no Redis objects: limits in process"
        notes = []
        # The config: url to the Service, fail_open share = replicas = HPA min.
        url = str(config.get("url", ""))
        fail_unless(url, "the ha config has no redis.url: limits would be per replica")
        match = re.fullmatch(r"redis://([^/:@]+):(\d+)(/\d+)?", url)
        fail_unless(match, f"redis.url {url!r} is not redis://HOST:PORT[/DB]")
        host, port = match.group(1), int(match.group(2))
        fail_unless(config.get("on_failure") == "fail_open",
                    f"redis.on_failure {config.get('on_failure')!r}, the overlay documents "
                    "fail_open")
        replicas = self.deployment["spec"].get("replicas", 1)
        hpa = find(self.objects, "HorizontalPodAutoscaler")
        hpa_min = hpa[0]["spec"].get("minReplicas", 1) if hpa else replicas
        fail_unless(config.get("replicas") == replicas == hpa_min,
                    f"redis.replicas {config.get('replicas')} must equal the Deployment's "
                    f"replicas {replicas} and the HPA's minReplicas {hpa_min} (each replica's "
                    "fail_open share is 1/redis.replicas)")
        fail_unless(config.get("password_file") or config.get("password_env"),
                    "Redis without a password (redis.password_file)")
        notes.append(f"url {url}, fail_open, replicas {replicas} = HPA min {hpa_min}")
        # The workload: one Redis pod behind a ClusterIP Service named like the url's host.
        fail_unless(host == REDIS, f"redis.url host {host} is not the Service {REDIS}")
        service = one(self.objects, "Service", REDIS)
        deployment = one(self.objects, "Deployment", REDIS)
        pod = deployment["spec"]["template"]
        fail_unless(deployment["spec"].get("replicas", 1) == 1,
                    "Redis replicas != 1 (several would split the limit state)")
        fail_unless(deployment["spec"]["selector"]["matchLabels"] == REDIS_SELECTOR,
                    f"Redis Deployment selector is not {REDIS_SELECTOR}")
        fail_unless(deployment["spec"].get("strategy", {}).get("type") == "Recreate",
                    "Redis strategy is not Recreate (a rollout would run two at once)")
        fail_unless(service["spec"].get("type", "ClusterIP") == "ClusterIP" and
                    service["spec"].get("clusterIP") != "None", f"{REDIS} is not a ClusterIP")
        fail_unless(service["spec"].get("selector") == REDIS_SELECTOR and
                    matches(service["spec"]["selector"], pod["metadata"]["labels"]),
                    f"Service {REDIS} selector {service['spec'].get('selector')} does not select "
                    "the Redis pods (only them)")
        fail_unless(not matches(service["spec"]["selector"], self.pod["metadata"]["labels"]),
                    f"Service {REDIS} selects the gateway pods")
        containers = pod["spec"]["containers"]
        fail_unless(len(containers) == 1, "the Redis pod has more than one container")
        c = containers[0]
        by_port = [p for p in service["spec"]["ports"] if p["port"] == port]
        fail_unless(by_port, f"Service {REDIS} has no port {port} (redis.url)")
        _, target = container_port(c, by_port[0].get("targetPort", port))
        fail_unless(target == REDIS_PORT, f"Service {REDIS} port {port} targets {target}")
        script = " ".join(c.get("command", []) + c.get("args", []))
        fail_unless(f"--port {REDIS_PORT}" in script, f"redis-server is not on --port {REDIS_PORT}")
        fail_unless("--save ''" in script and "--appendonly no" in script,
                    "Redis persists (wanted --save '' --appendonly no: limit state is "
                    "short-lived, /data is an emptyDir)")
        notes.append(f"Service {REDIS}:{port} -> Redis pod :{target}, 1 replica, no persistence")
        # Hardening as the gateway's, as far as Redis allows.
        pod_sc = pod["spec"].get("securityContext", {})
        sc = c.get("securityContext", {})
        for where, ctx in (("Redis pod", pod_sc), ("Redis container", sc)):
            fail_unless(ctx.get("runAsNonRoot") is True, f"{where} runAsNonRoot")
            fail_unless(ctx.get("runAsUser") == 999, f"{where} runAsUser {ctx.get('runAsUser')}, "
                        "not 999 (the image's redis user)")
            fail_unless(ctx.get("seccompProfile", {}).get("type") == "RuntimeDefault",
                        f"{where} seccompProfile is not RuntimeDefault")
        fail_unless(sc.get("allowPrivilegeEscalation") is False,
                    "Redis allowPrivilegeEscalation")
        fail_unless(sc.get("readOnlyRootFilesystem") is True, "Redis readOnlyRootFilesystem")
        fail_unless("ALL" in sc.get("capabilities", {}).get("drop", []),
                    "Redis capabilities.drop lacks ALL")
        fail_unless(not sc.get("capabilities", {}).get("add"), "Redis capabilities.add")
        fail_unless(pod["spec"].get("automountServiceAccountToken") is False,
                    "Redis automountServiceAccountToken must be false")
        volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
        mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
        fail_unless("/data" in mounts and "emptyDir" in volumes.get(mounts["/data"]["name"], {}),
                    "Redis /data is not an emptyDir (the root filesystem is read-only)")
        fail_unless(not find(self.objects, "PersistentVolumeClaim"), "a PersistentVolumeClaim")
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                fail_unless(r in c.get("resources", {}).get(part, {}),
                            f"Redis resources.{part}.{r} missing")
        for kind in ("livenessProbe", "readinessProbe"):
            spec = c.get(kind)
            fail_unless(spec and ("exec" in spec or "tcpSocket" in spec),
                        f"Redis {kind} is neither exec nor tcpSocket")
        notes.append("Redis uid 999, read-only root, /data emptyDir, caps drop ALL, probes")
        # The password: Redis's requirepass and the gateways' redis.password_file are the same
        # key of the same Secret.
        password = config.get("password_file")
        fail_unless(password, "redis.password_file missing (the Secret's file)")
        mount, relative = mount_for(self.container, password)
        gateway_sources = [(s, k) for s, k, p in self._secret_sources(
            volume(self.deployment, mount["name"])) if p == relative]
        fail_unless(len(gateway_sources) == 1, f"redis.password_file {password}: no Secret")
        secret, key = gateway_sources[0]
        redis_secret = [(v, m) for v in volumes.values() for m in c.get("volumeMounts", [])
                        if m["name"] == v["name"] and v.get("secret", {}).get("secretName") ==
                        secret]
        fail_unless(redis_secret, f"the Redis pod does not mount Secret {secret}")
        v, m = redis_secret[0]
        items = v["secret"].get("items") or [{"key": key, "path": key}]
        paths = [i["path"] for i in items if i["key"] == key]
        fail_unless(paths, f"the Redis pod's Secret volume has no key {key}")
        file = m["mountPath"].rstrip("/") + "/" + paths[0]
        fail_unless(re.search(r"requirepass \$\(cat " + re.escape(file) + r"\)", script),
                    f"Redis's requirepass is not read from {file} (Secret {secret}/{key})")
        fail_unless("--requirepass" not in script,
                    "the password on redis-server's command line (visible in /proc)")
        fail_unless(v["secret"].get("defaultMode") == 0o440 and
                    pod_sc.get("fsGroup") == pod_sc.get("runAsGroup"),
                    "Redis password file: defaultMode 0440 with fsGroup = runAsGroup")
        notes.append(f"requirepass and redis.password_file both from {secret}/{key}")
        # NetworkPolicy: gateways -> Redis pods on 6379; Redis admits only the gateways.
        named = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}

        def redis_port_number(port):
            return named.get(port) if isinstance(port, str) else port
        gateway_policy = one(self.objects, "NetworkPolicy", NAME)
        out = [r for r in gateway_policy["spec"].get("egress", [])
               if any(matches(t.get("podSelector", {}).get("matchLabels", {"-": "-"}),
                              pod["metadata"]["labels"]) and "namespaceSelector" not in t
                      for t in r.get("to", []))
               and any(p.get("protocol", "TCP") == "TCP" and
                       redis_port_number(p["port"]) == REDIS_PORT for p in r.get("ports", []))]
        fail_unless(out, f"NetworkPolicy {NAME}: no egress to the Redis pods on TCP {REDIS_PORT}")
        policy = one(self.objects, "NetworkPolicy", REDIS)
        spec = policy["spec"]
        fail_unless(spec["podSelector"].get("matchLabels") == REDIS_SELECTOR,
                    f"NetworkPolicy {REDIS} does not select the Redis pods")
        fail_unless("Ingress" in spec.get("policyTypes", []),
                    f"NetworkPolicy {REDIS} does not restrict ingress")
        for rule in spec.get("ingress", []):
            fail_unless(rule.get("from") and rule.get("ports"),
                        f"NetworkPolicy {REDIS}: an ingress rule open to all sources or ports")
            for source in rule["from"]:
                fail_unless(set(source) == {"podSelector"} and
                            source["podSelector"].get("matchLabels") == SELECTOR,
                            f"NetworkPolicy {REDIS} admits {source}, not only the gateway pods")
            for p in rule["ports"]:
                fail_unless(redis_port_number(p["port"]) == REDIS_PORT,
                            f"NetworkPolicy {REDIS} opens port {p['port']}")
        fail_unless(spec.get("ingress"), f"NetworkPolicy {REDIS} admits nobody")
        notes.append(f"egress gateway -> Redis :{REDIS_PORT}; Redis ingress from gateways only")
        # The ha config is base/gateway.yaml plus `redis` (one config kept in two files).
        base = load_yaml_all(os.path.join(self.repo, "deploy", "kubernetes", "base",
                                          "gateway.yaml"))[0]
        rest = {k: v for k, v in self.config.items() if k != "redis"}
        differ = sorted(k for k in set(base) | set(rest) if base.get(k) != rest.get(k))
        fail_unless(not differ, f"overlays/ha/gateway.yaml differs from base/gateway.yaml in "
                    f"{differ}, not only in redis (edit both)")
        fail_unless("redis" not in base, "base/gateway.yaml has a redis section")
        notes.append("ha gateway.yaml = base/gateway.yaml + redis")
        return "; ".join(notes)

    def image_command(self):
        args = self.container.get("args")
        fail_unless(args == self.stage.get("CMD"),
                    f"container args {args} differ from the image's CMD {self.stage.get('CMD')}")
        fail_unless("command" not in self.container,
                    "the container overrides the image's ENTRYPOINT")
        return f"args = Dockerfile CMD {args}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--overlay", required=True, choices=sorted(OVERLAY_RULES))
    args = parser.parse_args()
    try:
        m = Manifests(args.repo, args.overlay)
    except CheckError as e:
        print(f"FAIL: {e}")
        print("0 passed, 1 failed")
        return 1
    return run_checks([
        ("kinds", m.kinds), ("labels", m.labels), ("security", m.security),
        ("resources", m.resources), ("shutdown", m.shutdown), ("ports and probes", m.ports_and_probes),
        ("config volume", m.config_volume), ("secrets", m.secrets), ("services", m.services),
        ("monitoring", m.monitoring), ("network policy", m.network_policy),
        ("availability", m.availability), ("image command", m.image_command),
        ("redis", m.redis),
    ])


if __name__ == "__main__":
    sys.exit(main())
