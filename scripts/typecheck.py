"""Type-check the five packages under the names they are installed by: ``python scripts/typecheck.py``.

The folders install as ``cardiovlm.<folder>`` through a mapping (setup.py) that mypy cannot follow, so
the namespace is built as a folder of links beside mypy's cache and checked there. Arguments are passed
on to mypy; the settings are pyproject.toml's [tool.mypy]. mypy names files ``<farm>/cardiovlm/...``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "cardiovlm"
PACKAGES = ("tools", "vlm", "training", "assistant", "ui")
# A fixed place (ignored by git), so mypy's incremental cache recognises the files from one run to the next.
FARM = ROOT / ".mypy_cache" / "namespace"


def typecheck(*mypy_args: str) -> subprocess.CompletedProcess:
    namespace = FARM / NAMESPACE
    namespace.mkdir(parents=True, exist_ok=True)
    for package in PACKAGES:
        link = namespace / package
        if not link.is_symlink():
            link.symlink_to(ROOT / package, target_is_directory=True)
    env = {**os.environ, "MYPYPATH": str(FARM)}
    return subprocess.run([sys.executable, "-m", "mypy", "--explicit-package-bases", *mypy_args, str(namespace)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


if __name__ == "__main__":
    done = typecheck(*sys.argv[1:])
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    sys.exit(done.returncode)
