#!/usr/bin/env python3
"""Lists which top-level modules of a crate each module uses, and fails on a
cycle among them (STYLE.md: no module cycles inside a crate).

Usage: scripts/module-graph.py CRATE_DIR...   (e.g. host/core host/policy)

A module "uses" another when its code (comments excluded) names a path
`crate::other…`, or `super::…` from a nested module file. `super::` inside an
inline `mod tests` names the module itself and is not a use. Paths to items
of the crate root (`crate::Error` defined in lib.rs) are listed as `(root)`;
the root declares the modules, so it is left out of the cycle check.
"""

import os
import re
import sys

PATH = re.compile(r"\b(crate|super)::([A-Za-z_][A-Za-z0-9_]*)")
INLINE_MOD = re.compile(r"^\s*(pub(\([a-z]+\))?\s+)?mod\s+[a-z_0-9]+\s*\{")


def modules_of(src):
    """Top-level module names declared in lib.rs/main.rs."""
    root = next(
        (os.path.join(src, f) for f in ("lib.rs", "main.rs") if os.path.exists(os.path.join(src, f))),
        None,
    )
    names = set()
    for line in open(root, encoding="utf-8"):
        m = re.match(r"^\s*(pub(\([a-z]+\))?\s+)?mod\s+([a-z_0-9]+)\s*;", line)
        if m:
            names.add(m.group(3))
    return names


def file_module(src, path):
    """The module path of a file, as a list (empty: the crate root)."""
    rel = os.path.relpath(path, src)[: -len(".rs")].split(os.sep)
    if rel[-1] in ("lib", "main", "mod"):
        rel = rel[:-1]
    return rel


def uses(src, modules):
    graph = {m: set() for m in modules}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            module = file_module(src, path)
            if not module:
                continue
            top = module[0]
            depth = 0  # brace depth inside an inline module
            inline_at = []
            for line in open(path, encoding="utf-8"):
                code = line.split("//", 1)[0]
                if INLINE_MOD.match(code):
                    inline_at.append(depth)
                for kind, name in PATH.findall(code):
                    if kind == "crate":
                        target = name if name in modules else "(root)"
                    elif inline_at:
                        continue  # `super::` of an inline module: this module
                    else:
                        parent = module[:-1]
                        target = parent[0] if parent else (name if name in modules else "(root)")
                    if target != top and top in graph:
                        graph[top].add(target)
                depth += code.count("{") - code.count("}")
                while inline_at and depth <= inline_at[-1]:
                    inline_at.pop()
    return graph


def cycles(graph):
    found = []
    state = {}

    def visit(m, stack):
        state[m] = "open"
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if d == "(root)":
                continue
            if state.get(d) == "open":
                found.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d, stack)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    return found


def main():
    failed = False
    for crate in sys.argv[1:]:
        src = os.path.join(crate, "src")
        modules = modules_of(src)
        graph = uses(src, modules)
        print(f"{crate}:")
        for m in sorted(graph):
            deps = ", ".join(sorted(graph[m])) or "-"
            print(f"  {m} -> {deps}")
        for c in cycles(graph):
            failed = True
            print(f"  CYCLE: {' -> '.join(c)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
