"""Session-wide test fixtures: generated phantoms are built once per test run and shared.

A phantom takes seconds of CPU to generate; before this cache each module regenerated its own, and the
same case was often built by several modules. ``phantom_case(...)`` takes ``generate_case``'s own
arguments (less ``out_dir``), generates each distinct case the first time it is asked for and returns
the same folder on every later call.

The folders are shared, so they are read-only by convention: a test that changes a case copies it first
(``shutil.copytree(case, tmp_path / case.name)``). The cache checks this at the end of the session and
fails the run naming any file that was changed, added or removed, so a test that writes into a shared
case cannot silently poison the cases of the tests after it.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Iterator

import pytest


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file under ``folder``: cheap, and enough to see a write."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


class PhantomCache:
    """Generated phantom case folders, keyed by the full set of ``generate_case`` arguments."""

    def __init__(self, root_factory: pytest.TempPathFactory) -> None:
        from training.phantoms.generate import generate_case

        self._generate = generate_case
        self._signature = inspect.signature(generate_case)
        self._factory = root_factory
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
            # One parent folder per case, so the parent also serves as a one-case data folder.
            case = self._generate(self._factory.mktemp("phantom"), **kwargs)
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
def phantom_case(tmp_path_factory) -> Iterator[PhantomCache]:
    """``phantom_case(seed=..., size="small", findings=[...], ...)`` -> the case folder, generated once.

    Takes ``training.phantoms.generate.generate_case``'s keyword arguments with the same defaults
    (mind ``with_dicom=True``). The folder is shared: copy it before changing anything in it.
    """
    cache = PhantomCache(tmp_path_factory)
    yield cache
    changed = cache.changed()
    if changed:
        pytest.fail("shared phantom cases were changed by a test (copy a case before writing to it): "
                    + ", ".join(changed[:10]), pytrace=False)
