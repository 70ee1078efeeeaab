"""The package layering holds: lower layers never import higher ones, and modules form no import cycle.

Layers, lowest first: ``tools`` (ingest, measurement, DICOM, reports, the anatomy registry), ``vlm``,
``training``, ``assistant``, ``ui``. Function-level imports count: they hide a cycle, they do not remove it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("tools", "vlm", "training", "assistant", "ui")

# Cycles still being untangled, each as the set of modules involved. The test fails when a new cycle
# appears, and also when a listed one is gone, so this list only shrinks.
KNOWN_CYCLES: list[frozenset[str]] = []
KNOWN_UPWARD: set[tuple[str, str]] = set()


def import_graph(root: Path = ROOT) -> nx.DiGraph:
    """Edges from each project module to the project modules it imports, at any depth of the file."""
    modules = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
               for layer in LAYERS for p in (root / layer).rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = nx.DiGraph()
    for module, path in modules.items():
        graph.add_node(module)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # "from pkg import submodule" depends on the submodule, not on the package's __init__
                submodules = [f"{node.module}.{alias.name}" for alias in node.names]
                targets = [name for name in submodules if name in modules] or [node.module]
            else:
                continue
            for target in filter(None, map(resolve, targets)):
                if target != module:
                    graph.add_edge(module, target)
    return graph


def _layer(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def test_no_lower_layer_imports_a_higher_one():
    upward = {(a, b) for a, b in import_graph().edges if _layer(a) < _layer(b)}
    assert upward - KNOWN_UPWARD == set(), f"new upward imports: {sorted(upward - KNOWN_UPWARD)}"
    assert KNOWN_UPWARD - upward == set(), f"fixed, remove from KNOWN_UPWARD: {sorted(KNOWN_UPWARD - upward)}"


def test_no_new_import_cycle():
    cycles = {frozenset(group) for group in nx.strongly_connected_components(import_graph()) if len(group) > 1}
    known = set(KNOWN_CYCLES)
    assert cycles - known == set(), f"new import cycles: {[sorted(c) for c in cycles - known]}"
    assert known - cycles == set(), f"untangled, remove from KNOWN_CYCLES: {[sorted(c) for c in known - cycles]}"


def test_the_checker_finds_a_cycle_hidden_in_a_function(tmp_path):
    for layer in LAYERS:
        (tmp_path / layer).mkdir()
    (tmp_path / "tools" / "measure.py").write_text("def run():\n    from training.fit import fit\n")
    (tmp_path / "training" / "fit.py").write_text("from tools import measure\n")
    graph = import_graph(tmp_path)
    assert graph.has_edge("tools.measure", "training.fit")  # upward, and only inside a function
    assert {"tools.measure", "training.fit"} in [set(c) for c in nx.strongly_connected_components(graph)]
