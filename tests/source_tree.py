"""The project's source folders and the names their modules are installed under.

The five folders sit at the top of the checkout and install as ``cardiovlm.<folder>`` (setup.py), so a
module's dotted name is the namespace, then its path. Tests that read the sources (layering, error codes,
environment reads, lint, packaging) take both from here.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "cardiovlm"
# Lowest layer first: each may import only the ones before it (tests/test_layout.py).
PACKAGES = ("tools", "vlm", "training", "assistant", "ui")


def module_name(path: Path, root: Path = ROOT) -> str:
    """``tools/quant/calcium.py`` -> ``cardiovlm.tools.quant.calcium`` (a package: its folder's name)."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join((NAMESPACE, *(parts[:-1] if parts[-1] == "__init__" else parts)))


def source_files(root: Path = ROOT) -> list[Path]:
    """Every Python file of the five packages, in a stable order."""
    return sorted(p for package in PACKAGES for p in (root / package).rglob("*.py"))
