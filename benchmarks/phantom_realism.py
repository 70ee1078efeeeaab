"""How close generator-2.0 phantoms come to real anatomy and to a real contrast chest CT.

For N realistic phantoms at the real reference's voxel size (``size="chest"``, 1.5 mm isotropic):

* anatomy, from the label map and the generator's geometry, against published normal ranges;
* image statistics against the real arterial-phase chest CT of ``shared/REFERENCE.md`` (1.5 mm voxels):
  HU per tissue, median local noise SD (5x5x5 voxels) in blood and soft tissue, NPS peak frequency.

Normal ranges (adult, both sexes pooled; mean +/- 2 SD unless stated):

* LV end-diastolic volume by CT: study means of 98-146 mL with SDs of 21-40 mL (CT reference studies
  tabulated in Cardiovasc Diagn Ther 2020;10:1918, table 3: Kang 2017, Stolzmann 2008, ...) -> 60-220 mL.
* LV wall thickness by CT: septum 10.8 +/- 1.8 mm (men), 9.0 +/- 1.7 mm (women) (Kang et al. 2017, same
  table) -> 6-14 mm. The generator draws each sex's mean +/- 2 SD, so the spread across phantoms is the
  population's; the median wall measured here is a little thinner than the drawn septum (the apex is thinner).
* LA volume by 320-detector CCTA: upper limit (97.5th percentile) 57-60 mL/m^2 (Fuchs et al., Eur Heart J
  Cardiovasc Imaging 2016;17:1009); with a body surface area of 1.6-2.2 m^2 -> 35-130 mL.
* Aortic root at the sinuses: 3.4 +/- 0.3 cm (men), 3.0 +/- 0.3 cm (women) (Lang et al., ASE/EACVI
  chamber quantification 2015) -> 24-40 mm; drawn per sex over mean +/- 2 SD as well.
* Coronary lumen diameter per segment, angiographic (Dodge et al., Circulation 1992;86:232), as recalled
  here, to be checked against the paper: LM 4-5.5 mm, pLAD 3-4.5, mLAD 2.2-3.5, dLAD 1.3-2.5,
  pRCA 3.2-4.8, mRCA 2.8-4.2, dRCA 2.4-3.8, pCx 2.8-4.2, dLCx 1.6-3.2.
* Whole heart (chambers + myocardium): no published range is quoted here; the real reference scan
  measured 669 mL.

Run::

    OMP_NUM_THREADS=1 python benchmarks/phantom_realism.py --n 3 --out /tmp/phantom_realism
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from cardiovlm.tools.core import case_format as cf
from cardiovlm.tools.core.anatomy import CORONARY_LABELS, STRUCTURES_BY_NAME
from cardiovlm.tools.ingest.nifti_io import read_nifti
from cardiovlm.training.phantoms.generate import build, case_seed, generate_case
from cardiovlm.training.phantoms.geometry import ROOT_DIAMETER_PER_RADIUS
from cardiovlm.training.phantoms.noise import NoiseModel, local_sd, radial_nps_peak

L = {n: s.label_id for n, s in STRUCTURES_BY_NAME.items()}

NORMAL = {  # name: (low, high, source)
    "LV EDV (mL)": (60, 220, "CT studies, CDT 2020 table 3"),
    "LV wall (mm)": (6, 14, "Kang 2017 / CDT 2020 table 3"),
    "LA volume (mL)": (35, 130, "Fuchs 2016 (EHJ-CVI)"),
    "aortic root (mm)": (24, 40, "Lang 2015 ASE/EACVI"),
    "heart volume (mL)": (None, None, "real reference 669 mL"),
}
DODGE = {"LM": (4.0, 5.5), "pLAD": (3.0, 4.5), "mLAD": (2.2, 3.5), "dLAD": (1.3, 2.5), "pRCA": (3.2, 4.8),
         "mRCA": (2.8, 4.2), "dRCA": (2.4, 3.8), "pCx": (2.8, 4.2), "dLCx": (1.6, 3.2)}
REAL = {  # shared/REFERENCE.md, real arterial-phase chest CT at 1.5 mm
    "blood HU": (474.0, 39.0), "myocardium HU": (124.0, None), "fat peak HU": (-88.0, None),
    "lung median HU": (-801.0, None), "noise SD blood (HU)": (32.0, None), "noise SD soft tissue (HU)": (22.0, None),
    "NPS peak (1/mm)": (NoiseModel.peak_per_mm, None),
}


@dataclass
class CaseStats:
    anatomy: dict[str, float]
    coronary_mm: dict[str, float]
    image: dict[str, float]
    seconds: float


def _wall_thickness(myo: np.ndarray, spacing: float) -> float:
    """Median of twice the distance to the wall's surface along its medial ridge (mm)."""
    edt = ndimage.distance_transform_edt(myo, sampling=spacing)
    ridge = myo & (edt >= ndimage.maximum_filter(edt, size=3)) & (edt > spacing)
    return float(2 * np.median(edt[ridge]))


def measure(root: Path, seed: int) -> dict:
    hu = np.asarray(read_nifti(root / cf.CCTA_NIFTI).hu).astype(np.float32)
    lab = np.asarray(read_nifti(root / cf.LABELS_NIFTI, labels=True).hu)
    sp = 1.5
    voxel_ml = sp ** 3 / 1000
    heart = np.isin(lab, [L[n] for n in ("lv_blood", "rv_blood", "la_blood", "ra_blood", "lv_myocardium",
                                         "cardiac_wall")])
    anat = build(seed, thorax=True)[0]
    _, _, root_r = anat.aortic_root
    sinus = ROOT_DIAMETER_PER_RADIUS * root_r  # sinus-to-opposite-sinus diameter of the generator's root
    anatomy = {"LV EDV (mL)": float((lab == L["lv_blood"]).sum() * voxel_ml),
               "LV wall (mm)": _wall_thickness(lab == L["lv_myocardium"], sp),
               "LA volume (mL)": float((lab == L["la_blood"]).sum() * voxel_ml),
               "aortic root (mm)": float(sinus),
               "heart volume (mL)": float(heart.sum() * voxel_ml)}
    # Dodge's right-coronary norms describe right-dominant systems; a left-dominant RCA is small by nature
    graded = {c for c in DODGE if anat.dominance == "right" or not c.endswith("RCA")}
    coronary = {c: float(2 * np.median(v.radius[: max(len(v.radius) // 3, 1)])) for c, v in anat.vessels.items()
                if c in graded}
    ball = np.ones((3, 3, 3), bool)
    blood = ndimage.binary_erosion(np.isin(lab, [L["aorta"], L["lv_blood"]]), ball, iterations=2)
    fat = np.isin(lab, [L["subcutaneous_fat"], L["epicardial_fat"]])
    hist, edges = np.histogram(hu[fat], bins=np.arange(-200, 1, 4))
    soft = np.isin(lab, [L["soft_tissue"], L["liver"]])
    liver = ndimage.binary_erosion(lab == L["liver"], ball, iterations=2)
    image = {"blood HU": float(hu[blood].mean()), "blood SD (HU)": float(hu[blood].std()),
             "myocardium HU": float(hu[ndimage.binary_erosion(lab == L["lv_myocardium"])].mean()),
             "fat peak HU": float(edges[np.argmax(hist)] + 2),
             "lung median HU": float(np.median(hu[np.isin(lab, [L["lung_left"], L["lung_right"]])])),
             "noise SD blood (HU)": local_sd(hu, blood), "noise SD soft tissue (HU)": local_sd(hu, soft)}
    # NPS from 24x24 axial ROIs lying wholly inside the liver (a homogeneous organ)
    rois = []
    for k in range(liver.shape[2]):
        for i in range(0, liver.shape[0] - 24, 12):
            for j in range(0, liver.shape[1] - 24, 12):
                if liver[i:i + 24, j:j + 24, k].all():
                    rois.append(hu[i:i + 24, j:j + 24, k])
    image["NPS peak (1/mm)"] = radial_nps_peak(np.stack(rois), (sp, sp)) if len(rois) >= 8 else float("nan")
    image["liver ROIs"] = float(len(rois))
    return {"anatomy": anatomy, "coronary": coronary, "image": image}


def _figure(root: Path, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hu = np.asarray(read_nifti(root / cf.CCTA_NIFTI).hu).astype(np.float32)
    lab = np.asarray(read_nifti(root / cf.LABELS_NIFTI, labels=True).hu)
    cor = np.isin(lab, CORONARY_LABELS)
    k = int(np.argmax(cor.sum(axis=(0, 1))))
    j = int(np.argmax((lab == L["lv_blood"]).sum(axis=(0, 2))))
    i = int(np.argmax((lab == L["aorta"]).sum(axis=(1, 2))))
    views = [("axial (through the coronaries)", hu[:, :, k].T, (40, 400)),
             ("coronal (through the LV)", hu[:, j, ::-1].T, (40, 400)),
             ("sagittal (through the aorta)", hu[i, :, ::-1].T, (40, 400)),
             ("MIP, 10 mm axial slab", hu[:, :, max(k - 3, 0):k + 4].max(axis=2).T, (200, 1000))]
    fig, axes = plt.subplots(1, 4, figsize=(22, 6.5))
    for ax, (title, img, (level, width)) in zip(axes, views):
        ax.imshow(img, cmap="gray", vmin=level - width / 2, vmax=level + width / 2, interpolation="bilinear")
        ax.set_title(title)
        ax.set_axis_off()
    fig.suptitle("generator 2.0 phantom, 1.5 mm (patient right on the image left). A real arterial-phase chest CT "
                 "at 1.5 mm: blood 474 HU, noise 32 HU (blood) / 22 HU (soft tissue), SVC > 1000 HU with streaks, "
                 "branching lung vessels, trabeculated chambers", fontsize=10)
    path = out / "phantom_realism.png"
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3, help="number of phantoms")
    parser.add_argument("--seed", type=int, default=2026, help="dataset seed")
    parser.add_argument("--out", type=Path, default=Path("/tmp/phantom_realism"), help="folder for cases and the PNG")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    stats: list[CaseStats] = []
    roots = []
    for n in range(args.n):
        seed = case_seed(args.seed, n)
        t0 = time.perf_counter()
        root = generate_case(args.out, seed=seed, size="chest", realistic=True, with_dicom=False, with_cac=False,
                             case_id=f"realism_{n:02d}")
        seconds = time.perf_counter() - t0
        m = measure(root, seed)
        stats.append(CaseStats(m["anatomy"], m["coronary"], m["image"], seconds))
        roots.append(root)
    t0 = time.perf_counter()
    generate_case(args.out, seed=case_seed(args.seed, 0), size="small", realistic=True, with_dicom=False,
                  case_id="timing_small")
    small_s = time.perf_counter() - t0

    print(f"\nAnatomy of {args.n} phantoms vs published normal ranges")
    print(f"{'measure':<22}{'min':>9}{'median':>9}{'max':>9}   normal range (source)      in range")
    for name, (lo, hi, src) in NORMAL.items():
        vals = np.array([s.anatomy[name] for s in stats])
        inside = "-" if lo is None else f"{int(((vals >= lo) & (vals <= hi)).sum())}/{len(vals)}"
        rng = "-" if lo is None else f"{lo}-{hi}"
        print(f"{name:<22}{vals.min():9.1f}{np.median(vals):9.1f}{vals.max():9.1f}   {rng:<8} ({src})  {inside}")
    print("\nCoronary lumen diameter (proximal third of each segment, mm) vs Dodge 1992 "
          "(RCA rows: right-dominant phantoms only)")
    for code, (lo, hi) in DODGE.items():
        vals = np.array([s.coronary_mm[code] for s in stats if code in s.coronary_mm])
        if len(vals):
            ok = int(((vals >= lo) & (vals <= hi)).sum())
            print(f"{code:<22}{vals.min():9.2f}{np.median(vals):9.2f}{vals.max():9.2f}   {lo}-{hi}  {ok}/{len(vals)}")
    print("\nImage statistics at 1.5 mm vs the real chest CT")
    print(f"{'measure':<28}{'min':>9}{'median':>9}{'max':>9}{'real':>9}")
    for name in ("blood HU", "blood SD (HU)", "myocardium HU", "fat peak HU", "lung median HU",
                 "noise SD blood (HU)", "noise SD soft tissue (HU)", "NPS peak (1/mm)"):
        vals = np.array([s.image[name] for s in stats])
        real = {"blood SD (HU)": 39.0}.get(name, REAL.get(name, (float("nan"),))[0])
        print(f"{name:<28}{np.nanmin(vals):9.2f}{np.nanmedian(vals):9.2f}{np.nanmax(vals):9.2f}{real:9.2f}")
    print(f"\ngeneration: chest 1.5 mm {np.median([s.seconds for s in stats]):.1f} s per case (median); "
          f"small {small_s:.1f} s (one core, incl. CAC series)")
    print(f"figure: {_figure(roots[0], args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
