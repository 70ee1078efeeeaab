"""Benchmark: quantification tools on full-size synthetic series (time and peak memory).

Each row is a :class:`BenchCase`: a name, a ``setup()`` that builds the inputs once (not timed) and
a ``run(inputs)`` that is timed. Add a row by appending a case to :data:`CASES` (the stenosis rows
go there too).

* Agatston: a 512 x 512 x 300 non-contrast series (0.4 x 0.4 x 0.5 mm) with soft tissue at 40 HU
  (noise SD 20 HU), a spine and sternum of bone (700 HU) outside the heart, the LAD, LCx and RCA as
  labelled tubes across a 120 mm heart region, 36 calcified lesions on them (130-900 HU), and an
  aortic valve calcification inside a labelled aortic root (excluded).
* Stenosis: LM, LAD, LCx and RCA as curved tapering tubes (radius 2.0 -> 1.2 mm) on a 512 x 512 x 300
  label map (0.4 x 0.4 x 0.5 mm), one 10 mm plaque narrowing per main vessel (LAD 70 %, LCx 50 %,
  RCA 40 %); all three vessels measured, with the phantom centerlines and with skeleton centerlines.

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cardiovlm.tools.core.anatomy import CORONARY_LABELS, SEGMENTS_BY_CODE, STRUCTURES_BY_NAME

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
    from cardiovlm.tools.quant.calcium import agatston_score

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
    from cardiovlm.tools.quant.calcium import contrast_calcium_volume

    hu, labels, spacing = inputs
    return contrast_calcium_volume(hu, spacing, labels)


def describe_contrast(result) -> str:
    return f"calcium volume {result.volume_mm3:.0f} mm^3, {len(result.lesions)} coronary lesions"


CASES: list[BenchCase] = [
    BenchCase("Agatston, 512x512x300 non-contrast", calcium_series, run_agatston, describe_agatston),
    BenchCase("contrast calcium volume, 512x512x300", contrast_series, run_contrast, describe_contrast),
]


# ------------------------------------------------------------------------------ stenosis
# (cardiovlm.tools.quant.stenosis)
def coronary_tree(shape=(512, 512, 300), spacing=(0.4, 0.4, 0.5)):
    """(labels uint8, affine, centerlines, CT): LM -> LAD, LCx and RCA as curved tubes on a demo-size grid.

    Healthy radius tapers from 2.0 (LM) to 1.2 mm; each main vessel carries one smooth plaque
    narrowing (LAD 70 %, LCx 50 %, RCA 40 %), with non-calcified plaque labelled around it.
    """
    from scipy.spatial import cKDTree

    from cardiovlm.tools.core import case_format as cf

    labels = np.zeros(shape, np.uint8)
    affine = np.diag([*spacing, 1.0])
    ostium_l, ostium_r = np.array([120.0, 100.0, 100.0]), np.array([80.0, 90.0, 100.0])
    t = np.linspace(0, 1, 2001)
    lm = ostium_l + np.outer(t, [8.0, -3.0, -2.0])
    curves = {  # segment codes -> axis points (mm), proximal first
        ("LM",): lm,
        ("pLAD", "mLAD", "dLAD"): lm[-1] + np.stack([30 * t, -25 * np.sin(1.5 * t) - 5 * t, -80 * t], 1),
        ("pCx", "dLCx"): lm[-1] + np.stack([10 * np.sin(2 * t), 45 * t, -50 * t], 1),
        ("pRCA", "mRCA", "dRCA"): ostium_r + np.stack([-30 * np.sin(2 * t), 20 * t, -90 * t], 1),
    }
    lesions = {"pLAD": (0.3, 70.0), "pCx": (0.35, 50.0), "pRCA": (0.5, 40.0)}
    plaque = STRUCTURES_BY_NAME["noncalcified_plaque"].label_id
    segments: dict[str, list] = {}
    for codes, axis in curves.items():
        arc = np.r_[0, np.cumsum(np.linalg.norm(np.diff(axis, axis=0), axis=1))]
        u = arc / arc[-1]
        r0 = (2.0 if codes == ("LM",) else 1.8) - 0.6 * u
        pos, pct = lesions.get(codes[0], (0.0, 0.0))
        width = 10.0 / arc[-1]  # 10 mm lesions
        bump = np.where(np.abs(u - pos) < width / 2, (1 + np.cos(2 * np.pi * (u - pos) / width)) / 2, 0.0)
        r = r0 * (1 - pct / 100 * bump)
        seg_of = np.minimum((u * len(codes)).astype(int), len(codes) - 1)
        ijk = axis / spacing
        lo = np.maximum(np.floor(ijk.min(0) - 8 / np.array(spacing)).astype(int), 0)
        hi = np.minimum(np.ceil(ijk.max(0) + 8 / np.array(spacing)).astype(int), shape)
        grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1)
        dist, near = cKDTree(axis).query(grid.reshape(-1, 3) * spacing, distance_upper_bound=6.0)
        dist, near = dist.reshape(grid.shape[:3]), np.minimum(near, len(axis) - 1).reshape(grid.shape[:3])
        sub = labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        ids = np.array([SEGMENTS_BY_CODE[c].label_id for c in codes])[seg_of[near]]
        sub[(dist < r0[near] + 0.5) & (bump[near] > 0) & (sub == 0)] = plaque
        lumen = dist < r[near]
        sub[lumen] = ids[lumen]
        for n, code in enumerate(codes):
            keep = (seg_of == n) & (np.arange(len(t)) % 5 == 0)  # 0.25 mm steps or less
            segments[code] = [cf.CenterlinePoint(xyz=tuple(p), radius_mm=float(rr))
                              for p, rr in zip(axis[keep], r0[keep])]
    # The CT the stenosis is read from: lumen, plaque and fat painted from the labels, blurred, noisy.
    from cardiovlm.training.phantoms.tubes import ct_from_labels

    hu = ct_from_labels(labels, float(min(spacing)))
    return labels, affine, cf.Centerlines(segments=segments), hu


def run_stenosis(inputs, use_centerlines: bool):
    from cardiovlm.tools.quant.stenosis import measure_study

    labels, affine, centerlines, hu = inputs
    return measure_study(hu, affine, labels=labels, centerlines=centerlines if use_centerlines else None,
                         vessels=["LAD", "LCx", "RCA"])


def describe_stenosis(result) -> str:
    worst = {v.vessel: v.worst_lesion() for v in result.vessels}
    return ", ".join(f"{k} {w.stenosis_percent:.0f}%/{w.length_mm:.1f} mm" if w else f"{k} none"
                     for k, w in worst.items()) + f"; CAD-RADS {result.cad_rads.text}"


CASES += [
    BenchCase("stenosis LAD+LCx+RCA, 512x512x300, phantom centerlines", coronary_tree,
              lambda inputs: run_stenosis(inputs, use_centerlines=True), describe_stenosis),
    BenchCase("stenosis LAD+LCx+RCA, 512x512x300, skeleton centerlines", coronary_tree,
              lambda inputs: run_stenosis(inputs, use_centerlines=False), describe_stenosis),
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the best is reported")
    args = parser.parse_args(argv)
    rows = []
    for case in CASES:
        inputs = case.setup()
        seconds, mib, result = measure(lambda case=case, inputs=inputs: case.run(inputs), args.repeat)
        rows.append((case.name, seconds, mib, case.check(result)))
        del inputs
    width = max(len(r[0]) for r in rows)
    print(f"{'case':<{width}}  {'time s':>7}  {'peak MiB':>8}  {'< ' + format(TARGET_S, 'g') + ' s':>5}  result")
    for name, seconds, mib, note in rows:
        print(f"{name:<{width}}  {seconds:7.3f}  {mib:8.0f}  {'yes' if seconds < TARGET_S else 'NO':>5}  {note}")


if __name__ == "__main__":
    main()
