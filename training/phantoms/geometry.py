"""The geometric model of a phantom: thorax, heart and coronary tree in patient LPS millimetres.

Nothing here knows about voxels. :func:`sample_anatomy` draws one anatomy from a random generator;
:mod:`cardiovlm.training.phantoms.raster` turns it into label maps and HU at any spacing.

Heart frame: ``u`` is the ventricular long axis (base -> apex, pointing anterior-left-inferior),
``e1`` the anterior direction perpendicular to it and ``e2`` the leftward one. A point on the
epicardial surface is addressed by ``(s, phi)``: ``s`` in [0, 1] from the AV plane to the apex and
``phi`` the angle around ``u`` in degrees (0 anterior, 90 lateral/left, 180 posterior-inferior,
270 right). The anterior and posterior interventricular grooves lie at ``phi_ant`` and
``phi_post``; the AV groove is the ring ``s = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import CubicSpline

from cardiovlm.tools.core.anatomy import SEGMENT_PARENT

CENTERLINE_STEP_MM = 0.25  # centerline sampling; well under any voxel size we rasterise at
# sinus-to-opposite-sinus diameter / root radius: sinuses sit 0.55 r out and have radius 0.62 r
ROOT_DIAMETER_PER_RADIUS = 2 * (0.55 + 0.62)
MEAN_LV_WALL_MM = 10.5  # the wall the LV's outer size was tuned with
APEX_WALL_FRACTION = 0.55  # the LV apex is thinner than the base and mid walls (about half)


# Generator 2.0's ventricles (VentricleShape). The RV free wall is 2-5 mm thick in adults (over 5 mm is
# hypertrophy: ASE/EACVI chamber quantification, Lang et al. 2015, and Rudski et al., JASE 2010;23:685).
RV_WALL_MM = 3.5
# How far the RV free wall stands off the septum's epicardium at the base, as a share of the heart's radius
# (not of the LV's, which grows with its wall). With the RV ending at RV_LENGTH_FRACTION of the LV's length
# it puts the RV end-diastolic volume (outflow tract included) at 1.0-1.25 times the LV's, as in normal
# adults, whose RV is the larger: RVEDV about 100-230 mL by CT (64-MDCT norms, Lin et al., JACC Cardiovasc
# Imaging 2008;1:782) and CMR (Maceira et al., JCMR 2006;8:417), both as recalled here.
RV_DEPTH_FRACTION = 0.7
RV_LENGTH_FRACTION = 0.8  # the RV ends short of the apex, which is the LV's
BASE_ROUND_MM = 10.0  # fillet of the ventricles' rim into the atrioventricular groove
AV_GROOVE_MM = 15.0  # how far in from the ventricles' rim the groove's fat keeps the atria up
INSERTION_THICKENING = 4.0  # the RV wall's growth towards the grooves (x 5 at the groove, x 2.6 at 90 % of the arc)
SHAPE_LEVEL = 0.3  # the drawn groove angles are met at this depth (s); the grooves follow the shape elsewhere


@dataclass
class VentricleShape:
    """Generator 2.0's ventricles, in the heart frame's short-axis plane (``e1``, ``e2``) and along ``u`` (mm).

    The LV is an ellipsoid of revolution round its own axis (``lv_centre`` off the frame's axis). The RV is
    a crescent on the LV's septal side: at depth ``su`` below the base and angle ``psi`` round the LV axis,
    its epicardium stands ``rv_depth * sqrt(1 - (su / rv_len)^2) * sqrt(1 - x^2)`` beyond the LV's, where x
    runs from -1 to 1 over the septal arc (``septum_deg`` minus ``arc_post_deg`` to plus ``arc_ant_deg``).
    So the RV cavity wraps the septum, which bulges into it, ends on the LV at the two interventricular
    grooves (the arc's ends, filled with fat) and stops short of the apex. The base is not a plane: the
    rim rounds off (``base_round_mm``) into the atrioventricular groove."""

    lv_centre: np.ndarray  # (2,) the LV axis in (e1, e2) coordinates, mm from the frame's axis
    lv_len: float  # LV epicardium, base -> apex
    lv_rad: float  # LV epicardial radius at the base (before rounding)
    rv_len: float  # depth where the RV crescent closes on the LV
    rv_depth: float  # RV free wall's stand-off from the septum at the base, mm
    septum_deg: float  # direction of the septum's middle from the LV axis
    arc_ant_deg: float  # the septal arc's half widths: anterior groove at septum + arc_ant
    arc_post_deg: float  # posterior groove at septum - arc_post
    base_round_mm: float = BASE_ROUND_MM

    def fillet(self, su):
        """How far the rim is pulled in at depth ``su`` (a quarter circle of radius ``base_round_mm``)."""
        f = float(self.base_round_mm)
        return np.where(su < f, f - np.sqrt(np.clip(f * f - (f - su) ** 2, 0.0, None)), 0.0)

    def lv_radius(self, su):
        """The LV's epicardial radius at depth ``su`` (the septum's RV face where the RV lies against it)."""
        return np.clip(float(self.lv_rad) * np.sqrt(np.clip(1.0 - (su / float(self.lv_len)) ** 2, 0.0, None))
                       - self.fillet(su), 0.0, None)

    def arc(self, psi):
        """Where angle ``psi`` lies on the septal arc: -1 posterior groove, 0 the septum's middle, 1 anterior groove."""
        x = (psi - float(self.septum_deg) + 180.0) % 360.0 - 180.0
        return np.where(x >= 0, x / float(self.arc_ant_deg), x / float(self.arc_post_deg))

    def rv_wall(self, psi, wall: float):
        """RV free wall thickness at ``psi``: ``wall``, thickening where it joins the septum at the grooves (the
        insertion points), so the cavity's horns stop a few millimetres short of them."""
        x = self.arc(psi)
        return wall * (1.0 + INSERTION_THICKENING * x ** 4)

    def rv_reach(self, su, psi):
        """How far the RV's epicardium stands beyond the LV's at depth ``su``, angle ``psi`` (degrees)."""
        x = self.arc(psi)
        along = np.sqrt(np.clip(1.0 - (su / float(self.rv_len)) ** 2, 0.0, None))
        return float(self.rv_depth) * along * np.sqrt(np.clip(1.0 - x * x, 0.0, None))

    def envelope(self, su, psi):
        """Epicardial radius round the LV axis (both ventricles) at depth ``su`` >= 0 and angle ``psi``."""
        return self.lv_radius(su) + np.where(self.lv_radius(su) > 0, self.rv_reach(su, psi), 0.0)

    def polar(self, q1, q2):
        """Distance from the LV axis and angle round it (degrees) of frame coordinates (q1, q2)."""
        p1, p2 = q1 - float(self.lv_centre[0]), q2 - float(self.lv_centre[1])
        return np.sqrt(p1 * p1 + p2 * p2), np.rad2deg(np.arctan2(p2, p1))

    def ray_origin(self, s) -> np.ndarray:
        """Where surface rays start at ``s``: the frame axis, sliding onto the LV axis towards the apex."""
        lam = np.clip((np.asarray(s, dtype=np.float64) - 0.6) / 0.3, 0.0, 1.0)
        return lam[..., None] * np.asarray(self.lv_centre, dtype=np.float64)

    def ray_exit(self, su, origin: np.ndarray, phi) -> np.ndarray:
        """Distance (mm, 0.05 mm steps) from ``origin`` along angle ``phi`` to where the ray leaves the envelope."""
        t = np.arange(0.0, 160.0, 0.05)
        d = np.stack([np.cos(np.deg2rad(phi)), np.sin(np.deg2rad(phi))], -1)
        pts = origin[..., None, :] + t[:, None] * d[..., None, :]
        rho, psi = self.polar(pts[..., 0], pts[..., 1])
        inside = rho <= self.envelope(np.clip(np.asarray(su), 0.0, None)[..., None], psi)
        return np.where(inside[..., 0], t[np.argmin(inside, axis=-1)], 0.0)

    def clear_of(self, points: np.ndarray, base: np.ndarray, frame: tuple[np.ndarray, np.ndarray, np.ndarray],
                 margin: float) -> np.ndarray:
        """``points`` (N, 3) pushed out from the LV axis to at least ``margin`` mm outside the ventricles, where a
        spline's chord or jitter cut into them: out from the LV axis down to the apical tenth, out from the LV's
        base centre round the apex."""
        u, e1, e2 = frame
        d = points - base
        su, q1, q2 = d @ u, d @ e1, d @ e2
        rho, psi = self.polar(q1, q2)
        need = self.envelope(np.clip(su, 0.0, None), psi) + margin
        push = np.where((su >= 0) & (su <= 0.9 * self.lv_len) & (rho < need), need - rho, 0.0)
        radial = (np.stack([q1, q2], -1) - self.lv_centre) / np.maximum(rho, 1e-6)[:, None]
        points = points + push[:, None] * (radial[:, :1] * e1 + radial[:, 1:] * e2)
        # round the apex, out along the LV ellipsoid grown by the margin
        ell = np.sqrt((su / (self.lv_len + margin)) ** 2 + (rho / (self.lv_rad + margin)) ** 2)
        tip = (su > 0.9 * self.lv_len) & (ell < 1.0)
        lv_axis = base + self.lv_centre[0] * e1 + self.lv_centre[1] * e2
        points[tip] = lv_axis + (points[tip] - lv_axis) / ell[tip, None]
        return points

    def groove_angle(self, s: float, which: str, length: float, near: float) -> float:
        """Frame angle (degrees, the turn nearest ``near``) of the ``"ant"``/``"post"`` groove at ``s``."""
        s = min(max(s, 0.0), 0.85)
        psi = np.deg2rad(self.septum_deg + (self.arc_ant_deg if which == "ant" else -self.arc_post_deg))
        g = self.lv_centre + float(self.lv_radius(s * length)) * np.array([np.cos(psi), np.sin(psi)])
        v = g - self.ray_origin(s)
        ang = float(np.rad2deg(np.arctan2(v[1], v[0])))
        return near + (ang - near + 180.0) % 360.0 - 180.0


def _ventricle_shape(length: float, radius: float, lv_len: float, lv_rad: float, lv_shift: float, phi_lv: float,
                     phi_ant: float, phi_post: float) -> VentricleShape:
    """The crescent RV whose grooves lie at the drawn angles at depth ``SHAPE_LEVEL``."""
    c = lv_shift * np.array([np.cos(np.deg2rad(phi_lv)), np.sin(np.deg2rad(phi_lv))])
    septum = phi_lv + 180.0
    su = SHAPE_LEVEL * length
    rho = lv_rad * np.sqrt(1.0 - (su / lv_len) ** 2)

    def arc(phi):  # angle round the LV axis of its epicardium seen at frame angle phi
        d = np.array([np.cos(np.deg2rad(phi)), np.sin(np.deg2rad(phi))])
        b = float(d @ c)
        p = (b + np.sqrt(b * b - c @ c + rho * rho)) * d - c
        return abs((float(np.rad2deg(np.arctan2(p[1], p[0]))) - septum + 180.0) % 360.0 - 180.0)

    return VentricleShape(lv_centre=c, lv_len=lv_len, lv_rad=lv_rad, rv_len=RV_LENGTH_FRACTION * lv_len,
                          rv_depth=RV_DEPTH_FRACTION * radius, septum_deg=septum, arc_ant_deg=arc(phi_ant),
                          arc_post_deg=arc(phi_post))


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


@dataclass
class HeartFrame:
    """Ventricular half-ellipsoid and its frame (all mm, LPS)."""

    base: np.ndarray  # (3,) centre of the AV plane
    u: np.ndarray  # (3,) long axis, base -> apex
    e1: np.ndarray  # (3,) anterior, perpendicular to u
    e2: np.ndarray  # (3,) leftward, perpendicular to u and e1
    length: float  # base -> apex distance of the epicardial surface
    radius: float  # epicardial radius at the base
    phi_ant: float  # angle of the anterior interventricular groove (degrees)
    phi_post: float  # angle of the posterior interventricular groove (degrees)
    # generator 2.0: LV plus a crescent RV (None: the ventricles fill the half-ellipsoid above)
    shape: VentricleShape | None = None

    def direction(self, phi_deg) -> np.ndarray:
        phi = np.deg2rad(phi_deg)
        return np.cos(phi)[..., None] * self.e1 + np.sin(phi)[..., None] * self.e2

    def surface(self, s, phi_deg, offset=0.0) -> np.ndarray:
        """Points ``offset`` mm outside the epicardial surface; ``s < 0`` continues as a cylinder.

        With a :class:`VentricleShape` the surface is its envelope, reached along the ray at ``phi`` from
        the frame's axis (which slides onto the LV axis towards the apex, where only the LV is left)."""
        s = np.asarray(s, dtype=np.float64)
        phi = np.asarray(phi_deg, dtype=np.float64)
        if self.shape is None:
            rad = self.radius * np.sqrt(np.clip(1.0 - np.clip(s, 0, None) ** 2, 0.0, 1.0))
            return (self.base + (s * self.length)[..., None] * self.u
                    + (rad + offset)[..., None] * self.direction(phi))
        s, phi, offset = np.broadcast_arrays(s, phi, np.asarray(offset, dtype=np.float64))
        origin = self.shape.ray_origin(s)
        su = s * self.length
        reach = self.shape.ray_exit(su, origin, phi)
        # the offset leaves the rounded rim along its normal (up at the rim's top, outwards below the rounding)
        # and, above the base, clears both the rim and the cylinder over it: the AV groove's corner
        a = np.clip(su / self.shape.base_round_mm, 0.0, 1.0)
        along = np.where(su < 0, su - offset, su + offset * (a - 1.0))
        out = reach + offset * np.where(su < 0, 1.0, np.sqrt(1.0 - (1.0 - a) ** 2) + (1.0 - a) ** 2)
        q = origin + out[..., None] * np.stack([np.cos(np.deg2rad(phi)), np.sin(np.deg2rad(phi))], -1)
        return self.base + along[..., None] * self.u + q[..., :1] * self.e1 + q[..., 1:] * self.e2

    def groove(self, s: float, which: str) -> float:
        """Angle (degrees) of the anterior (``"ant"``) or posterior (``"post"``) interventricular groove at
        ``s``: the drawn ``phi_ant``/``phi_post`` for the half-ellipsoid, where the RV meets the LV otherwise."""
        drawn = self.phi_ant if which == "ant" else self.phi_post
        if self.shape is None:
            return drawn
        return self.shape.groove_angle(float(s), which, self.length, drawn)

    def local(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame coordinates (along u, along e1, along e2) of (..., 3) points."""
        d = pts - self.base
        return d @ self.u, d @ self.e1, d @ self.e2


@dataclass
class Tube:
    """A straight vessel (aorta, pulmonary trunk): capsule from ``start`` to ``end``."""

    start: np.ndarray
    end: np.ndarray
    radius: float


@dataclass
class Vessel:
    """One coronary segment: centerline samples proximal -> distal, every CENTERLINE_STEP_MM."""

    code: str
    points: np.ndarray  # (N, 3) LPS mm
    radius: np.ndarray  # (N,) healthy lumen radius, mm

    @property
    def length_mm(self) -> float:
        return float(np.linalg.norm(np.diff(self.points, axis=0), axis=1).sum())


@dataclass
class Anatomy:
    """One sampled patient: everything the rasteriser needs, in mm."""

    dominance: str
    heart: HeartFrame
    lv_shift: float  # LV centre offset from the ventricular axis towards phi_lv, mm
    phi_lv: float
    lv_outer: tuple[float, float]  # (length, radius) of the LV epicardium
    lv_wall_mm: float
    rv_wall_mm: float
    la: tuple[np.ndarray, float]  # centre, radius
    ra: tuple[np.ndarray, float]
    aortic_root: tuple[np.ndarray, np.ndarray, float]  # centre, axis (towards the ascending aorta), radius
    sinuses: list[tuple[np.ndarray, float]]
    aorta: list[Tube]
    pulmonary: Tube
    body_centre: np.ndarray  # (2,) x, y of the body ellipse
    body_axes: tuple[float, float]  # semi-axes along x (left) and y (posterior)
    fat_mm: float  # subcutaneous fat thickness
    muscle_mm: float
    spine_centre: np.ndarray  # (2,) x, y of the vertebral bodies
    spine_radius: float
    sternum: tuple[np.ndarray, tuple[float, float]]  # (x, y) centre, (half width, half depth)
    liver_centre: np.ndarray
    liver_axes: tuple[float, float, float]
    vessels: dict[str, Vessel] = field(default_factory=dict)
    landmarks: dict[str, np.ndarray] = field(default_factory=dict)
    thorax: object | None = None  # cardiovlm.training.phantoms.thorax.Thorax, drawn from its own stream (generator 2.0)
    # cardiovlm.training.phantoms.coronary_variants.CoronaryDetail: side branches and variants (generator 2.0)
    coronary_detail: object | None = None

    def segment_codes(self) -> list[str]:
        return list(self.vessels)


def _spline(ctrl: np.ndarray, step: float = CENTERLINE_STEP_MM) -> np.ndarray:
    """Points every ``step`` mm along a C2 spline through the control points (chord-length knots)."""
    chord = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(ctrl, axis=0), axis=1))]
    spline = CubicSpline(chord, ctrl, bc_type="natural")
    dense_t = np.linspace(0.0, chord[-1], max(int(chord[-1] / (step / 8)), 8))
    dense = spline(dense_t)
    arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))]
    t = np.interp(np.arange(0.0, arc[-1], step), arc, dense_t)
    return spline(np.r_[t, dense_t[-1]])


def _override(drawn: float, given: float | None) -> float:
    return float(drawn) if given is None else float(given)


def _taper(n: int, r0: float, r1: float) -> np.ndarray:
    return r0 * (r1 / r0) ** np.linspace(0.0, 1.0, n)


def _split(points: np.ndarray, radius: np.ndarray, at: list[np.ndarray], codes: list[str]) -> dict[str, Vessel]:
    """Cut one vessel path at the centerline points closest to ``at`` into consecutive segments."""
    cuts = [0] + [int(np.argmin(np.linalg.norm(points - p, axis=1))) for p in at] + [len(points) - 1]
    return {code: Vessel(code, points[a:b + 1], radius[a:b + 1]) for code, a, b in zip(codes, cuts[:-1], cuts[1:])}


def _path(heart: HeartFrame, ctrl_sphi: list[tuple[float, float]], offset: float, rng, jitter_deg: float,
          start: np.ndarray | None = None) -> np.ndarray:
    """Spline through surface control points ``(s, phi)``, each angle jittered for tortuosity."""
    s = np.array([c[0] for c in ctrl_sphi])
    phi = np.array([c[1] for c in ctrl_sphi]) + rng.normal(0.0, jitter_deg, len(ctrl_sphi))
    ctrl = heart.surface(s, phi, offset)
    if start is not None:
        ctrl = np.vstack([start, ctrl[1:]])
    path = _spline(ctrl)
    if heart.shape is None:
        return path
    # generator 2.0: the rounded rim and the grooves bend the surface between control points; keep the
    # vessel in the fat outside it, then resample at the centerline step
    path = heart.shape.clear_of(path, heart.base, (heart.u, heart.e1, heart.e2), 0.75 * offset)
    arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))]
    at = np.r_[np.arange(0.0, arc[-1], CENTERLINE_STEP_MM), arc[-1]]
    return np.stack([np.interp(at, arc, path[:, a]) for a in range(3)], -1)


def sample_anatomy(rng: np.random.Generator, dominance: str | None = None, ramus: bool | None = None,
                   heart_scale: float = 1.0, lv_wall_mm: float | None = None,
                   aortic_root_mm: float | None = None, realistic: bool | None = None) -> Anatomy:
    """Draw one thorax with heart and coronary tree.

    Args:
        rng: the case's random generator (all variation comes from it).
        dominance: "right" or "left"; drawn (about 88 % right) when None.
        ramus: whether a ramus intermedius exists; drawn (about 20 %) when None.
        heart_scale: multiplies the drawn heart size (generator 2.0 sets it from sex and body habitus).
        lv_wall_mm: LV base/mid wall thickness; drawn from 9-12 mm when None (the draw is made either way,
            so the stream's later draws stay).
        aortic_root_mm: sinus-to-sinus diameter of the aortic root; the ascending aorta is then 0.9 of it.
        realistic: generator 2.0's ventricles (:class:`VentricleShape`: a crescent RV, interventricular
            grooves where the coronaries run, a rounded base); no extra draws, so the stream is unchanged.
            None: realistic when the population's LV wall is given, as generator 2.0's ``build`` gives it.
    """
    if realistic is None:
        realistic = lv_wall_mm is not None
    if dominance is None:
        dominance = "right" if rng.random() < 0.88 else "left"
    if dominance not in ("right", "left"):
        raise ValueError(f"dominance must be 'right' or 'left', got {dominance!r}")
    if ramus is None:
        ramus = bool(rng.random() < 0.2)

    scale = rng.uniform(0.9, 1.1) * float(heart_scale)  # heart size
    az, el = np.deg2rad(rng.uniform(40, 55)), np.deg2rad(rng.uniform(30, 42))
    # long axis: azimuth from the anterior direction towards the left, elevation towards the feet
    u = _unit([np.sin(az) * np.cos(el), -np.cos(az) * np.cos(el), -np.sin(el)])
    e1 = _unit(np.array([0.0, -1.0, 0.0]) - (-u[1]) * u)
    e2 = np.array([1.0, 0.0, 0.0])
    e2 = _unit(e2 - (e2 @ u) * u - (e2 @ e1) * e1)
    length, radius = 74.0 * scale, 42.0 * scale
    base = -0.4 * length * u + rng.normal(0.0, 2.0, 3)  # heart roughly centred on the origin
    heart = HeartFrame(base, u, e1, e2, length, radius, phi_ant=rng.uniform(35, 45), phi_post=rng.uniform(195, 210))
    phi_lv = 0.5 * (heart.phi_ant + heart.phi_post)
    lv_len, lv_rad = 0.97 * length, 0.74 * radius
    if lv_wall_mm is not None:
        # wall thickness and cavity size vary independently (both have their own norms): the LV's outer
        # surface moves with the wall, so the cavity stays the size drawn for a mean wall
        lv_rad += float(lv_wall_mm) - MEAN_LV_WALL_MM
        lv_len += APEX_WALL_FRACTION * (float(lv_wall_mm) - MEAN_LV_WALL_MM)

    la_c = base - 20 * scale * u - 16 * scale * e1 + 4 * e2
    ra_c = base - 16 * scale * u - 4 * scale * e1 - 30 * scale * e2
    root_c = base - 13 * scale * u + 6 * scale * e1 - 8 * scale * e2
    root_r = 14.0 * scale / float(heart_scale) ** 0.7  # the aortic root grows less than the heart
    if aortic_root_mm is not None:
        root_r = float(aortic_root_mm) / ROOT_DIAMETER_PER_RADIUS
    asc_dir = _unit([-0.2, -0.15, 1.0])
    root_axis = _unit(asc_dir - 0.6 * u)
    # three sinuses of Valsalva: left (towards the LM), right (anterior), non-coronary (posterior)
    left_dir = _unit(heart.direction(heart.phi_ant + 25) - (heart.direction(heart.phi_ant + 25) @ root_axis) * root_axis)  # noqa: E501
    right_dir = _unit(heart.direction(345.0) - (heart.direction(345.0) @ root_axis) * root_axis)
    non_dir = _unit(-(left_dir + right_dir))
    sinuses = [(root_c + 0.55 * root_r * d, 0.62 * root_r) for d in (left_dir, right_dir, non_dir)]
    asc_start = root_c + 10 * root_axis
    asc_r = rng.uniform(14, 17)
    if aortic_root_mm is not None:
        asc_r = 0.45 * float(aortic_root_mm)  # the ascending aorta is a little narrower than the sinuses
    aorta = [Tube(root_c, asc_start, 0.9 * root_r),
             Tube(asc_start, asc_start + 90 * asc_dir, asc_r),
             Tube(np.array([-2.0, 62.0, -120.0]), np.array([-2.0, 62.0, 120.0]), rng.uniform(11, 13))]
    pa_start = heart.surface(-0.08, 20.0, -14.0)
    pulmonary = Tube(pa_start, pa_start + 55 * _unit([0.35, 0.55, 1.0]), rng.uniform(12, 14))

    if realistic:  # after the great vessels, which keep their places
        heart.shape = _ventricle_shape(length, radius, lv_len, lv_rad, 0.3 * radius, phi_lv, heart.phi_ant,
                                       heart.phi_post)
    anatomy = Anatomy(
        dominance=dominance, heart=heart, lv_shift=0.3 * radius, phi_lv=phi_lv, lv_outer=(lv_len, lv_rad),
        lv_wall_mm=_override(rng.uniform(9, 12), lv_wall_mm), rv_wall_mm=RV_WALL_MM if realistic else 3.0,
        la=(la_c, 21 * scale), ra=(ra_c, 23 * scale), aortic_root=(root_c, root_axis, root_r), sinuses=sinuses,
        aorta=aorta, pulmonary=pulmonary,
        body_centre=np.array([-25.0, 20.0]) + rng.normal(0, 3, 2),
        body_axes=(rng.uniform(150, 175), rng.uniform(105, 125)),
        fat_mm=rng.uniform(6, 25), muscle_mm=rng.uniform(8, 14),
        spine_centre=np.array([-25.0, 88.0]) + rng.normal(0, 2, 2), spine_radius=rng.uniform(16, 19),
        sternum=(np.array([-22.0, -72.0]), (14.0, 6.0)),
        liver_centre=np.array([-70.0, 25.0, -150.0]), liver_axes=(110.0, 95.0, 95.0),
    )
    anatomy.sternum = (np.array([anatomy.body_centre[0] + 3, anatomy.body_centre[1] - anatomy.body_axes[1]
                                 + anatomy.fat_mm + anatomy.muscle_mm + 6]), (14.0, 6.0))
    _add_coronaries(anatomy, rng, ramus)
    return anatomy


def _add_coronaries(anat: Anatomy, rng: np.random.Generator, ramus: bool) -> None:
    """SCCT segments as splines on the epicardium, split at the SCCT landmarks."""
    h = anat.heart
    off = 2.0  # centerline sits in the epicardial fat, ~2 mm outside the myocardium
    jit = 3.0
    root_c, root_axis, root_r = anat.aortic_root
    k = rng.uniform(0.9, 1.1)  # calibre of this patient's tree
    left_dom = anat.dominance == "left"
    # the interventricular grooves (generator 2.0: where the RV meets the LV, which moves with depth)
    ant, post = (lambda s: h.groove(s, "ant")), (lambda s: h.groove(s, "post"))

    # left main: from the left sinus to the bifurcation at the top of the anterior groove
    l_ost = anat.sinuses[0][0] + anat.sinuses[0][1] * _unit(anat.sinuses[0][0] - root_c)
    groove_top = h.surface(-0.04, ant(-0.04) + 12, off)
    # the left main is short (5-15 mm): it bifurcates on its way from the sinus to the groove
    lm_len = min(rng.uniform(8, 13), 0.6 * float(np.linalg.norm(groove_top - l_ost)))
    bif = l_ost + lm_len * _unit(groove_top - l_ost)
    lm = _spline(np.vstack([l_ost, 0.5 * (l_ost + bif) + 0.5 * h.e2, bif]))
    vessels = {"LM": Vessel("LM", lm, _taper(len(lm), 2.3 * k, 2.1 * k))}

    # LAD: anterior interventricular groove to (and slightly round) the apex
    s_d1, s_d2 = rng.uniform(0.14, 0.2), rng.uniform(0.42, 0.5)
    lad = _path(h, [(-0.04, ant(-0.04) + 12), (0.05, ant(0.05) + 4), (s_d1, ant(s_d1)), (0.3, ant(0.3)),
                    (s_d2, ant(s_d2)), (0.75, ant(0.75)), (0.97, ant(0.97) - 10), (1.0, ant(1.0) + 90)],
                off, rng, 2.0, start=bif)
    r_lad = _taper(len(lad), 1.9 * k, 0.8 * k)
    d1_o, d2_o = h.surface(s_d1, ant(s_d1), off), h.surface(s_d2, ant(s_d2), off)
    vessels |= _split(lad, r_lad, [d1_o, d2_o], ["pLAD", "mLAD", "dLAD"])
    for code, s0, o in (("D1", s_d1, d1_o), ("D2", s_d2, d2_o)):  # noqa: B007
        path = _path(h, [(s0, ant(s0)), (s0 + 0.1, ant(s0) + 22), (s0 + 0.25, ant(s0) + 40),
                         (min(s0 + 0.38, 0.95), ant(s0) + 50)], off, rng, jit, start=vessels[
                             "pLAD" if code == "D1" else "mLAD"].points[-1])
        vessels[code] = Vessel(code, path, _taper(len(path), 1.3 * k, 0.75))

    # LCx: left AV groove, round the obtuse margin; to the crux in left dominance
    phi_om1, phi_om2 = rng.uniform(95, 110), rng.uniform(135, 150)
    end_phi = post(0.02) if left_dom else rng.uniform(160, 175)
    lcx = _path(h, [(-0.04, ant(-0.04) + 12), (0.0, ant(0.0) + 40), (0.0, phi_om1), (0.0, 0.5 * (phi_om1 + phi_om2)),
                    (0.0, phi_om2), (0.02, end_phi)], off + 1, rng, 1.5, start=bif)
    r_lcx = _taper(len(lcx), 1.8 * k, (1.1 if left_dom else 0.8) * k)
    om1_o = lcx[int(np.argmin(np.linalg.norm(lcx - h.surface(0.0, phi_om1, off + 1), axis=1)))]
    om2_o = lcx[int(np.argmin(np.linalg.norm(lcx - h.surface(0.0, phi_om2, off + 1), axis=1)))]
    vessels |= _split(lcx, r_lcx, [om1_o], ["pCx", "dLCx"])
    for code, phi0, o in (("OM1", phi_om1, om1_o), ("OM2", phi_om2, om2_o)):
        path = _path(h, [(0.0, phi0), (0.2, phi0 + 6), (0.45, phi0 + 12), (0.7, phi0 + 14)], off, rng, jit, start=o)
        vessels[code] = Vessel(code, path, _taper(len(path), 1.3 * k, 0.75))
    if ramus:
        path = _path(h, [(-0.04, ant(-0.04) + 12), (0.15, ant(0.15) + 45), (0.35, ant(0.35) + 55),
                         (0.55, ant(0.55) + 60)],
                     off, rng, jit, start=bif)
        vessels["RI"] = Vessel("RI", path, _taper(len(path), 1.4 * k, 0.75))

    # RCA: right sinus, right AV groove, acute margin, crux (right dominance)
    r_ost = anat.sinuses[1][0] + anat.sinuses[1][1] * _unit(anat.sinuses[1][0] - root_c)
    crux_phi = post(0.0)
    end = crux_phi if not left_dom else 245.0
    rca = _path(h, [(-0.1, 350), (-0.03, 330), (0.0, 300), (0.0, 270), (0.0, 240), (0.0, end)], off + 1, rng, 1.5,
                start=r_ost)
    r_rca = _taper(len(rca), (2.0 if not left_dom else 1.5) * k, (1.1 if not left_dom else 0.8) * k)
    acute = h.surface(0.0, 270, off + 1)
    half = rca[int(np.argmin(np.linalg.norm(rca - acute, axis=1))) // 2]
    vessels |= _split(rca, r_rca, [half, acute], ["pRCA", "mRCA", "dRCA"])

    crux_parent = "dLCx" if left_dom else "dRCA"
    crux = vessels[crux_parent].points[-1]
    side = "L" if left_dom else "R"
    bend = 1.0 if h.shape is None else 0.0  # the half-ellipsoid's PDA strayed off its groove; 2.0's keeps to it
    pda = _path(h, [(0.0, crux_phi), (0.2, post(0.2) + 2 * bend), (0.45, post(0.45)), (0.7, post(0.7) - 3 * bend)],
                off, rng, 2.0, start=crux)
    vessels[f"{side}-PDA"] = Vessel(f"{side}-PDA", pda, _taper(len(pda), 1.3 * k, 0.75))
    # the posterolateral branch runs onto the LV's inferolateral wall
    plb = _path(h, [(0.0, crux_phi), (0.03, crux_phi - 15), (0.2, crux_phi - 30),
                    (0.45, crux_phi - 38)], off, rng, jit, start=crux)
    vessels[f"{side}-PLB"] = Vessel(f"{side}-PLB", plb, _taper(len(plb), 1.2 * k, 0.75))

    for code in vessels:
        assert code in SEGMENT_PARENT, code  # registry keys only (internal invariant)
    anat.vessels = vessels
    apex = h.base + h.length * h.u
    anat.landmarks = {
        "left_coronary_ostium": l_ost, "right_coronary_ostium": r_ost,
        "aortic_annulus_centre": root_c + 0.6 * root_r * (-root_axis),
        "lm_bifurcation": bif, "crux": crux, "lv_apex": apex,
        "d1_origin": vessels["D1"].points[0], "om1_origin": vessels["OM1"].points[0],
        "pda_origin": vessels[f"{side}-PDA"].points[0],
    }
