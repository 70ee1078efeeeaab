"""Session-wide test fixtures: generated phantoms are built once per test run and shared.

A phantom takes seconds of CPU to generate; before this cache each module regenerated its own, and the
same case was often built by several modules. ``phantom_case(...)`` takes ``generate_case``'s own
arguments (less ``out_dir``), generates each distinct case the first time it is asked for and returns
the same folder on every later call.

The folders are shared, so they are read-only by convention: a test that changes a case copies it first
(``shutil.copytree(case, tmp_path / case.name)``). The cache checks this at the end of the session and
fails the run naming any file that was changed, added or removed, so a test that writes into a shared
case cannot silently poison the cases of the tests after it.

The default run is spread over pytest-xdist workers that take whole test files (``-n auto --dist
loadfile`` in ``pyproject.toml``; how many is decided by ``pytest_xdist_auto_num_workers`` below, and
``-n 0`` runs in one process). The workers share one phantom folder: the first worker to ask for a case
generates it under a file lock and the others read it, so a case costs its seconds once per run, not once
per worker.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock

MAX_WORKERS = 4  # each worker holds torch, MiniLM and the model caches (~1 GB); more gains little here


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Workers for ``-n auto``: one process for a run of a single test file (starting workers costs more
    than it saves there), else one worker per available CPU, at most ``MAX_WORKERS``."""
    files = {str(arg).split("::")[0] for arg in config.args}
    if len(files) == 1 and Path(next(iter(files))).is_file():
        return 0
    return max(1, min(len(os.sched_getaffinity(0)), MAX_WORKERS))


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file under ``folder``: cheap, and enough to see a write."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


class PhantomCache:
    """Generated phantom case folders, keyed by the full set of ``generate_case`` arguments.

    ``root`` may be shared by several processes (the xdist workers of one run): each case is generated
    in its own folder under a lock, and a marker written after it is complete tells the others to read it.
    """

    def __init__(self, root: Path) -> None:
        from cardiovlm.training.phantoms.generate import generate_case

        self._generate = generate_case
        self._signature = inspect.signature(generate_case)
        self._root = root
        self._root.mkdir(parents=True, exist_ok=True)
        self._cases: dict[str, Path] = {}
        self._snapshots: dict[Path, dict[str, tuple[int, int]]] = {}

    def _key(self, kwargs: dict) -> str:
        # Bind against the generator's own signature so that a default written out and a default left out
        # name the same case; repr keeps the findings' every field (they are dataclasses).
        bound = self._signature.bind(Path("."), **kwargs)
        bound.apply_defaults()
        return repr(sorted((k, v) for k, v in bound.arguments.items() if k != "out_dir"))

    def __call__(self, **kwargs) -> Path:
        if "out_dir" in kwargs:
            raise TypeError("phantom_case chooses the folder itself; copy the case to write elsewhere")
        key = self._key(kwargs)
        if key not in self._cases:
            name = hashlib.sha256(key.encode()).hexdigest()[:16]
            done = self._root / f"{name}.done"  # holds the case's folder name once it is complete
            with FileLock(str(self._root / f"{name}.lock")):
                if not done.is_file():
                    # One parent folder per case, so the parent also serves as a one-case data folder; a
                    # generation that failed half-way left no marker, and its files are removed here.
                    shutil.rmtree(self._root / name, ignore_errors=True)
                    case = self._generate(self._root / name, **kwargs)
                    done.write_text(case.name)
                case = self._root / name / done.read_text()
            self._cases[key] = case
            self._snapshots[case] = _snapshot(case)
        return self._cases[key]

    def changed(self) -> list[str]:
        """Files of cached cases that differ from when they were generated."""
        problems = []
        for case, before in self._snapshots.items():
            after = _snapshot(case)
            problems += [f"{case.name}/{name}" for name in sorted(set(before) | set(after))
                         if before.get(name) != after.get(name)]
        return problems


@pytest.fixture(scope="session")
def phantom_case(tmp_path_factory, request) -> Iterator[PhantomCache]:
    """``phantom_case(seed=..., size="small", findings=[...], ...)`` -> the case folder, generated once.

    Takes ``cardiovlm.training.phantoms.generate.generate_case``'s keyword arguments with the same defaults
    (mind ``with_dicom=True``). The folder is shared: copy it before changing anything in it.
    """
    base = tmp_path_factory.getbasetemp()
    # An xdist worker's temporary folder lies inside the run's own folder, which all its workers share
    # (and no other run); a single process keeps the cases in its own folder.
    root = (base.parent if hasattr(request.config, "workerinput") else base) / "phantoms"
    cache = PhantomCache(root)
    yield cache
    changed = cache.changed()
    if changed:
        pytest.fail("shared phantom cases were changed by a test (copy a case before writing to it): "
                    + ", ".join(changed[:10]), pytrace=False)
