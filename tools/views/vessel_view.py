"""The vessel view: a straightened reformat of the CT along a measured coronary, with its lumen plot.

What a clinician reads a stenosis on: the vessel laid out straight from its proximal end (left) to
its distal end (right), cut lengthwise twice at right angles, with the lesion, the minimal lumen
diameter (MLD) and, for a stent question, the proposed stent and its landing zones drawn; beside
it the cross-sections at the MLD and at a healthy plane nearby; below it the lumen diameter and the
reference (healthy) diameter along the same millimetre axis.

Everything drawn comes from the image: the CT, the centerline the measurement followed (an
image-derived tree, or a user's on request) and the numbers :mod:`cardiovlm.tools.quant.stenosis` and
:mod:`cardiovlm.tools.quant.stent` read from the Hounsfield units. Nothing here reads a phantom's ground truth.

Method of the reformat (:func:`straighten`):
- The path is resampled every ``step_mm`` (the measurement's own plane spacing, so the two share
  one arc-length axis).
- A rotation-minimising frame (double reflection, Wang et al., ACM TOG 2008) is carried along
  tangents smoothed over ``frame_sigma_mm``: an image-derived skeleton zigzags by a voxel, and a
  frame turned by that zigzag would twist the cuts. The points themselves are not smoothed, so the
  lumen stays on the centre row where the centerline follows it.
- Each cut samples the CT trilinearly (``scipy.ndimage.map_coordinates``) at the path point plus an
  offset along one frame vector (cut 1) or the other (cut 2, 90 degrees on).

Example::

    view = straighten(study.hu, study.affine, measurement.profile.path.points_mm)
    drawing = drawing_from_measurement(measurement, lesion)
    rendered = render_vessel_view(view, drawing, out_path=folder / "lad.png")
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from cardiovlm.tools.core.anatomy import SEGMENT_PARENT
from cardiovlm.tools.core.errors import CardioVLMError
from cardiovlm.tools.quant.cadrads import shown_percent
from cardiovlm.tools.quant.centerline import resample_polyline


class VesselViewError(CardioVLMError):
    """The vessel view cannot be drawn as asked (bad input, a path outside the image, a stale answer)."""

    code = "vessel_view.unavailable"


@dataclass(frozen=True)
class VesselViewConfig:
    """How the vessel view is sampled and drawn (display choices, not measurement conventions)."""

    step_mm: float = 0.25  # plane spacing along the path: the stenosis measurement's own step
    half_width_mm: float = 7.0  # each cut shows this far either side of the centerline (lumen, wall, fat)
    pixel_mm: float = 0.25  # across-path sampling; sub-voxel so the lumen edge is drawn smoothly
    frame_sigma_mm: float = 2.0  # tangent smoothing before the frame is built (a skeleton zigzags by a voxel)
    window_width_hu: float = 700.0  # CCTA window: lumen, plaque and fat apart, calcium still distinct
    window_level_hu: float = 200.0
    dpi: int = 100
    mm_per_inch: float = 11.0  # horizontal scale of the figure, clipped to min/max_axes_width_in
    min_axes_width_in: float = 5.0
    max_axes_width_in: float = 12.0
    max_cut_height_in: float = 2.2  # a short path is stretched lengthwise (and says so) rather than drawn tall

    def __post_init__(self) -> None:
        for name in ("step_mm", "half_width_mm", "pixel_mm", "window_width_hu", "mm_per_inch",
                     "min_axes_width_in", "max_cut_height_in"):
            if not getattr(self, name) > 0:
                raise VesselViewError(f"{name} must be positive, got {getattr(self, name)}")
        if self.frame_sigma_mm < 0 or self.dpi < 30 or self.max_axes_width_in < self.min_axes_width_in:
            raise VesselViewError("frame_sigma_mm must be >= 0, dpi >= 30 and max_axes_width_in >= min_axes_width_in")


@dataclass(frozen=True)
class StraightenedView:
    """The CT resampled along a path: two orthogonal lengthwise cuts on one arc-length axis.

    Attributes:
        arc_mm: (N,) distance along the path from its first point.
        offset_mm: (M,) distance across the path, negative to positive.
        cuts: (2, N, M) float32 HU; NaN where the sample lies outside the image.
        points_mm: (N, 3) path points (patient LPS mm).
        normals: (2, N, 3) unit frame vectors of cut 1 and cut 2 (rotation-minimising, orthogonal).
    """

    arc_mm: np.ndarray
    offset_mm: np.ndarray
    cuts: np.ndarray
    points_mm: np.ndarray
    normals: np.ndarray

    @property
    def length_mm(self) -> float:
        return float(self.arc_mm[-1])


def _affine_of(affine_or_spacing) -> np.ndarray:
    a = np.asarray(affine_or_spacing, float)
    if a.shape == (3,):
        if not np.all(a > 0):
            raise VesselViewError(f"voxel spacing must be positive, got {a.tolist()}")
        return np.diag([*a, 1.0])
    if a.shape != (4, 4) or not np.all(np.isfinite(a)) or abs(np.linalg.det(a[:3, :3])) < 1e-12:
        raise VesselViewError(f"expected a 4x4 voxel-to-mm affine or three voxel spacings, got shape {a.shape}")
    return a


def rotation_minimising_frame(points: np.ndarray, tangents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors (u, v) perpendicular to each tangent, turned as little as the path allows.

    Double reflection method (Wang, Juttler, Zheng, Liu, ACM TOG 27(1), 2008): each frame is the
    previous one reflected across the bisector plane of the step and then across the plane that
    takes the reflected tangent onto the new one. On a planar path the frame never twists.
    """
    n = len(points)
    t = tangents
    helper = np.eye(3)[int(np.argmin(np.abs(t[0])))]  # the axis least aligned with the first tangent
    u = np.empty_like(points)
    u[0] = np.cross(t[0], helper)
    u[0] /= np.linalg.norm(u[0])
    for i in range(n - 1):
        v1 = points[i + 1] - points[i]
        c1 = v1 @ v1
        if c1 < 1e-18:
            u[i + 1] = u[i]
            continue
        r_l = u[i] - (2 / c1) * (v1 @ u[i]) * v1
        t_l = t[i] - (2 / c1) * (v1 @ t[i]) * v1
        v2 = t[i + 1] - t_l
        c2 = v2 @ v2
        r = r_l - (2 / c2) * (v2 @ r_l) * v2 if c2 > 1e-18 else r_l
        r -= (r @ t[i + 1]) * t[i + 1]  # keep it exactly perpendicular despite rounding
        u[i + 1] = r / np.linalg.norm(r)
    return u, np.cross(t, u)


def straighten(volume: np.ndarray, affine, centerline_points_mm: np.ndarray,
               config: VesselViewConfig | None = None) -> StraightenedView:
    """The CT along a centerline as two orthogonal lengthwise cuts (see the module docstring).

    Args:
        volume: (I, J, K) CT in HU.
        affine: (4, 4) voxel index -> patient mm, or the three voxel spacings (origin at voxel 0).
        centerline_points_mm: (N, 3) path, proximal to distal, in the affine's patient coordinates.

    Raises:
        VesselViewError: not a 3-D volume, a path of fewer than two distinct points, or a path
            that lies wholly outside the image.
    """
    cfg = config or VesselViewConfig()
    vol = np.asarray(volume)
    if vol.ndim != 3 or min(vol.shape) < 2:
        raise VesselViewError(f"expected a 3-D CT volume, got an array of shape {vol.shape}")
    aff = _affine_of(affine)
    pts = np.asarray(centerline_points_mm, float)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) < 2 or not np.all(np.isfinite(pts)):
        raise VesselViewError(f"expected an (N, 3) centerline of at least two finite points, got shape {pts.shape}")
    if np.linalg.norm(np.diff(pts, axis=0), axis=1).sum() < cfg.step_mm:
        raise VesselViewError("the centerline is shorter than one sampling step: there is no vessel to lay out")
    pts, arc = resample_polyline(pts, cfg.step_mm)
    tangents = np.gradient(pts, axis=0)
    if cfg.frame_sigma_mm > 0 and len(pts) > 2:
        tangents = ndimage.gaussian_filter1d(tangents, cfg.frame_sigma_mm / cfg.step_mm, axis=0, mode="nearest")
    tangents /= np.maximum(np.linalg.norm(tangents, axis=1, keepdims=True), 1e-12)
    u, v = rotation_minimising_frame(pts, tangents)
    m = round(cfg.half_width_mm / cfg.pixel_mm)
    offset = np.arange(-m, m + 1) * cfg.pixel_mm
    inv = np.linalg.inv(aff)
    cuts = np.empty((2, len(pts), len(offset)), np.float32)
    for c, normal in enumerate((u, v)):
        xyz = pts[:, None, :] + offset[None, :, None] * normal[:, None, :]
        ijk = xyz @ inv[:3, :3].T + inv[:3, 3]
        cuts[c] = ndimage.map_coordinates(vol, ijk.reshape(-1, 3).T, order=1, mode="constant", cval=np.nan,
                                          output=np.float32).reshape(len(pts), len(offset))
    if np.isnan(cuts).all():
        raise VesselViewError("the centerline lies outside the image: it belongs to another study or grid")
    return StraightenedView(arc_mm=arc, offset_mm=offset, cuts=cuts, points_mm=pts, normals=np.stack([u, v]))


# ------------------------------------------------------------------------------------------------
# What is drawn: built from a measurement, so the picture and the answer share every number
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LesionMark:
    start_mm: float
    end_mm: float
    mld_position_mm: float
    mld_diameter_mm: float
    reference_diameter_mm: float
    stenosis_percent: float
    category: str  # CAD-RADS 2.0 of this stenosis alone
    segment: str  # segment at the MLD

    @property
    def percent_text(self) -> str:
        """The stenosis as the answer writes it (never rounded across a CAD-RADS band edge)."""
        return f"{shown_percent(self.stenosis_percent)}%"


@dataclass(frozen=True)
class StentMark:
    start_mm: float  # proximal stent end, best placement of :func:`cardiovlm.tools.quant.stent.plan_stent`
    end_mm: float
    diameter_mm: float  # the proposed (or suggested) diameter
    landing_zone_mm: float  # required healthy margin per lesion end
    margin_proximal_mm: float  # healthy vessel the stent covers before / after the lesion
    margin_distal_mm: float
    covers: bool
    status: str  # covers, does_not_cover, no_stent_needed


@dataclass(frozen=True)
class VesselDrawing:
    """A measured vessel, as the view draws it; every arc length is from the path's proximal end."""

    vessel: str
    arc_mm: np.ndarray  # the measurement's planes
    diameter_mm: np.ndarray  # lumen (equivalent) diameter read from the CT, as the MLD is read
    reference_mm: np.ndarray  # healthy reference diameter (taper fit)
    segments: list[tuple[str, float, float]]  # (code, start, end) along the path
    ungraded: np.ndarray | None = None  # bool per plane: merged with a bright neighbour or inside a stent
    lesions: list[LesionMark] = field(default_factory=list)
    focus: LesionMark | None = None  # the lesion the answer is about
    stent: StentMark | None = None
    from_ostium: bool = False  # the path starts at an aorto-ostial origin (LM, RCA)
    centerline_source: str = ""


def _mark(lesion) -> LesionMark:
    return LesionMark(start_mm=lesion.start_mm, end_mm=lesion.end_mm, mld_position_mm=lesion.mld_position_mm,
                      mld_diameter_mm=lesion.minimal_lumen_diameter_mm,
                      reference_diameter_mm=lesion.reference_diameter_mm,
                      stenosis_percent=lesion.stenosis_percent, category=lesion.category, segment=lesion.segment)


def drawing_from_measurement(measurement, lesion=None, plan=None) -> VesselDrawing:
    """The :class:`VesselDrawing` of a :class:`cardiovlm.tools.quant.stenosis.VesselMeasurement` (with its profile),
    the lesion an answer is about and, for a stent answer, its :class:`cardiovlm.tools.quant.stent.StentPlan`."""
    p = measurement.profile
    if p is None:
        raise VesselViewError("the vessel measurement carries no per-plane profile to draw")
    arc, codes = p.path.arc_mm, p.path.segments
    segments = []
    for code in dict.fromkeys(codes.tolist()):
        span = p.path.segment_span(code)
        if span is not None:
            segments.append((str(code), *span))
    stent = None
    if plan is not None and plan.lesion is not None and plan.margin_proximal_mm is not None:
        lesion = lesion or plan.lesion
        stent = StentMark(
            start_mm=plan.lesion.start_mm - plan.margin_proximal_mm, end_mm=plan.lesion.end_mm + plan.margin_distal_mm,
            diameter_mm=float(plan.suggested_diameter_mm if plan.diameter_to_reference is None
                              else plan.diameter_to_reference * plan.lesion.reference_diameter_mm),
            landing_zone_mm=plan.landing_zone_mm, margin_proximal_mm=plan.margin_proximal_mm,
            margin_distal_mm=plan.margin_distal_mm, covers=plan.covers, status=plan.status)
    first = str(codes[0]) if len(codes) else ""
    return VesselDrawing(
        # the less smoothed diameter: the one a lesion's MLD and stenosis are read from
        vessel=measurement.vessel, arc_mm=np.asarray(arc), diameter_mm=np.asarray(p.mld_diameter_mm),
        reference_mm=np.asarray(p.reference_mm), segments=segments,
        ungraded=np.asarray(p.sections.merged | p.stent, bool),
        lesions=[_mark(les) for les in measurement.lesions], focus=_mark(lesion) if lesion is not None else None,
        stent=stent, from_ostium=SEGMENT_PARENT.get(first, "") is None,
        centerline_source=measurement.centerline_source)


@dataclass(frozen=True)
class CrossSectionImage:
    """The CT on the plane perpendicular to the path at one arc length (columns: cut 1's offset,
    rows: cut 2's offset), with the diameter the measurement read there drawn as a circle."""

    name: str  # "MLD" or "reference"
    arc_mm: float
    hu: np.ndarray  # (M, M) float32; NaN outside the image
    offset_mm: np.ndarray  # (M,)
    diameter_mm: float  # lumen diameter read at this plane (MLD) or the reference diameter there


def cross_section(volume: np.ndarray, affine, view: StraightenedView, arc_mm: float, *, name: str,
                  diameter_mm: float) -> CrossSectionImage:
    """The CT on the plane of ``view``'s frame nearest to ``arc_mm`` (same pixel size as the cuts)."""
    i = int(np.argmin(np.abs(view.arc_mm - arc_mm)))
    u, v = view.normals[:, i]
    off = view.offset_mm
    xyz = view.points_mm[i] + off[None, :, None] * u + off[:, None, None] * v  # rows along v, columns along u
    inv = np.linalg.inv(_affine_of(affine))
    ijk = xyz.reshape(-1, 3) @ inv[:3, :3].T + inv[:3, 3]
    hu = ndimage.map_coordinates(np.asarray(volume), ijk.T, order=1, mode="constant", cval=np.nan,
                                 output=np.float32).reshape(len(off), len(off))
    return CrossSectionImage(name=name, arc_mm=float(view.arc_mm[i]), hu=hu, offset_mm=off,
                             diameter_mm=float(diameter_mm))


def reference_site(drawing: VesselDrawing, lesion: LesionMark, *, within_mm: float = 10.0,
                   clear_mm: float = 1.0) -> float | None:
    """Arc length of the healthiest graded plane within ``within_mm`` of the lesion (outside it by at
    least ``clear_mm``, not inside another lesion): where the diameter is closest to the reference."""
    arc = drawing.arc_mm
    near = (((arc >= lesion.start_mm - within_mm) & (arc <= lesion.start_mm - clear_mm))
            | ((arc >= lesion.end_mm + clear_mm) & (arc <= lesion.end_mm + within_mm)))
    for other in drawing.lesions:
        near &= ~((arc >= other.start_mm - clear_mm) & (arc <= other.end_mm + clear_mm))
    if drawing.ungraded is not None:
        near &= ~drawing.ungraded
    near &= drawing.reference_mm > 0
    if not near.any():
        return None
    error = np.abs(drawing.diameter_mm / np.maximum(drawing.reference_mm, 1e-6) - 1.0)
    return float(arc[near][np.argmin(error[near])])


def lesion_sections(volume: np.ndarray, affine, view: StraightenedView,
                    drawing: VesselDrawing) -> list[CrossSectionImage]:
    """Cross-sections at the answer's MLD and at its healthiest nearby plane (none without a lesion)."""
    focus = drawing.focus
    if focus is None:
        return []
    out = [cross_section(volume, affine, view, focus.mld_position_mm, name="MLD", diameter_mm=focus.mld_diameter_mm)]
    ref = reference_site(drawing, focus)
    if ref is not None:
        out.append(cross_section(volume, affine, view, ref, name="reference",
                                 diameter_mm=float(np.interp(ref, drawing.arc_mm, drawing.reference_mm))))
    return out


# ------------------------------------------------------------------------------------------------
# Rendering
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RenderedVesselView:
    """The picture, and where its marks were drawn (arc mm, read back from the figure's own artists)."""

    path: Path | None  # the PNG written, when out_path was given
    rgb: np.ndarray  # (H, W, 3) uint8, the same picture
    marks_mm: dict[str, tuple[float, ...]]  # e.g. {"mld": (12.0,), "lesion": (8.1, 15.9), "stent": (...)}
    texts: tuple[str, ...] = ()  # every piece of text drawn, read back from the figure (title included)


LESION_COLOUR = "#ffb000"
MLD_COLOUR = "#ff3030"
STENT_COLOUR = "#00d0ff"
LANDING_OK, LANDING_SHORT = "#30d030", "#ff3030"
REFERENCE_COLOUR = "#3060ff"


def _fmt(value: float, digits: int = 1) -> str:
    return f"{value:.{digits}f}"


def render_vessel_view(view: StraightenedView, drawing: VesselDrawing, *, out_path: str | Path | None = None,
                       title: str | None = None, sections: list[CrossSectionImage] | None = None,
                       config: VesselViewConfig | None = None) -> RenderedVesselView:
    """Draw the straightened cuts with the lesion, MLD and stent, and the diameter plot below them.

    Layout (top to bottom, one shared millimetre axis from the proximal end): segment names, cut 1,
    cut 2 (90 degrees on), then lumen diameter and reference diameter against distance. The cuts are
    windowed for CCTA (``window_width_hu`` / ``window_level_hu``) with square pixels. ``sections``
    (at most two, e.g. :func:`lesion_sections`) are drawn to the right of the cuts with their
    diameter as a dashed circle, and their place marked on the cuts.
    """
    # A bare Figure draws with Agg whatever backend the process uses, and touches no pyplot state
    # (the app may serve several sessions at once).
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle
    from matplotlib.text import Text

    cfg = config or VesselViewConfig()
    length = max(view.length_mm, float(drawing.arc_mm[-1]) if len(drawing.arc_mm) else 0.0, 1.0)
    ax_w = float(np.clip(length / cfg.mm_per_inch, cfg.min_axes_width_in, cfg.max_axes_width_in))
    across = view.offset_mm[-1] - view.offset_mm[0]
    img_h = min(ax_w * across / length, cfg.max_cut_height_in)  # square pixels unless the path is short
    stretch = (ax_w / length) / (img_h / across)
    plot_h, left, right, top, gap, legend_h, bottom = 2.2, 0.75, 0.25, 0.75, 0.12, 0.4, 0.55
    sections = list(sections or [])[:2]
    sec_gap = 0.45 if sections else 0.0
    sec_w = img_h if sections else 0.0  # square, as tall as a cut
    fig_w = left + ax_w + sec_gap + sec_w + right
    fig_h = top + 2 * img_h + gap + legend_h + plot_h + bottom
    fig = Figure(figsize=(fig_w, fig_h), dpi=cfg.dpi, facecolor="white")

    def axes(y_from_top: float, h: float):
        return fig.add_axes((left / fig_w, 1 - (y_from_top + h) / fig_h, ax_w / fig_w, h / fig_h))

    lo = cfg.window_level_hu - cfg.window_width_hu / 2
    hi = cfg.window_level_hu + cfg.window_width_hu / 2
    half = view.offset_mm[-1]
    extent = (view.arc_mm[0] - cfg.step_mm / 2, view.arc_mm[-1] + cfg.step_mm / 2,
              view.offset_mm[0] - cfg.pixel_mm / 2, view.offset_mm[-1] + cfg.pixel_mm / 2)
    marks: dict[str, tuple[float, ...]] = {}
    image_axes = []
    for c in range(2):
        ax = axes(top + c * (img_h + gap), img_h)
        img = np.ma.masked_invalid(view.cuts[c].T)
        ax.imshow(img, cmap=_ct_cmap(), vmin=lo, vmax=hi, extent=extent, origin="lower", aspect="auto",
                  interpolation="bilinear")
        ax.set_xlim(0, length)
        ax.set_ylim(-half, half)
        ax.set_ylabel(f"cut {c + 1}\nmm", fontsize=8)
        if stretch > 1.05:
            ax.text(0.995, 0.97, f"lengthwise stretched x{stretch:.1f}", transform=ax.transAxes, ha="right",
                    va="top", fontsize=7, color="white")
        ax.tick_params(labelsize=7, labelbottom=False)
        image_axes.append(ax)
    plot = axes(top + 2 * img_h + gap + legend_h, plot_h)
    plot.set_xlim(0, length)
    for c, sec in enumerate(sections):
        _draw_section(fig, sec, ((left + ax_w + sec_gap) / fig_w, 1 - (top + c * (img_h + gap) + img_h) / fig_h,
                                 sec_w / fig_w, img_h / fig_h), lo, hi, cfg, bottom_row=c == len(sections) - 1)
        colour = MLD_COLOUR if sec.name == "MLD" else REFERENCE_COLOUR
        for ax in image_axes:
            ax.plot([sec.arc_mm], [half * 0.93], "v", color=colour, ms=6, clip_on=False)
        marks[f"section_{sec.name}"] = (sec.arc_mm,)

    # Segment boundaries and names (the path's own labels).
    for code, s0, s1 in drawing.segments:
        image_axes[0].text((s0 + s1) / 2, half * 1.05, code, ha="center", va="bottom", fontsize=8,
                           clip_on=False)
        if s0 > 0:
            for ax in (*image_axes, plot):
                ax.axvline(s0, color="0.6", lw=0.6, ls=":")

    focus = drawing.focus
    for les in drawing.lesions:
        is_focus = focus is not None and (les.start_mm, les.end_mm) == (focus.start_mm, focus.end_mm)
        alpha = 0.28 if is_focus else 0.12
        span = plot.axvspan(les.start_mm, les.end_mm, color=LESION_COLOUR, alpha=alpha, lw=0)
        if is_focus:
            span.set_gid("lesion")
            span.set_label("lesion")
        for ax in image_axes:
            for x in (les.start_mm, les.end_mm):
                ax.axvline(x, color=LESION_COLOUR, lw=1.0 if is_focus else 0.6, ls="--", alpha=0.9)
        plot.text((les.start_mm + les.end_mm) / 2, 0.74, les.percent_text, color="0.25",
                  ha="center", va="bottom", fontsize=7, transform=plot.get_xaxis_transform())

    if focus is not None:
        # MLD: arrowheads pointing at the lumen from both sides on each cut, a marker on the plot.
        for ax in image_axes:
            tip = max(focus.mld_diameter_mm / 2 + 0.4, 1.0)
            for sign in (1, -1):
                ax.annotate("", xy=(focus.mld_position_mm, sign * tip),
                            xytext=(focus.mld_position_mm, sign * min(tip + 2.5, half * 0.95)),
                            arrowprops={"arrowstyle": "-|>", "color": MLD_COLOUR, "lw": 1.2})
        (dot,) = plot.plot([focus.mld_position_mm], [focus.mld_diameter_mm], "v", color=MLD_COLOUR, ms=8,
                           zorder=5, gid="mld")
        plot.annotate(f"MLD {_fmt(focus.mld_diameter_mm)} mm at {_fmt(focus.mld_position_mm)} mm",
                      xy=(focus.mld_position_mm, focus.mld_diameter_mm), xytext=(8, 2),
                      textcoords="offset points", fontsize=8, color=MLD_COLOUR)
        marks["mld"] = (float(dot.get_xdata()[0]),)

    stent = drawing.stent
    if stent is not None:
        colour = STENT_COLOUR
        for ax in image_axes:
            ax.add_patch(Rectangle((stent.start_mm, -stent.diameter_mm / 2), stent.end_mm - stent.start_mm,
                                   stent.diameter_mm, fill=False, ec=colour, lw=1.4, ls="-"))
        bar_y = 0.93
        bar = plot.plot([stent.start_mm, stent.end_mm], [bar_y, bar_y], color=colour, lw=5, solid_capstyle="butt",
                        transform=plot.get_xaxis_transform(), gid="stent", label="proposed stent")[0]
        marks["stent"] = tuple(float(x) for x in bar.get_xdata())
        plot.text(stent.end_mm, bar_y, f"  stent {_fmt(stent.end_mm - stent.start_mm, 0)} x "
                  f"{_fmt(stent.diameter_mm, 2)} mm", color="0.2", va="center", fontsize=7,
                  transform=plot.get_xaxis_transform())
        if focus is not None:
            zones = ((focus.start_mm - stent.landing_zone_mm, focus.start_mm, stent.margin_proximal_mm),
                     (focus.end_mm, focus.end_mm + stent.landing_zone_mm, stent.margin_distal_mm))
            for n, (z0, z1, margin) in enumerate(zones):
                ok = stent.covers or margin >= stent.landing_zone_mm - 1e-6
                zc = LANDING_OK if ok else LANDING_SHORT
                plot.plot([z0, z1], [0.86, 0.86], color=zc, lw=5, solid_capstyle="butt",
                          transform=plot.get_xaxis_transform(), gid=f"landing{n}",
                          label=f"landing zone {stent.landing_zone_mm:g} mm" + ("" if ok else ", too short"))
                for ax in image_axes:
                    ax.axvspan(z0, z1, ymin=0.0, ymax=0.06, color=zc, alpha=0.9, lw=0)
                marks[f"landing{n}"] = (float(z0), float(z1))

    if drawing.ungraded is not None and drawing.ungraded.any():
        edges = np.flatnonzero(np.diff(np.r_[0, drawing.ungraded.astype(np.int8), 0]))
        for n, (a, b) in enumerate(zip(edges[::2], edges[1::2])):
            plot.axvspan(drawing.arc_mm[a], drawing.arc_mm[b - 1] + cfg.step_mm / 2, color="0.5", alpha=0.18, lw=0,
                         hatch="///", label="not graded (joins a bright structure, or stent)" if n == 0 else None)
    plot.plot(drawing.arc_mm, drawing.diameter_mm, color="black", lw=1.3, label="lumen diameter (CT)")
    plot.plot(drawing.arc_mm, drawing.reference_mm, color=REFERENCE_COLOUR, lw=1.1, ls="--",
              label="reference diameter")
    top_d = float(np.nanmax(np.r_[drawing.diameter_mm, drawing.reference_mm, 1.0]))
    plot.set_ylim(0, top_d * 1.45)
    plot.set_ylabel("diameter (mm)", fontsize=8)
    origin = "ostium" if drawing.from_ostium else f"start of {drawing.segments[0][0]}" if drawing.segments \
        else "proximal end"
    plot.set_xlabel(f"distance along the {drawing.vessel} from the {origin} (mm)", fontsize=8)
    plot.tick_params(labelsize=7)
    plot.grid(alpha=0.25, lw=0.5)
    handles, labels = plot.get_legend_handles_labels()
    unique = dict(zip(labels, handles))  # one entry per kind (two landing zones may share one)
    plot.legend(unique.values(), unique.keys(), loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=7,
                frameon=False, ncols=min(len(unique), 4), borderaxespad=0.2)
    if focus is not None:
        marks["lesion"] = (float(focus.start_mm), float(focus.end_mm))
    fig.suptitle(title or drawing.vessel, x=left / fig_w, ha="left", y=1 - 0.12 / fig_h, va="top", fontsize=10)

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=cfg.dpi)
    texts = tuple(t.get_text() for t in fig.findobj(Text) if t.get_text())
    png = buf.getvalue()
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    path = None
    if out_path is not None:
        path = Path(out_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
    return RenderedVesselView(path=path, rgb=rgb, marks_mm=marks, texts=texts)


def _draw_section(fig, sec: CrossSectionImage, box, lo: float, hi: float, cfg: VesselViewConfig, *,
                  bottom_row: bool) -> None:
    from matplotlib.patches import Circle

    ax = fig.add_axes(box)
    half = sec.offset_mm[-1] + cfg.pixel_mm / 2
    ax.imshow(np.ma.masked_invalid(sec.hu), cmap=_ct_cmap(), vmin=lo, vmax=hi, origin="lower",
              extent=(-half, half, -half, half), interpolation="bilinear")
    colour = MLD_COLOUR if sec.name == "MLD" else REFERENCE_COLOUR
    ax.add_patch(Circle((0, 0), max(sec.diameter_mm / 2, 0.05), fill=False, ec=colour, lw=1.0, ls="--"))
    ax.text(0.03, 0.97, f"{sec.name} {_fmt(sec.diameter_mm)} mm\nat {_fmt(sec.arc_mm)} mm", transform=ax.transAxes,
            ha="left", va="top", fontsize=6.5, color="white",
            bbox={"facecolor": colour, "alpha": 0.75, "lw": 0, "pad": 1.5})
    ax.set_ylabel("cut 2 (mm)", fontsize=6, labelpad=1)
    ax.tick_params(labelsize=6, labelbottom=bottom_row)
    if bottom_row:
        ax.set_xlabel("cut 1 (mm)", fontsize=6, labelpad=1)


def _ct_cmap():
    from matplotlib import colormaps

    return colormaps["gray"].with_extremes(bad="#202040")  # outside the image: distinct from air or fat
