"""Each name has one home: code imports a class, function or value from the module that defines it.

A module that imports a name from another project module and is then itself imported for that name (a
re-export) gives the name two import paths, and the two drift apart (one is patched in a test, the other
is not; a reader cannot tell which is the real one). Only the facades in ``FACADES`` and the tool modules'
result types that the assistant's registry reads by name may do this. Checked:
``from M import name`` anywhere in a file (function-level imports too), ``module.name`` after
``import M`` / ``from P import module``, the dotted targets given to ``mock.patch`` and
``monkeypatch.setattr``, and imports marked as re-exports (``# noqa: F401`` on the import, ``__all__``,
``import x as x``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from cardiovlm.assistant.registry import OPTIONAL_TOOL, TOOL_LOCATIONS

ROOT = Path(__file__).resolve().parents[2]
# Folders whose files are checked; the first five are the packages, whose modules can be imported.
FOLDERS = ("assistant", "tools", "vlm", "training", "ui", "tests", "benchmarks", "scripts")
# The one installed namespace may prefix every import; the modules are still named by their folders.
NAMESPACE = "cardiovlm."

# Modules whose job is to gather names defined elsewhere for their users.
FACADES: dict[str, str] = {
    # The report store was split by concern into tools.reports.{records,ingest,terms,embedding,snippets,
    # files,store,retrieve_tool}; its users keep one import line for the whole store through this module.
    "tools.reports.api": "the report store's public face over its concern modules",
    # The model's public entry point, ``vlm.load(checkpoint_dir).run(study, instruction)``, as in nanoGPT.
    "vlm": "the VLM package's public API",
    # ``from training.phantoms import generate_case``: the phantom generator's one entry for scripts.
    "training.phantoms": "the phantom package's public API",
}

# Each tool module exposes its result type: the registry reads it there by name to validate the tool's
# results, so that one table, not every caller, says which type belongs to which tool.
REGISTRY_EXPORTS: frozenset[tuple[str, str]] = frozenset(
    (module.removeprefix(NAMESPACE), result) for module, _, result, _ in (*TOOL_LOCATIONS, OPTIONAL_TOOL))

# Re-exports still in use, as (module, name) -> the files that import the name there. Most are in files
# other engineers are editing now. The test fails when another file imports one of them and when a listed
# file no longer does, so this list only shrinks; when a (module, name) has no file left, drop its re-export.
PENDING: dict[tuple[str, str], frozenset[str]] = {
}

# Names a module marks for re-export (in ``__all__``, or imported unused with F401 silenced), whether or not
# another file imports them there yet; same rule: this set only shrinks.
MARKED_PENDING: frozenset[tuple[str, str]] = frozenset({
    ("assistant.evidence", "ToolOutcome"), ("assistant.evidence", "outcomes"),
    ("training.evaluate", "DICE_ROWS"), ("training.evaluate", "structure_group"),
    ("training.phantoms.generate", "FindingRequest"),
    ("training.train", "CurriculumSamples"), ("training.train", "TrainConfig"), ("training.train", "TrainError"),
    ("training.train", "load_config_file"),
})


@dataclass(frozen=True)
class Use:
    """One place that reaches ``name`` through ``module``, which only imported it from ``home``."""

    where: str  # "path:line" of the import, attribute or patch target
    module: str
    name: str
    home: str


@dataclass
class ModuleInfo:
    path: Path
    defined: set[str]  # bound by def, class, assignment, for, with or a non-project import
    imported: dict[str, tuple[str, str]]  # local name -> (project module, name there)
    marked: set[str]  # imported names this module marks as meant for re-export (__all__, or unused + noqa)


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _module_name(path: Path, root: Path) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")


def _strip(name: str) -> str:
    return name.removeprefix(NAMESPACE)


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module name of ``from ... import``, relative imports resolved."""
    if not node.level:
        return _strip(node.module or "")
    parts = module.split(".") if is_package else module.split(".")[:-1]
    base = parts[: len(parts) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _bound_names(target: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}


def _top_level(tree: ast.Module):
    """Module-level statements, looking into if/try/with blocks (conditional definitions still bind)."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                stack.extend(getattr(node, field, []))
        elif isinstance(node, ast.ExceptHandler):
            stack.extend(node.body)


@cache  # parsing every file takes seconds; the tests share one read of the tree
def scan(root: Path = ROOT) -> tuple[dict[str, ModuleInfo], dict[str, ast.Module]]:
    files = [p for folder in FOLDERS if (root / folder).is_dir() for p in sorted((root / folder).rglob("*.py"))]
    trees = {_rel(p, root): ast.parse(p.read_text(encoding="utf-8")) for p in files}
    paths = {_module_name(root / rel, root): root / rel for rel in trees}
    modules: dict[str, ModuleInfo] = {}
    for name, path in paths.items():
        tree = trees[_rel(path, root)]
        lines = path.read_text(encoding="utf-8").splitlines()
        info = ModuleInfo(path, set(), {}, set())
        silenced: set[str] = set()
        for node in _top_level(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                info.defined.add(node.name)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    info.defined |= _bound_names(target)
                if any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
                    info.marked |= {e.value for e in ast.walk(node.value)
                                    if isinstance(e, ast.Constant) and isinstance(e.value, str)}
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                info.defined |= _bound_names(node.target)
            elif isinstance(node, (ast.For, ast.AsyncFor)):
                info.defined |= _bound_names(node.target)
            elif isinstance(node, ast.Import):
                info.defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(node, name, path.name == "__init__.py")
                for alias in node.names:
                    local = alias.asname or alias.name
                    project = source in paths and f"{source}.{alias.name}" not in paths
                    if not project:
                        info.defined.add(local)  # a third-party name or a submodule: not a re-export
                        continue
                    info.imported[local] = (source, alias.name)
                    line = lines[alias.lineno - 1] + lines[node.lineno - 1]  # the alias's and the from line
                    if ("noqa" in line and "F401" in line) or alias.asname == alias.name:
                        silenced.add(local)
        info.defined -= set(info.imported)
        # a silenced import the module itself uses is not there for others
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        info.marked |= silenced - used
        modules[name] = info
    return modules, trees


def _home(modules: dict[str, ModuleInfo], module: str, name: str) -> str:
    """The module that defines ``name`` as seen from ``module``, following chains of re-exports."""
    seen = set()
    while name in modules[module].imported and (module, name) not in seen:
        seen.add((module, name))
        module, name = modules[module].imported[name]
    return module


def _reexport(modules: dict[str, ModuleInfo], module: str, name: str) -> str | None:
    """The home of ``name`` when ``module`` only imported it (and is not a facade); else None."""
    info = modules.get(module)
    if info is None or module in FACADES or name not in info.imported:
        return None
    return _home(modules, module, name)


def uses(root: Path = ROOT) -> list[Use]:
    """Every place in the checked folders that reaches a name through a module that only imported it."""
    modules, trees = scan(root)
    found: list[Use] = []
    for rel, tree in trees.items():
        here = _module_name(root / rel, root)
        aliases: dict[str, str] = {}  # local name -> project module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = _strip(alias.name)
                    if target in modules:
                        aliases[alias.asname or target.split(".")[0]] = target if alias.asname else target.split(".")[0]
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(node, here, rel.endswith("__init__.py"))
                for alias in node.names:
                    if f"{source}.{alias.name}" in modules:
                        aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
                    elif (home := _reexport(modules, source, alias.name)) is not None:
                        found.append(Use(f"{rel}:{node.lineno}", source, alias.name, home))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                dotted, inner = [node.attr], node.value
                while isinstance(inner, ast.Attribute):
                    dotted.insert(0, inner.attr)
                    inner = inner.value
                if isinstance(inner, ast.Name) and inner.id in aliases:
                    module = ".".join([aliases[inner.id], *dotted[:-1]])
                    if (home := _reexport(modules, module, node.attr)) is not None:
                        found.append(Use(f"{rel}:{node.lineno}", module, node.attr, home))
            elif isinstance(node, ast.Call) and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str) and "." in first.value:
                    # a patch target such as mock.patch("pkg.module.Name") or setattr("pkg.module.Name", ...)
                    module, _, name = _strip(first.value).rpartition(".")
                    if (home := _reexport(modules, module, name)) is not None:
                        found.append(Use(f"{rel}:{node.lineno}", module, name, home))
    return found


def marked_reexports(root: Path = ROOT) -> list[tuple[str, str]]:
    """(module, name) that a package module marks as meant for re-export, facades left out.

    Test modules are left out: they import pytest fixtures from each other with ``# noqa: F401``.
    """
    modules, _ = scan(root)
    return sorted((module, name) for module, info in modules.items()
                  if module not in FACADES and module.split(".")[0] in FOLDERS[:5]
                  for name in info.marked if name in info.imported)


def test_every_name_is_imported_from_its_home():
    found = uses()
    new = sorted(f"{u.where}: {u.name} from {u.module}; import it from {u.home}" for u in found
                 if u.where.partition(":")[0] not in PENDING.get((u.module, u.name), frozenset()))
    assert not new, "names imported through a module that only re-exports them:\n" + "\n".join(new)
    still = {(u.module, u.name, u.where.partition(":")[0]) for u in found}
    gone = sorted(f"{file} ({module}.{name})" for (module, name), files in PENDING.items() for file in files
                  if (module, name, file) not in still)
    assert not gone, f"imported from the home now, remove from PENDING: {gone}"


def test_no_module_marks_a_name_for_re_export_outside_the_facades():
    marked = set(marked_reexports())
    extra = sorted(f"{module}.{name}" for module, name in marked - MARKED_PENDING - REGISTRY_EXPORTS)
    assert not extra, f"re-exports outside FACADES (import the name from its home instead): {extra}"
    gone = sorted(f"{module}.{name}" for module, name in MARKED_PENDING - marked)
    assert not MARKED_PENDING & REGISTRY_EXPORTS
    assert not gone, f"no longer re-exported, remove from MARKED_PENDING: {gone}"


def test_the_facades_exist():
    modules, _ = scan()
    assert set(FACADES) <= set(modules), sorted(set(FACADES) - set(modules))


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    """A two-module project: ``tools.errors`` defines an error, ``tools.front`` uses it."""
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "__init__.py").write_text("")
    (tmp_path / "tools" / "errors.py").write_text("class BadInput(ValueError):\n    pass\n")
    (tmp_path / "tools" / "front.py").write_text(
        "from tools.errors import BadInput\n\n\ndef load(x):\n    raise BadInput(x)\n")
    (tmp_path / "tests").mkdir()
    return tmp_path


def test_a_caller_importing_from_the_home_passes(tiny_project: Path):
    (tiny_project / "tests" / "test_a.py").write_text(
        "from tools.errors import BadInput\nfrom tools.front import load\n")
    assert uses(tiny_project) == []
    assert marked_reexports(tiny_project) == []


@pytest.mark.parametrize("line", [
    "from tools.front import BadInput",
    "from cardiovlm.tools.front import BadInput",
    "import tools.front\nx = tools.front.BadInput",
    "from tools import front\nx = front.BadInput",
    "from unittest import mock\nmock.patch('tools.front.BadInput')",
])
def test_a_caller_importing_through_a_re_export_is_found(tiny_project: Path, line: str):
    (tiny_project / "tests" / "test_a.py").write_text(line + "\n")
    found = uses(tiny_project)
    assert [(u.module, u.name, u.home) for u in found] == [("tools.front", "BadInput", "tools.errors")]
    assert found[0].where.startswith("tests/test_a.py:")


def test_a_name_marked_for_re_export_is_found(tiny_project: Path):
    (tiny_project / "tools" / "front.py").write_text("from tools.errors import BadInput  # noqa: F401\n")
    assert marked_reexports(tiny_project) == [("tools.front", "BadInput")]
