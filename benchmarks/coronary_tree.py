"""How well the image-derived coronary tree matches a phantom's ground truth (grading only).

For each case folder: Dice of the whole tree (every coronary voxel, whatever its segment) and the
share of the truth centerline it covers, which grade finding the vessels; Dice per artery (LM, LAD, LCx, RCA: all their segments pooled) and per SCCT
segment present in the truth, centerline overlap (share of truth centerline points within 1.5 mm
of the found centerline of the same artery), dominance, and the extraction time. Two controls that
could fail: the same extraction on a uniform 40 HU volume and on a contrast-free copy of the case
(blood set to 40 HU) must find no tree. An artery counts as detected when its found centerline covers
at least half of its truth centerline.

    python benchmarks/coronary_tree.py tools/demo_cases/*/ [--phantoms N --seed S] [--realistic | --both]

``--realistic`` generates generator 2.0 phantoms (kernel-textured noise, thorax); ``--both`` generates
the same seeds in both modes and prints the default figures beside the realistic ones.
"""  # noqa: E501

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from cardiovlm.tools.core import case_format as cf
from cardiovlm.tools.core.anatomy import ARTERIES, SEGMENTS_BY_CODE, segments_of_artery
from cardiovlm.tools.ingest.study import load_nifti, load_study
from cardiovlm.tools.ingest.study_value import Study
from cardiovlm.tools.quant.coronary_tree import CoronaryTreeError, extract_coronary_tree


def segment_codes(artery: str) -> list[str]:
    return [s.code for s in segments_of_artery(artery)]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2 * (a & b).sum() / total) if total else float("nan")


def grade(case_dir: Path) -> dict:
    case = cf.load_case(case_dir)
    study = load_study(case.path(cf.CCTA_NIFTI))
    truth = load_nifti(case.path(cf.LABELS_NIFTI), labels=True).hu
    start = time.perf_counter()
    tree = extract_coronary_tree(study)
    seconds = time.perf_counter() - start
    row = {"case": case_dir.name, "seconds": seconds, "dominance_ok": tree.dominance == case.manifest.dominance}
    truth_lines = case.centerlines()
    for artery in ARTERIES:
        ids = [SEGMENTS_BY_CODE[c].label_id for c in segment_codes(artery)]
        row[artery] = dice(np.isin(tree.labels, ids), np.isin(truth, ids))
        true_pts = [p.xyz for c in segment_codes(artery) for p in truth_lines.segments.get(c, [])]
        found_pts = [p.xyz for c in segment_codes(artery) for p in tree.centerlines.segments.get(c, [])]
        if true_pts and found_pts:
            d, _ = cKDTree(np.array(found_pts)).query(np.array(true_pts))
            row[f"{artery} overlap"] = float(np.mean(d <= 1.5))
        else:
            row[f"{artery} overlap"] = 0.0 if true_pts else float("nan")
    coronary = [s.label_id for s in SEGMENTS_BY_CODE.values()]
    row["tree"] = dice(np.isin(tree.labels, coronary), np.isin(truth, coronary))
    all_true = np.array([p.xyz for pts in truth_lines.segments.values() for p in pts])
    all_found = np.array([p.xyz for pts in tree.centerlines.segments.values() for p in pts])
    row["tree overlap"] = float(np.mean(cKDTree(all_found).query(all_true)[0] <= 1.5))
    seg_dice = {}
    for code, seg in SEGMENTS_BY_CODE.items():
        t = truth == seg.label_id
        if t.any():
            seg_dice[code] = dice(tree.labels == seg.label_id, t)
    row["segments"] = seg_dice
    return row, study


def control(study: Study, kind: str) -> str:
    hu = np.full(study.hu.shape, 40, np.int16) if kind == "uniform" else np.where(study.hu > 150, 40, study.hu)
    blank = Study(hu=hu, spacing=study.spacing, affine=study.affine)
    try:
        tree = extract_coronary_tree(blank)
    except CoronaryTreeError:
        return "no tree (pass)"
    return f"FOUND {len(tree.segments)} segments (fail)"


DETECTED = 0.5  # share of an artery's truth centerline the found one must cover to count as detected


def run(cases: list[Path]) -> list[dict]:
    """Grade each case and print its table; returns the rows."""
    rows, controls = [], []
    for case_dir in cases:
        try:
            row, study = grade(Path(case_dir))
        except CoronaryTreeError as err:
            print(f"{Path(case_dir).name}: no tree ({err})")
            rows.append({"case": Path(case_dir).name, "tree": 0.0, "tree overlap": 0.0,
                         **{a: 0.0 for a in ARTERIES}, **{f"{a} overlap": 0.0 for a in ARTERIES}})
            continue
        rows.append(row)
        if len(controls) < 2:
            controls.append((row["case"], control(study, "uniform"), control(study, "no contrast")))
    cols = ["tree", "tree overlap", *ARTERIES, *[f"{a} overlap" for a in ARTERIES]]
    print(f"{'case':16}" + "".join(f"{c:>13}" for c in cols) + f"{'dominance':>11}{'s':>7}")
    for r in rows:
        print(f"{r['case']:16}" + "".join(f"{r.get(c, float('nan')):13.3f}" for c in cols)
              + f"{str(r.get('dominance_ok', '-')):>11}{r.get('seconds', float('nan')):7.1f}")
    print(f"{'mean':16}" + "".join(f"{np.nanmean([r.get(c, np.nan) for r in rows]):13.3f}" for c in cols))
    print("detected (overlap >= 0.5): " + ", ".join(f"{a} {_detected(rows, a)}" for a in ARTERIES))
    seg: dict[str, list[float]] = {}
    for r in rows:
        for code, v in r.get("segments", {}).items():
            seg.setdefault(code, []).append(v)
    print("segment Dice (mean over cases where present): "
          + ", ".join(f"{c} {np.mean(v):.2f}" for c, v in seg.items()))
    for name, uniform, contrast_free in controls:
        print(f"control {name}: uniform 40 HU -> {uniform}; contrast removed -> {contrast_free}")
    return rows


def _detected(rows: list[dict], artery: str) -> str:
    present = [r[f"{artery} overlap"] for r in rows if np.isfinite(r.get(f"{artery} overlap", np.nan))]
    return f"{sum(v >= DETECTED for v in present)}/{len(present)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", type=Path)
    parser.add_argument("--phantoms", type=int, default=0, help="also generate N small phantoms")
    parser.add_argument("--seed", type=int, default=9100, help="first seed of the generated phantoms")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--realistic", action="store_true", help="generate generator 2.0 (realistic) phantoms")
    mode.add_argument("--both", action="store_true", help="generate default and realistic phantoms, side by side")
    parser.add_argument("--out", type=Path, help="keep the generated phantoms here (a temporary folder otherwise)")
    args = parser.parse_args()
    modes = {"default": False, "realistic": True} if args.both else (
        {"realistic": True} if args.realistic else {"default": False})
    results = {}
    for name, realistic in modes.items():
        cases = list(args.cases) if name == next(iter(modes)) or not args.both else []
        if args.phantoms:
            from cardiovlm.training.phantoms.generate import generate_case

            root = (args.out or Path(tempfile.mkdtemp(prefix="tree-bench-"))) / name
            for k in range(args.phantoms):
                cases.append(generate_case(root, seed=args.seed + k, size="small", with_cac=False,
                                           with_dicom=False, realistic=realistic))
        print(f"== {name} phantoms" if args.phantoms else "== cases")
        results[name] = run(cases)
    if len(results) > 1:
        cols = ["tree", "tree overlap", *ARTERIES, *[f"{a} overlap" for a in ARTERIES]]
        print("== mean, side by side")
        print(f"{'':11}" + "".join(f"{c:>13}" for c in cols) + "  detected " + "/".join(ARTERIES))
        for name, rows in results.items():
            print(f"{name:11}" + "".join(f"{np.nanmean([r.get(c, np.nan) for r in rows]):13.3f}" for c in cols)
                  + "  " + " ".join(_detected(rows, a) for a in ARTERIES))


if __name__ == "__main__":
    main()
