"""What an install gets: the built wheel carries the code and the data the demo needs, and the tests
install nothing themselves (scripts/install_test_services.sh does, once, before pytest)."""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.source_tree import NAMESPACE, PACKAGES, ROOT

_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc")


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory) -> set[str]:
    """The file names inside a wheel built from a copy of the sources (about 10 s)."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed in this environment: pip install setuptools to build the wheel")
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for package in PACKAGES:  # a copy, so the build leaves no build/ folder in the checkout
        shutil.copytree(ROOT / package, src / package, ignore=_SKIP)
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(out), str(src)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def _shipped(folder: Path) -> set[str]:
    """The files of ``folder`` as the wheel names them: under the namespace, each package its folder."""
    return {f"{NAMESPACE}/{p.relative_to(ROOT).as_posix()}" for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def test_the_wheel_ships_every_module(wheel_files):
    modules = {p for package in PACKAGES for p in _shipped(ROOT / package) if p.endswith(".py")}
    assert modules and modules - wheel_files == set()


def test_the_wheel_installs_one_namespace(wheel_files):
    # Top-level names as common as tools or ui would collide with another distribution's packages.
    tops = {name.split("/")[0] for name in wheel_files}
    assert {top for top in tops if not top.endswith(".dist-info")} == {NAMESPACE}


def test_the_wheel_ships_the_demo_data(wheel_files):
    from cardiovlm.assistant.intents import BANK_PATH
    from cardiovlm.tools.core.settings import Settings
    from cardiovlm.ui.viewer import NIIVUE_JS, STATIC_DIR

    fields = Settings.model_fields
    demo_cases, checkpoint = Path(fields["demo_cases_dir"].default), Path(fields["checkpoint_dir"].default)
    cases = [p for p in demo_cases.iterdir() if p.is_dir()]
    assert cases and all((case / "ccta.nii.gz").is_file() for case in cases)
    for path in (BANK_PATH, NIIVUE_JS, checkpoint / "model.safetensors", checkpoint / "config.json"):
        assert path.is_file(), path
    # Every file of the data folders, whatever its type, reaches the wheel: a new kind of file in a demo
    # case fails here instead of missing from an install.
    wanted = _shipped(demo_cases) | _shipped(checkpoint) | _shipped(STATIC_DIR) | {
        f"{NAMESPACE}/{BANK_PATH.relative_to(ROOT).as_posix()}"}
    assert wanted - wheel_files == set()


_INSTALL = re.compile(r"^(?:sudo )?(?:(?:apt-get|apt)\b.*\binstall\b|dpkg (?:-i|--install)\b)")


def _installs(source: str) -> list[int]:
    """Lines of ``source`` that run a package installer (apt-get/apt install, dpkg -i), as one string or as
    an argument list; asking dpkg what a package holds (``dpkg -L``) installs nothing."""
    lines = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.List, ast.Tuple)):
            words = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            command = " ".join(words)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            command = node.value
        else:
            continue
        if _INSTALL.match(command):
            lines.add(node.lineno)
    return sorted(lines)


def test_no_test_installs_packages():
    here = Path(__file__).resolve()  # this file names the installers to look for them
    found = {p.relative_to(ROOT).as_posix(): lines for p in (ROOT / "tests").rglob("*.py")
             if p != here and (lines := _installs(p.read_text(encoding="utf-8")))}
    assert not found, f"install in scripts/install_test_services.sh instead: {found}"
    # The control: the way a test used to install Chromium is seen.
    assert _installs('subprocess.run(["apt-get", "install", "-y", "chromium"])\n') == [1]
    assert _installs('os.system("sudo apt install -y orthanc")\n') == [1]
    assert _installs('subprocess.run(["dpkg", "-L", "orthanc-dicomweb"])\n') == []


def test_the_constraints_pin_every_requirement_inside_its_range():
    # constraints.txt reproduces a known-good install only while it names every requirement at a version
    # that pyproject.toml allows; `python scripts/write_constraints.py` writes it anew.
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = {canonicalize_name(name): version for name, _, version in
            (line.strip().partition("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#"))}
    requirements = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]
    unpinned = [str(r) for r in requirements if canonicalize_name(r.name) not in pins]
    outside = [f"{r} (pinned {pins[canonicalize_name(r.name)]})" for r in requirements
               if canonicalize_name(r.name) in pins and not r.specifier.contains(pins[canonicalize_name(r.name)])]
    assert not unpinned and not outside, f"not pinned: {unpinned}; pinned outside the range: {outside}"
