"""How close generator-2.0 phantoms come to real anatomy and to a real contrast chest CT, target by target.

For N realistic phantoms at the real reference's voxel size (``size="chest"``, 1.5 mm isotropic), each
row prints the share of phantoms inside its range (target >= 95 %) and the spread across phantoms
beside the published population spread (target: SD across phantoms >= 0.8 x the published SD, i.e.
the phantoms cover the population rather than its mean only):

* anatomy, from the label map and the generator's geometry, against published normal ranges;
* image statistics against the real arterial-phase chest CT of ``shared/REFERENCE.md`` (1.5 mm voxels):
  HU per tissue within one SD of the real value, local noise SD (5x5x5 voxels) in blood and soft tissue
  within 20 %, NPS peak within 0.1 /mm of a typical cardiac kernel;
* contrast timing: each phantom's blood against the documented arterial-phase range, and two controls
  on the first seed with the blood set to each real scan's level (CCTA 285 HU, chest CT 474 HU), each
  compared with its own reference. The drawn phantoms are compared with the range, not with one scan:
  the two real scans are 190 HU apart, and blood HU is a timing knob, not a tissue constant.

Normal ranges (adult; mean +/- 2 SD; per sex where the source gives it, else both sexes pooled):

* LV end-diastolic volume by CT: study means of 98-146 mL with SDs of 21-40 mL (CT reference studies
  tabulated in Cardiovasc Diagn Ther 2020;10:1918, table 3: Kang 2017, Stolzmann 2008, ...) -> 60-220 mL;
  published SD taken as 30 mL, the middle of the studies' SDs.
* LV wall thickness by CT: septum 10.8 +/- 1.8 mm (men), 9.0 +/- 1.7 mm (women) (Kang et al. 2017, same
  table) -> men 7.2-14.4 mm, women 5.6-12.4 mm; pooled SD 2.0 mm (60 % men). Two rows: the drawn septum
  (the spread is judged on it) and the median wall measured on the label map, which moves in 1.5 mm
  voxel steps and is a little thinner (the apex is thinner).
* LA volume by 320-detector CCTA: upper limit (97.5th percentile) 57-60 mL/m^2 (Fuchs et al., Eur Heart J
  Cardiovasc Imaging 2016;17:1009); with a body surface area of 1.6-2.2 m^2 -> 35-130 mL. No SD quoted.
* Aortic root at the sinuses: 3.4 +/- 0.3 cm (men), 3.0 +/- 0.3 cm (women) (Lang et al., ASE/EACVI
  chamber quantification 2015) -> men 28-40 mm, women 24-36 mm; pooled SD 3.6 mm (60 % men).
* Coronary lumen diameter per segment, angiographic (Dodge et al., Circulation 1992;86:232), as recalled
  here, to be checked against the paper: LM 4-5.5 mm, pLAD 3-4.5, mLAD 2.2-3.5, dLAD 1.3-2.5,
  pRCA 3.2-4.8, mRCA 2.8-4.2, dRCA 2.4-3.8, pCx 2.8-4.2, dLCx 1.6-3.2. No SD quoted.
* Whole heart (chambers + myocardium): no published range is quoted here; the real reference scan
  measured 669 mL.

Image tolerances: blood, noise and NPS as stated above. The real scan's tissue SDs other than blood
were not measured, so myocardium, fat and lung use its local soft-tissue noise SD (22 HU) as "one SD":
a stricter bar than a tissue SD. NPS: soft-tissue/cardiac kernels peak at 0.2-0.3 /mm (Solomon,
Christianson & Samei, Med Phys 2012;39:6048; see ``training/phantoms/noise.py``), so 0.25 +/- 0.1 /mm.
Contrast timing: adequate opacification from 250 HU, protocols aim for 300-450 HU (SCCT 2016, Abbara
et al., J Cardiovasc Comput Tomogr 2016;10:435), up to the denser real scan + 2 SD (552 HU).

Run::

    OMP_NUM_THREADS=1 python benchmarks/phantom_realism.py --n 20 --out /tmp/phantom_realism
"""

from __future__ import annotations

import argparse
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from cardiovlm.tools.core import case_format as cf
from cardiovlm.tools.core.anatomy import CORONARY_LABELS, STRUCTURES_BY_NAME
from cardiovlm.tools.ingest.nifti_io import read_nifti
from cardiovlm.training.phantoms.acquisition import RANGES
from cardiovlm.training.phantoms.generate import build, case_seed, generate_case
from cardiovlm.training.phantoms.geometry import ROOT_DIAMETER_PER_RADIUS
from cardiovlm.training.phantoms.heart_measures import rv_volume_ml, septum_thickness_mm
from cardiovlm.training.phantoms.noise import NoiseModel, local_sd, radial_nps_peak

L = {n: s.label_id for n, s in STRUCTURES_BY_NAME.items()}


@dataclass(frozen=True)
class Target:
    """A published range (or a real reference with its tolerance) and, where known, the population's SD."""

    low: float | None
    high: float | None
    source: str
    published_sd: float | None = None
    by_sex: dict[str, tuple[float, float]] | None = None  # each phantom judged on its own sex's range

    def bounds(self, sex: str | None) -> tuple[float | None, float | None]:
        if self.by_sex is not None and sex in self.by_sex:
            return self.by_sex[sex]
        return self.low, self.high


@dataclass(frozen=True)
class Summary:
    """One measurement over the phantoms, against its target."""

    n: int
    inside: int
    median: float
    low: float
    high: float
    sd: float  # across phantoms

    @property
    def share(self) -> float:
        return self.inside / self.n if self.n else float("nan")


MIN_SHARE = 0.95  # share of phantoms inside the range
MIN_SPREAD = 0.8  # SD across phantoms / published SD: the phantoms cover the population's spread

ANATOMY = {
    "LV EDV (mL)": Target(60, 220, "CT studies, CDT 2020 table 3", 30.0),
    "LV wall, drawn septum (mm)": Target(5.6, 14.4, "Kang 2017 / CDT 2020 table 3, per sex", 2.0,
                                         by_sex={"male": (7.2, 14.4), "female": (5.6, 12.4)}),
    "LV wall, label map (mm)": Target(5.6, 14.4, "same, per sex; median over the wall, 1.5 mm steps",
                                      by_sex={"male": (7.2, 14.4), "female": (5.6, 12.4)}),
    "RV EDV (mL)": Target(85, 230, "Lin 2008 CT / Maceira 2006 CMR, as recalled; heart_measures"),
    "septum, label map (mm)": Target(5.6, 14.4, "Kang 2017 / CDT 2020 table 3, per sex; heart_measures",
                                     by_sex={"male": (7.2, 14.4), "female": (5.6, 12.4)}),
    "LA volume (mL)": Target(35, 130, "Fuchs 2016 (EHJ-CVI)"),
    "aortic root (mm)": Target(24, 40, "Lang 2015 ASE/EACVI, per sex", 3.6,
                               by_sex={"male": (28.0, 40.0), "female": (24.0, 36.0)}),
    "heart volume (mL)": Target(None, None, "real reference 669 mL, no range"),
}
DODGE = {"LM": (4.0, 5.5), "pLAD": (3.0, 4.5), "mLAD": (2.2, 3.5), "dLAD": (1.3, 2.5), "pRCA": (3.2, 4.8),
         "mRCA": (2.8, 4.2), "dRCA": (2.4, 3.8), "pCx": (2.8, 4.2), "dLCx": (1.6, 3.2)}
SOFT_NOISE = 22.0  # the real scan's local soft-tissue noise SD, the tolerance where no tissue SD was measured
PHASE = RANGES.arterial_phase
IMAGE = {  # shared/REFERENCE.md, real arterial-phase chest CT at 1.5 mm
    "blood HU": Target(PHASE.low, PHASE.high, "arterial phase 250-552 (SCCT 2016; 474 + 2 x 39)"),
    # within-scan blood SD grows with the enhancement: judged at the chest CT's 474 HU in the timing control
    "blood SD (HU)": Target(None, None, "real 39 HU at 474 HU: see the timing control"),
    "myocardium HU": Target(124.0 - SOFT_NOISE, 124.0 + SOFT_NOISE, "real 124 +/- 22 HU"),
    "fat peak HU": Target(-88.0 - SOFT_NOISE, -88.0 + SOFT_NOISE, "real -88 +/- 22 HU"),
    "lung median HU": Target(-801.0 - SOFT_NOISE, -801.0 + SOFT_NOISE, "real -801 +/- 22 HU"),
    "noise SD blood (HU)": Target(32.0 * 0.8, 32.0 * 1.2, "real 32 HU +/- 20 %"),
    "noise SD soft tissue (HU)": Target(22.0 * 0.8, 22.0 * 1.2, "real 22 HU +/- 20 %"),
    "NPS peak (1/mm)": Target(NoiseModel.peak_per_mm - 0.1, NoiseModel.peak_per_mm + 0.1,
                              "cardiac kernel 0.25 +/- 0.1 (Solomon 2012)"),
}
TIMING_CONTROLS = {"real CCTA": (285.0, 33.0), "real chest CT": (474.0, 39.0)}  # blood HU (SD), REFERENCE.md


def summarise(values, target: Target, sexes: list[str] | None = None) -> Summary:
    """Share of ``values`` inside ``target`` (NaNs count as outside; per-sex ranges need ``sexes``) and their spread."""
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(v)
    inside = 0
    if target.low is not None:
        for x, sex in zip(v, sexes or [None] * len(v)):
            lo, hi = target.bounds(sex)
            inside += bool(lo is not None and hi is not None and np.isfinite(x) and lo <= x <= hi)
    if not ok.any():
        return Summary(len(v), 0, float("nan"), float("nan"), float("nan"), float("nan"))
    return Summary(len(v), inside, float(np.median(v[ok])), float(v[ok].min()), float(v[ok].max()),
                   float(v[ok].std(ddof=1)) if ok.sum() > 1 else 0.0)


def misses(name: str, s: Summary, target: Target) -> list[str]:
    """The targets this row misses, in words."""
    out = []
    if target.low is not None and s.share < MIN_SHARE:
        where = "its sex's range" if target.by_sex else f"{target.low:g}-{target.high:g}"
        out.append(f"{name}: {s.inside}/{s.n} inside {where} (target {MIN_SHARE:.0%})")
    if target.published_sd and s.sd < MIN_SPREAD * target.published_sd:
        out.append(f"{name}: spread SD {s.sd:.2f} < {MIN_SPREAD} x published SD {target.published_sd:g}")
    return out


@dataclass
class CaseStats:
    sex: str
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
    sp = float(cf.load_case(root).manifest.ccta.spacing_mm[0])  # isotropic at the chest size
    voxel_ml = sp ** 3 / 1000
    heart = np.isin(lab, [L[n] for n in ("lv_blood", "rv_blood", "la_blood", "ra_blood", "lv_myocardium",
                                         "cardiac_wall")])
    anat = build(seed, thorax=True)[0]
    _, _, root_r = anat.aortic_root
    sinus = ROOT_DIAMETER_PER_RADIUS * root_r  # sinus-to-opposite-sinus diameter of the generator's root
    anatomy = {"LV EDV (mL)": float((lab == L["lv_blood"]).sum() * voxel_ml),
               "LV wall, drawn septum (mm)": float(anat.lv_wall_mm),
               "LV wall, label map (mm)": _wall_thickness(lab == L["lv_myocardium"], sp),
               "RV EDV (mL)": rv_volume_ml(lab, (sp, sp, sp)),
               "septum, label map (mm)": septum_thickness_mm(lab, (sp, sp, sp)),
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
    manifest = cf.load_case(root).manifest
    sex = manifest.acquisition.sex if manifest.acquisition is not None else "unknown"
    return {"sex": sex, "anatomy": anatomy, "coronary": coronary, "image": image}


# What the real arterial-phase chest CT shows in each view (shared/REFERENCE.md), beside the phantom's view
REAL_VIEWS = (
    "Real chest CT, axial: blood pool 474 HU (SD 39), myocardium about 124 HU, trabeculated irregular chambers; "
    "descending aorta beside the spine; vertebral body with posterior elements, ribs, sternum, chest-wall muscles, "
    "oesophagus; noise 32 HU (blood), 22 HU (soft tissue)",
    "Real chest CT, coronal: liver below the diaphragm; undiluted contrast in the SVC (parts above 1000 HU) with "
    "streaks; swirling mixing in the right atrium; whole heart about 669 mL",
    "Real chest CT, sagittal: covers liver dome to aortic arch; descending aorta beside the spine; vertebral bodies "
    "with posterior elements; sternum; fat histogram peak -88 HU",
    "Real chest CT, MIP: lungs (median -801 HU) with branching vessels to the periphery, hila, pulmonary arteries; "
    "dense SVC contrast with streaks",
)


def _figure(root: Path, out: Path) -> Path:
    """Axial, coronal, sagittal and MIP views of one phantom (top), and what the real CT shows in each (below)."""
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
    fig, axes = plt.subplots(2, 4, figsize=(22, 9), gridspec_kw={"height_ratios": [3, 1]})
    for ax, (title, img, (level, width)) in zip(axes[0], views):
        ax.imshow(img, cmap="gray", vmin=level - width / 2, vmax=level + width / 2, interpolation="bilinear")
        ax.set_title(f"phantom, {title}, W{width} L{level}")
        ax.set_axis_off()
    for ax, text in zip(axes[1], REAL_VIEWS):
        ax.text(0.0, 1.0, textwrap.fill(text, 52), va="top", ha="left", fontsize=9, transform=ax.transAxes)
        ax.set_axis_off()
    fig.suptitle("generator 2.0 phantom at 1.5 mm (patient right on the image left), above; the real arterial-phase "
                 "chest CT at 1.5 mm, described view by view, below (no real image is shipped)", fontsize=10)
    path = out / "phantom_realism.png"
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path


def _table(title: str, rows: dict[str, tuple[list[float], Target]], fmt: str = ".1f",
           sexes: list[str] | None = None) -> list[str]:
    """Print one table of rows (values over phantoms, target); return the targets missed."""
    print(f"\n{title}")
    print(f"{'measure':<26}{'min':>8}{'median':>8}{'max':>8}  {'range':<14}{'inside':>8}{'share':>7}"
          f"{'SD phantoms':>12}{'SD published':>13}  source")
    missed: list[str] = []
    for name, (values, target) in rows.items():
        s = summarise(values, target, sexes)
        rng = "-" if target.low is None else f"{target.low:{fmt}}-{target.high:{fmt}}" + ("*" if target.by_sex else "")
        inside = "-" if target.low is None else f"{s.inside}/{s.n}"
        share = "-" if target.low is None else f"{s.share:.0%}"
        pub = "-" if target.published_sd is None else f"{target.published_sd:g}"
        print(f"{name:<26}{s.low:8{fmt}}{s.median:8{fmt}}{s.high:8{fmt}}  {rng:<14}{inside:>8}{share:>7}"
              f"{s.sd:12{fmt}}{pub:>13}  {target.source}")
        missed += misses(name, s, target)
    return missed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3, help="number of phantoms")
    parser.add_argument("--seed", type=int, default=2026, help="dataset seed")
    parser.add_argument("--out", type=Path, default=Path("/tmp/phantom_realism"), help="folder for cases and the PNG")
    args = parser.parse_args(argv)
    if args.n < 2:
        parser.error("--n must be at least 2 (a spread needs two phantoms)")
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
        stats.append(CaseStats(m["sex"], m["anatomy"], m["coronary"], m["image"], seconds))
        roots.append(root)
    controls = {}
    for name, (blood, _) in TIMING_CONTROLS.items():  # the first seed, blood set to the real scan's level
        seed = case_seed(args.seed, 0)
        root = generate_case(args.out, seed=seed, size="chest", realistic=True, with_dicom=False, with_cac=False,
                             case_id=f"timing_{int(blood)}", blood_hu=blood)
        controls[name] = measure(root, seed)["image"]
    t0 = time.perf_counter()
    generate_case(args.out, seed=case_seed(args.seed, 0), size="small", realistic=True, with_dicom=False,
                  case_id="timing_small")
    small_s = time.perf_counter() - t0

    missed = _table(f"Anatomy of {args.n} phantoms vs published normal ranges (target: >= {MIN_SHARE:.0%} inside; "
                    f"SD across phantoms >= {MIN_SPREAD} x published SD)",
                    {name: ([s.anatomy[name] for s in stats], t) for name, t in ANATOMY.items()},
                    sexes=[s.sex for s in stats])
    print(f"  * judged on each phantom's own sex (mean +/- 2 SD per sex); {sum(s.sex == 'male' for s in stats)} "
          f"men, {sum(s.sex == 'female' for s in stats)} women")
    missed += _table("Coronary lumen diameter, proximal third of each segment (mm), vs Dodge 1992 "
                     "(RCA rows: right-dominant phantoms only)",
                     {code: ([s.coronary_mm[code] for s in stats if code in s.coronary_mm],
                             Target(lo, hi, "Dodge 1992, as recalled")) for code, (lo, hi) in DODGE.items()},
                     fmt=".2f")
    missed += _table("Image statistics at 1.5 mm vs the real chest CT (blood: the documented arterial-phase range)",
                     {name: ([s.image[name] for s in stats], t) for name, t in IMAGE.items()}, fmt=".2f")
    print("\nContrast timing controls: first seed, blood set to each real scan's level, measured as above")
    print(f"{'reference':<16}{'set':>8}{'measured':>10}{'real (SD)':>12}  within 1 SD")
    for name, (blood, sd) in TIMING_CONTROLS.items():
        got = controls[name]["blood HU"]
        ok = abs(got - blood) <= sd
        print(f"{name:<16}{blood:8.0f}{got:10.1f}{f'{blood:.0f} ({sd:.0f})':>12}  {'yes' if ok else 'NO'}")
        if not ok:
            missed.append(f"timing control {name}: {got:.0f} HU set to {blood:.0f} (SD {sd:.0f})")
    # the blood's within-scan SD grows with its enhancement: like for like only at the chest CT's 474 HU
    chest = controls["real chest CT"]
    ok = 0.8 * 39.0 <= chest["blood SD (HU)"] <= 1.2 * 39.0
    print(f"blood SD at 474 HU: {chest['blood SD (HU)']:.1f} HU vs the chest CT's 39 HU (+/- 20 %): "
          f"{'yes' if ok else 'NO'}; local noise SD in blood {chest['noise SD blood (HU)']:.1f} vs 32 HU")
    if not ok:
        missed.append(f"blood SD at the chest CT's 474 HU: {chest['blood SD (HU)']:.1f} HU vs 39 HU +/- 20 %")
    print(f"\ngeneration: chest 1.5 mm {np.median([s.seconds for s in stats]):.1f} s per case (median); "
          f"small {small_s:.1f} s (one core, incl. CAC series)")
    print(f"figure: {_figure(roots[0], args.out)}")
    print("\nTargets missed:" if missed else "\nTargets missed: none")
    for line in missed:
        print(f"  - {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
