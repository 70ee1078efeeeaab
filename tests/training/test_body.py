"""Generator 2.0's body wall and spine as a reader sees them: a kyphotic thoracic column with its canal,
posterior elements and rib heads; chest-wall muscles as separate bellies split by thin fat planes and
marbled with fat; subcutaneous fat thicker in women and larger bodies; arms that narrow towards the elbow
with muscle round a labelled humerus. Each measure
has a control drawn without the feature (a straight column, an undivided muscle layer) that it fails."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cardiovlm.tools.core.anatomy import STRUCTURES_BY_NAME, label_table
from cardiovlm.training.phantoms.body import sample_body, wall_depths
from cardiovlm.training.phantoms.generate import build
from cardiovlm.training.phantoms.raster import Grid, rasterise
from cardiovlm.training.phantoms.vertebrae import KYPHOSIS_DEG, LEVEL_MM, THORACIC_LEVELS, level_centres, sample_spine

L = {n: s.label_id for n, s in STRUCTURES_BY_NAME.items()}
SEED = 10  # its thorax draw has the arms down (asserted below, so a changed draw cannot hide)
SP = 1.5


@pytest.fixture(scope="module")
def case():
    return build(SEED, findings=[], thorax=True)


def _raster(case, grid: Grid) -> np.ndarray:
    anat, lumens, calcs, extra, *_ = case
    return rasterise(anat, lumens, calcs, grid, extra)[0]


def _sagittal(case) -> tuple[np.ndarray, Grid]:
    """A thin sagittal slab through the middle of the column, T1 to T12 (apex +/- six levels)."""
    spine = case[0].thorax.spine
    sx, sy = spine.centre
    half = 0.5 * THORACIC_LEVELS * LEVEL_MM - 10
    grid = Grid((3, 120, int(2 * half / SP)), (SP, SP, SP), (sx - SP, sy - 90.0, spine.apex_z - half))
    return _raster(case, grid), grid


def _cobb_deg(lab: np.ndarray, grid: Grid) -> float:
    """Kyphosis read off a sagittal view as a radiologist would: the curvature of the line of the vertebral
    bodies' anterior borders, turned into the angle it makes over T1-T12 (positive: convex backwards)."""
    zs, ys = [], []
    for k in range(lab.shape[2]):
        bone = lab[1, :, k] == L["spine"]
        runs, n = ndimage.label(bone)
        if n == 0:
            continue
        first = runs == 1  # the most anterior bone on the midline: the body, unless this is a disc
        if first.sum() * SP < 15:
            continue
        zs.append(grid.origin[2] + SP * k)
        ys.append(grid.origin[1] + SP * np.nonzero(first)[0].min())
    assert len(zs) > 0.6 * lab.shape[2] * (1 - 4 / LEVEL_MM)  # bodies on most slices, discs between them
    a = np.polyfit(zs, ys, 2)[0]
    return float(np.degrees(-2 * a * THORACIC_LEVELS * LEVEL_MM))


def test_thoracic_spine_is_kyphotic_within_the_normal_cobb_range(case):
    anat = case[0]
    spine = anat.thorax.spine
    lab, grid = _sagittal(case)
    cobb = _cobb_deg(lab, grid)
    assert 18 <= cobb <= 52 and abs(cobb - spine.kyphosis_deg) < 6, (cobb, spine.kyphosis_deg)
    # control: the same body with a straight column reads as straight
    drawn = spine.kyphosis_deg
    spine.kyphosis_deg = 0.0
    try:
        assert abs(_cobb_deg(*_sagittal(case))) < 5
    finally:
        spine.kyphosis_deg = drawn
    # and the population's draws span the normal range
    rng = np.random.default_rng(0)
    draws = np.array([sample_spine(rng, anat).kyphosis_deg for _ in range(200)])
    assert draws.min() >= KYPHOSIS_DEG[0] and draws.max() <= KYPHOSIS_DEG[1]
    assert draws.min() < 25 and draws.max() > 45


def test_every_level_has_a_canal_ringed_by_bone_a_spinous_process_and_rib_heads(case):
    """Axial slices through the pedicles of the levels round the apex: the canal is a closed hole in bone,
    bone lies behind it in the midline (laminae, spinous process), and ribs touch the column on both sides."""
    spine = case[0].thorax.spine
    sx, sy = spine.centre
    cx, cy = spine.canal_centre
    levels = [c for c in level_centres(spine.apex_z - 60, spine.apex_z + 60) if abs(c - spine.apex_z) < 60]
    grid = Grid((80, 90, int(140 / SP)), (SP, SP, SP), (sx - 60.0, sy - 40.0, spine.apex_z - 70.0))
    lab = _raster(case, grid)
    z = grid.origin[2] + SP * np.arange(grid.shape[2])
    rib_sides = []
    for zc in levels:
        ycanal = cy + float(spine.shift(zc))
        i, j = int(round((cx - grid.origin[0]) / SP)), int(round((ycanal - grid.origin[1]) / SP))
        # scroll to the pedicles (the level is tilted with the column): where the canal is smallest
        area, k = min((_canal_area(lab[:, :, k], i, j), k) for k in np.nonzero(np.abs(z - zc - 3.0) <= 5)[0])
        assert lab[i, j, k] == L["soft_tissue"]  # cord and CSF
        assert area < 2.5 * np.pi * spine.canal_r ** 2, "the canal is open to the surrounding tissue"
        behind = lab[i, j:, k] == L["spine"]
        assert behind[int(spine.canal_r / SP):int((spine.canal_r + 20) / SP)].any(), "no lamina or spinous process"
        # rib heads: rib voxels touching the column's bone, left and right, within this level
        ks = np.abs(z - zc) < 0.5 * LEVEL_MM
        bone, rib = lab[:, :, ks] == L["spine"], lab[:, :, ks] == L["ribs"]
        touch = rib & ndimage.binary_dilation(bone, np.ones((3, 3, 3), bool))
        xs = grid.origin[0] + SP * np.nonzero(touch)[0]
        rib_sides.append(((xs < sx).any(), (xs > sx).any()))
    assert len(levels) >= 4
    assert np.mean(rib_sides) >= 0.75, rib_sides


def _canal_area(lab2d: np.ndarray, i: int, j: int) -> float:
    """Area (mm^2) of the non-bone region round (i, j): small when bone rings it."""
    hole, _ = ndimage.label(lab2d != L["spine"])
    return float((hole == hole[i, j]).sum() * SP * SP)


def _muscle_runs(lab2d: np.ndarray, grid: Grid, anat, side: float) -> tuple[int, list[float]]:
    """Walk the muscle layer of one side from the front to the back at half its depth: the number of
    muscle stretches longer than 8 mm and the lengths (mm) of the fat gaps between them."""
    body = anat.thorax.body
    wall = anat.thorax.wall
    zc = float(grid.origin[2])
    cx, cy = body.outline.centre
    labels, arc = [], []
    for phi in np.linspace(0.15, np.pi - 0.35, 900):
        theta = float(np.angle(np.exp(1j * (-np.pi / 2 + side * phi))))  # phi from the front, on this side
        fat, rib_top = (float(v) for v in wall_depths(body, wall, np.array(theta), zc))
        rho = float(body.outline.radius(np.array(theta), zc)) - 0.5 * (fat + rib_top)
        x, y = cx + rho * np.cos(theta), cy + rho * np.sin(theta)
        i, j = int(round((x - grid.origin[0]) / SP)), int(round((y - grid.origin[1]) / SP))
        labels.append(lab2d[i, j])
        arc.append(rho * phi)
    labels, arc = np.array(labels), np.array(arc)
    muscle = labels == L["soft_tissue"]
    runs, n = ndimage.label(muscle)
    long = [r for r in range(1, n + 1) if np.ptp(arc[runs == r]) > 8]
    gaps, _ = ndimage.label(~muscle)
    gap_len = [float(np.ptp(arc[gaps == g])) + 0.5 for g in range(1, gaps.max() + 1)
               if not (gaps == g)[0] and not (gaps == g)[-1]]
    return len(long), gap_len


@pytest.fixture(scope="module")
def mid_heart(case):
    anat = case[0]
    cx, cy = anat.thorax.body.outline.centre
    zc = float(anat.heart.base[2] - 0.3 * anat.heart.length)
    grid = Grid((int(400 / SP), int(330 / SP), 1), (SP, SP, SP), (cx - 200.0, cy - 165.0, zc))
    return grid, _raster(case, grid)


def test_chest_wall_muscles_are_separate_bellies_split_by_thin_fat_planes(case, mid_heart):
    anat = case[0]
    grid, lab = mid_heart
    for side in (-1.0, 1.0):
        bellies, gaps = _muscle_runs(lab[:, :, 0], grid, anat, side)
        # pectoralis major, serratus anterior, latissimus dorsi, trapezius / erector spinae at least
        assert bellies >= 4, (side, bellies)
        assert np.median(gaps) <= 4.0, gaps  # planes and streaks, not slabs of fat
    # control: the same wall without the muscles' layout is one undivided band
    muscles = anat.thorax.body.muscles
    anat.thorax.body.muscles = None
    try:
        plain = _raster(case, grid)
    finally:
        anat.thorax.body.muscles = muscles
    assert max(_muscle_runs(plain[:, :, 0], grid, anat, s)[0] for s in (-1.0, 1.0)) <= 2


def test_pectoralis_minor_lies_under_major_with_a_fat_plane_between(case):
    anat = case[0]
    m, body, wall = anat.thorax.body.muscles, anat.thorax.body, anat.thorax.wall
    z = m.pec_minor_floor + 25.0
    phi = 0.5 * sum(m.pec_minor)
    theta = float(np.angle(np.exp(1j * (-np.pi / 2 + phi))))  # the patient's left front
    fat, rib_top = (float(v) for v in wall_depths(body, wall, np.array(theta), z))
    r_skin = float(body.outline.radius(np.array(theta), z))
    cx, cy = body.outline.centre
    grid = Grid((int(260 / SP), int(260 / SP), 1), (SP, SP, SP), (cx - 130.0, cy - 130.0 - 60.0, z))
    lab = _raster(case, grid)[:, :, 0]
    depths = np.arange(fat + 0.5, rib_top - 0.5, 0.5)
    seq = []
    for d in depths:  # a radial walk from the subcutaneous fat to the ribs
        rho = r_skin - d
        i = int(round((cx + rho * np.cos(theta) - grid.origin[0]) / SP))
        j = int(round((cy + rho * np.sin(theta) - grid.origin[1]) / SP))
        seq.append(lab[i, j])
    seq = np.array(seq)
    muscle = seq == L["soft_tissue"]
    runs, n = ndimage.label(muscle)
    assert n >= 2, seq  # major, then minor beneath it
    between = ~muscle & (np.arange(len(seq)) > np.nonzero(runs == 1)[0].max()) & (
        np.arange(len(seq)) < np.nonzero(runs == 2)[0].min())
    assert (seq[between] == L["subcutaneous_fat"]).all()
    split = np.abs(depths - (fat + m.pec_split * (rib_top - fat))) <= 1.5
    assert (seq[split] == L["subcutaneous_fat"]).any()


def test_muscle_is_marbled_with_a_little_intramuscular_fat(case, mid_heart):
    anat = case[0]
    grid, lab = mid_heart
    m = anat.thorax.body.muscles
    # inside the bellies, away from the planes, a few per cent of voxels are fat streaks
    muscle = lab[:, :, 0] == L["soft_tissue"]
    fat = lab[:, :, 0] == L["subcutaneous_fat"]
    inner = ndimage.binary_erosion(muscle | fat, iterations=3) & ~ndimage.binary_dilation(
        lab[:, :, 0] == 0, iterations=20)
    wall = inner & ndimage.binary_dilation(lab[:, :, 0] == L["ribs"], iterations=25)
    share = fat[wall].mean()
    assert 0.01 < share < 0.25, share
    assert 0.015 <= m.marbling <= 0.05


def test_arms_taper_towards_the_elbow_with_muscle_round_a_labelled_humerus(case):
    anat = case[0]
    arms = anat.thorax.body.arms
    assert arms is not None
    assert "humerus" in label_table().values() and L["humerus"] > 43  # a new id, after generator 1.0's (0-43)
    arm = arms[1]
    ax_, ay = arm.axes
    grid = Grid((int(3 * ax_ / SP), int(3 * ay / SP), 3), (SP, SP, 80.0),
                (arm.centre[0] - 1.5 * ax_, arm.centre[1] - 1.5 * ay, arm.z0 - 80.0))
    lab = _raster(case, grid)
    # the arm alone: the connected tissue round the humerus, cut free of the chest
    areas = []
    for k in range(3):
        hum = lab[:, :, k] == L["humerus"]
        assert hum.sum() * SP * SP > 0.8 * np.pi * arm.humerus[2] ** 2
        x = grid.origin[0] + SP * np.arange(grid.shape[0])
        areas.append((lab[x > arm.centre[0], :, k] != 0).sum() * SP * SP)  # the lateral half, clear of the chest
        # muscle wraps the humerus (a ring of soft tissue round the bone), fat planes split the compartments
        ring = ndimage.binary_dilation(hum, iterations=4) & ~ndimage.binary_dilation(hum, iterations=1)
        assert (lab[:, :, k][ring] == L["soft_tissue"]).mean() > 0.6
        assert ((lab[:, :, k] == L["subcutaneous_fat"]) & ndimage.binary_dilation(hum, iterations=3)).any()
    assert areas[0] < areas[1] < areas[2], areas  # narrower towards the elbow (feet), wider at the shoulder


def test_subcutaneous_fat_is_thicker_in_women_and_in_larger_bodies_around_the_same_lungs(case):
    anat = case[0]
    wall = anat.thorax.wall
    axes = anat.body_axes
    z0 = float(anat.heart.base[2])

    theta = np.array(0.0)  # the left flank, clear of the breast

    def body(sex: str, scale: float):
        anat.body_axes = (axes[0] * scale, axes[1] * scale)
        try:
            return sample_body(np.random.default_rng(1), anat, wall, sex)
        finally:
            anat.body_axes = axes

    def fat_and_cavity(b) -> tuple[float, float, float]:
        fat, rib_top = (float(v) for v in wall_depths(b, wall, theta, z0))
        skin = float(b.outline.radius(theta, z0))
        return fat, skin, skin - rib_top  # fat, the skin, and where the pleural cavity begins

    man, woman = fat_and_cavity(body("male", 1.0)), fat_and_cavity(body("female", 1.0))
    small, large = fat_and_cavity(body("male", 0.92)), fat_and_cavity(body("male", 1.08))
    assert woman[0] > 1.15 * man[0] and large[0] > 1.2 * small[0]
    # the gained fat lies outside the drawn wall: the skin moves out, the lungs keep their size
    b = body("female", 1.0)
    gained = fat_and_cavity(b)
    b.outline.fat_gain = (0.0, b.outline.fat_gain[1])
    plain = fat_and_cavity(b)
    assert gained[1] > plain[1] + 1.0 and abs(gained[2] - plain[2]) < 1e-6
