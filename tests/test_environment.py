"""tools/core/settings.py is the one module that reads or writes the process environment.

Configuration then has one typed, documented home, and a variable cannot be read under two spellings
with two defaults in two places.
"""

from __future__ import annotations

import ast

from tests.source_tree import ROOT, source_files

SETTINGS = "tools/core/settings.py"

# Modules still reading the environment themselves, written by engineers editing them while this check
# landed; each has its replacement in cardiovlm.tools.core.settings (get_settings().cache_dir, external_environment(),
# set_library_environment). The test fails on any other module, and when a listed one is clean, so
# this set only shrinks.
PENDING: frozenset[str] = frozenset()

_OS_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def environment_uses(source: str) -> list[int]:
    """Line numbers where ``source`` touches the environment through the ``os`` module."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in _OS_NAMES and \
                isinstance(node.value, ast.Name) and node.value.id == "os":
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os" and \
                any(alias.name in _OS_NAMES for alias in node.names):
            lines.append(node.lineno)
    return sorted(lines)


def _modules() -> dict[str, str]:
    return {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8") for p in source_files()}


def test_only_settings_reads_the_environment():
    uses = {path: lines for path, source in _modules().items() if (lines := environment_uses(source))}
    assert SETTINGS in uses  # the control: the scanner sees settings' own reads
    others = {path: lines for path, lines in uses.items() if path != SETTINGS and path not in PENDING}
    assert not others, f"read or write the environment through cardiovlm.tools.core.settings instead: {others}"
    clean = sorted(PENDING - set(uses))
    assert not clean, f"no longer reads the environment, remove from PENDING: {clean}"


def test_the_scanner_sees_each_way_of_reading():
    source = ("import os\nfrom os import getenv\nx = os.environ.get('A')\ny = os.getenv('B')\n"
              "os.environ['C'] = '1'\nz = os.path.join('a', 'b')\n")
    assert environment_uses(source) == [2, 3, 4, 5]
