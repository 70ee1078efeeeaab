"""The package layout, which pyproject.toml cannot state: the five folders install under one namespace.

The folders stay at the top of the repository, and each installs as ``cardiovlm.<folder>`` so that names
as common as ``tools`` or ``ui`` never collide with another distribution's. Everything else about the
project is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

NAMESPACE = "cardiovlm"
FOLDERS = ("assistant", "tools", "vlm", "training", "ui")

# Data folders without an __init__.py (demo cases, the checkpoint, the browser viewer) are namespace
# packages, so their files ship as package data.
packages = find_namespace_packages(include=[f"{folder}*" for folder in FOLDERS], exclude=["*__pycache__*"])

setup(packages=[f"{NAMESPACE}.{name}" for name in packages],
      package_dir={f"{NAMESPACE}.{folder}": folder for folder in FOLDERS})
