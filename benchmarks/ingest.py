"""Benchmark: loading a DICOM series with ``cardiovlm.tools.ingest.study.load_study`` against reading its raw bytes.

Writes a 512 x 512 x 300 CT series (int16, ~157 MB) to a temporary folder, then measures

* raw read: ``open().read()`` of every file plus ``np.frombuffer`` of its pixel bytes (the floor any
  loader pays; the page cache is warm for both, since the files were just written), and
* ``load_study``: header scan, series choice, geometry checks, pixel decode, rescale, reorientation.

Time is the best of ``--repeat`` runs (``time.perf_counter``), without tracing. Peak memory is
measured in a separate run with ``tracemalloc`` (Python and NumPy allocations, which NumPy reports
to tracemalloc; not the resident set size), because tracing slows Python code down. The last row
times ``cardiovlm.training.phantoms.generate_case(tmp, seed=0, size="demo")`` when that generator exists.

Usage::

    python benchmarks/ingest.py [--size 512] [--slices 300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from cardiovlm.tools.dicom.dicom_write import write_ct_series
from cardiovlm.tools.ingest.study import load_study


def raw_read(folder: Path, n_pixels: int) -> list[np.ndarray]:
    """Every file's bytes, with its trailing pixel data viewed as int16 (no DICOM parsing)."""
    slices = []
    for path in sorted(folder.iterdir()):
        with open(path, "rb") as f:
            data = f.read()
        slices.append(np.frombuffer(data, dtype=np.int16, count=n_pixels, offset=len(data) - 2 * n_pixels))
    return slices


def measure(fn, repeat: int) -> tuple[float, float]:
    """(best wall time in s, peak traced memory in MiB) of ``fn()``."""
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
        del result
    gc.collect()
    tracemalloc.start()
    result = fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del result
    return min(times), peak / 2**20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="rows and columns of each slice")
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the best is reported")
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory(prefix="cardiovlm-bench-") as tmp:
        folder = Path(tmp) / "series"
        hu = np.random.default_rng(0).integers(-1024, 1500, (args.size, args.size, args.slices), dtype=np.int16)
        affine = np.diag([0.4, 0.4, 0.6, 1.0])
        start = time.perf_counter()
        write_ct_series(hu, affine, folder, series_description="benchmark", uid_seed=0)
        write_s = time.perf_counter() - start
        n_bytes = sum(p.stat().st_size for p in folder.iterdir())
        volume_mib = hu.nbytes / 2**20
        del hu

        raw_s, raw_mib = measure(lambda: raw_read(folder, args.size * args.size), args.repeat)
        load_s, load_mib = measure(lambda: load_study(folder), args.repeat)
        rows += [
            ("write_ct_series (one run)", write_s, None, None, None),
            ("raw read: open().read() + np.frombuffer", raw_s, raw_mib, 1.0, 1.0),
            ("load_study (DICOM folder)", load_s, load_mib, load_s / raw_s, load_mib / raw_mib),
        ]

        try:
            from cardiovlm.training.phantoms import generate_case
        except ImportError:
            phantom = "cardiovlm.training.phantoms.generate_case is not available yet"
        else:
            start = time.perf_counter()
            generate_case(Path(tmp) / "phantom", seed=0, size="demo")
            phantom = time.perf_counter() - start
        rows.append(("generate a demo-size phantom", phantom, None, None, None))

    print(f"series: {args.size} x {args.size} x {args.slices} int16, {n_bytes / 2**20:.0f} MiB on disk, "
          f"volume {volume_mib:.0f} MiB; time = best of {args.repeat}; memory = tracemalloc peak")
    print(f"{'step':<42} {'time s':>8} {'peak MiB':>9} {'time x raw':>11} {'mem x raw':>10}")
    for name, seconds, mib, t_ratio, m_ratio in rows:
        if isinstance(seconds, str):
            print(f"{name:<42} {seconds}")
            continue

        def cell(v, fmt, width):
            return f"{v:{width}{fmt}}" if v is not None else f"{'-':>{width}}"

        print(f"{name:<42} {cell(seconds, '.2f', 8)} {cell(mib, '.0f', 9)} {cell(t_ratio, '.2f', 11)} "
              f"{cell(m_ratio, '.2f', 10)}")


if __name__ == "__main__":
    main()
