"""The package layering holds: lower layers never import higher ones, and modules form no import cycle.

Layers, lowest first: ``tools`` (ingest, measurement, DICOM, reports, the anatomy registry), ``vlm``,
``training``, ``assistant``, ``ui``. Function-level imports count: they hide a cycle, they do not remove it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

from tests.source_tree import NAMESPACE, PACKAGES, ROOT, module_name

# Cycles still being untangled, each as the set of modules involved. The test fails when a new cycle
# appears, and also when a listed one is gone, so this list only shrinks.
KNOWN_CYCLES: list[frozenset[str]] = []
KNOWN_UPWARD: set[tuple[str, str]] = set()


def import_graph(root: Path = ROOT) -> nx.DiGraph:
    """Edges from each project module to the project modules it imports, at any depth of the file."""
    modules = {module_name(p, root): p for layer in PACKAGES for p in (root / layer).rglob("*.py")}

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
    return PACKAGES.index(module.split(".")[1])


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
    for layer in PACKAGES:
        (tmp_path / layer).mkdir()
    (tmp_path / "tools" / "measure.py").write_text("def run():\n    from cardiovlm.training.fit import fit\n")
    (tmp_path / "training" / "fit.py").write_text("from cardiovlm.tools import measure\n")
    graph = import_graph(tmp_path)
    assert graph.has_edge("cardiovlm.tools.measure", "cardiovlm.training.fit")  # upward, only inside a function
    assert {"cardiovlm.tools.measure", "cardiovlm.training.fit"} in [
        set(c) for c in nx.strongly_connected_components(graph)]


def bare_imports(source: str) -> list[int]:
    """Lines importing a project package by its folder name (``import tools``, ``from ui.app import``)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        if any(name.split(".")[0] in PACKAGES for name in names):
            lines.append(node.lineno)
    return lines


def test_every_import_goes_through_the_installed_namespace():
    # The checkout's root is on sys.path when tests run, so "import tools.x" would still work here and
    # load a second copy of the module beside cardiovlm.tools.x (two registries, two settings objects).
    folders = [*PACKAGES, "tests", "benchmarks", "scripts"]
    found = {f"{path.relative_to(ROOT)}:{line}" for folder in folders for path in (ROOT / folder).rglob("*.py")
             for line in bare_imports(path.read_text(encoding="utf-8"))}
    assert not found, f"import these through {NAMESPACE}.: {sorted(found)}"
    assert bare_imports("import tools.quant\nfrom ui import app\nfrom cardiovlm.ui import app\n") == [1, 2]
