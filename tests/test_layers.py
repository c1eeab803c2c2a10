"""The layer contract (issue 24): which part of Shammie may import which, checked on the source.

Every `import` and `from ... import` of the five packages is read with `ast`, imports inside
functions included (an import moved into a function to dodge a cycle is still a cycle). Layers,
lowest first (docs/architecture.md has the picture):

0. infrastructure: `shammie.pipeline` (stage, runner, options, storage, job directory, parallel,
   partitioned, ray_runtime, warc reading, lineage, the stage registry: it names the stages as
   "module:Class" strings, imported when used): all of `pipeline/`, so no package cycle exists;
1. the store's format and reader: what the shard stage writes and the training library reads;
2. the stages (`filters` with the crawl stage, `dedup`, the store-building and export modules of
   `mixing`) and, beside them and separate from them, the training library (`MixtureDataset`,
   mixers, rules, callbacks);
3. the command line and jobs (`shammie.jobs`).

A module may import its own layer or a lower one; the stages and the training library never
import each other (a trainer's install must not need the crawl, and the reverse). Today's
exceptions are listed in ALLOWED with the reason; the test fails when a new one appears, and when
a listed one is gone (so the list only shrinks). No module cycle exists, in any layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "filters", "dedup", "mixing", "jobs")
STORE_FORMAT = {"mixing.store_format", "mixing.tokenizer", "mixing.errors", "mixing.store"}
TRAINING = {"mixing." + m for m in ("dataset", "mixer", "rules", "losses", "budgets", "schedule", "distributed",
                                    "feedback", "hf", "lightning", "shm", "log", "state", "mix_cli")}
RANK = {"infrastructure": 0, "store format": 1, "stages": 2, "training": 2, "jobs": 3}

# (importer, imported): why it is allowed for now
ALLOWED = {
    ("mixing.store", "mixing.shard_stage"):
        "`shammie.mixing.store.build_store`, the documented Python entry point next to `open_store`, "
        "builds through the shard stage (imported when called); it belongs in the stage layer",
}


def layer(module: str) -> str:
    if module.startswith("jobs"):
        return "jobs"
    if module.startswith("pipeline"):
        return "infrastructure"
    if module in STORE_FORMAT:
        return "store format"
    if module in TRAINING:
        return "training"
    return "stages"


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).glob("*.py")):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


def imports() -> dict[str, set[str]]:
    """module -> the Shammie modules it imports anywhere in its source (`shammie.` prefix dropped)."""
    known = modules()
    graph = {}
    for name, path in known.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.removeprefix("shammie.") for a in node.names if a.name.startswith("shammie.")}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("shammie."):
                base = node.module.removeprefix("shammie.")
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
        graph[name] = {m for m in found if m in known and m != name}
    return graph


def test_imports_follow_the_layers():
    graph = imports()
    violations = {}
    for importer, targets in graph.items():
        for imported in targets:
            a, b = layer(importer), layer(imported)
            if a != b and RANK[b] >= RANK[a]:
                violations[(importer, imported)] = f"{a} imports {b}"
    new = {k: v for k, v in violations.items() if k not in ALLOWED}
    assert not new, "imports against the layers (docs/architecture.md): " + "; ".join(
        f"{i} -> {m} ({why})" for (i, m), why in sorted(new.items()))
    gone = set(ALLOWED) - set(violations)
    assert not gone, f"no longer violated, remove from ALLOWED: {sorted(gone)}"


def test_no_module_cycles_even_through_imports_inside_functions():
    graph = imports()
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_packages_have_no_cycle_through_the_crawl_stage():
    """pipeline/ (infrastructure) never imports filters/ (the FineWeb filters): only the crawl
    stage's modules, which sit in the stage layer, do."""
    graph = imports()
    for importer, targets in graph.items():
        if layer(importer) == "infrastructure":
            assert not {t for t in targets if t.startswith(("filters", "dedup", "mixing"))}, importer
