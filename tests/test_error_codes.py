"""Every error the project defines derives from the one root, CardioVLMError, and names its own stable code.

Callers route on ``err.code`` (the assistant's planner, the UI), so an error outside the root or
without a code of its own is one a caller can only tell apart by the words of its message. The
classes are found by reading the source (``ast``) of every module of the five packages, so the
check is fast, imports nothing heavy (torch, gradio) and also sees modules whose optional
dependencies are not installed. A control test checks the reading against the imported classes.

``PENDING`` lists the errors in other owners' files that are not fixed yet, each with the change it
needs. It can only shrink: the test fails when a listed error is now fine, or no longer exists.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from tests.source_tree import NAMESPACE, ROOT, module_name, source_files

ROOT_ERROR = "cardiovlm.tools.core.errors.CardioVLMError"
# Libraries whose import costs seconds (torch alone about 8 s here); their bases are judged by name.
HEAVY = frozenset({"torch", "gradio", "monai", "transformers", "sentence_transformers"})
CODE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")  # snake_case words, dotted "area.reason"

# Qualified class name -> the change its owner still has to make. Only shrinks (see the module docstring).
# "root" = derive from cardiovlm.tools.core.errors.CardioVLMError (``from cardiovlm.tools.core.errors import
# CardioVLMError``).
PENDING: dict[str, str] = {}


@dataclass(frozen=True)
class ErrorClass:
    qualname: str  # module.Class
    where: str  # path:line, for the failure message
    bases: tuple[str, ...]  # resolved qualified names; builtins as "builtins.ValueError"
    code: object  # the literal assigned to ``code`` in the class body, None when it has none


@cache
def _modules() -> dict[str, tuple[Path, ast.Module]]:
    return {module_name(p): (p, ast.parse(p.read_text(encoding="utf-8"), filename=str(p))) for p in source_files()}


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


@cache
def _names(module: str) -> dict[str, str]:
    """Names bound at the top of ``module`` by a class or an import -> the qualified name they stand for."""
    path, tree = _modules()[module]
    out: dict[str, str] = {}
    for node in ast.walk(tree):  # imports inside functions count too: a class may be built there
        if isinstance(node, ast.ImportFrom):
            source = _absolute(module, path.name == "__init__.py", node)
            for alias in node.names:
                out[alias.asname or alias.name] = f"{source}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:  # "import a.b as c" binds c to a.b; "import a.b" binds a
                out[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            out[node.name] = f"{module}.{node.name}"
    return out


def _canonical(qualname: str, depth: int = 0) -> str:
    """Follow re-exports (``from cardiovlm.tools.ingest.study import StudyError`` ->
    ``cardiovlm.tools.ingest.study_errors.StudyError``)."""
    module, _, name = qualname.rpartition(".")
    if module not in _modules() or depth > 10:
        return qualname
    target = _names(module).get(name)
    return qualname if target is None or target == qualname else _canonical(target, depth + 1)


def _base(expr: ast.expr, module: str) -> str | None:
    if isinstance(expr, ast.Name):
        if expr.id in _names(module):
            return _canonical(_names(module)[expr.id])
        return f"builtins.{expr.id}" if hasattr(builtins, expr.id) else None
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
        owner = _names(module).get(expr.value.id, expr.value.id)
        return _canonical(f"{owner}.{expr.attr}")
    return None


def _own_code(node: ast.ClassDef) -> object:
    for stmt in node.body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(stmt, ast.AnnAssign) \
            else []
        value = getattr(stmt, "value", None)
        if any(isinstance(t, ast.Name) and t.id == "code" for t in targets) and isinstance(value, ast.Constant):
            return value.value
    return None


@cache
def _classes() -> dict[str, ErrorClass]:
    """Every class of the five packages (top level or nested), exception or not."""
    out = {}
    for module, (path, tree) in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = tuple(b for b in (_base(e, module) for e in node.bases) if b)
                qualname = f"{module}.{node.name}"
                out[qualname] = ErrorClass(qualname, f"{path.relative_to(ROOT)}:{node.lineno}", bases, _own_code(node))
    return out


def _ancestors(qualname: str, seen: frozenset[str] = frozenset()) -> set[str]:
    found = _classes().get(qualname)
    if found is None or qualname in seen:
        return set()
    out = set(found.bases)
    for base in found.bases:
        out |= _ancestors(base, seen | {qualname})
    return out


def _is_exception(qualname: str) -> bool:
    for ancestor in {qualname} | _ancestors(qualname):
        module, _, name = ancestor.rpartition(".")
        if module == "builtins":
            kind = getattr(builtins, name, None)
            if isinstance(kind, type) and issubclass(kind, BaseException):
                return True
        elif module.split(".")[0] in HEAVY:  # torch.nn.Module etc.: named as exceptions are, or not one
            if name.endswith(("Error", "Exception", "Warning")):
                return True
        elif module.split(".")[0] != NAMESPACE and ancestor not in _classes():
            try:  # a third-party base (e.g. an HTTP library's error): ask the library itself
                kind = getattr(importlib.import_module(module), name, None)
            except ImportError:
                continue
            if isinstance(kind, type) and issubclass(kind, BaseException):
                return True
    return False


@cache
def project_errors() -> dict[str, ErrorClass]:
    """The exceptions the project defines. A private one (``_Name``) is module-internal control flow that never
    reaches a caller, so it is left out."""
    return {q: c for q, c in _classes().items() if _is_exception(q) and not q.rpartition(".")[2].startswith("_")}


def problems(err: ErrorClass, codes: dict[object, list[str]]) -> list[str]:
    out = []
    ancestors = set(err.bases).union(*(_ancestors(b) for b in err.bases))
    if err.qualname != ROOT_ERROR and ROOT_ERROR not in ancestors:
        out.append("not derived from cardiovlm.tools.core.errors.CardioVLMError")
    if err.code is None:
        out.append("no code of its own")
    elif not isinstance(err.code, str) or not CODE.match(err.code):
        out.append(f"code {err.code!r} is not dotted snake_case")
    elif len(codes[err.code]) > 1:
        out.append(f"code {err.code!r} shared with {', '.join(q for q in codes[err.code] if q != err.qualname)}")
    return out


def all_problems() -> dict[str, list[str]]:
    errors = project_errors()
    codes: dict[object, list[str]] = {}
    for err in errors.values():
        if err.code is not None:
            codes.setdefault(err.code, []).append(err.qualname)
    return {q: p for q, e in errors.items() if (p := problems(e, codes))}


def test_every_error_is_under_the_root_with_its_own_code():
    found = all_problems()
    new = [f"{q} ({project_errors()[q].where}): {'; '.join(p)}" for q, p in sorted(found.items()) if q not in PENDING]
    assert not new, "errors outside the one root or without a unique code:\n" + "\n".join(new)


def test_the_pending_list_only_shrinks():
    found, errors = all_problems(), project_errors()
    fixed = sorted(q for q in PENDING if q in errors and q not in found)
    gone = sorted(q for q in PENDING if q not in errors)
    assert not fixed, f"fixed now, remove from PENDING: {fixed}"
    assert not gone, f"no longer defined, remove from PENDING: {gone}"


def test_codes_are_unique_across_the_project():
    # Also true of the pending errors: two classes with one code route as one.
    shared = {q: p for q, ps in all_problems().items() for p in ps if "shared with" in p}
    expected = {"cardiovlm.tools.quant.stenosis.NoLumenError",
                "cardiovlm.tools.quant.lumen_profile.NoLumenFound"}  # pending: see PENDING
    assert set(shared) <= expected, shared


# --- controls: the reading above against what Python itself says ---
LIGHT_MODULES = ("cardiovlm.tools.core.errors", "cardiovlm.tools.ingest.study_errors", "cardiovlm.tools.quant.troponin",
                 "cardiovlm.tools.quant.clinical_context", "cardiovlm.tools.quant.risk",
                 "cardiovlm.tools.ingest.pacs", "cardiovlm.tools.quant.stenosis", "cardiovlm.tools.quant.lumen_profile",
                 "cardiovlm.assistant.session",
                 "cardiovlm.assistant.slots")


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_the_source_reading_matches_the_imported_classes(module):
    from cardiovlm.tools.core.errors import CardioVLMError

    imported = importlib.import_module(module)
    live = {f"{module}.{name}": c for name, c in inspect.getmembers(imported, inspect.isclass)
            if c.__module__ == module and issubclass(c, BaseException) and not name.startswith("_")}
    read = {q: e for q, e in project_errors().items() if q.rpartition(".")[0] == module}
    assert set(read) == set(live)
    for qualname, kind in live.items():
        assert (ROOT_ERROR in _ancestors(qualname)) == (issubclass(kind, CardioVLMError) and kind is not CardioVLMError)
        assert read[qualname].code == kind.__dict__.get("code"), qualname


def test_the_check_catches_an_error_outside_the_root_and_a_shared_code():
    # The control of the main test: the same rules on errors that break them.
    codes = {"a.b": ["x.Good", "x.Twin"], "c.d": ["x.Outside"]}
    assert problems(ErrorClass("x.Good", "", (ROOT_ERROR,), "a.b"), codes) == ["code 'a.b' shared with x.Twin"]
    assert "not derived from cardiovlm.tools.core.errors.CardioVLMError" in problems(
        ErrorClass("x.Outside", "", ("builtins.ValueError",), "c.d"), codes)
    assert problems(ErrorClass("x.NoCode", "", (ROOT_ERROR,), None), codes) == ["no code of its own"]
    assert "is not dotted snake_case" in problems(ErrorClass("x.Bad", "", (ROOT_ERROR,), "Bad Code"), codes)[0]

