"""Stenosis read from CT intensities on tubes of known geometry: lesions, occlusions, calcium, stents,
label maps that disagree with the CT, a CT without contrast, CAD-RADS and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from cardiovlm.assistant.tools.measure_lesion import measure_lesion_tool
from cardiovlm.tools.core import case_format as cf
from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE, STRUCTURES_BY_NAME
from cardiovlm.tools.ingest.study_value import Study
from cardiovlm.tools.quant.context import StudyContext
from cardiovlm.tools.quant.stenosis import NoLumenError, StenosisError, measure_lesion, measure_study, measure_vessel
from cardiovlm.training.phantoms.tubes import OBLIQUE, TubeImage, healthy_radius, straight_tube, tube_image

VOXEL = 0.5  # mm, isotropic
PLAQUE = STRUCTURES_BY_NAME["noncalcified_plaque"].label_id
# Segment boundaries along the tube (arc length, mm): LM 0-6, pLAD 6-26, mLAD 26-46.
SEGMENTS = (("LM", 0.0), ("pLAD", 6.0), ("mLAD", 26.0))


def cosine(s, percent, start, length):
    """Diameter narrowing 0..percent/100: (1 - cos) / 2 over ``[start, start + length]``."""
    s = np.asarray(s, float)
    bump = np.where((s >= start) & (s <= start + length),
                    (1 - np.cos(2 * np.pi * (s - start) / max(length, 1e-9))) / 2, 0.0)
    return percent / 100 * bump


def tube(percent=60.0, start=14.0, length=8.0, *, curved=False, occlusion=None, stent=None, calcium=None,
         total=46.0, noise=15.0, label_percent=None):
    """(hu, labels, affine, centerlines) of a tapering tube with one cosine lesion, CT and label map.

    The axis runs along +k (straight) or on a circular arc of radius 60 mm in the i-k plane (curved).
    ``occlusion=(s0, s1)`` closes the lumen; ``stent=(s0, s1)`` adds metal struts; ``calcium=s``
    puts a 2.4 mm calcified nodule (900 HU) against the lumen at arc length s. ``label_percent``
    labels a different narrowing than the CT holds (a label map that disagrees with the image).
    """
    shape = (80, 30, int(total / VOXEL) + 16) if curved else (30, 30, int(total / VOXEL) + 16)
    affine = np.diag([VOXEL, VOXEL, VOXEL, 1.0])
    i, j, k = np.meshgrid(*[np.arange(n) * VOXEL for n in shape], indexing="ij")
    y = j - 15 * VOXEL
    if curved:
        bend = 60.0
        cx, cz = 8 * VOXEL + bend, 6 * VOXEL
        dx, dz = i - cx, k - cz
        s = bend * np.arctan2(dz, -dx)
        d = np.hypot(np.hypot(dx, dz) - bend, y)
    else:
        s = k - 8 * VOXEL
        d = np.hypot(i - 15 * VOXEL, y)
    valid = (s >= 0) & (s <= total)
    r0 = healthy_radius(s)
    r = np.where(valid, r0 * (1 - cosine(s, percent, start, length)), 0.0)
    plaque = valid & (cosine(s, percent, start, length) > 0) & (d < r0 + 0.5) & (d > r)
    if occlusion:
        closed = (s >= occlusion[0]) & (s <= occlusion[1])
        r = np.where(closed, 0.0, r)
        plaque |= closed & (d < r0 + 0.5)
    metal = None
    if stent:
        metal = (s >= stent[0]) & (s <= stent[1]) & (np.abs(d - r0 - 0.3) <= 0.3)
    ca = None
    if calcium is not None:
        centre_d = r0 + 1.0  # nodule centred 1 mm outside the healthy lumen, touching it
        ca = np.where(np.hypot(s - calcium, np.hypot((i - 15 * VOXEL if not curved else 0) - centre_d, y)) <= 1.2,
                      900.0, 0.0) if not curved else None
    hu = tube_image(d, r, VOXEL, plaque=plaque, stent=metal, calcium_hu=ca, image=TubeImage(noise_sd=noise, seed=3))
    # The label map: the same geometry unless told otherwise (what a segmentation might say).
    r_lab = r if label_percent is None else np.where(valid, r0 * (1 - cosine(s, label_percent, start, length)), 0)
    labels = np.zeros(shape, np.uint8)
    for code, s0 in SEGMENTS:
        labels[valid & (s >= s0) & (d < r_lab)] = SEGMENTS_BY_CODE[code].label_id
    arc = np.arange(0, total + 1e-9, 0.25)
    if curved:
        theta = arc / 60.0
        pts = np.stack([cx - 60.0 * np.cos(theta), np.full_like(arc, 15 * VOXEL), cz + 60.0 * np.sin(theta)], 1)
    else:
        pts = np.stack([np.full_like(arc, 15 * VOXEL), np.full_like(arc, 15 * VOXEL), arc + 8 * VOXEL], 1)
    bounds = [s0 for _, s0 in SEGMENTS] + [total + 1]
    cl = cf.Centerlines(segments={
        code: [cf.CenterlinePoint(xyz=tuple(p), radius_mm=float(healthy_radius(a)))
               for p, a in zip(pts, arc) if bounds[n] <= a < bounds[n + 1]]
        for n, (code, _) in enumerate(SEGMENTS)})
    return hu, labels, affine, cl


def axis_position(xyz, curved):
    """Arc length s (mm) along the tube axis of a point near the axis."""
    x, _, z = xyz
    if curved:
        return 60.0 * np.arctan2(z - 6 * VOXEL, 8 * VOXEL + 60.0 - x)
    return z - 8 * VOXEL


def lad(hu, labels, affine, cl=None, **kw):
    return measure_vessel(hu, affine, ("pLAD", "mLAD"), labels=labels, vessel="LAD", centerlines=cl, **kw)


@pytest.mark.parametrize("curved", [False, True])
@pytest.mark.parametrize("source", ["phantom", "skeleton"])
def test_known_narrowing_gives_known_stenosis_and_length(curved, source):
    hu, labels, affine, cl = tube(percent=60.0, start=14.0, length=8.0, curved=curved)
    m = lad(hu, labels, affine, cl if source == "phantom" else None)
    assert len(m.lesions) == 1, m.lesions
    les = m.lesions[0]
    assert les.segment == "pLAD"
    assert axis_position(les.mld_point_mm, curved) == pytest.approx(18.0, abs=1.0)
    ref = 2 * float(healthy_radius(18.0))
    assert les.reference_diameter_mm == pytest.approx(ref, rel=0.08)
    assert les.stenosis_percent == pytest.approx(60.0, abs=8)
    assert les.category == "3"
    # A cosine narrowing's ends, by the symmetric-taper rule, within about a millimetre.
    assert axis_position(les.start_point_mm, curved) == pytest.approx(14.0, abs=1.5)
    assert axis_position(les.end_point_mm, curved) == pytest.approx(22.0, abs=1.5)
    assert les.length_mm == pytest.approx(8.0, abs=2.0)
    assert "CT intensities" in les.method and "half maximum" in m.area_method
    assert "phantom" in m.centerline_source if source == "phantom" else "skeleton" in m.centerline_source


def test_healthy_tube_has_no_lesion():
    hu, labels, affine, cl = tube(percent=0.0)
    m = lad(hu, labels, affine, cl)
    assert m.lesions == []
    # Diameters follow the analytic taper within a few per cent along the whole tube.
    p = m.profile
    truth = 2 * healthy_radius(p.path.arc_mm + 6.0)
    inner = (p.path.arc_mm > 2) & (p.path.arc_mm < p.path.arc_mm[-1] - 2)
    assert np.median(np.abs(p.diameter_mm[inner] / truth[inner] - 1)) < 0.05


@pytest.mark.parametrize("source", ["phantom", "skeleton"])
def test_occlusion_is_100_percent_and_category_5(source):
    hu, labels, affine, cl = tube(percent=0.0, occlusion=(20.0, 26.0))
    study = measure_study(hu, affine, labels=labels, centerlines=cl if source == "phantom" else None)
    les = next(v for v in study.vessels if v.vessel == "LAD").worst_lesion()
    assert les.occluded and les.stenosis_percent == 100.0
    # The blurred lumen reaches a millimetre or two into each end of the occlusion (read shorter).
    assert 2.0 <= les.occlusion_length_mm <= 7.0
    assert study.cad_rads.category == "5"


def test_a_90_percent_stenosis_is_not_an_occlusion():
    t = straight_tube(90.0, 1.0, image=TubeImage(seed=5))
    les = measure_vessel(t.hu, t.affine, ("pLAD", "mLAD"), centerlines=t.centerlines).worst_lesion()
    assert not les.occluded
    assert 75.0 <= les.stenosis_percent < 100.0


# --- the CT decides, not the label map ------------------------------------------------------------

def test_plaque_relabelled_as_lumen_still_reads_the_stenosis():
    hu, labels, affine, cl = tube(percent=70.0, label_percent=0.0)  # labels: a healthy tube
    for centerlines in (cl, None):
        les = lad(hu, labels, affine, centerlines).worst_lesion()
        assert les is not None and les.stenosis_percent == pytest.approx(70.0, abs=10)


def test_a_narrowed_ct_under_a_healthy_label_reads_the_narrowing_and_vice_versa():
    narrowed_ct, healthy_labels, affine, cl = tube(percent=60.0, label_percent=0.0)
    assert lad(narrowed_ct, healthy_labels, affine, cl).worst_lesion().stenosis_percent == pytest.approx(60, abs=8)
    healthy_ct, narrowed_labels, affine, cl = tube(percent=0.0, label_percent=70.0)
    assert lad(healthy_ct, narrowed_labels, affine, cl).lesions == []


def test_a_uniform_ct_has_no_lumen_and_no_number():
    _, labels, affine, cl = tube(percent=70.0)
    uniform = np.full(labels.shape, 40, np.int16)
    with pytest.raises(NoLumenError, match="no contrast-filled lumen") as err:
        lad(uniform, labels, affine, cl)
    assert "could not be measured" in str(err.value) and err.value.code == "stenosis.no_lumen"
    with pytest.raises(NoLumenError):
        measure_study(uniform, affine, labels=labels, centerlines=cl)


# --- calcium and metal ------------------------------------------------------------------------------

def test_calcium_blooming_is_not_read_as_lumen_and_is_reported_as_calcified_plaque():
    hu, labels, affine, cl = tube(percent=0.0, calcium=20.0)
    m = lad(hu, labels, affine, cl)
    near = np.abs(m.profile.path.arc_mm + 6.0 - 20.0) <= 1.0
    # The lumen next to the nodule is no wider than the healthy lumen (blooming excluded) ...
    assert np.all(m.profile.diameter_mm[near] <= m.profile.reference_mm[near] * 1.1)
    # ... and the nodule is found as calcified plaque (a CAD-RADS 1 lesion without a stenosis).
    les = m.worst_lesion()
    assert les is not None and les.plaque and les.composition.calcified_mm3 > 0
    assert les.stenosis_percent < 25 and les.composition.kind in ("calcified", "mixed")
    assert axis_position(les.mld_point_mm, False) == pytest.approx(20.0, abs=2.5)


def test_a_lumen_running_straight_into_a_calcified_ring_is_bounded_half_way_to_the_calcium():
    # A 3.2 mm lumen (350 HU) halved over 8 mm by a 900 HU calcium ring, painted without blur: the
    # lumen meets calcium with no darker tissue between, so its edge lies half-way up the climb.
    shape, voxel = (40, 40, 80), 0.5
    i, j, k = np.indices(shape)
    radius = np.hypot(i - 20, j - 20) * voxel
    ring = (k >= 30) & (k < 46) & (radius > 0.8) & (radius <= 1.6)
    hu = np.where(radius <= 1.6, 350.0, -80.0)
    hu[ring] = 900.0
    labels = np.where((radius <= 1.6) & ~ring, SEGMENTS_BY_CODE["pLAD"].label_id, 0).astype(np.uint8)
    m = measure_vessel(hu, np.diag([voxel, voxel, voxel, 1.0]), ("pLAD",), labels=labels, vessel="LAD")
    les = m.worst_lesion()
    assert les is not None and les.stenosis_percent == pytest.approx(50, abs=5)
    assert les.composition.calcified_mm3 > 0 and not les.occluded


def test_a_stent_is_found_by_its_metal_and_adds_S():
    hu, labels, affine, cl = tube(percent=0.0, stent=(12.0, 22.0))
    study = measure_study(hu, affine, labels=labels, centerlines=cl)
    assert study.stent_present and "S" in study.cad_rads.modifiers
    lad_m = next(v for v in study.vessels if v.vessel == "LAD")
    inside = (lad_m.profile.path.arc_mm + 6.0 > 14) & (lad_m.profile.path.arc_mm + 6.0 < 20)
    assert lad_m.profile.stent[inside].all()
    # The metal is neither calcium nor a stenosis: a patent stent is CAD-RADS 0/S.
    assert study.cad_rads.category == "0"


def test_no_stent_without_metal():
    hu, labels, affine, cl = tube(percent=0.0)
    assert not measure_study(hu, affine, labels=labels, centerlines=cl).stent_present


# --- session tool and bad input --------------------------------------------------------------------

def _context(hu, labels, modality="CT"):
    study = Study(hu=hu, spacing=(VOXEL,) * 3, affine=np.diag([VOXEL, VOXEL, VOXEL, 1.0]), modality=modality,
                  hu_calibrated=modality == "CT")
    return StudyContext(study=study, labels=labels, labels_source="test tube")


def test_tool_answers_for_a_segment_and_reports_its_evidence():
    hu, labels, _, _ = tube(percent=60.0)
    out = measure_lesion_tool.invoke({"vessel": "proximal LAD"}, config=_context(hu, labels).as_config())
    assert out["segment"] == "pLAD"
    assert out["lesion"]["category"] == "3"
    assert "skeleton" in out["measurement"]["centerline_source"]
    assert "CT intensities" in out["measurement"]["measured_from"]
    assert "CT intensities" in out["message"]
    assert "profile" not in out["measurement"]
    assert out["labels_source"] == "test tube"


def test_no_lesion_on_a_segment_is_an_answer():
    hu, labels, _, _ = tube(percent=60.0, start=14.0)
    result = measure_lesion(_context(hu, labels), "mLAD")
    assert result.lesion is None and "No lesion" in result.message


@pytest.mark.parametrize(("ctx_kw", "name", "match"), [
    ({}, "proximal LAB", "not a coronary artery or segment"),
    ({"modality": "MR"}, "pLAD", "MR study"),
    ({"no_labels": True}, "pLAD", "no coronary artery segmentation"),
    ({}, "aorta", "not a coronary artery"),
    ({"uniform": True}, "pLAD", "no contrast-filled lumen"),
])
def test_bad_input_gives_a_clear_message(ctx_kw, name, match):
    hu, labels, _, _ = tube()
    if ctx_kw.pop("no_labels", False):
        labels = np.where(labels >= 20, 0, labels).astype(np.uint8)
    if ctx_kw.pop("uniform", False):
        hu = np.full(hu.shape, 40.0, np.float32)
    with pytest.raises(StenosisError, match=match):
        measure_lesion(_context(hu, labels, **ctx_kw), name)


def test_old_label_only_call_is_refused_clearly():
    # A label map passed where the CT belongs has no contrast-filled lumen: refused, never measured.
    _, labels, affine, cl = tube()
    with pytest.raises(NoLumenError):
        measure_vessel(labels, affine, ("pLAD", "mLAD"), centerlines=cl)


def test_a_lumen_dimming_along_the_vessel_is_not_read_as_a_narrowing():
    # The contrast falls from 430 to 230 HU along a healthy tube (a transluminal gradient): each plane
    # is compared with its own stretch of lumen, not the whole vessel's.
    from scipy import ndimage

    from cardiovlm.tools.quant.lumen_profile import CrossSectionConfig
    from cardiovlm.tools.quant.stenosis import StenosisConfig

    total = 46.0
    shape = (30, 30, int(total / VOXEL) + 16)
    i, j, k = np.meshgrid(*[np.arange(n) * VOXEL for n in shape], indexing="ij")
    s, d = k - 8 * VOXEL, np.hypot(i - 15 * VOXEL, j - 15 * VOXEL)
    valid = (s >= 0) & (s <= total)
    r = np.where(valid, healthy_radius(s), 0.0)
    # the image is linear in the lumen attenuation: fat/blur part plus lumen HU x lumen part
    fat = tube_image(d, r, VOXEL, image=TubeImage(lumen_hu=0.0, noise_sd=0.0))
    lumen_part = tube_image(d, r, VOXEL, image=TubeImage(lumen_hu=1.0, noise_sd=0.0)) - fat
    noise = ndimage.gaussian_filter(np.random.default_rng(3).standard_normal(shape), 0.5 / VOXEL)
    hu = fat + (430.0 - 200.0 * np.clip(s, 0, total) / total) * lumen_part + noise * (15.0 / noise.std())
    labels = np.zeros(shape, np.uint8)
    for code, s0 in SEGMENTS:
        labels[valid & (s >= s0) & (d < r)] = SEGMENTS_BY_CODE[code].label_id
    affine = np.diag([VOXEL, VOXEL, VOXEL, 1.0])
    m = lad(hu, labels, affine)
    assert m.lesions == [] and m.profile.mld_stenosis_percent.max() < 10
    # Control: against the whole vessel's lumen, the dim distal lumen reads as a 15-25 % narrowing.
    whole = StenosisConfig(cross_section=CrossSectionConfig(local_lumen_mm=0))
    assert lad(hu, labels, affine, config=whole).profile.mld_stenosis_percent.max() > 15


# --- 1 mm voxels ---------------------------------------------------------------------------------------

def test_70_percent_at_1mm_voxels_on_several_axes_and_offsets():
    readings = []
    for direction in (OBLIQUE, (0.6, 0.1, 0.8)):
        for n, offset in enumerate(((0.37, 0.21, 0.0), (0.1, 0.6, 0.3), (0.5, 0.5, 0.5))):
            t = straight_tube(70.0, 1.0, direction=direction, offset=offset, image=TubeImage(seed=10 + n))
            les = measure_vessel(t.hu, t.affine, ("pLAD", "mLAD"), centerlines=t.centerlines).worst_lesion()
            assert les is not None and not les.occluded, (direction, offset)
            assert les.stenosis_percent == pytest.approx(70.0, abs=10), (direction, offset)
            assert les.length_mm == pytest.approx(12.0, abs=2.5), (direction, offset)
            readings.append(les.stenosis_percent)
    assert np.mean(readings) == pytest.approx(70.0, abs=6)


def test_healthy_tubes_at_1mm_have_no_lesion():
    for n, direction in enumerate((OBLIQUE, (0.6, 0.1, 0.8), (0.3, 0.5, 0.8))):
        t = straight_tube(0.0, 1.0, direction=direction, total=60, image=TubeImage(seed=20 + n))
        assert measure_vessel(t.hu, t.affine, ("pLAD", "mLAD"), centerlines=t.centerlines).lesions == []


# --- phantom findings -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def phantom_case(tmp_path_factory):
    from cardiovlm.training.phantoms.generate import generate_case
    from cardiovlm.training.phantoms.lesions import FindingRequest

    findings = [FindingRequest("pLAD", "noncalcified_plaque", stenosis_percent=50, length_mm=12),
                FindingRequest("pCx", "occlusion", length_mm=6)]
    return generate_case(tmp_path_factory.mktemp("phantom"), seed=7, size="small", findings=findings)


def test_phantom_findings_are_measured_from_the_ct(phantom_case):
    from cardiovlm.tools.quant.context import load_context

    # The case's label map and centerlines only say where the vessels run.
    ctx = load_context(phantom_case, anatomy="case_labels")
    for truth in ctx.reference.findings.findings:
        les = measure_lesion(ctx, truth.segment).lesion
        assert les is not None, truth
        assert les.stenosis_percent == pytest.approx(truth.stenosis_percent, abs=12), truth
        assert les.length_mm == pytest.approx(truth.length_mm, abs=3), truth
        assert les.occluded == (truth.kind == "occlusion")
    study = measure_study(ctx.study.hu, ctx.study.affine, labels=ctx.labels, centerlines=ctx.centerlines)
    assert study.cad_rads.category == "5"


def test_a_step_edged_lesion_is_full_depth_over_its_whole_length_and_a_tapered_one_is_not():
    # The benchmark's step lesions: what a lesion-end rule meets at an abrupt plaque edge.
    from cardiovlm.training.phantoms.tubes import lesion_weight

    s = np.arange(0.0, 40.0, 0.5)
    step, flat = lesion_weight(s, 10.0, 12.0, "step"), lesion_weight(s, 10.0, 12.0, "flat")
    inside = (s >= 10.0) & (s <= 22.0)
    assert np.all(step[inside] == 1.0) and np.all(step[~inside] == 0.0)
    assert flat[inside].min() < 0.5  # the phantoms' shoulders taper
    with pytest.raises(ValueError, match="unknown lesion shape"):
        lesion_weight(s, 10.0, 12.0, "jagged")
