"""(Re)build the demo cases bundled in ``tools/demo_cases/`` from fixed seeds and explicit findings.

Run ``python -m cardiovlm.training.phantoms.demo_cases``. Cases are NIfTI only (no DICOM folders) to keep the
bundle small; ``preview.png`` (for the README) is the coronary MIP of ``lad_stenosis``.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from cardiovlm.training.phantoms.generate import generate_case
from cardiovlm.training.phantoms.lesions import FindingRequest

DEMO_DIR = Path(__file__).resolve().parents[2] / "tools" / "demo_cases"
DEMO_SIZE = "small"  # 1 mm voxels: four cases fit the 30 MB budget; "demo" size is ~3x larger per case

DEMO_CASES: dict[str, dict] = {
    "lad_calcified": dict(seed=101, dominance="right", findings=[
        FindingRequest("pLAD", "calcified_plaque", stenosis_percent=30, length_mm=8, position=0.6,
                       calcium_peak_hu=950, calcium_size_mm=4.0)]),
    # ~70 % over ~14 mm in the proximal LAD: the "will a 20 mm stent cover it" case
    "lad_stenosis": dict(seed=202, dominance="right", findings=[
        FindingRequest("pLAD", "noncalcified_plaque", stenosis_percent=70, length_mm=14, position=0.5)]),
    "rca_stent": dict(seed=303, dominance="right", findings=[
        FindingRequest("pRCA", "stent", length_mm=18, position=0.5)]),
    "healthy": dict(seed=404, dominance="right", findings=[]),
}


def build_demo_cases(out_dir: Path = DEMO_DIR, size: str = DEMO_SIZE) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, spec in DEMO_CASES.items():
        if (out_dir / name).exists():
            shutil.rmtree(out_dir / name)
        t0 = time.perf_counter()
        path = generate_case(out_dir, case_id=name, size=size, with_dicom=False, preview=True, **spec)
        print(f"{name}: {time.perf_counter() - t0:.1f} s")
        paths.append(path)
    shutil.copyfile(out_dir / "lad_stenosis" / "preview" / "mip.png", out_dir / "preview.png")
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEMO_DIR)
    parser.add_argument("--size", default=DEMO_SIZE, choices=("small", "demo"))
    args = parser.parse_args()
    build_demo_cases(args.out, args.size)
