#!/usr/bin/python3
"""Checks the gateway's layering against the graph written in docs/architecture.md.

The graph is the ```layers block there: one line per layer, "layer: the layers it may include".
For every file under server/<layer>/, each `#include "server/<other>/..."` must name its own layer
or one it may include; and the layer's CMake target (gateway_<layer>) must link every layer it
includes, PUBLIC when a header includes it (the includer's users need it too), and link no layer
the graph forbids. Prints each violation and exits 1 if there is any.

  scripts/check_layers.py          # run by scripts/test.sh
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
INCLUDE = re.compile(r'^\s*#\s*include\s+"server/([a-z_]+)/[^"]+"', re.M)


def read_graph():
    text = (ROOT / "docs/architecture.md").read_text()
    block = re.search(r"```layers\n(.*?)```", text, re.S)
    if not block:
        sys.exit("check_layers: no ```layers block in docs/architecture.md")
    graph = {}
    for line in block.group(1).splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        layer, _, allowed = line.partition(":")
        graph[layer.strip()] = set(allowed.split())
    for layer, allowed in graph.items():
        unknown = allowed - graph.keys()
        if unknown:
            sys.exit(f"check_layers: layer {layer} names unknown layers {sorted(unknown)}")
    return graph


def cmake_links(layer):
    """{linked layer: 'PUBLIC'|'PRIVATE'|'INTERFACE'} for gateway_<layer> in server/<layer>/."""
    directory = ROOT / "server" / layer
    texts = [p.read_text() for p in sorted(directory.glob("*.cmake"))]
    cmake = directory / "CMakeLists.txt"
    if cmake.exists():
        texts.append(cmake.read_text())
    elif layer == "common":
        texts.append((ROOT / "server/CMakeLists.txt").read_text())
    links = {}
    pattern = re.compile(r"target_link_libraries\(\s*gateway_" + layer + r"\s+(.*?)\)", re.S)
    for text in texts:
        for call in pattern.finditer(text):
            scope = "PUBLIC"  # CMake's default for the keyword-less form is close enough here
            for token in call.group(1).split():
                if token in ("PUBLIC", "PRIVATE", "INTERFACE"):
                    scope = token
                    continue
                name = re.fullmatch(r"gateway_([a-z]+)", token)
                if name:
                    links[name.group(1)] = scope
    return links


def main():
    graph = read_graph()
    problems = []
    layers_on_disk = {p.name for p in (ROOT / "server").iterdir() if p.is_dir()}
    for missing in sorted(layers_on_disk - graph.keys()):
        problems.append(f"server/{missing}/: not a layer in docs/architecture.md's graph")
    for layer in sorted(graph):
        from_headers, from_sources = set(), set()
        for path in sorted((ROOT / "server" / layer).glob("*")):
            if path.suffix not in (".h", ".cc"):
                continue
            for other in INCLUDE.findall(path.read_text()):
                if other == layer:
                    continue
                rel = path.relative_to(ROOT)
                if other not in graph[layer]:
                    problems.append(f"{rel}: includes server/{other}/, which {layer} may not")
                (from_headers if path.suffix == ".h" else from_sources).add(other)
        links = cmake_links(layer)
        for other in sorted(from_headers & graph[layer]):
            if links.get(other) != "PUBLIC":
                problems.append(f"gateway_{layer}: a header includes server/{other}/, so it must "
                                f"link gateway_{other} PUBLIC (links: {links.get(other, 'no')})")
        for other in sorted((from_sources - from_headers) & graph[layer]):
            if other not in links:
                problems.append(f"gateway_{layer}: includes server/{other}/ but does not link "
                                f"gateway_{other}")
        for other in sorted(set(links) - graph[layer] - {layer}):
            if other.startswith(layer):  # gateway_limits_redis and the like: its own pieces
                continue
            problems.append(f"gateway_{layer}: links gateway_{other}, which {layer} may not use")
    for problem in problems:
        print(f"check_layers: {problem}")
    if problems:
        print(f"check_layers: {len(problems)} violation(s) of docs/architecture.md's layers")
        return 1
    print(f"check_layers: {len(graph)} layers, every include and link follows the graph")
    return 0


if __name__ == "__main__":
    sys.exit(main())
