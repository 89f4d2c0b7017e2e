#!/usr/bin/python3
"""Checks the repository's Dockerfile: two npm linters (lint_dockerfile.js), then the rules of
issue #7 that no generic linter knows:

  - multi-stage on debian:bookworm-slim (ARG BASE_IMAGE, defaulting to it); the build stage
    runs the README's commands, i.e. the steps of scripts/test.sh (scripts/install-deps.sh,
    scripts/build.sh, ctest on build/default with its --timeout), excluding only what the
    Dockerfile documents; with RUN_TESTS=false (default true) it installs and builds only the
    gateway (install-deps.sh --gateway-only, build.sh --target copilot-gateway) and skips ctest;
  - the runtime stage installs exactly the packages the built binary needs: `ldd` of the real
    binary, `dpkg -S` of each library, and every such package must be installed explicitly (the
    ones owning the binary's direct NEEDED libraries), pulled in by their Depends, or part of
    every Debian image (Essential or Priority: required, and their Depends); and no listed package may be unneeded
    (ca-certificates excepted: TLS to the upstream);
  - apt hygiene in that stage (--no-install-recommends, lists removed in the same layer);
  - a fixed numeric non-root USER created with those IDs; EXPOSE 50051 9464; STOPSIGNAL SIGTERM;
    ENTRYPOINT ["/usr/local/bin/copilot-gateway"], copied there from the build stage;
    CMD ["--config", "/etc/copilot-gateway/gateway.yaml"];
  - OCI labels, the version one defaulting to the CMake project version;
  - .dockerignore keeps .git, build trees and node_modules out.

  check_dockerfile.py --repo ROOT --gateway PATH/copilot-gateway --npm NPM_DIR [--sanitizer KIND]

--sanitizer: the binary comes from a sanitizer tree (scripts/sanitize.sh): it links the
sanitizer's runtime and its libraries differ from those of the binary the image ships, so the
runtime packages are not compared with it (the default tree, which CI runs, compares them).
"""

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from k8s_common import (CheckError, dockerfile_stages, fail_unless, project_version,  # noqa: E402
                        run_checks)

BASE = "debian:bookworm-slim"
ENTRYPOINT = ["/usr/local/bin/copilot-gateway"]
CMD = ["--config", "/etc/copilot-gateway/gateway.yaml"]
OCI = ["title", "description", "version", "revision", "source"]
# ctest selections the build stage may make, each explained in the Dockerfile.
ALLOWED_EXCLUSIONS = {("--label-exclude", "^(kubernetes|image)$"),
                      ("--exclude-regex", "^proto_check_breaking$")}
# RUN_TESTS=false runs these instead of the README's steps (no else: the step is skipped).
GATEWAY_ONLY = {"scripts/install-deps.sh": "scripts/install-deps.sh --gateway-only",
                "scripts/build.sh": "scripts/build.sh --target copilot-gateway",
                "ctest": None}
RUN_TESTS_IF = re.compile(r'^if \[ "\$RUN_TESTS" = true \]; then (.*?);(?: else (.*?);)? fi$',
                          re.S)


def global_args(text):
    """ARGs before the first FROM: {name: default or None}."""
    args = {}
    for line in text.splitlines():
        if re.match(r"^\s*FROM\s", line, re.I):
            break
        m = re.match(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(\S*))?\s*$", line, re.I)
        if m:
            args[m.group(1)] = m.group(2)
    return args


def usr_variants(path):
    """A library path and its usrmerge twins (/lib/... is packaged as /usr/lib/... or the
    reverse), resolved and not."""
    out = []
    for p in (path, os.path.realpath(path)):
        out += [p, p[4:] if p.startswith("/usr/") else "/usr" + p]
    return list(dict.fromkeys(out))


def dpkg_owners(paths):
    """{path: package} for library paths, from one `dpkg-query -S` over all their variants."""
    candidates = {v: p for p in paths for v in usr_variants(p)}
    proc = subprocess.run(["dpkg-query", "-S"] + list(candidates), capture_output=True,
                          text=True)
    owners = {}
    for line in proc.stdout.splitlines():
        package, _, path = line.partition(": ")
        if path.strip() in candidates:
            owners.setdefault(candidates[path.strip()], package.split(":")[0].split(",")[0])
    unowned = [p for p in paths if p not in owners]
    fail_unless(not unowned, f"no Debian package owns {unowned}")
    return owners


def installed_packages():
    """{package: {priority, essential, depends: [[alternatives]]}} of every installed package,
    from one dpkg-query call."""
    fmt = "${Package}\\t${db:Status-Abbrev}\\t${Priority}\\t${Essential}\\t${Depends}, ${Pre-Depends}\\n"
    proc = subprocess.run(["dpkg-query", "-W", f"-f={fmt}"], capture_output=True, text=True)
    fail_unless(proc.returncode == 0, f"dpkg-query: {proc.stderr}")
    packages = {}
    for line in proc.stdout.splitlines():
        name, status, priority, essential, depends = (line.split("\t") + [""] * 5)[:5]
        if not status.startswith("ii"):
            continue
        clauses = []
        for clause in depends.split(","):
            alts = [a.strip().split(" ")[0].split(":")[0] for a in clause.split("|")]
            alts = [a for a in alts if a]
            if alts:
                clauses.append(alts)
        packages[name] = {"priority": priority, "essential": essential == "yes",
                          "depends": clauses}
    return packages


def depends_closure(packages, installed):
    """The packages and everything their Depends/Pre-Depends pull in (installed ones)."""
    seen, todo = set(), list(packages)
    while todo:
        p = todo.pop()
        if p in seen or p not in installed:
            continue
        seen.add(p)
        for alts in installed[p]["depends"]:
            present = [a for a in alts if a in installed]
            if present:
                todo.append(present[0])
    return seen


class Dockerfile:
    def __init__(self, repo, gateway, npm, sanitizer=None):
        self.repo, self.gateway, self.npm = repo, gateway, npm
        self.sanitizer = sanitizer
        with open(os.path.join(repo, "Dockerfile"), encoding="utf-8") as f:
            self.text = f.read()
        self.stages = dockerfile_stages(self.text)
        self.build = self.stages[0]
        self.runtime = self.stages[-1]

    def runs(self, stage):
        return [rest for _, word, rest in stage["instructions"] if word == "RUN"]

    def tested_runs(self):
        """The build stage's RUNs as RUN_TESTS=true runs them; checks the RUN_TESTS=false
        branches against GATEWAY_ONLY."""
        args = {rest.split("=")[0]: rest.split("=", 1)[1] if "=" in rest else None
                for _, w, rest in self.build["instructions"] if w == "ARG"}
        fail_unless(args.get("RUN_TESTS") == "true",
                    f"the build stage's ARG RUN_TESTS defaults to {args.get('RUN_TESTS')}, "
                    "not true")
        runs = []
        for run in self.runs(self.build):
            m = RUN_TESTS_IF.match(" ".join(run.split()))
            if not m:
                runs.append(run)
                continue
            tested, other = m.group(1), m.group(2)
            key = "ctest" if tested.startswith("ctest ") else tested
            fail_unless(key in GATEWAY_ONLY, f"RUN {run}: only the README's steps depend on "
                        "RUN_TESTS")
            fail_unless(other == GATEWAY_ONLY[key], f"with RUN_TESTS=false, {key} runs "
                        f"{other!r}, not {GATEWAY_ONLY[key]!r}")
            runs.append(tested)
        return runs

    def lint(self):
        node = shutil.which("node")
        fail_unless(node, "node not found")
        proc = subprocess.run([node, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "lint_dockerfile.js"), self.npm,
                               os.path.join(self.repo, "Dockerfile")],
                              capture_output=True, text=True)
        print(proc.stdout.rstrip())
        fail_unless(proc.returncode == 0, f"the linters found issues: {proc.stderr.strip()}")
        return "dockerfilelint and dockerfile-utils: no issue"

    def stages_and_base(self):
        fail_unless(len(self.stages) >= 2, "not multi-stage")
        base_arg = global_args(self.text).get("BASE_IMAGE")
        fail_unless(base_arg == BASE, f"ARG BASE_IMAGE defaults to {base_arg}, not {BASE}")
        for stage in self.stages:
            fail_unless(stage["from"] == "${BASE_IMAGE}", f"stage {stage['name']} is FROM "
                        f"{stage['from']}, not ${{BASE_IMAGE}} ({BASE})")
        fail_unless(self.build["name"] and self.runtime["name"] and
                    self.build["name"] != self.runtime["name"], "stages are not named")
        return f"{len(self.stages)} stages on {BASE}: " + ", ".join(s["name"] for s in self.stages)

    def build_commands(self):
        with open(os.path.join(self.repo, "scripts", "test.sh"), encoding="utf-8") as f:
            test_sh = f.read()
        with open(os.path.join(self.repo, "README.md"), encoding="utf-8") as f:
            readme = f.read()
        fail_unless("scripts/test.sh" in readme, "README does not name scripts/test.sh")
        runs = self.tested_runs()
        steps = []
        for script in ("scripts/install-deps.sh", "scripts/build.sh"):
            fail_unless(re.search(rf"^{re.escape(script)}\b", test_sh, re.M),
                        f"scripts/test.sh does not run {script}")
            fail_unless(script in runs, f"the build stage does not RUN {script} alone")
            steps.append(runs.index(script))
        ctests = [r for r in runs if r.startswith("ctest ")]
        fail_unless(len(ctests) == 1, "the build stage does not run ctest once")
        steps.append(runs.index(ctests[0]))
        fail_unless(steps == sorted(steps), "install-deps, build and ctest are not in that order")
        words = shlex.split(ctests[0])
        want = re.search(r"^ctest --test-dir \"\$\{BUILD_DIR:-([^}]+)\}\" (.*?)\\?$", test_sh, re.M)
        fail_unless(want, "scripts/test.sh has no ctest --test-dir line")
        fail_unless(words[1:3] == ["--test-dir", want.group(1)],
                    f"ctest runs {words[1:3]}, scripts/test.sh --test-dir {want.group(1)}")
        for option in shlex.split(want.group(2)):
            if option.startswith("--"):
                fail_unless(option in words, f"ctest lacks scripts/test.sh's {option}")
        timeout = re.search(r"--timeout (\d+)", want.group(2))
        fail_unless(timeout and f"--timeout {timeout.group(1)}" in ctests[0],
                    "ctest --timeout differs from scripts/test.sh")
        selections = set()
        for i, w in enumerate(words):
            if w in ("-E", "--exclude-regex", "-LE", "--label-exclude", "-R", "--tests-regex",
                     "-L", "--label-regex"):
                long = {"-E": "--exclude-regex", "-LE": "--label-exclude", "-R": "--tests-regex",
                        "-L": "--label-regex"}.get(w, w)
                selections.add((long, words[i + 1]))
        fail_unless(selections <= ALLOWED_EXCLUSIONS,
                    f"ctest selections {sorted(selections - ALLOWED_EXCLUSIONS)} are not the "
                    "documented exclusions")
        return f"RUN {', '.join(runs[s].split()[0] for s in steps)} as scripts/test.sh; " \
               f"excluded: {', '.join(v for _, v in sorted(selections)) or 'nothing'}"

    def runtime_packages(self):
        installs = [r for r in self.runs(self.runtime) if "apt-get install" in r]
        fail_unless(len(installs) == 1, "the runtime stage has not exactly one apt-get install")
        run = installs[0]
        fail_unless("--no-install-recommends" in run, "apt-get install without "
                    "--no-install-recommends")
        fail_unless("apt-get update" in run and "rm -rf /var/lib/apt/lists/*" in run,
                    "apt-get update and rm -rf /var/lib/apt/lists/* not in the install's layer")
        words = run.split("apt-get install", 1)[1].split("&&")[0].split()
        listed = {w for w in words if not w.startswith("-")}
        fail_unless(listed, "no packages listed")
        if self.sanitizer:
            return (f"listed {len(listed)}; not compared with the libraries of this tree's "
                    f"binary (-fsanitize={self.sanitizer}, not the binary the image ships)")

        proc = subprocess.run(["ldd", self.gateway], capture_output=True, text=True)
        fail_unless(proc.returncode == 0, f"ldd {self.gateway}: {proc.stderr}")
        libs = {}
        for line in proc.stdout.splitlines():
            m = re.match(r"\s*(\S+) => (\S+)", line)
            if m:
                fail_unless(m.group(2) != "not", f"{m.group(1)} not found")
                libs[m.group(1)] = m.group(2)
        fail_unless(libs, "ldd listed no libraries")
        needed_direct = set()
        proc = subprocess.run(["readelf", "-d", self.gateway], capture_output=True, text=True)
        for m in re.finditer(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", proc.stdout):
            needed_direct.add(m.group(1))
        by_path = dpkg_owners(sorted(set(libs.values())))
        owners = {lib: by_path[path] for lib, path in libs.items()}
        installed = installed_packages()
        # What every debian:bookworm-slim has: the Essential and Priority: required packages
        # and their dependencies.
        base = depends_closure([p for p, i in installed.items() if i["essential"] or
                                i["priority"] == "required"], installed)
        closure = depends_closure(listed, installed)
        missing, direct_missing = [], []
        for lib, package in sorted(owners.items()):
            required = package in base
            if lib in needed_direct and package not in listed and not required:
                direct_missing.append(f"{package} ({lib})")
            if package not in closure and not required:
                missing.append(f"{package} ({lib})")
        fail_unless(not direct_missing, "packages of the binary's own NEEDED libraries not "
                    f"listed: {', '.join(direct_missing)}")
        fail_unless(not missing, f"libraries whose packages nothing installs: {', '.join(missing)}")
        used = set(owners.values())
        extra = sorted(p for p in listed - {"ca-certificates"}
                       if p not in used)
        fail_unless(not extra, f"listed but no library of the binary is in them: {extra}")
        fail_unless("ca-certificates" in listed, "ca-certificates (TLS to the Haufe API)")
        return (f"{len(libs)} libraries from {len(used)} packages; listed {len(listed)}: "
                f"{' '.join(sorted(listed))}")

    def user(self):
        user = self.runtime.get("USER", "")
        m = re.fullmatch(r"(\d+):(\d+)", user)
        fail_unless(m and int(m.group(1)) != 0 and int(m.group(2)) != 0,
                    f"USER {user!r} is not numeric UID:GID, non-root")
        uid, gid = m.groups()
        runs = " ".join(self.runs(self.runtime))
        fail_unless(re.search(rf"groupadd\b[^&]*--gid {gid}\b", runs) and
                    re.search(rf"useradd\b[^&]*--uid {uid}\b[^&]*--gid {gid}\b", runs),
                    f"no groupadd --gid {gid} / useradd --uid {uid} --gid {gid}")
        words = [w for _, w, _ in self.runtime["instructions"]]
        fail_unless(words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN"),
                    "a RUN comes after USER")
        return f"USER {user}"

    def runtime_interface(self):
        fail_unless(self.runtime.get("ENTRYPOINT") == ENTRYPOINT,
                    f"ENTRYPOINT {self.runtime.get('ENTRYPOINT')}, wanted {ENTRYPOINT}")
        fail_unless(self.runtime.get("CMD") == CMD, f"CMD {self.runtime.get('CMD')}, wanted {CMD}")
        copies = [rest for _, w, rest in self.runtime["instructions"] if w == "COPY"]
        fail_unless(any(c.startswith(f"--from={self.build['name']} ") and
                        c.split()[-1] == ENTRYPOINT[0] for c in copies),
                    f"{ENTRYPOINT[0]} is not copied from the {self.build['name']} stage")
        exposed = sorted(self.runtime.get("EXPOSE", []))
        fail_unless(exposed == ["50051", "9464"], f"EXPOSE {exposed}")
        fail_unless(self.runtime.get("STOPSIGNAL") == "SIGTERM", "STOPSIGNAL SIGTERM")
        words = [w for _, w, _ in self.runtime["instructions"]]
        fail_unless("VOLUME" not in words, "VOLUME (the image writes nothing)")
        fail_unless("ADD" not in " ".join(words), "ADD (use COPY)")
        return f"ENTRYPOINT {ENTRYPOINT} CMD {CMD}; EXPOSE {' '.join(exposed)}; STOPSIGNAL SIGTERM"

    def labels(self):
        text = " ".join(rest for _, w, rest in self.runtime["instructions"] if w == "LABEL")
        for key in OCI:
            fail_unless(f"org.opencontainers.image.{key}=" in text, f"LABEL org.opencontainers."
                        f"image.{key} missing")
        version = project_version(self.repo)
        args = {rest.split("=")[0]: rest.split("=", 1)[1] if "=" in rest else None
                for _, w, rest in self.runtime["instructions"] if w == "ARG"}
        fail_unless(args.get("VERSION") == version,
                    f"ARG VERSION={args.get('VERSION')} is not the project version {version}")
        fail_unless('org.opencontainers.image.version="${VERSION}"' in text,
                    "the version label is not ${VERSION}")
        return f"OCI labels {', '.join(OCI)}; version {version}"

    def dockerignore(self):
        path = os.path.join(self.repo, ".dockerignore")
        fail_unless(os.path.exists(path), "no .dockerignore")
        with open(path, encoding="utf-8") as f:
            patterns = {l.strip() for l in f if l.strip() and not l.startswith("#")}
        for want in (".git", "node_modules/"):
            fail_unless(want in patterns, f".dockerignore lacks {want}")
        fail_unless(patterns & {"build/", "build", "build*/", "build*"},
                    ".dockerignore lacks the build trees")
        return f"{len(patterns)} patterns, .git, build trees and node_modules among them"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--npm", required=True)
    parser.add_argument("--sanitizer", help="the binary is from a sanitizer tree (see above)")
    args = parser.parse_args()
    try:
        d = Dockerfile(args.repo, args.gateway, args.npm, args.sanitizer)
    except (CheckError, OSError) as e:
        print(f"FAIL: {e}")
        print("0 passed, 1 failed")
        return 1
    return run_checks([
        ("linters", d.lint), ("stages", d.stages_and_base), ("build commands", d.build_commands),
        ("runtime packages", d.runtime_packages), ("user", d.user),
        ("entrypoint", d.runtime_interface), ("labels", d.labels),
        (".dockerignore", d.dockerignore),
    ])


if __name__ == "__main__":
    sys.exit(main())
