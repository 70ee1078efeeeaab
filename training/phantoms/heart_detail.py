"""The heart's inner relief and outpouchings for generator 2.0: papillary muscles, trabeculae, atrial appendages
and the right-ventricular outflow tract.

Geometry only (tapered capsules, :class:`Segments`, in patient LPS mm); ``thorax_raster.paint_heart_detail``
paints it. Sizes, with their sources:

* LV papillary muscles: two, anterolateral (from the anterolateral wall) and posteromedial (from the inferior
  wall), conical, arising at the junction of the mid and apical thirds. Length 32.2 +/- 4.8 mm (anterolateral)
  and 29.9 +/- 4.9 mm (posteromedial); tip 19-20 mm +/- 3 mm from the mitral annulus (320 autopsy hearts,
  Udhayakumar & Yasawardene, Jaffna Med J 2021;33:136). Drawn 12-15 mm across at the base and 7-9 mm at
  the tip, so a mid-ventricular short-axis cut shows two round filling defects of about 8-12 mm (CMR puts
  the papillary muscles at 8.9 % of LV mass, MESA, Vogel-Claussen et al. 2006; the trabecular part of that
  mass is drawn as trabeculae).
* Trabeculae: ridges of 2.4-4.4 mm calibre at the endocardium of the apical and inferior LV and of the RV free
  wall, raising the border by at most ~3 mm: a normal heart keeps its non-compacted to compacted layer ratio
  well under 2.3 (Petersen et al., JACC 2005;46:101).
* Left atrial appendage: a bent tubular pouch from the anterolateral LA along the left AV groove, length
  about 30 mm (20-45), orifice 15 x 21 mm on average, volume 5.2 +/- 3.0 mL (0.8-19 mL) (casts of 220
  hearts, Ernst et al., Anat Rec 1995).
* Right atrial appendage: a broad triangular pouch from the anterosuperior RA, forwards and to the left over
  the aortic root; height 33 +/- 5 mm (men) and 30.5 +/- 5 mm (women), base long axis 33-34 +/- 4 mm and area
  ~780 mm2 (an equivalent radius of ~16 mm), volume 11.7-13.3 +/- 4 mL (256-slice CT of 200 normal hearts,
  Li et al., Surg Radiol Anat 2017;39:393).
* RV outflow tract: a muscular tube from the anterior RV to the pulmonary valve; diameter 21-35 mm
  proximally, 17-27 mm at the valve (ASE/EACVI chamber quantification, Lang et al. 2015).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cardiovlm.training.phantoms.geometry import APEX_WALL_FRACTION, Anatomy, _unit
from cardiovlm.training.phantoms.segments import Segments

PAPILLARY_LENGTH_MM = {"anterolateral": (32.2, 4.8), "posteromedial": (29.9, 4.9)}  # mean, SD (autopsy)
PAPILLARY_ANGLE_DEG = {"anterolateral": -50.0, "posteromedial": 65.0}  # from the LV's lateral axis (phi_lv)
PAPILLARY_BASE_RADIUS_MM = (6.0, 7.5)
PAPILLARY_TIP_RADIUS_MM = (3.5, 4.5)
TRABECULA_RADIUS_MM = (1.2, 2.2)  # LV ridges; the RV's are coarser (below)
RV_TRABECULA_RADIUS_MM = (1.5, 2.5)
LAA_LENGTH_MM = (24.0, 40.0)
LAA_ORIFICE_RADIUS_MM = (7.5, 10.5)
RAA_HEIGHT_MM = (26.0, 38.0)
RAA_BASE_RADIUS_MM = (13.5, 16.5)
RVOT_PROXIMAL_RADIUS_MM = (11.0, 13.5)


@dataclass
class HeartDetail:
    """What generator 2.0 adds to the chambers (each a chain of tapered capsules, mm)."""

    papillary: dict[str, Segments]  # "anterolateral", "posteromedial": LV myocardium into the cavity
    lv_trabeculae: Segments  # LV myocardium ridges on the apical and inferior endocardium
    rv_trabeculae: Segments  # RV wall ridges on the free wall's endocardium
    laa: Segments  # left atrial appendage lumen (starts inside the LA)
    raa: Segments  # right atrial appendage lumen (starts inside the RA)
    rvot: Segments  # RV outflow tract lumen, RV cavity -> pulmonary valve


class _LVCavity:
    """Points on the LV endocardium as the rasteriser draws it: a half-ellipsoid along ``u`` round the
    shifted LV axis, ``t`` in [0, 1] from its base (4 mm below the AV plane) to its apex."""

    def __init__(self, anat: Anatomy):
        h = anat.heart
        lv_len, lv_rad = anat.lv_outer
        w = anat.lv_wall_mm
        self.h = h
        self.centre = h.base + anat.lv_shift * h.direction(anat.phi_lv)
        self.a = lv_len - APEX_WALL_FRACTION * w - 4.0
        self.b = lv_rad - w

    def radius(self, t: float) -> float:
        return float(self.b * np.sqrt(max(1.0 - t * t, 0.0)))

    def point(self, t: float, phi: float, inset: float = 0.0) -> np.ndarray:
        """``inset`` mm inside the endocardium (negative: into the wall)."""
        return self.centre + (4.0 + t * self.a) * self.h.u + (self.radius(t) - inset) * self.h.direction(phi)


def _papillary(rng: np.random.Generator, lv: _LVCavity, phi: float, length_mm: float) -> Segments:
    """A cone from the wall (its base 3 mm into the myocardium) towards the mitral annulus."""
    h = lv.h
    t_base = float(rng.uniform(0.55, 0.65))
    base = lv.point(t_base, phi, -3.0)
    radial_base = lv.radius(t_base) + 3.0
    radial_tip = float(rng.uniform(0.4, 0.5)) * lv.b
    drop = radial_base - radial_tip
    rise = float(np.sqrt(max(length_mm ** 2 - drop ** 2, 100.0)))
    tip = lv.centre + ((4.0 + t_base * lv.a) - rise) * h.u + radial_tip * h.direction(phi)
    r0, r1 = (float(rng.uniform(*PAPILLARY_BASE_RADIUS_MM)), float(rng.uniform(*PAPILLARY_TIP_RADIUS_MM)))
    return Segments.polyline([base, 0.5 * (base + tip), tip], r0, r1, step=1.0)


def _ridges(rng: np.random.Generator, ends, n: int, radius: tuple[float, float]) -> Segments:
    """``n`` short ridges; ``ends(rng)`` gives one ridge's two end points or None to skip it."""
    p0, p1 = [], []
    for _ in range(n):
        ab = ends(rng)
        if ab is not None:
            p0.append(ab[0])
            p1.append(ab[1])
    if not p0:
        return Segments.empty()
    r = rng.uniform(*radius, len(p0))
    return Segments(np.asarray(p0), np.asarray(p1), r, r * rng.uniform(0.7, 1.0, len(p0)))


def sample_heart_detail(rng: np.random.Generator, anat: Anatomy) -> HeartDetail:
    """Draw the papillary muscles, trabeculae, appendages and outflow tract of an already sampled heart."""
    h = anat.heart
    lv = _LVCavity(anat)
    papillary = {}
    for name, (mean, sd) in PAPILLARY_LENGTH_MM.items():
        length = float(np.clip(rng.normal(mean, sd), mean - 1.5 * sd, mean + 1.5 * sd))
        phi = anat.phi_lv + PAPILLARY_ANGLE_DEG[name] + float(rng.uniform(-8, 8))
        papillary[name] = _papillary(rng, lv, phi, length)

    def lv_ridge(r):
        # half near the apex all round the free wall, half along the inferior and inferolateral wall
        if r.random() < 0.5:
            t, phi = r.uniform(0.7, 0.95), anat.phi_lv + r.uniform(-150, 150)
        else:
            t, phi = r.uniform(0.3, 0.8), anat.phi_lv + r.uniform(30, 120)
        dt, dphi = r.uniform(0.08, 0.16), r.uniform(-15, 15)
        return lv.point(t, phi, 0.5), lv.point(min(t + dt, 0.97), phi + dphi, 0.5)

    rv_len, rv_rad = h.length - anat.rv_wall_mm, h.radius - anat.rv_wall_mm
    lv_len, lv_rad = anat.lv_outer
    lv_axis = anat.lv_shift * h.direction(anat.phi_lv)

    def rv_point(t, phi, inset):
        return h.base + t * rv_len * h.u + (rv_rad * np.sqrt(max(1 - t * t, 0.0)) - inset) * h.direction(phi)

    def outside_lv(p):  # the free wall only: the septum is the LV's wall
        su = float((p - h.base) @ h.u)
        q = p - h.base - su * h.u - lv_axis
        return (su / lv_len) ** 2 + float(q @ q) / (lv_rad + 2.0) ** 2 > 1.0

    def rv_ridge(r):
        t, phi = r.uniform(0.15, 0.85), r.uniform(220, 380)
        a = rv_point(t, phi, 0.5)
        b = rv_point(min(t + r.uniform(0.1, 0.2), 0.92), phi + r.uniform(-20, 20), 0.5)
        return (a, b) if outside_lv(a) and outside_lv(b) else None

    lv_trab = _ridges(rng, lv_ridge, int(rng.integers(30, 45)), TRABECULA_RADIUS_MM)
    rv_trab = _ridges(rng, rv_ridge, int(rng.integers(40, 60)), RV_TRABECULA_RADIUS_MM)

    # left atrial appendage: out of the anterolateral LA, bent forwards along the left AV groove
    la_c, la_r = anat.la
    d0 = _unit(0.45 * h.e1 + 0.85 * h.e2 - 0.25 * h.u)
    length = float(rng.uniform(*LAA_LENGTH_MM))
    p1 = la_c + (la_r + 4.0) * d0
    p2 = p1 + 0.5 * length * _unit(h.e1 + 0.3 * h.e2 - 0.1 * h.u + rng.normal(0, 0.15, 3))
    p3 = p2 + 0.5 * length * _unit(h.e1 - 0.2 * h.e2 - 0.3 * h.u + rng.normal(0, 0.2, 3))
    r_o = float(rng.uniform(*LAA_ORIFICE_RADIUS_MM))
    laa = Segments.polyline([la_c + 0.6 * la_r * d0, p1, p2, p3], r_o, 0.45 * r_o, step=1.5)

    # right atrial appendage: broad-based, forwards and to the left over the aortic root
    ra_c, ra_r = anat.ra
    d0 = _unit(0.8 * h.e1 + 0.25 * h.e2 - 0.4 * h.u)
    height = float(rng.uniform(*RAA_HEIGHT_MM))
    q1 = ra_c + (ra_r - 2.0) * d0
    q2 = q1 + 0.55 * height * _unit(h.e1 + 0.5 * h.e2 - 0.2 * h.u + rng.normal(0, 0.15, 3))
    q3 = q2 + 0.45 * height * _unit(0.5 * h.e1 + 0.9 * h.e2 - 0.3 * h.u + rng.normal(0, 0.15, 3))
    r_b = float(rng.uniform(*RAA_BASE_RADIUS_MM))
    raa = Segments.polyline([ra_c + 0.5 * ra_r * d0, q1, q2, q3], r_b, 0.35 * r_b, step=1.5)

    # RV outflow tract: from the anterior RV cavity up to the pulmonary valve (the trunk's start)
    pa = anat.pulmonary
    r_p = float(rng.uniform(*RVOT_PROXIMAL_RADIUS_MM))
    start = h.surface(0.2, 345.0 + rng.uniform(-10, 10), -(anat.rv_wall_mm + r_p + 1.0))
    mid = h.surface(0.05, 5.0, -(anat.rv_wall_mm + r_p))
    rvot = Segments.polyline([start, mid, pa.start + 2.0 * _unit(pa.end - pa.start)], r_p, 0.95 * pa.radius,
                             step=1.5)
    return HeartDetail(papillary=papillary, lv_trabeculae=lv_trab, rv_trabeculae=rv_trab, laa=laa, raa=raa,
                       rvot=rvot)
