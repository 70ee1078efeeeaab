"""The vessel view on a tube of known geometry: the straightened CT shows the narrowing where it is,
the plot marks the MLD, the stent and its landing zones where the measurement puts them; bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cardiovlm.tools.quant.stenosis import measure_vessel
from cardiovlm.tools.quant.stent import lesion_site, plan_stent
from cardiovlm.tools.views.vessel_view import (
    VesselViewConfig,
    VesselViewError,
    drawing_from_measurement,
    lesion_sections,
    render_vessel_view,
    rotation_minimising_frame,
    straighten,
)
from cardiovlm.training.phantoms.tubes import (
    OBLIQUE,
    SEGMENTS,
    healthy_radius,
    lesion_weight,
    straight_tube,
    tube_image,
)

NARROWEST = 18.0  # mm along the tube: a 70 % cosine narrowing over 12-24 mm
PLAD_START = dict(SEGMENTS)["pLAD"]  # the measured LAD path starts here


@pytest.fixture(scope="module")
def tube():
    return straight_tube(70.0, voxel=0.5, direction=OBLIQUE, shape="cosine", start=12.0, length=12.0, total=40.0)


def _path(tube):
    return np.array([p.xyz for code in ("LM", "pLAD", "mLAD") for p in tube.centerlines.segments[code]])


def curved_tube(bend_mm: float = 25.0, total: float = 40.0, voxel: float = 0.5):
    """(hu, affine, path) of a tube bent on a circle of ``bend_mm`` in the i-k plane (about 90 degrees),
    with the same 70 % cosine narrowing at 18 mm along it."""
    shape = (int((bend_mm + 8) / voxel), int(12 / voxel), int((bend_mm + 8) / voxel))
    i, j, k = np.meshgrid(*[np.arange(n) * voxel for n in shape], indexing="ij")
    centre = np.array([bend_mm + 4.0, 6.0, 4.0])  # the circle's centre; the tube starts at i = 4 mm
    dx, dz = i - centre[0], k - centre[2]
    s = bend_mm * np.arctan2(dz, -dx)
    dist = np.hypot(np.hypot(dx, dz) - bend_mm, j - centre[1])
    r = np.where((s >= 0) & (s <= total), healthy_radius(s) * (1 - 0.7 * lesion_weight(s, 12.0, 12.0, "cosine")), 0)
    hu = tube_image(dist, r, voxel)
    theta = np.arange(0, total + 1e-9, 0.25) / bend_mm
    path = np.stack([centre[0] - bend_mm * np.cos(theta), np.full_like(theta, centre[1]),
                     centre[2] + bend_mm * np.sin(theta)], 1)
    return hu, np.diag([voxel, voxel, voxel, 1.0]), path


def _lumen_width(cut: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Per column, the width (mm) of the bright run through the centre row (half-way lumen to fat)."""
    bright = np.nan_to_num(cut, nan=-1000.0) > (430.0 - 100.0) / 2
    pixel = offset[1] - offset[0]
    centre = len(offset) // 2
    labels, _ = ndimage.label(bright)
    widths = np.zeros(len(cut))
    for n in range(len(cut)):
        run = labels[n, centre]
        widths[n] = 0.0 if run == 0 else (labels[n] == run).sum() * pixel
    return widths


@pytest.mark.parametrize("shape", ["oblique", "curved"])
def test_straightened_tube_shows_the_narrowing_at_its_distance(tube, shape):
    hu, affine, path = (tube.hu, tube.affine, _path(tube)) if shape == "oblique" else curved_tube()
    view = straighten(hu, affine, path)
    assert view.length_mm == pytest.approx(40.0, abs=0.3)
    inner = (view.arc_mm > 3) & (view.arc_mm < 37)
    for cut in view.cuts:  # both lengthwise cuts, 90 degrees apart
        width = ndimage.uniform_filter1d(_lumen_width(cut, view.offset_mm), 5)
        at = view.arc_mm[inner][np.argmin(width[inner])]
        assert at == pytest.approx(NARROWEST, abs=1.0)
        healthy = np.median(width[(view.arc_mm > 3) & (view.arc_mm < 9)])
        assert healthy == pytest.approx(2 * healthy_radius(6.0), abs=0.6)
        assert width[inner].min() < 0.6 * healthy  # the narrowing is visible, not blurred away


def test_frame_is_orthonormal_and_does_not_twist_on_a_planar_arc():
    theta = np.linspace(0, 1.5, 200)
    pts = np.stack([30 * np.cos(theta), 30 * np.sin(theta), np.zeros_like(theta)], 1)
    t = np.stack([-np.sin(theta), np.cos(theta), np.zeros_like(theta)], 1)
    u, v = rotation_minimising_frame(pts, t)
    assert np.allclose(np.einsum("ij,ij->i", u, t), 0, atol=1e-9)
    assert np.allclose(np.linalg.norm(u, axis=1), 1) and np.allclose(np.linalg.norm(v, axis=1), 1)
    # On a planar path a rotation-minimising frame keeps one vector normal to the plane throughout.
    normal_part = np.abs(np.stack([u[:, 2], v[:, 2]]))
    assert np.allclose(normal_part.max(0), 1.0, atol=1e-6) and np.all(np.ptp(normal_part, axis=1) < 1e-6)


def test_plot_marks_the_mld_lesion_and_stent_where_measured(tube, tmp_path):
    m = measure_vessel(tube.hu, tube.affine, ("pLAD", "mLAD"), labels=tube.labels, vessel="LAD",
                       centerlines=tube.centerlines)
    lesion = m.worst_lesion()
    assert lesion is not None
    plan = plan_stent(lesion_site(m, lesion), 20.0, landing_zone_mm=2.5, catalogue_mm=(12.0, 20.0, 28.0))
    plan = plan.model_copy(update={"lesion": lesion})
    view = straighten(tube.hu, tube.affine, m.profile.path.points_mm)
    drawing = drawing_from_measurement(m, lesion, plan)
    sections = lesion_sections(tube.hu, tube.affine, view, drawing)
    out = render_vessel_view(view, drawing, out_path=tmp_path / "v.png", sections=sections)
    assert out.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.rgb.ndim == 3 and out.rgb.shape[0] >= 400 and out.rgb.shape[1] >= 500
    (mld,) = out.marks_mm["mld"]
    assert mld == pytest.approx(NARROWEST - PLAD_START, abs=1.0)
    start, end = out.marks_mm["lesion"]
    assert start < mld < end
    s0, s1 = out.marks_mm["stent"]
    # the plan's margins are rounded to 0.01 mm
    assert s1 - s0 == pytest.approx(20.0, abs=0.05) and s0 <= start and s1 >= end
    assert out.marks_mm["landing0"] == pytest.approx((start - 2.5, start))
    assert out.marks_mm["landing1"] == pytest.approx((end, end + 2.5))
    # Cross-sections: at the MLD the lumen is a fraction of the one at the healthy plane beside the lesion.
    mld_section, ref_section = sections
    assert (mld_section.name, ref_section.name) == ("MLD", "reference")
    assert out.marks_mm["section_MLD"][0] == pytest.approx(mld, abs=0.3)
    assert not start - 1.0 < ref_section.arc_mm < end + 1.0
    centre = len(ref_section.offset_mm) // 2

    def lumen_area(sec):
        labels, _ = ndimage.label(np.nan_to_num(sec.hu, nan=-1000.0) > (430.0 - 100.0) / 2)
        return (labels == labels[centre, centre]).sum() if labels[centre, centre] else 0

    assert lumen_area(mld_section) < 0.5 * lumen_area(ref_section)
    assert ref_section.diameter_mm == pytest.approx(lesion.reference_diameter_mm, rel=0.1)


def test_bad_input_is_refused_with_the_projects_error(tube):
    path = _path(tube)
    with pytest.raises(VesselViewError, match="3-D"):
        straighten(tube.hu[0], tube.affine, path)
    with pytest.raises(VesselViewError, match="at least two"):
        straighten(tube.hu, tube.affine, path[:1])
    with pytest.raises(VesselViewError, match="outside the image"):
        straighten(tube.hu, tube.affine, path + 500.0)
    with pytest.raises(VesselViewError, match="affine"):
        straighten(tube.hu, np.eye(3), path)
    with pytest.raises(VesselViewError, match="positive"):
        VesselViewConfig(half_width_mm=0)
    assert VesselViewError.code == "vessel_view.unavailable"


@pytest.mark.parametrize(("percent", "shown", "not_shown"), [(69.5, "69%", "70%"), (99.5, "99%", "100%"),
                                                            (24.5, "24%", "25%")])
def test_picture_writes_a_band_edge_stenosis_as_the_answer_does(tube, percent, shown, not_shown):
    """69.5 % is moderate (CAD-RADS 3) and the answer says 69 %: the picture must not say 70 %."""
    import dataclasses

    m = measure_vessel(tube.hu, tube.affine, ("pLAD", "mLAD"), labels=tube.labels, vessel="LAD",
                       centerlines=tube.centerlines)
    lesion = m.worst_lesion().model_copy(update={"stenosis_percent": percent})
    drawing = drawing_from_measurement(m, lesion)
    drawing = dataclasses.replace(drawing, lesions=[dataclasses.replace(mark, stenosis_percent=percent)
                                                    for mark in drawing.lesions])
    view = straighten(tube.hu, tube.affine, m.profile.path.points_mm)
    out = render_vessel_view(view, drawing)
    assert drawing.focus.percent_text == shown
    assert shown in out.texts and not_shown not in out.texts
