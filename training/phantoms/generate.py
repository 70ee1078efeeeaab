"""Write synthetic CCTA cases (images, labels and ground truth) in the ``cardiovlm.tools.core.case_format`` layout.

Example::

    from cardiovlm.training.phantoms import FindingRequest, generate_case
    case = generate_case(Path("out"), seed=3, findings=[FindingRequest("pLAD", "noncalcified_plaque",
                         stenosis_percent=70, length_mm=14)], with_dicom=False)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np

from cardiovlm.tools.core import case_format as cf
from cardiovlm.tools.core.anatomy import CORONARY_SEGMENTS, label_table
from cardiovlm.tools.core.errors import CardioVLMError
from cardiovlm.tools.ingest.nifti_io import write_nifti
from cardiovlm.tools.quant.cadrads import cad_rads
from cardiovlm.training.phantoms import acquisition as acq
from cardiovlm.training.phantoms.coronary_variants import CoronaryDetail, paint_coronary_detail, sample_coronary_detail
from cardiovlm.training.phantoms.framing import cardiac_field
from cardiovlm.training.phantoms.geometry import Anatomy, sample_anatomy
from cardiovlm.training.phantoms.lesions import Calcification, FindingRequest, apply_findings, sample_requests
from cardiovlm.training.phantoms.noise import NoiseModel
from cardiovlm.training.phantoms.physics import sample_physics
from cardiovlm.training.phantoms.raster import Contrast, Grid, form_image, rasterise
from cardiovlm.training.phantoms.thorax import sample_thorax

GENERATOR_VERSION = "2.0"


@dataclass(frozen=True)
class SizePreset:
    spacing_mm: tuple[float, float, float]  # CCTA voxel size (i, j, k)
    fov_mm: tuple[float, float, float]  # field of view
    cac_inplane_mm: float  # in-plane pixel of the 3 mm calcium-scoring series
    centre_on: str = "heart"  # "heart": a cardiac reconstruction; "chest": the whole thorax in plane


SIZES: dict[str, SizePreset] = {
    # tests: a couple of million voxels, a few seconds
    "small": SizePreset((1.0, 1.0, 1.0), (170.0, 170.0, 120.0), 1.0),
    # clinical in-plane resolution on a reconstruction-sized FOV
    "demo": SizePreset((0.65, 0.65, 1.0), (195.0, 195.0, 130.0), 0.65),
    # a chest CT at the real reference's voxel size (1.5 mm), for realism checks against it
    "chest": SizePreset((1.5, 1.5, 1.5), (420.0, 300.0, 240.0), 1.5, centre_on="chest"),
}


class PhantomError(CardioVLMError):
    """The phantom cannot be written as asked."""

    code = "phantom.invalid"


def _extracoronary(anat: Anatomy, rng: np.random.Generator) -> tuple[list[Calcification], list[str]]:
    """Aortic valve / mitral annulus calcium in about a fifth of cases."""
    calcs, where = [], []
    root_c, axis, root_r = anat.aortic_root
    if rng.random() < 0.2:
        annulus = root_c - 0.6 * root_r * axis
        perp = np.cross(axis, anat.heart.e1)
        perp /= np.linalg.norm(perp)
        for ang in rng.uniform(0, 2 * np.pi, 2):
            p = annulus + 0.7 * root_r * (np.cos(ang) * perp + np.sin(ang) * np.cross(axis, perp))
            calcs.append(Calcification(p, float(rng.uniform(1.5, 3)), float(rng.uniform(400, 1000))))
        where.append("aortic valve")
    if rng.random() < 0.1:
        h = anat.heart
        p = h.surface(0.0, 110.0, -anat.lv_wall_mm)
        calcs.append(Calcification(p, float(rng.uniform(2, 3.5)), float(rng.uniform(400, 1000))))
        where.append("mitral annulus")
    return calcs, where


def _summaries(anat: Anatomy, findings: list[cf.Finding]) -> list[cf.SegmentSummary]:
    out = []
    for seg in CORONARY_SEGMENTS:
        mine = [f for f in findings if f.segment == seg.code]
        plaques = [f for f in mine if f.kind != "stent"]
        kinds = {f.kind for f in plaques}
        if not plaques:
            ptype = "none"
        elif kinds == {"calcified_plaque"}:
            ptype = "calcified"
        elif kinds & {"mixed_plaque"} or ("calcified_plaque" in kinds and len(kinds) > 1):
            ptype = "mixed"
        else:
            ptype = "noncalcified"
        out.append(cf.SegmentSummary(
            segment=seg.code, present=seg.code in anat.vessels,
            max_stenosis_percent=max((f.stenosis_percent for f in mine), default=0.0),
            lesion_length_mm=round(sum(f.length_mm for f in plaques), 1), plaque_type=ptype,
            calcium=any(f.has_calcium for f in mine), stent=any(f.kind == "stent" for f in mine),
            occluded=any(f.kind == "occlusion" for f in mine)))
    return out


def _cadrads_text(findings: list[cf.Finding]) -> str:
    stenoses: dict[str, float] = {}
    for f in findings:
        if f.kind == "stent" and not f.in_stent_restenosis:
            continue
        stenoses[f.segment] = max(stenoses.get(f.segment, 0.0), f.stenosis_percent)
    return cad_rads(stenoses, stent=any(f.kind == "stent" for f in findings)).text


def build(seed: int, *, findings: list[FindingRequest] | None = None, dominance: str | None = None,
          thorax: bool = False, acquisition: acq.Acquisition | None = None):
    """Geometry and ground truth for one seed (no voxels yet): (anatomy, lumens, calcs, extra, findings, where, rng).

    ``thorax`` adds the generator-2.0 thorax (great vessels, pulmonary trees, airways, ribs, abdomen);
    ``acquisition`` may set its sex and body size."""
    rng = np.random.default_rng(seed)
    # the thorax has its own stream, so the main stream's draws (findings, lesions) keep their order
    trng = np.random.default_rng([seed, 2])
    sex, habitus = acq.draw_patient(trng, acquisition)  # habitus: body size in SDs of the population
    if thorax:
        sizes = _population_sizes(np.random.default_rng([seed, 4]), sex, habitus)
        anat = sample_anatomy(rng, dominance, heart_scale=_heart_scale(sex, habitus), **sizes)
        # side branches and variants from their own stream; before lesions, as a high take-off moves the RCA
        anat.coronary_detail = sample_coronary_detail(anat, np.random.default_rng([seed, 5]))
    else:
        anat = sample_anatomy(rng, dominance)
    requests = sample_requests(rng, anat) if findings is None else list(findings)
    lumens, calcs, gt = apply_findings(anat, requests, nodule_in_wall=thorax)
    extra, where = _extracoronary(anat, rng)
    if thorax:
        _fit_body(anat, sex, habitus)
        anat.thorax = sample_thorax(trng, anat, sex=sex)
    return anat, lumens, calcs, extra, gt, where, rng


def _heart_scale(sex: str, habitus: float) -> float:
    """Linear heart size relative to generator 1.0 (whose LV held ~50 mL and whole heart ~340 mL).

    Chosen so the LV end-diastolic volume lands at CT norms (study means 98-146 mL, tabulated in
    Cardiovasc Diagn Ther 2020;10:1918) and the whole heart near the real reference's 669 mL. Larger bodies have
    larger hearts: chamber volumes scale with body surface area (hence volumes indexed to it), whose SD is
    about 10 % of its mean, so linear size grows about 3.5 % per SD of body habitus."""
    return (1.26 if sex == "male" else 1.16) * (1.0 + 0.035 * habitus)


class PopulationSizes(TypedDict):
    """One body's drawn sizes, named as :func:`sample_anatomy`'s keyword arguments."""

    lv_wall_mm: float
    aortic_root_mm: float


def _population_sizes(rng: np.random.Generator, sex: str, habitus: float) -> PopulationSizes:
    """LV wall and aortic root drawn over the adult population's spread (mean +/- 2 SD per sex).

    LV wall (septum, CT): 10.8 +/- 1.8 mm in men, 9.0 +/- 1.7 mm in women (Kang et al. 2017, tabulated in
    Cardiovasc Diagn Ther 2020;10:1918, table 3); kept at 6.5 mm or more, since the apex is thinner still.
    Aortic root at the sinuses: 34 +/- 3 mm in men, 30 +/- 3 mm in women (Lang et al., ASE/EACVI chamber
    quantification 2015); it grows with body size (correlation with habitus taken as 0.5)."""
    male = sex == "male"
    wall_mean, wall_sd = (10.8, 1.8) if male else (9.0, 1.7)
    z_wall = float(np.clip(rng.normal(), -2.0, 2.0))
    z_root = float(np.clip(0.5 * habitus + np.sqrt(0.75) * rng.normal(), -2.0, 2.0))
    return PopulationSizes(lv_wall_mm=max(wall_mean + wall_sd * z_wall, 6.5),
                           aortic_root_mm=(34.0 if male else 30.0) + 3.0 * z_root)


def _fit_body(anat: Anatomy, sex: str, habitus: float) -> None:
    """Body ellipse and spine around the larger 2.0 heart: bigger with habitus, deeper behind the spine."""
    size = (1.03 if sex == "male" else 0.97) * (1.0 + 0.06 * habitus)
    ax_, ay = anat.body_axes
    anat.body_axes = (ax_ * size, ay * size + 12.0)
    anat.body_centre = anat.body_centre + np.array([0.0, 16.0])
    anat.spine_centre = anat.spine_centre + np.array([0.0, 12.0])
    by, ay = float(anat.body_centre[1]), anat.body_axes[1]
    anat.sternum = (np.array([anat.body_centre[0] + 3, by - ay + anat.fat_mm + anat.muscle_mm + 6]), anat.sternum[1])


def case_grid(anat: Anatomy, preset: SizePreset) -> Grid:
    """The CCTA grid of a size preset: centred on the heart, or on the chest for a whole-thorax field."""
    centre = anat.heart.base + 0.3 * anat.heart.length * anat.heart.u
    fov = preset.fov_mm
    if anat.thorax is not None and preset.centre_on == "heart":  # 2.0: the whole coronary tree in the field
        centre, fov = cardiac_field(anat, centre, fov)
    if preset.centre_on == "chest":
        centre = np.array([anat.body_centre[0], anat.body_centre[1], centre[2] + 30.0])
    return Grid.centred(np.round(centre, 1), fov, preset.spacing_mm)


def _cac_series(anat, lumens, calcs, extra, grid: Grid, contrast: Contrast, rng) -> tuple[np.ndarray, np.ndarray, Grid]:
    """Non-contrast 3 mm series: rasterised on 1 mm sub-slices, HU averaged over each 3 mm slab."""
    fine = Grid(grid.shape[:2] + (int(grid.shape[2] * grid.spacing[2] // 3) * 3,), grid.spacing[:2] + (1.0,),
                grid.origin[:2] + (grid.origin[2] + 0.5 * (grid.shape[2] - 1) * grid.spacing[2]
                                   - 0.5 * (int(grid.shape[2] * grid.spacing[2] // 3) * 3 - 1),))
    lab, parts = rasterise(anat, lumens, calcs, fine, extra)
    if isinstance(anat.coronary_detail, CoronaryDetail):
        paint_coronary_detail(lab, parts, fine, anat, anat.coronary_detail)
    plain = Contrast(blood_left=40.0, blood_right=40.0, myocardium=40.0, fat=contrast.fat, lung=contrast.lung,
                     muscle=contrast.muscle, cortical=contrast.cortical, cancellous=contrast.cancellous,
                     liver=55.0, plaque=35.0, stent=contrast.stent)
    hu = form_image(lab, parts, fine, plain, noise_sd=0.0, rng=rng).astype(np.float32)
    n = fine.shape[2] // 3
    slab = hu.reshape(*fine.shape[:2], n, 3).mean(axis=3)
    cac_grid = Grid(fine.shape[:2] + (n,), fine.spacing[:2] + (3.0,), fine.origin[:2] + (fine.origin[2] + 1.0,))
    noise = rng.standard_normal(cac_grid.shape, dtype=np.float32) * float(rng.uniform(12, 20))
    cac = np.clip(np.rint(slab + noise), -1024, 3071).astype(np.int16)
    labs = lab.reshape(*fine.shape[:2], n, 3)
    cac_lab = labs[..., 1].copy()
    calcium = (labs == 40).any(axis=3)  # a calcification anywhere in the slab labels it
    cac_lab[calcium] = 40
    return cac, cac_lab, cac_grid


def generate_case(out_dir: Path, *, seed: int, size: str = "small", findings: list[FindingRequest] | None = None,
                  dominance: str | None = None, with_cac: bool = True, with_dicom: bool = True,
                  preview: bool = False, case_id: str | None = None, noise_sd_hu: float | None = None,
                  blood_hu: float | None = None, realistic: bool = False,
                  acquisition: acq.Acquisition | None = None) -> Path:
    """Generate one phantom case folder under ``out_dir`` and return its path.

    Args:
        out_dir: parent folder (created).
        seed: every random choice derives from it; the same seed gives byte-identical arrays and JSON.
        size: "small" (1 mm voxels, a few seconds), "demo" (0.65 mm in-plane, 1 mm slices, clinical
            resolution) or "chest" (1.5 mm voxels over the whole thorax, the real reference's voxel size).
        findings: exactly these findings; None draws 0-3 from the seed (healthy cases included).
        dominance: "right" or "left"; drawn from the seed when None.
        with_cac: also write the paired non-contrast 3 mm calcium-scoring series.
        with_dicom: also write DICOM series (needs ``cardiovlm.tools.dicom.dicom_write``).
        preview: render axial, coronal and MIP PNGs into ``preview/``.
        case_id: folder name; ``phantom_<seed>`` by default.
        noise_sd_hu: quantum noise SD in HU at this size's voxels; when None it follows the real reference
            (22 HU in soft tissue at 1.5 mm), the slice thickness, the body size and a drawn dose factor.
        blood_hu: left-heart blood pool HU (contrast timing: ~150-250 early or late bolus, 280-520 good
            arterial phase); drawn from 280-520 when None. The right heart keeps its drawn ratio.
            Both knobs exist for shifted evaluation sets; the seed's other draws stay the same.
        acquisition: sex, body size, heart rate and kernel overrides of a realistic phantom
            (:class:`cardiovlm.training.phantoms.acquisition.Acquisition`); None keeps the seed's draws.
        realistic: generator 2.0's thorax and imaging physics (kernel-textured noise scaled to the real
            reference and body size, blood inhomogeneity, right-atrial mixing, SVC streaks, blooming,
            mid-RCA motion blur). Off by default: the image-derived coronary tree
            (``cardiovlm.tools.quant.coronary_tree``) does not yet find the left tree under kernel-textured noise, nor
            the RCA beside pulmonary veins, and the tools' tests run on default phantoms.

    Raises:
        PhantomError: unknown size or acquisition value. PhantomFindingError: a finding cannot be placed.
    """
    if size not in SIZES:
        raise PhantomError(f"unknown phantom size {size!r}; choose one of {', '.join(SIZES)}")
    if noise_sd_hu is not None and not 0 <= noise_sd_hu <= 200:
        raise PhantomError(f"noise_sd_hu must be between 0 and 200 HU, got {noise_sd_hu}")
    if blood_hu is not None and not 50 <= blood_hu <= 1000:
        raise PhantomError(f"blood_hu must be between 50 and 1000 HU, got {blood_hu}")
    preset = SIZES[size]
    if with_dicom:  # fail before minutes of work, not after
        try:
            from cardiovlm.tools.dicom.dicom_write import write_ct_series
        except ImportError as err:
            raise PhantomError("DICOM output needs cardiovlm.tools.dicom.dicom_write, which is not installed; "
                               "use with_dicom=False (--no-dicom)") from err
    if acquisition is not None and acquisition.any and not realistic:
        raise PhantomError("sex, body size, heart rate and kernel are knobs of realistic phantoms: add realistic=True "
                           "(--realistic)")
    anat, lumens, calcs, extra, gt, where, rng = build(seed, findings=findings, dominance=dominance,
                                                       thorax=realistic, acquisition=acquisition)
    contrast = acq.draw_contrast(rng)
    noise_sd = acq.draw_noise_sd(rng)
    physics = None
    if realistic:
        # dose and kernel: the draw scales the reference noise of a body this size at this slice thickness
        noise_sd = NoiseModel().sd_at(preset.spacing_mm[2], anat.thorax.body_diameter_mm,
                                      noise_sd / acq.RANGES.noise_mid_hu)
        phys_rng = np.random.default_rng([seed, 3])
        contrast = acq.thorax_contrast(contrast, anat.thorax, phys_rng, np.random.default_rng([seed, 6]))
        physics = sample_physics(anat, phys_rng, heart_rate_bpm=acq.draw_heart_rate(phys_rng, acquisition))
        physics = acq.with_kernel(physics, acquisition)
    # Overrides replace the draws after they are made, so the rest of the seed's stream is unchanged.
    if blood_hu is not None:
        contrast = acq.with_blood(contrast, blood_hu)
    if noise_sd_hu is not None:
        noise_sd = float(noise_sd_hu)
    if preset.centre_on == "chest" and not realistic:
        raise PhantomError(f"size {size!r} shows the whole thorax: use it with realistic=True (--realistic)")
    grid = case_grid(anat, preset)
    lab, parts = rasterise(anat, lumens, calcs, grid, extra)
    if isinstance(anat.coronary_detail, CoronaryDetail):
        paint_coronary_detail(lab, parts, grid, anat, anat.coronary_detail)
    hu = form_image(lab, parts, grid, contrast, noise_sd, rng, physics)

    case_id = case_id or f"phantom_{seed:06d}"
    root = Path(out_dir) / case_id
    root.mkdir(parents=True, exist_ok=True)
    files = [cf.CCTA_NIFTI, cf.LABELS_NIFTI, cf.LABEL_TABLE_FILE]
    write_nifti(hu, grid.affine, root / cf.CCTA_NIFTI)
    write_nifti(lab, grid.affine, root / cf.LABELS_NIFTI)
    cf.write_json(root / cf.LABEL_TABLE_FILE, {str(k): v for k, v in label_table().items()})
    cac_info = None
    if with_cac:
        cac, cac_lab, cac_grid = _cac_series(anat, lumens, calcs, extra, grid, contrast, rng)
        write_nifti(cac, cac_grid.affine, root / cf.CAC_NIFTI)
        write_nifti(cac_lab, cac_grid.affine, root / cf.CAC_LABELS_NIFTI)
        files += [cf.CAC_NIFTI, cf.CAC_LABELS_NIFTI]
        cac_info = cf.GridInfo(shape=cac_grid.shape, spacing_mm=cac_grid.spacing, origin_mm=cac_grid.origin)
    if with_dicom:
        from pydicom.uid import generate_uid

        # one study, two series: the study UID is shared, every other UID derives from the series' seed
        study_uid = generate_uid(entropy_srcs=[case_id, str(seed), "study"])
        write_ct_series(hu, grid.affine, root / cf.CCTA_DICOM_DIR, series_description="CCTA phantom",
                        contrast="Iohexol", study_uid=study_uid, uid_seed=f"{case_id}-{seed}-ccta",
                        patient_id=case_id, convolution_kernel="B26f")
        files.append(cf.CCTA_DICOM_DIR)
        if with_cac:
            write_ct_series(cac, cac_grid.affine, root / cf.CAC_DICOM_DIR, series_description="Calcium score 3 mm",
                            study_uid=study_uid, uid_seed=f"{case_id}-{seed}-cac", series_number=2,
                            patient_id=case_id, slice_thickness=3.0)
            files.append(cf.CAC_DICOM_DIR)

    centerlines = cf.Centerlines(segments={
        code: [cf.CenterlinePoint(xyz=tuple(round(float(c), 3) for c in p), radius_mm=round(float(r), 3))
               for p, r in zip(v.points, v.radius)] for code, v in anat.vessels.items()})
    cf.write_json(root / cf.CENTERLINES_FILE, centerlines)
    landmarks = {k: [round(float(c), 2) for c in v] for k, v in anat.landmarks.items()}
    for f in gt:
        pts = anat.vessels[f.segment].points
        step = np.linalg.norm(np.diff(pts, axis=0), axis=1).mean()
        landmarks[f"{f.id}_start"] = [round(float(c), 2) for c in pts[min(int(f.start_mm / step), len(pts) - 1)]]
        landmarks[f"{f.id}_end"] = [round(float(c), 2) for c in pts[min(int(f.end_mm / step), len(pts) - 1)]]
    if isinstance(anat.coronary_detail, CoronaryDetail):  # normal variants: ground truth for grading, as the dominance
        landmarks |= anat.coronary_detail.variant_landmarks(anat)
    cf.write_json(root / cf.LANDMARKS_FILE, landmarks)
    result = cf.Findings(findings=gt, segments=_summaries(anat, gt), cad_rads=_cadrads_text(gt),
                         extracoronary_calcium=where)
    cf.write_json(root / cf.FINDINGS_FILE, result)
    files += [cf.CENTERLINES_FILE, cf.LANDMARKS_FILE, cf.FINDINGS_FILE]
    files += _clinical_and_report(root, result, anat.dominance, np.random.default_rng([seed, 1]),
                                  sex=None if anat.thorax is None else anat.thorax.sex)
    if preview:
        from cardiovlm.training.phantoms.preview import write_previews
        write_previews(hu, lab, grid, root / cf.PREVIEW_DIR)
        files.append(cf.PREVIEW_DIR)
    manifest = cf.CaseManifest(
        case_id=case_id, generator_version=GENERATOR_VERSION, seed=seed, size=size, dominance=anat.dominance,
        ccta=cf.GridInfo(shape=grid.shape, spacing_mm=grid.spacing, origin_mm=grid.origin), cac=cac_info,
        contrast_blood_hu=round(contrast.blood_left, 1), noise_sd_hu=round(noise_sd, 1), files=files,
        acquisition=None if physics is None else acq.record(anat.thorax, physics, acquisition))
    cf.write_json(root / cf.MANIFEST_FILE, manifest)
    return root


def _clinical_and_report(root: Path, findings: cf.Findings, dominance: str, rng: np.random.Generator,
                         sex: str | None = None) -> list[str]:
    """clinical.json and report.txt, once the teammates' modules are on main (skipped until then)."""
    try:
        from cardiovlm.training.phantoms.clinical import sample_clinical
        from cardiovlm.training.phantoms.report import write_report
    except ImportError:
        return []
    clinical = sample_clinical(rng, findings, sex=sex)  # a realistic phantom's anatomy has a sex
    cf.write_json(root / cf.CLINICAL_FILE, clinical)
    (root / cf.REPORT_FILE).write_text(write_report(findings, clinical, dominance=dominance, rng=rng))
    return [cf.CLINICAL_FILE, cf.REPORT_FILE]


def case_seed(seed: int, index: int) -> int:
    """Seed of case ``index`` of a dataset drawn with ``seed`` (stable across runs and machines)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def generate_dataset(out_dir: Path, n: int, seed: int, size: str = "small", progress: bool = True,
                     **case_kwargs) -> list[Path]:
    """``n`` cases named ``phantom_<i>`` with seeds derived from ``seed``; returns their folders."""
    if n < 1:
        raise PhantomError(f"number of cases must be at least 1, got {n}")
    from tqdm import tqdm

    paths = []
    for i in tqdm(range(n), desc="phantoms", unit="case", disable=not progress):
        paths.append(generate_case(Path(out_dir), seed=case_seed(seed, i), size=size,
                                   case_id=f"phantom_{i:05d}", **case_kwargs))
    return paths


__all__ = ["FindingRequest", "generate_case", "generate_dataset", "SIZES", "PhantomError", "build", "case_seed"]
