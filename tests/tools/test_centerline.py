"""Centerlines: resampling, phantom centerlines joined across segments, skeletons ordered proximal first."""

from __future__ import annotations

import numpy as np
import pytest

from cardiovlm.tools.core import case_format as cf
from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE
from cardiovlm.tools.quant.centerline import (
    PHANTOM_SOURCE,
    SKELETON_SOURCE,
    CenterlineError,
    path_from_centerlines,
    path_from_mask,
    resample_polyline,
    vessel_path,
)

VOXEL = 0.4
BEND = 40.0  # mm, radius of the arc the tube follows


def arc_tube(total=40.0, lm=6.0, radius=1.5, reverse_labels=False):
    """LM (first ``lm`` mm) then pLAD on a circular arc in the i-k plane; returns (labels, affine, axis)."""
    shape = (70, 20, 90)
    i, j, k = np.meshgrid(*[np.arange(n) * VOXEL for n in shape], indexing="ij")
    cx, cz = 2.0 + BEND, 2.0  # the axis starts at (2, 4, 2) mm heading +k
    s = BEND * np.arctan2(k - cz, cx - i)
    d = np.hypot(np.hypot(i - cx, k - cz) - BEND, j - 4.0)
    labels = np.zeros(shape, np.uint8)
    inside = (d < radius) & (s >= 0) & (s <= total)
    labels[inside & (s < lm)] = SEGMENTS_BY_CODE["LM"].label_id
    labels[inside & (s >= lm)] = SEGMENTS_BY_CODE["pLAD"].label_id
    theta = np.linspace(0, total / BEND, 400)
    axis = np.stack([cx - BEND * np.cos(theta), np.full_like(theta, 4.0), cz + BEND * np.sin(theta)], 1)
    return labels, np.diag([VOXEL, VOXEL, VOXEL, 1.0]), axis


def test_resample_polyline_keeps_length_and_even_steps():
    pts = np.array([[0, 0, 0], [3, 0, 0], [3, 4, 0], [3, 4, 0]], float)  # duplicate point dropped
    new, arc = resample_polyline(pts, 0.5)
    assert arc[-1] == pytest.approx(7.0)
    assert np.allclose(np.diff(arc), 0.5)
    assert np.allclose(np.linalg.norm(np.diff(new, axis=0), axis=1)[:6], 0.5)
    with pytest.raises(ValueError, match="step must be positive"):
        resample_polyline(pts, 0.0)


def test_phantom_centerlines_are_joined_proximal_to_distal():
    line = lambda z0, z1: [cf.CenterlinePoint(xyz=(0.0, 0.0, z), radius_mm=1.5)  # noqa: E731
                           for z in np.arange(z0, z1, 0.5)]
    cl = cf.Centerlines(segments={"pLAD": line(0, 20), "mLAD": line(20, 35)})
    path = path_from_centerlines(cl, ("pLAD", "mLAD", "dLAD"))  # no dLAD in this anatomy: skipped
    assert path.source == PHANTOM_SOURCE
    assert path.length_mm == pytest.approx(34.5)
    assert path.segment_span("pLAD")[0] == 0 and path.segment_span("mLAD")[1] == pytest.approx(34.5)
    assert path.segment_span("pLAD")[1] == pytest.approx(19.5, abs=0.5)
    assert path.segment_span("dLAD") is None
    with pytest.raises(CenterlineError, match="none of the segments"):
        path_from_centerlines(cl, ("pRCA",))


def test_skeleton_of_a_curved_tube_runs_from_the_parent_along_the_axis():
    labels, affine, axis = arc_tube()
    path = path_from_mask(labels, affine, ("pLAD",))
    assert path.source == SKELETON_SOURCE
    # Proximal first: the start is next to the LM, the end at the far end of the tube.
    assert np.linalg.norm(path.points_mm[0] - axis[60]) < np.linalg.norm(path.points_mm[-1] - axis[60])
    # On the axis within half a voxel, and about as long as the pLAD (34 mm) less the blunt ends.
    off_axis = np.min(np.linalg.norm(path.points_mm[:, None] - axis[None], axis=2), axis=1)
    assert off_axis.max() < VOXEL / 2 + 0.1
    assert 34.0 - 4 * 1.5 <= path.length_mm <= 34.0  # TEASAR stops about a radius short, trimmed by one more
    assert np.allclose(np.diff(path.arc_mm), 0.5, atol=0.01)
    assert set(path.segments) == {"pLAD"}


def test_skeleton_path_spans_segments_and_names_them():
    labels, affine, axis = arc_tube()
    path = path_from_mask(labels, affine, ("LM", "pLAD"))
    assert path.segments[0] == "LM" and path.segments[-1] == "pLAD"
    lm_end = path.segment_span("LM")[1]
    assert lm_end == pytest.approx(6.0 - 1.5, abs=1.0)  # LM is 6 mm long, its blunt start trimmed


def test_vessel_path_prefers_the_phantom_centerline_and_refuses_absent_vessels():
    labels, affine, axis = arc_tube()
    cl = cf.Centerlines(segments={"pLAD": [cf.CenterlinePoint(xyz=tuple(p), radius_mm=1.5) for p in axis]})
    assert vessel_path(labels, affine, ("pLAD",), cl).source == PHANTOM_SOURCE
    assert vessel_path(labels, affine, ("pLAD",), None).source == SKELETON_SOURCE
    with pytest.raises(CenterlineError, match="no lumen for pRCA"):
        vessel_path(labels, affine, ("pRCA",), cl)
    with pytest.raises(CenterlineError, match="no label map"):
        vessel_path(None, affine, ("pRCA",), cl)
