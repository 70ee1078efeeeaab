"""Benchmark: quantification tools on full-size synthetic series (time and peak memory).

Each row is a :class:`BenchCase`: a name, a ``setup()`` that builds the inputs once (not timed) and
a ``run(inputs)`` that is timed. Add a row by appending a case to :data:`CASES` (the stenosis rows
go there too).

* Agatston: a 512 x 512 x 300 non-contrast series (0.4 x 0.4 x 0.5 mm) with soft tissue at 40 HU
  (noise SD 20 HU), a spine and sternum of bone (700 HU) outside the heart, the LAD, LCx and RCA as
  labelled tubes across a 120 mm heart region, 36 calcified lesions on them (130-900 HU), and an
  aortic valve calcification inside a labelled aortic root (excluded).

Time is the best of ``--repeat`` runs (``time.perf_counter``). Peak memory is measured in a separate
run with ``tracemalloc`` (NumPy allocations included; not the resident set size), since tracing
slows Python code down.

Usage::

    python benchmarks/quantify.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from tools.anatomy import CORONARY_LABELS, SEGMENTS_BY_CODE, STRUCTURES_BY_NAME

TARGET_S = 1.0


@dataclass
class BenchCase:
    name: str  # row title
    setup: Callable[[], Any]  # builds the inputs once, untimed
    run: Callable[[Any], Any]  # the timed call
    check: Callable[[Any], str] = lambda result: ""  # what to print about the result


def measure(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """(best wall time in s, peak traced memory in MiB, last result) of ``fn()``."""
    times, result = [], None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    gc.collect()
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return min(times), peak / 2**20, result


# ------------------------------------------------------------------------------------------ Agatston
def calcium_series(shape=(512, 512, 300), spacing=(0.4, 0.4, 0.5), n_lesions=36, seed=0):
    """(hu int16, labels uint8, spacing): the non-contrast series described in the module docstring."""
    rng = np.random.default_rng(seed)
    hu = rng.normal(40, 20, shape).astype(np.int16)
    labels = np.zeros(shape, np.uint8)
    hu[230:282, 420:480, :] = 700  # spine, far from the heart
    hu[236:276, 40:60, :] = 700  # sternum
    sx, sy, sz = spacing
    centre = np.array([256, 256, 150])
    span = int(60 / sz)  # the heart covers about 120 mm in z
    k = np.arange(centre[2] - span, centre[2] + span)
    t = (k - k[0]) / len(k)
    vessels = {  # (segment code, i path, j path): three tubes curving around the heart centre
        "pLAD": (centre[0] + (60 + 40 * t) * np.cos(2 * t), centre[1] - (60 + 40 * t) * np.sin(2 * t)),
        "pCx": (centre[0] - (70 + 30 * t) * np.cos(1.5 * t), centre[1] + 40 * t),
        "pRCA": (centre[0] + 20 * t, centre[1] + (80 + 30 * t) * np.cos(t)),
    }
    radius = int(round(1.5 / sx))  # 3 mm vessels
    for code, (ii, jj) in vessels.items():
        for kk, i, j in zip(k, ii.astype(int), jj.astype(int)):
            labels[i - radius:i + radius + 1, j - radius:j + radius + 1, kk] = SEGMENTS_BY_CODE[code].label_id
    for n in range(n_lesions):  # calcium against the vessel wall, 1-4 mm across, 1-3 mm tall
        ii, jj = vessels[list(vessels)[n % 3]]
        idx = rng.integers(0, len(k))
        i, j, kk = int(ii[idx]) + radius + 1, int(jj[idx]), int(k[idx])
        w, h = int(rng.integers(2, 10)), int(rng.integers(2, 6))
        hu[i:i + w, j:j + w, kk:kk + h] = rng.integers(130, 900)
    root = STRUCTURES_BY_NAME["aortic_root"].label_id
    labels[240:272, 240:272, 140:160] = root
    hu[250:256, 250:256, 148:152] = 800  # aortic valve calcification: listed, not counted
    return hu, labels, spacing


def run_agatston(inputs):
    from tools.calcium import agatston_score

    hu, labels, spacing = inputs
    return agatston_score(hu, spacing, labels)


def describe_agatston(result) -> str:
    return (f"Agatston {result.agatston:.0f}, {len(result.lesions)} coronary lesions, "
            f"{len(result.excluded)} excluded, CAC-DRS {result.cac_drs}")


def contrast_series():
    """The same anatomy as a contrast CCTA: opacified lumen at 350 HU (SD 15 HU)."""
    hu, labels, spacing = calcium_series()
    lumen = (labels >= min(CORONARY_LABELS)) & (labels <= max(CORONARY_LABELS))
    hu[lumen] = np.random.default_rng(1).normal(350, 15, int(lumen.sum()))
    return hu, labels, spacing


def run_contrast(inputs):
    from tools.calcium import contrast_calcium_volume

    hu, labels, spacing = inputs
    return contrast_calcium_volume(hu, spacing, labels)


def describe_contrast(result) -> str:
    return f"calcium volume {result.volume_mm3:.0f} mm^3, {len(result.lesions)} coronary lesions"


CASES: list[BenchCase] = [
    BenchCase("Agatston, 512x512x300 non-contrast", calcium_series, run_agatston, describe_agatston),
    BenchCase("contrast calcium volume, 512x512x300", contrast_series, run_contrast, describe_contrast),
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the best is reported")
    args = parser.parse_args(argv)
    rows = []
    for case in CASES:
        inputs = case.setup()
        seconds, mib, result = measure(lambda: case.run(inputs), args.repeat)
        rows.append((case.name, seconds, mib, case.check(result)))
        del inputs
    width = max(len(r[0]) for r in rows)
    print(f"{'case':<{width}}  {'time s':>7}  {'peak MiB':>8}  {'< ' + format(TARGET_S, 'g') + ' s':>5}  result")
    for name, seconds, mib, note in rows:
        print(f"{name:<{width}}  {seconds:7.3f}  {mib:8.0f}  {'yes' if seconds < TARGET_S else 'NO':>5}  {note}")


if __name__ == "__main__":
    main()
