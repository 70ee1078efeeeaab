"""Wall time of the test suite: one process against the default xdist setting, back to back.

Runs ``python -m pytest`` on the given test paths (default: the whole suite) twice, first with ``-n 0``
(every test in one process, as before the suite was spread over workers), then with the project's own
``addopts`` (``-n auto --dist loadfile``: one worker per CPU up to 4, see ``pyproject.toml`` and
``tests/conftest.py``), and prints wall seconds, the ratio and the
tests passed, failed and skipped in each. A setting only counts as faster when it passes the same tests:
the table says so when the counts differ.

The figures depend on the machine and on what else runs on it; run both settings on the same idle
machine, and prefer a subset that takes a few minutes over a single test file (worker start-up is a few
seconds that a large run amortises).

Usage::

    python benchmarks/test_suite_time.py [PATH ...] [--durations N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"one process (-n 0)": ["-n", "0"], "default (addopts: -n auto --dist loadfile)": []}
_COUNT = re.compile(r"(\d+) (passed|failed|skipped|xfailed|xpassed|errors?)\b")


@dataclass
class Run:
    setting: str
    wall_s: float
    cpu_s: float  # user + system time of pytest and its workers
    exit_code: int
    counts: dict[str, int]
    slowest: list[str]  # the --durations lines, slowest first


def run_pytest(paths: list[str], extra: list[str], durations: int) -> tuple[float, float, int, str]:
    """Wall seconds, CPU seconds of the children, exit code and output of one pytest run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"--durations={durations}", *extra, *paths], cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.returncode, done.stdout + done.stderr


def parse(setting: str, wall: float, cpu: float, code: int, output: str) -> Run:
    summary = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    counts: dict[str, int] = {}
    for n, kind in _COUNT.findall(summary[-1] if summary else ""):
        counts[kind.rstrip("s") if kind.startswith("error") else kind] = int(n)
    slowest = [line.strip() for line in output.splitlines() if re.match(r"\s*\d+\.\d+s (call|setup|teardown)", line)]
    return Run(setting, round(wall, 1), round(cpu, 1), code, counts, slowest)


def table(runs: list[Run]) -> str:
    base = runs[0].wall_s
    kinds = ["passed", "failed", "skipped", "xfailed", "xpassed", "error"]
    header = f"{'setting':42s} {'wall s':>8s} {'CPU s':>8s} {'ratio':>6s} " + " ".join(f"{k:>7s}" for k in kinds)
    lines = [header, "-" * len(header)]
    for r in runs:
        lines.append(f"{r.setting:42s} {r.wall_s:8.1f} {r.cpu_s:8.1f} {r.wall_s / base:6.2f} "
                     + " ".join(f"{r.counts.get(k, 0):7d}" for k in kinds))
    same = all(r.counts == runs[0].counts for r in runs)
    lines.append(f"wall time saved by the default setting: {100 * (1 - runs[-1].wall_s / base):.0f} %; "
                 + ("same tests passed in both" if same else "THE TEST COUNTS DIFFER: the comparison does not count"))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", default=["tests"], help="test paths (default: the whole suite)")
    parser.add_argument("--durations", type=int, default=25, help="slowest tests to list from the serial run")
    parser.add_argument("--json", type=Path, help="also write the runs as JSON here")
    args = parser.parse_args()
    runs = []
    for setting, extra in SETTINGS.items():
        print(f"running {' '.join(args.paths)} with {setting} ...", flush=True)
        runs.append(parse(setting, *run_pytest(args.paths, extra, args.durations)))
    print(f"\nslowest {args.durations} in one process:")
    print("\n".join(f"  {line}" for line in runs[0].slowest[:args.durations]))
    print()
    print(table(runs))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=1))
    return 0 if all(r.exit_code == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
