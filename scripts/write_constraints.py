"""Write constraints.txt: the exact versions of a known-good ``cardiovlm[test]`` install.

Run in the project's virtual environment once the full test suite passes there:

    python scripts/write_constraints.py

Only the packages that ``cardiovlm[test]`` needs (its requirements, followed through every
dependency) are pinned, at the versions installed now; packages installed by hand are left out, so
the file never names a local path. A local version label (torch's ``+cpu``) is dropped: ``==2.13.0``
accepts the CPU build and the default one alike, and the README's set-up picks which.
"""

from __future__ import annotations

import platform
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

PROJECT = "cardiovlm"
EXTRAS = ("test",)
OUT = Path(__file__).resolve().parents[1] / "constraints.txt"


def closure(name: str, extras: tuple[str, ...]) -> dict[str, str]:
    """Installed version of every distribution that ``name[extras]`` needs, by canonical name."""
    versions: dict[str, str] = {}
    done: dict[str, set[str]] = {}
    todo = [(name, set(extras))]
    while todo:
        current, wanted = todo.pop()
        key = canonicalize_name(current)
        if key in done and wanted <= done[key]:
            continue
        done.setdefault(key, set()).update(wanted)
        try:
            dist = distribution(current)
        except PackageNotFoundError:
            sys.exit(f"{current} is required but not installed: install {PROJECT}[{','.join(extras)}] first")
        versions[key] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *wanted)):
                todo.append((req.name, set(req.extras)))
    versions.pop(canonicalize_name(name))
    return versions


def main() -> None:
    versions = closure(PROJECT, EXTRAS)
    lines = [
        f"# Known-good versions of {PROJECT}[{','.join(EXTRAS)}] and everything it pulls in, written by",
        "# scripts/write_constraints.py from the environment the full test suite passed in",
        f"# (Python {platform.python_version()}, {sys.platform} {platform.machine()}). Use:",
        "#   pip install -c constraints.txt -e '.[test]'",
    ]
    lines += [f"{key}=={Version(version).public}" for key, version in sorted(versions.items())]
    OUT.write_text("\n".join(lines) + "\n")
    print(f"{OUT.name}: {len(versions)} packages pinned")


if __name__ == "__main__":
    main()
