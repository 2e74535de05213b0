#!/usr/bin/env python3
"""Checks that the crate graph is one way, as DESIGN.md and the README draw it:

    ballast (binary) -> agent -> control, l4, proxy -> l7 -> ballast-common

- each workspace crate depends (normal and build edges) only on the crates listed for
  it in ALLOWED, so a new edge between our crates fails here until it is argued for;
- the pure L7 crate pulls in neither tokio nor aya, nor the eBPF build, anywhere below
  it (features resolved for that crate alone, as `cargo build -p` does);
- the control crate reaches no userspace crate;
- nothing but the binary depends on the agent crate;
- the test kit is only ever a dev-dependency;
- the fuzz crate builds without aya, so without bpf-linker;
- inside each crate, no two top-level modules import each other, directly or around a
  circle (read from `crate::x` / `super::x` paths in the code, tests left out), so each
  module can be read with only what it imports.

Exit 0 when all hold; otherwise each broken rule is printed and the exit is 1.
Run from anywhere: `python3 scripts/check_deps.py`.
"""
import glob
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Workspace crate -> the workspace crates it may depend on (normal and build edges).
ALLOWED = {
    "ballast-common": set(),
    "ballast-ebpf": {"ballast-common"},
    "ballast-control": set(),
    "ballast-l7": {"ballast-common"},
    "ballast-l4": {"ballast-common", "ballast-ebpf"},
    "ballast-proxy": {"ballast-l7"},
    "ballast-agent": {"ballast-control", "ballast-l4", "ballast-l7", "ballast-proxy"},
    "ballast": {"ballast-agent", "ballast-control", "ballast-l4", "ballast-l7", "ballast-proxy"},
    "ballast-testkit": set(),
}
USERSPACE = {"ballast", "ballast-agent", "ballast-l4", "ballast-l7", "ballast-proxy", "ballast-testkit"}


def run(*args, cwd=ROOT):
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout


def closure(package, manifest=None):
    """Names of every package below `package` through normal and build edges, with
    features resolved for that package alone."""
    args = ["cargo", "tree", "-q", "-e", "normal,build", "--prefix", "none", "-f", "{p}"]
    if manifest:
        args += ["--manifest-path", manifest]
    else:
        args += ["-p", package]
    return {line.split()[0] for line in run(*args).splitlines() if line.strip()}


def module_cycles(src):
    """Cycles among the top-level modules of the crate whose sources are in `src`."""
    texts = {}
    for f in glob.glob(os.path.join(src, "*.rs")) + glob.glob(os.path.join(src, "*", "mod.rs")):
        folder = f.endswith("mod.rs")
        name = os.path.basename(os.path.dirname(f)) if folder else os.path.basename(f)[:-3]
        if name in ("lib", "main"):
            continue
        files = glob.glob(os.path.join(os.path.dirname(f), "**", "*.rs"), recursive=True) if folder else [f]
        # `super::` names the crate root only in a top-level module's own file; deeper, it
        # names a module inside the folder.
        texts[name] = [(open(x).read().split("#[cfg(test)]")[0], x == f) for x in files]
    edges = {m: set() for m in texts}
    for m, parts in texts.items():
        named = []
        for text, top in parts:
            root = "(?:crate|super)" if top else "crate"
            named += re.findall(root + r"::([a-z_0-9]+)", text)
            for group in re.findall(r"use " + root + r"::\{([^;]*)\};", text, re.S):
                named += re.findall(r"(?:^|[,{\s])([a-z_0-9]+)(?=::|\s*[,}]|$)", group)
        edges[m] = {x for x in named if x in texts and x != m}
    cycles = set()

    def walk(node, path):
        for nxt in edges[node]:
            if nxt in path:
                ring = path[path.index(nxt):]
                first = ring.index(min(ring))
                ring = ring[first:] + ring[:first]
                cycles.add(" -> ".join(ring + [ring[0]]))
            elif len(path) < len(edges):
                walk(nxt, path + [nxt])

    for m in sorted(edges):
        walk(m, [m])
    return sorted(cycles)


def main():
    problems = []
    meta = json.loads(run("cargo", "metadata", "--format-version", "1", "--no-deps"))
    ours = {p["name"] for p in meta["packages"]}
    unknown = ours - set(ALLOWED)
    if unknown:
        problems.append(f"crates not placed in the graph (add them to ALLOWED): {sorted(unknown)}")
    for p in meta["packages"]:
        name = p["name"]
        for d in p["dependencies"]:
            dep, kind = d["name"], d["kind"]
            if dep not in ours:
                continue
            if dep == "ballast-testkit" and kind != "dev":
                problems.append(f"{name} depends on ballast-testkit as a {kind or 'normal'} dependency; "
                                "the test kit is a dev-dependency only")
            if dep == "ballast-agent" and name != "ballast":
                problems.append(f"{name} depends on ballast-agent; only the binary may")
            if kind != "dev" and dep not in ALLOWED.get(name, set()):
                problems.append(f"{name} -> {dep} is not an allowed edge ({kind or 'normal'})")

    l7 = closure("ballast-l7")
    for bad in sorted(x for x in l7 if x == "tokio" or x.startswith("aya") or x == "ballast-ebpf"):
        problems.append(f"the pure L7 crate pulls in {bad}")
    control = closure("ballast-control")
    for bad in sorted(control & USERSPACE):
        problems.append(f"the control crate pulls in the userspace crate {bad}")
    fuzz = closure(None, manifest=os.path.join(ROOT, "userspace/fuzz/Cargo.toml"))
    for bad in sorted(x for x in fuzz if x.startswith("aya") or x == "ballast-ebpf"):
        problems.append(f"the fuzz crate pulls in {bad} (it must build without bpf-linker)")

    for p in meta["packages"]:
        src = os.path.join(os.path.dirname(p["manifest_path"]), "src")
        for cycle in module_cycles(src):
            problems.append(f"{p['name']}: modules import each other: {cycle}")

    for p in problems:
        print(f"check_deps: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"check_deps: ok ({len(ours)} crates; l7 below it: {len(l7)} packages, no tokio/aya)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
