"""The patient's outline and chest wall: skin contour, subcutaneous fat, muscles, ribs, arms and the table.

Geometry and painting of everything between the air outside and the pleura, in patient LPS millimetres
(x to the patient's left, y posterior, z superior). The skin contour is a superellipse in polar form
around the body centre (exponent above 2: a flatter front over the sternum and a back flattened on the
table, with squarer posterolateral corners), with a shallow midline groove between the paraspinal
muscles, a little irregularity and, in women, breasts. Layers (fat, muscle, ribs) are radial depths
below that contour, so they follow it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cardiovlm.tools.core.anatomy import STRUCTURES_BY_NAME
from cardiovlm.training.phantoms.vertebrae import Spine

LABEL = {name: s.label_id for name, s in STRUCTURES_BY_NAME.items()}
# the humerus's HU comes from its own masks (cortex and fatty marrow), not from its label
HUMERUS_LABEL = LABEL["humerus"]
RIB_CORTEX_MM = 1.2  # rib cortical shell; marrow inside takes the cancellous HU
ARMS_DOWN_SHARE = 0.3  # most cardiac and chest CTs are taken with the arms raised out of the field
TABLE_SHARE = 0.6  # a cardiac reconstruction often crops the table; the whole-chest field often shows it


@dataclass
class ChestWall:
    """Body-wall layers as functions of the in-plane angle ``theta`` around the body centre
    (``atan2(y, x)``: 0 the patient's left, pi/2 posterior)."""

    fat_mm: float  # mean subcutaneous fat
    fat_harmonics: tuple[float, float, float, float]  # a1, phase1, a2, phase2 (relative amplitudes)
    muscle_mm: float  # anterior/lateral muscle (pectoral, serratus, intercostal)
    paraspinal_mm: float  # extra muscle either side of the spine, posteriorly
    rib_layer_mm: float  # ribs and intercostal muscle inside the muscle

    def fat(self, theta):
        a1, p1, a2, p2 = self.fat_harmonics
        return self.fat_mm * np.clip(1 + a1 * np.cos(theta - p1) + a2 * np.cos(2 * theta - p2), 0.25, None)

    def muscle(self, theta):
        posterior = np.exp(-((np.angle(np.exp(1j * (theta - np.pi / 2)))) / 0.55) ** 2)
        return self.muscle_mm + self.paraspinal_mm * posterior


@dataclass
class Ribs:
    """Twelve pairs of ribs: rib n's upper edge at the spine sits at ``z_spine[n]``; ribs descend by
    ``drop_mm`` from the spine to the sternum; the anterior ``cartilage_deg`` are costal cartilage.
    (Their heads and necks, at the vertebral discs, are painted with the vertebrae.)"""

    z_spine: np.ndarray
    height_mm: float
    thickness_mm: float
    drop_mm: float
    cartilage_deg: float


@dataclass
class Outline:
    """Skin contour ``R(theta, z)``: ``theta = atan2(y - cy, x - cx)`` (0 the patient's left, pi/2 posterior)."""

    centre: tuple[float, float]
    axes: tuple[float, float]  # half width (x) and half depth (y) at ``z0``
    n_front: float  # superellipse exponent of the anterior half (2 = ellipse)
    n_back: float  # of the posterior half
    ripple: tuple[float, float, float, float]  # a3, phase3, a4, phase4: relative irregularity
    groove_mm: float  # depth of the posterior midline groove between the paraspinal muscles
    taper: float  # relative growth of the contour per 100 mm towards the feet
    z0: float
    breast: tuple[float, float, float, float] | None  # projection (mm), angle off the midline (rad), z, half-height
    # subcutaneous fat added outside the drawn wall (mm at the wall's mean, and the wall's harmonics), so the
    # pleural cavity keeps its size: women and larger bodies carry more
    fat_gain: tuple[float, tuple[float, float, float, float]] = (0.0, (0.0, 0.0, 0.0, 0.0))

    def radius(self, theta, z) -> np.ndarray:
        a, b = self.axes
        c, s = np.abs(np.cos(theta)), np.abs(np.sin(theta))
        n = np.where(np.sin(theta) < 0, self.n_front, self.n_back)
        r = ((c / a) ** n + (s / b) ** n) ** (-1.0 / n)
        a3, p3, a4, p4 = self.ripple
        r = r * (1 + a3 * np.cos(3 * theta - p3) + a4 * np.cos(4 * theta - p4))
        from_back = np.abs(np.angle(np.exp(1j * (theta - np.pi / 2))))
        r = r - self.groove_mm * np.exp(-(from_back / 0.07) ** 2)
        r = r * (1 + self.taper * (self.z0 - z) / 100.0)
        return r + self.breast_mm(theta, z) + self.gained_fat_mm(theta, z)

    def gained_fat_mm(self, theta, z) -> np.ndarray:
        mm, (a1, p1, a2, p2) = self.fat_gain
        around = np.clip(1 + a1 * np.cos(theta - p1) + a2 * np.cos(2 * theta - p2), 0.25, None)
        return mm * around * (1 + 0.15 * np.sin((z - self.z0) / 60.0))

    def breast_mm(self, theta, z) -> np.ndarray:
        if self.breast is None:
            return np.zeros(np.broadcast_shapes(np.shape(theta), np.shape(z)), np.float32)
        proj, off, zc, half = self.breast
        d = np.minimum(np.abs(np.angle(np.exp(1j * (theta + np.pi / 2 - off)))),
                       np.abs(np.angle(np.exp(1j * (theta + np.pi / 2 + off)))))
        return proj * np.exp(-(d / 0.32) ** 2) * np.exp(-((z - zc) / half) ** 2)

    def polar(self, x, y):
        cx, cy = self.centre
        return np.arctan2(y - cy, x - cx), np.sqrt((x - cx) ** 2 + (y - cy) ** 2)

    def depth(self, x, y, z) -> np.ndarray:
        """Radial depth below the skin (mm; negative outside the body)."""
        theta, rho = self.polar(x, y)
        return self.radius(theta, z) - rho


@dataclass
class Muscles:
    """The chest wall's muscle bellies, separated by thin fat planes.

    The muscle layer (between the subcutaneous fat and the ribs) is divided by the angle ``phi`` from the
    anterior midline (0) to the posterior midline (pi), the same on both sides, and by the relative depth
    ``s`` in the layer (0 under the fat, 1 on the ribs): pectoralis major in front, with pectoralis minor
    deep to it in the upper chest; serratus anterior on the lateral ribs; latissimus dorsi over the
    posterolateral wall with the deep back muscles under it; trapezius over the back, with the erector spinae
    under it either side of the spinous processes."""

    pec_lateral: float  # phi of pectoralis major's lateral border (the anterior axillary fold)
    pec_minor: tuple[float, float]  # phi range of pectoralis minor
    pec_split: float  # s of the fat plane between pectoralis major and minor
    pec_minor_floor: float  # z below which pectoralis minor is gone (it inserts on ribs 3-5)
    lat_anterior: float  # phi of latissimus dorsi's anterior border
    lat_split: float  # s of the plane under latissimus dorsi
    trap_lateral: float  # phi of trapezius's lateral border
    trap_split: float  # s of the plane under trapezius
    plane_mm: float  # thickness of an intermuscular fat plane
    wobble: tuple[float, float]  # the planes' wander with height: amplitude (rad) and phase
    marbling: float  # share of a belly's voxels that are intramuscular fat streaks
    waves: np.ndarray  # (n, 4) wave vector (rad/mm) and phase of the marbling's texture


def sample_muscles(rng: np.random.Generator, z0: float) -> Muscles:
    k = rng.normal(size=(8, 3))
    # streaks 1-2 cm apart, longer along the fibres (mostly across the chest, so flatter in z)
    k = k / np.linalg.norm(k, axis=1, keepdims=True) * rng.uniform(0.3, 0.6, (8, 1)) * np.array([1.0, 1.0, 0.5])
    return Muscles(pec_lateral=float(rng.uniform(0.95, 1.2)),
                   pec_minor=(float(rng.uniform(0.45, 0.6)), float(rng.uniform(0.85, 1.0))),
                   pec_split=float(rng.uniform(0.45, 0.6)), pec_minor_floor=z0 + float(rng.uniform(-20, 20)),
                   lat_anterior=float(rng.uniform(1.7, 1.95)), lat_split=float(rng.uniform(0.35, 0.5)),
                   trap_lateral=float(rng.uniform(2.35, 2.6)), trap_split=float(rng.uniform(0.2, 0.3)),
                   plane_mm=float(rng.uniform(1.5, 2.5)),
                   wobble=(float(rng.uniform(0.02, 0.06)), float(rng.uniform(0, 2 * np.pi))),
                   marbling=float(rng.uniform(0.015, 0.05)),
                   waves=np.c_[k, rng.uniform(0, 2 * np.pi, 8)])


@dataclass
class Arm:
    """One upper arm beside the chest, running along z: skin and fat round the arm muscles (biceps and
    brachialis in front, triceps behind, split by intermuscular septa) round a humerus; the arm narrows
    from the shoulder towards the elbow."""

    centre: tuple[float, float]
    axes: tuple[float, float]  # semi-axes of the arm's cross-section at ``z0``
    fat_mm: float
    humerus: tuple[float, float, float]  # x, y offset from the arm's centre, radius
    cortex_mm: float
    taper: float = 0.0  # relative growth of the section per 100 mm towards the shoulder
    z0: float = 0.0

    def scale(self, z):
        """Size of the arm's soft-tissue section at height ``z`` relative to ``z0`` (the humerus keeps its own)."""
        return np.clip(1 + self.taper * (z - self.z0) / 100.0, 0.6, 1.4)


@dataclass
class Table:
    """Curved carbon-fibre table top with a foam core, under the patient's back."""

    top_y: float  # height of the table's upper surface at the midline
    curvature_mm: float  # radius of the table's transverse curvature (concave upwards)
    shell_mm: float
    core_mm: float
    half_width: float
    centre_x: float


@dataclass
class Body:
    outline: Outline
    paraspinal: tuple[float, float, float, float]  # x offset, y offset from the canal, semi-axes x and y
    arms: tuple[Arm, Arm] | None
    table: Table | None
    muscles: Muscles | None = None


def fat_factor(sex: str, half_width: float, half_depth: float) -> float:
    """Subcutaneous fat relative to the drawn wall's: about a quarter more in women (who store more fat
    subcutaneously), and growing with the square of the trunk's size (its girth rises with fat mass)."""
    size = np.sqrt(half_width * half_depth) / np.sqrt(167.0 * 130.0)  # the mean 2.0 man's trunk
    return float(np.clip((1.25 if sex == "female" else 1.0) * size ** 2, 0.6, 1.8))


def sample_body(rng: np.random.Generator, anat, wall: ChestWall, sex: str) -> Body:
    """Draw the skin contour, muscle bellies, arms (arms-down scans) and table around ``anat``."""
    # a child stream for the muscle bellies and the arms' taper: the draws below keep their values
    own = rng.spawn(1)[0]
    cx, cy = (float(v) for v in anat.body_centre)
    a, b = (float(v) for v in anat.body_axes)
    breast = None
    if sex == "female":
        breast = (float(rng.uniform(8, 45)), float(rng.uniform(0.45, 0.7)),
                  float(anat.heart.base[2] + rng.uniform(-40, 10)), float(rng.uniform(45, 70)))
    outline = Outline(centre=(cx, cy), axes=(a, b), n_front=float(rng.uniform(2.25, 2.6)),
                      n_back=float(rng.uniform(2.4, 2.9)),
                      ripple=(float(rng.uniform(0, 0.02)), float(rng.uniform(0, 2 * np.pi)),
                              float(rng.uniform(0, 0.015)), float(rng.uniform(0, 2 * np.pi))),
                      groove_mm=float(rng.uniform(2, 6)), taper=float(rng.uniform(-0.02, 0.03)),
                      z0=float(anat.heart.base[2]), breast=breast,
                      fat_gain=(wall.fat_mm * (fat_factor(sex, a, b) - 1.0), wall.fat_harmonics))
    muscles = sample_muscles(own, outline.z0)
    paraspinal = (float(rng.uniform(22, 28)), float(rng.uniform(18, 24)), float(rng.uniform(17, 22)),
                  float(rng.uniform(13, 18)))
    arms = None
    if rng.random() < ARMS_DOWN_SHARE:
        ar = float(rng.uniform(38, 50))
        sides = []
        for side in (-1.0, 1.0):
            edge = cx + side * float(outline.radius(np.array(0.0 if side > 0 else np.pi), outline.z0))
            gap = float(rng.uniform(-4, 15))
            hum = (side * float(rng.uniform(-8, 4)), float(rng.uniform(-6, 6)), float(rng.uniform(10, 13)))
            sides.append(Arm(centre=(edge + side * (gap + ar), cy + float(rng.uniform(5, 25))),
                             axes=(ar, ar * float(rng.uniform(1.0, 1.2))), fat_mm=float(rng.uniform(4, 14)),
                             humerus=hum, cortex_mm=float(rng.uniform(2.5, 4)),
                             taper=float(own.uniform(0.06, 0.14)), z0=outline.z0))
        arms = (sides[0], sides[1])
    table = None
    if rng.random() < TABLE_SHARE:
        back = cy + float(outline.radius(np.array(np.pi / 2), outline.z0))
        table = Table(top_y=back + float(rng.uniform(0.5, 6)), curvature_mm=float(rng.uniform(450, 800)),
                      shell_mm=float(rng.uniform(1.5, 2.5)), core_mm=float(rng.uniform(25, 45)),
                      half_width=float(rng.uniform(200, 240)), centre_x=cx + float(rng.normal(0, 4)))
    return Body(outline=outline, paraspinal=paraspinal, arms=arms, table=table, muscles=muscles)


def wall_depths(body: Body, wall: ChestWall, theta, z):
    """Depth (mm below the skin) where the muscle starts and where the rib layer starts."""
    fat = (wall.fat(theta) * (1 + 0.15 * np.sin((z - body.outline.z0) / 60.0)) + body.outline.breast_mm(theta, z)
           + body.outline.gained_fat_mm(theta, z))
    return fat, fat + wall.muscle(theta)


def cavity_depth(body: Body, wall: ChestWall, x, y, z) -> np.ndarray:
    """Depth of a point inside the pleural cavity (mm; negative outside it)."""
    theta, _ = body.outline.polar(x, y)
    _, rib_top = wall_depths(body, wall, theta, z)
    return body.outline.depth(x, y, z) - rib_top - wall.rib_layer_mm


def paint_body_wall(lab: np.ndarray, grid, anat, body: Body, wall: ChestWall, ribs: Ribs,
                    spine_canal: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, dict]:
    """Skin to pleura: fat and muscle of varying thickness, paraspinal muscles, ribs (curved bands with
    a cortex round the marrow) and costal cartilage, the lungs inside; arms and table outside.

    Returns (cavity mask, cortex mask, image masks for the humeral marrow and the table)."""
    x, y, z = grid.axes()
    full = grid.shape
    theta, rho = body.outline.polar(x, y)
    depth = body.outline.radius(theta, z) - rho  # (I, J, K)
    fat, rib_top = wall_depths(body, wall, theta, z)
    lab[depth >= 0] = LABEL["subcutaneous_fat"]
    lab[depth >= fat] = LABEL["soft_tissue"]
    # erector spinae: two oval muscle masses either side of the spinous processes, under the back's fat;
    # they follow the kyphotic column, so the back's muscles bow with it
    ox, oy, sa, sb = body.paraspinal
    sx, canal_y = spine_canal
    spine = getattr(anat.thorax, "spine", None)
    canal_yz = canal_y + (spine.shift(z).astype(np.float32) if isinstance(spine, Spine) else 0.0)
    erector = np.zeros(full, bool)
    for side in (-1.0, 1.0):
        erector |= ((x - sx - side * ox) / sa) ** 2 + ((y - canal_yz - oy) / sb) ** 2 <= 1
    lab[erector & (lab == LABEL["subcutaneous_fat"]) & (depth >= 0.4 * fat)] = LABEL["soft_tissue"]
    if body.muscles is not None:
        _paint_muscles(lab, grid, body.muscles, theta, rho, depth, fat, rib_top, erector, sx, ox + 0.8 * sa)
    cavity = depth >= rib_top + wall.rib_layer_mm
    bx = float(anat.body_centre[0])
    lab[cavity & (x >= bx)] = LABEL["lung_left"]
    lab[cavity & (x < bx)] = LABEL["lung_right"]
    # ribs: rib n's upper edge sits at z_spine[n] beside the spine and descends by drop_mm towards the
    # sternum; its cross-section (craniocaudal height x thickness) is an ellipse just outside the pleura
    from_back = np.abs(np.angle(np.exp(1j * (theta - np.pi / 2))))  # 0 at the spine, pi at the sternum
    z_rib = z + ribs.drop_mm * (1 - np.cos(from_back)) / 2
    step = float(np.mean(np.diff(ribs.z_spine)))
    phase = np.mod(z_rib - float(ribs.z_spine[0]), step)
    half_h, half_t = 0.5 * ribs.height_mm, 0.5 * ribs.thickness_mm
    centre_depth = rib_top + wall.rib_layer_mm - half_t - 0.5
    u = (phase - half_h) / half_h
    v = (depth - centre_depth) / half_t
    span = (from_back > np.deg2rad(12)) & (from_back < np.pi - np.deg2rad(9))
    rib = span & (u * u + v * v <= 1)
    inner = (((phase - half_h) / (half_h - RIB_CORTEX_MM)) ** 2
             + ((depth - centre_depth) / max(half_t - RIB_CORTEX_MM, 0.5)) ** 2 <= 1)
    cartilage = rib & (from_back > np.pi - np.deg2rad(ribs.cartilage_deg))
    bone = rib & ~cartilage
    lab[bone] = LABEL["ribs"]
    lab[cartilage] = LABEL["costal_cartilage"]
    cortex = bone & ~inner
    masks = {}
    if body.arms is not None:
        marrow = np.zeros(full, bool)
        for arm in body.arms:
            m_cortex, m_marrow = _paint_arm(lab, grid, arm)
            cortex |= m_cortex
            marrow |= m_marrow
        masks["marrow"] = marrow
    if body.table is not None:
        masks["table_shell"], masks["table_core"] = _table(lab, grid, body.table)
    return cavity, np.broadcast_to(cortex, full), masks


def _paint_muscles(lab: np.ndarray, grid, m: Muscles, theta, rho, depth, fat, rib_top, erector: np.ndarray,
                   erector_x: float, erector_reach: float) -> None:
    """Split the muscle layer into its named bellies by thin fat planes, and marble them with fat streaks.

    Works on the muscle voxels only (a tenth of the field), so it adds little to a phantom's time."""
    full = grid.shape
    muscle = (lab == LABEL["soft_tissue"]) & ((depth < rib_top) | erector)
    idx = np.nonzero(muscle)
    pick = lambda a: np.broadcast_to(a, full)[idx]  # noqa: E731
    d, f, r, th, rh = pick(depth), pick(fat), pick(rib_top), pick(theta), pick(rho)
    zk = np.asarray(grid.origin[2] + grid.spacing[2] * idx[2], np.float32)
    phi = np.pi - np.abs(np.angle(np.exp(1j * (th - np.pi / 2))))  # 0 at the sternum, pi at the spine
    phi = phi + m.wobble[0] * np.sin(zk / 45.0 + m.wobble[1])  # planes wander a little with height
    s = (d - f) / np.maximum(r - f, 1e-3)  # 0 under the subcutaneous fat, 1 on the ribs
    # a plane one voxel wide at least, or it breaks into dots at the voxel scale
    half = 0.5 * max(m.plane_mm, 1.05 * float(max(grid.spacing[:2])))
    thick = np.maximum(r - f, 1e-3)
    across = lambda phi_b: np.abs(phi - phi_b) * rh < half  # noqa: E731
    along = lambda s_b: np.abs(s - s_b) * thick < half  # noqa: E731
    layer = d < r
    plane = layer & (across(m.pec_lateral) | across(m.lat_anterior) | across(m.trap_lateral) | across(np.pi))
    lo, hi = m.pec_minor
    plane |= layer & along(m.pec_split) & (phi > lo) & (phi < hi) & (zk > m.pec_minor_floor)  # pec major / minor
    plane |= layer & (across(lo) | across(hi)) & (s > m.pec_split) & (zk > m.pec_minor_floor)
    plane |= layer & along(m.lat_split) & (phi > m.lat_anterior) & (phi < m.trap_lateral)  # under latissimus
    plane |= layer & along(m.trap_split) & (phi > m.trap_lateral)  # under trapezius
    plane |= layer & (np.abs(d - r) < half) & (phi < m.pec_lateral)  # the retropectoral fat on the ribs
    # the erector spinae: a fat plane along each one's lateral border, from the trapezius down to the ribs
    off = np.abs(np.asarray(grid.origin[0] + grid.spacing[0] * idx[0], np.float32) - erector_x)
    plane |= (np.abs(off - erector_reach) < half) & (s > m.trap_split) & (phi > m.trap_lateral)
    # intramuscular fat: thin streaks where a smooth random field crosses zero (more in older, heavier bodies)
    xyz = np.stack([np.asarray(grid.origin[a] + grid.spacing[a] * idx[a], np.float32) for a in range(3)], axis=1)
    field = np.cos(xyz @ m.waves[:, :3].T.astype(np.float32) + m.waves[:, 3].astype(np.float32)).sum(axis=1)
    field /= np.sqrt(0.5 * len(m.waves))
    streak = np.abs(field) < float(np.quantile(np.abs(field), m.marbling)) if len(field) else field > 0
    new = np.where(plane | streak, LABEL["subcutaneous_fat"], LABEL["soft_tissue"]).astype(lab.dtype)
    lab[idx] = new


def _paint_arm(lab: np.ndarray, grid, arm: Arm) -> tuple[np.ndarray, np.ndarray]:
    """Fat, muscle and humerus of one arm where the image is still air; returns (cortex, marrow).

    The section narrows towards the elbow; the medial and lateral intermuscular septa (fat planes from the
    humerus to the subcutaneous fat) split the flexors in front from the triceps behind."""
    x, y, z = grid.axes()
    full = grid.shape
    f = arm.scale(z).astype(np.float32)  # (1, 1, K)
    ax_, ay = arm.axes
    dx, dy = x - arm.centre[0], y - arm.centre[1]
    ell = lambda grow: (dx / (ax_ * f - grow)) ** 2 + (dy / (ay * f - grow)) ** 2 <= 1  # noqa: E731
    outside = lab == 0
    lab[ell(0.0) & outside] = LABEL["subcutaneous_fat"]
    muscle = ell(arm.fat_mm) & outside
    lab[muscle] = LABEL["soft_tissue"]
    hx, hy, hr = arm.humerus
    septa = np.broadcast_to((np.abs(dy - hy) < 1.0) & (np.abs(dx - hx) > hr), full) & muscle
    lab[septa] = LABEL["subcutaneous_fat"]
    d = np.sqrt((dx - hx) ** 2 + (dy - hy) ** 2)
    bone = np.broadcast_to(d <= hr, full) & outside
    lab[bone] = HUMERUS_LABEL
    marrow = bone & np.broadcast_to(d <= hr - arm.cortex_mm, full)
    return bone & ~marrow, marrow


def _table(lab: np.ndarray, grid, table: Table) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the table's shell and foam core, in the air below the patient (label stays 0)."""
    x, y, _ = grid.axes()
    full = grid.shape
    dx = x - table.centre_x
    sag = table.curvature_mm - np.sqrt(np.maximum(table.curvature_mm ** 2 - dx ** 2, 0.0))
    top = table.top_y - sag  # the table curves up at its sides
    h = y - top
    inside = (np.abs(dx) <= table.half_width) & (h >= 0) & (h <= 2 * table.shell_mm + table.core_mm)
    shell = inside & ((h < table.shell_mm) | (h > table.shell_mm + table.core_mm))
    air = lab == 0
    return np.broadcast_to(shell, full) & air, np.broadcast_to(inside & ~shell, full) & air
