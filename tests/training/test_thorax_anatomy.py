"""Generator 2.0's chest looks like anatomy: outline, ribs, vertebrae, oval veins, veins that open into their
atria, lung vessels branching to the pleura of every lobe, fissures, arms, table, and the LV wall and aortic
root spread over the population's range."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import ConvexHull, cKDTree

from cardiovlm.tools.core.anatomy import STRUCTURES_BY_NAME
from cardiovlm.training.phantoms.body import ARMS_DOWN_SHARE, TABLE_SHARE, sample_body
from cardiovlm.training.phantoms.generate import SIZES, _population_sizes, build, case_grid
from cardiovlm.training.phantoms.geometry import sample_anatomy
from cardiovlm.training.phantoms.lungs import beside, grow_tree
from cardiovlm.training.phantoms.raster import Contrast, Grid, form_image, rasterise
from cardiovlm.training.phantoms.vertebrae import level_centres

L = {n: s.label_id for n, s in STRUCTURES_BY_NAME.items()}
SEED = 10  # its thorax draw has the arms down and a table (asserted below, so a changed draw cannot hide)
SP = SIZES["chest"].spacing_mm[0]


@pytest.fixture(scope="module")
def chest():
    """A whole-chest phantom at 1.5 mm: label map and a noise-free image (blur only) to look at."""
    anat, lumens, calcs, extra, *_ = build(SEED, findings=[], thorax=True)
    grid = case_grid(anat, SIZES["chest"])
    lab, parts = rasterise(anat, lumens, calcs, grid, extra)
    hu = form_image(lab, parts, grid, Contrast(blood_left=450.0, blood_right=400.0), 0.0, np.random.default_rng(0))
    z = grid.axes()[2].ravel()
    return anat, grid, lab, hu.astype(np.float32), z


def _slice_at(z: np.ndarray, zmm: float) -> int:
    return int(np.argmin(np.abs(z - zmm)))


def _fill_ratio(mask2d: np.ndarray) -> float:
    """Area of the trunk's section over the ellipse with the same half extents (1 for an ellipse)."""
    opened = ndimage.binary_opening(mask2d, iterations=3)  # detaches arms that touch the chest
    cc, n = ndimage.label(opened)
    trunk = cc == 1 + int(np.argmax(ndimage.sum(opened, cc, range(1, n + 1))))
    i, j = np.nonzero(trunk)
    a, b = (i.max() - i.min() + 1) / 2, (j.max() - j.min() + 1) / 2
    return float(trunk.sum() / (np.pi * a * b))


def test_body_outline_is_not_an_ellipse(chest):
    anat, _, lab, _, z = chest
    realistic = _fill_ratio(lab[:, :, _slice_at(z, anat.heart.base[2])] != 0)
    # control: generator 1.0's ellipse body, same seed, measured the same way
    anat1, lumens, calcs, extra, *_ = build(SEED, findings=[], thorax=False)
    cx, cy = (float(v) for v in anat1.body_centre)
    grid = Grid((220, 160, 3), (2.0, 2.0, 2.0), (cx - 219.0, cy - 159.0, float(anat1.heart.base[2])))
    ellipse = _fill_ratio(rasterise(anat1, lumens, calcs, grid, extra)[0][:, :, 1] != 0)
    assert abs(ellipse - 1.0) < 0.02
    assert realistic > ellipse + 0.03  # flatter front and back, squarer posterolateral corners


def test_ribs_are_thin_curved_bands_outside_the_lung_with_cortex_round_marrow(chest):
    anat, _, lab, hu, z = chest
    k = _slice_at(z, anat.heart.base[2])
    rib = lab[:, :, k] == L["ribs"]
    cc, n = ndimage.label(rib)
    big = [cc == i for i in range(1, n + 1) if (cc == i).sum() >= 30]
    assert len(big) >= 6
    for m in big:
        thickness = 2 * ndimage.distance_transform_edt(m, sampling=SP).max()
        i, j = np.nonzero(m)
        length = 4 * np.sqrt(np.linalg.eigvalsh(np.cov(np.c_[i, j].T * SP))[-1])
        assert thickness <= 10.0 and length >= 2 * thickness, (thickness, length)
    # they hug the pleura all round the chest
    to_lung = ndimage.distance_transform_edt(~np.isin(lab[:, :, k], [L["lung_left"], L["lung_right"]]), sampling=SP)
    assert np.percentile(to_lung[rib], 90) <= 10.0
    cx, cy = (float(v) for v in anat.body_centre)
    ii, jj = np.nonzero(rib)
    org = np.array(chest[1].origin[:2])
    theta = np.degrees(np.arctan2(org[1] + jj * SP - cy, org[0] + ii * SP - cx))
    assert len(np.unique((theta // 30).astype(int))) >= 9, "ribs should ring the chest, not sit in one place"
    core = ndimage.binary_erosion(lab == L["ribs"])
    rim = (lab == L["ribs"]) & ~core
    assert hu[rim].mean() > hu[core].mean() + 250  # bright cortex
    assert 150 < hu[core].mean() < 450  # cancellous marrow


def test_vertebra_has_a_rounded_body_a_canal_ringed_by_its_arch_and_a_spinous_process(chest):
    anat, grid, lab, _, z = chest
    spine = anat.thorax.spine
    sx, sy = spine.centre
    cx, cy = spine.canal_centre
    rc = spine.canal_r
    # the column is kyphotic: take the level at its apex, where the vertebra stands upright, and its place there
    zc = min((c for c in level_centres(float(z.min()), float(z.max())) if z.min() + 30 < c < z.max() - 30),
             key=lambda c: abs(c - spine.apex_z))
    sy, cy = sy + float(spine.shift(zc)), cy + float(spine.shift(zc))
    org = np.array(grid.origin)

    def at(xmm, ymm, k):
        return lab[int(round((xmm - org[0]) / SP)), int(round((ymm - org[1]) / SP)), k]

    k = _slice_at(z, zc + 3.0)  # through the pedicles
    bone = L["spine"]
    assert at(cx, cy, k) == L["soft_tissue"]  # the canal
    assert at(cx, cy - rc - 3, k) == bone  # body in front
    assert at(cx - rc - 2, cy, k) == bone and at(cx + rc + 2, cy, k) == bone  # pedicles
    assert at(cx, cy + rc + 3, k) == bone  # laminae behind
    # below the pedicles the section is the rounded body alone, with the sloping spinous process behind it
    k = _slice_at(z, zc - 7.0)
    spine2d = lab[:, :, k] == bone
    cc, _ = ndimage.label(spine2d)
    body = cc == cc[int(round((sx - org[0]) / SP)), int(round((sy - org[1]) / SP))]
    i, j = np.nonzero(body)
    hull = ConvexHull(np.c_[i, j]).volume
    assert body.sum() / hull > 0.85  # rounded and convex, not a cross
    ii, jj = np.nonzero(spine2d & ~body)
    behind = (org[1] + jj * SP > cy + rc + 8) & (np.abs(org[0] + ii * SP - cx) < 5)
    assert behind.sum() >= 3, "a spinous process behind the canal"


def _sections(lab, name):
    ratios, areas = [], []
    for k in range(lab.shape[2]):
        m = lab[:, :, k] == L[name]
        cc, n = ndimage.label(m)
        if n == 0:
            continue
        m = cc == 1 + int(np.argmax(ndimage.sum(m, cc, range(1, n + 1))))
        if m.sum() < 20:
            continue
        i, j = np.nonzero(m)
        ev = np.linalg.eigvalsh(np.cov(np.c_[i, j].T))
        ratios.append(np.sqrt(ev[0] / ev[1]))
        areas.append(m.sum())
    return np.array(ratios), np.array(areas)


def test_veins_and_oesophagus_are_oval_and_vary_in_calibre(chest):
    _, _, lab, _, _ = chest
    ratio, area = _sections(lab, "superior_vena_cava")
    assert len(ratio) >= 20
    assert np.median(ratio) < 0.93 and area.std() / area.mean() > 0.05
    ratio, _ = _sections(lab, "oesophagus")
    assert np.median(ratio) < 0.8  # a collapsed oesophagus is flat


def test_lung_vessels_reach_the_periphery_and_show_in_the_mediastinal_window(chest):
    _, _, lab, hu, _ = chest
    vessels = np.isin(lab, [L["pulmonary_arteries"], L["pulmonary_veins"]])
    lung = np.isin(lab, [L["lung_left"], L["lung_right"]]) | vessels
    lung = ndimage.binary_opening(lung, iterations=2)
    to_pleura = ndimage.distance_transform_edt(lung, sampling=SP)
    peripheral = vessels & lung & (to_pleura <= 10.0)
    slices = [k for k in range(lab.shape[2]) if (lab[:, :, k] == L["lung_left"]).sum() > 2000]
    assert np.mean([peripheral[:, :, k].any() for k in slices]) > 0.8
    # a mediastinal window (W400/L40) starts at -160 HU: the vessels stay well above it, the lung below
    assert np.median(hu[peripheral]) > 100
    assert np.median(hu[lung & ~vessels & (to_pleura > 5)]) < -600


def test_arms_and_table_are_drawn_for_this_draw_and_in_their_shares(chest):
    anat, grid, lab, hu, z = chest
    body = anat.thorax.body
    assert body.arms is not None and body.table is not None
    k = _slice_at(z, anat.heart.base[2])
    x = np.array(grid.origin[0]) + SP * np.arange(grid.shape[0])
    for arm in body.arms:
        cols = np.abs(x - arm.centre[0]) < arm.axes[0]
        tissue = lab[cols, :, k] != 0
        assert tissue.sum() > 100
        hum_x = arm.centre[0] + arm.humerus[0]
        if abs(hum_x - arm.centre[0]) < arm.axes[0] and grid.origin[0] < hum_x < x[-1]:
            assert hu[np.abs(x - hum_x) < arm.humerus[2], :, k].max() > 500  # cortical bone
    # the table: a bright shell and a dark foam core below the patient's back, outside the body
    back = np.nonzero((lab[:, :, k] != 0).any(axis=0))[0].max()
    below = hu[:, :, k][:, back + 1:]
    assert (below > 100).sum() > 50
    # shares over many draws
    rng = np.random.default_rng(0)
    draws = [sample_body(rng, anat, anat.thorax.wall, "female") for _ in range(300)]
    assert abs(np.mean([d.arms is not None for d in draws]) - ARMS_DOWN_SHARE) < 0.08
    assert abs(np.mean([d.table is not None for d in draws]) - TABLE_SHARE) < 0.08
    assert all(d.outline.breast is not None for d in draws)


def test_lv_wall_and_aortic_root_cover_the_population_spread():
    rng = np.random.default_rng(0)
    draws = [_population_sizes(rng, sex, float(np.clip(rng.normal(), -2, 2)))
             for sex in ("male", "female") for _ in range(300)]
    wall = np.array([d["lv_wall_mm"] for d in draws])
    root = np.array([d["aortic_root_mm"] for d in draws])
    # Kang 2017 (septum): 10.8 +/- 1.8 mm men, 9.0 +/- 1.7 women; Lang 2015 (sinuses): 34 +/- 3, 30 +/- 3 mm
    assert wall.min() < 7.0 and wall.max() > 13.5 and ((wall >= 6) & (wall <= 14.5)).all()
    assert root.min() < 26.0 and root.max() > 38.0 and ((root >= 24) & (root <= 40)).all()
    # the wall's thickness does not change the cavity: the outer surface moves with it
    thin = sample_anatomy(np.random.default_rng(3), lv_wall_mm=7.0, aortic_root_mm=28.0)
    thick = sample_anatomy(np.random.default_rng(3), lv_wall_mm=13.0, aortic_root_mm=38.0)
    assert thin.lv_outer[1] - 7.0 == pytest.approx(thick.lv_outer[1] - 13.0)
    assert thick.aortic_root[2] / thin.aortic_root[2] == pytest.approx(38.0 / 28.0)


def _component_of(mask: np.ndarray, seed_mask: np.ndarray) -> np.ndarray:
    """The voxels of ``mask`` 26-connected to any voxel of ``seed_mask``."""
    cc, _ = ndimage.label(mask, np.ones((3, 3, 3), bool))
    ids = np.unique(cc[seed_mask & mask])
    return np.isin(cc, ids[ids > 0])


def test_venae_cavae_and_pulmonary_veins_open_into_their_atria(chest):
    anat, grid, lab, _, z = chest
    org = np.array(grid.origin)
    ra, la = lab == L["ra_blood"], lab == L["la_blood"]
    for vein, atrium, above in (("superior_vena_cava", ra, True), ("inferior_vena_cava", ra, False)):
        v = lab == L[vein]
        joined = _component_of(v | atrium, atrium)
        assert (joined & v).sum() > 0.9 * v.sum(), vein
        # the SVC comes in from above, the IVC from below the atrium's centre
        contact = ndimage.binary_dilation(v, np.ones((3, 3, 3), bool)) & atrium
        assert contact.sum() >= 20, vein
        zc = z[np.nonzero(contact)[2]].mean()
        assert (zc > anat.ra[0][2]) == above, (vein, zc, anat.ra[0][2])
    # each of the four pulmonary veins, from its stem out in the lung, runs into the left atrium's blood
    pv = lab == L["pulmonary_veins"]
    joined = _component_of(pv | la, la)
    stems = anat.thorax.pulmonary_vein_stems
    assert len(stems) == 4
    for stem in stems:
        i, j, k = np.round((np.asarray(stem) - org) / SP).astype(int)
        near = np.zeros_like(pv)
        near[i - 1:i + 2, j - 1:j + 2, k - 1:k + 2] = True
        assert (joined & near).any(), stem
    # control: the other blood pools stay walled off from the veins that do not drain into them
    for other in ("lv_blood", "rv_blood", "aortic_root"):
        assert not (ndimage.binary_dilation(pv, np.ones((3, 3, 3), bool)) & (lab == L[other])).any(), other


def test_lung_vessels_branch_from_the_hila_to_within_15_mm_of_the_pleura_of_every_lobe(chest):
    anat, grid, lab, _, _ = chest
    fis = anat.thorax.fissures
    vessels = np.isin(lab, [L["pulmonary_arteries"], L["pulmonary_veins"]])
    # the lung as the chest wall bounds it: fissure sheets (one voxel) closed over
    lung = ndimage.binary_closing(np.isin(lab, [L["lung_left"], L["lung_right"]]) | vessels, iterations=1)
    surface = lung & ~ndimage.binary_erosion(lung)
    to_vessel = ndimage.distance_transform_edt(~vessels, sampling=SP)
    idx = np.nonzero(surface)
    xyz = np.array(grid.origin) + np.stack(idx, axis=1) * SP
    bx = float(anat.body_centre[0])
    for side, lobes in ((-1.0, (0, 1, 2)), (1.0, (0, 2))):
        here = (np.sign(xyz[:, 0] - bx) == side) & (np.abs(xyz[:, 0] - bx) > 50)  # the costal pleura
        lobe = fis.lobe(xyz, side)
        for k in lobes:
            sel = here & (lobe == k)
            assert sel.sum() > 500, (side, k)
            reached = to_vessel[tuple(i[sel] for i in idx)] <= 15.0
            assert reached.mean() > 0.9, (side, k, reached.mean())


def test_tree_fills_its_cloud_with_murray_calibres_over_many_generations():
    rng = np.random.default_rng(0)
    cloud = rng.uniform([-60, -40, -80], [60, 40, 80], (800, 3))
    tree = grow_tree(np.array([0.0, 0.0, 120.0]), np.array([0.0, 0.0, -1.0]), cloud, 6.0, 0.0)
    # it reaches every point of its territory: the periphery, not just the centre
    d, _ = cKDTree(tree.nodes).query(cloud)
    assert np.percentile(d, 95) < 6.0
    assert tree.generation.max() >= 12 and np.median(tree.generation[_leaves(tree)]) >= 8
    # Murray's law at every bifurcation: r_parent^3 = sum of r_child^3; each child thinner than its parent
    for p in np.unique(tree.parent[tree.parent >= 0]):
        kids = tree.radius[tree.parent == p]
        if len(kids) == 2:
            assert tree.radius[p] ** 3 == pytest.approx((kids ** 3).sum(), rel=1e-6)
        assert (kids <= tree.radius[p] + 1e-9).all()
    # the smallest branches are 1-2 mm across, the root 12 mm
    assert 0.8 < 2 * tree.radius.min() < 2.0


def _leaves(tree) -> np.ndarray:
    has_child = np.zeros(len(tree.nodes), bool)
    has_child[tree.parent[tree.parent >= 0]] = True
    return ~has_child


def test_arteries_run_beside_their_bronchi_and_veins_between_them():
    rng = np.random.default_rng(1)
    cloud = rng.uniform([-50, -50, -50], [50, 50, 50], (400, 3))
    airway = grow_tree(np.array([0.0, 0.0, 80.0]), np.array([0.0, 0.0, -1.0]), cloud, 5.0, 0.45)
    artery = beside(rng, airway, np.array([10.0, 0.0, 80.0]), 6.0, 0.45)
    gap = np.linalg.norm(artery.nodes - airway.nodes, axis=1)
    assert np.allclose(gap, airway.radius + artery.radius + 0.5)
    # veins grown from an independent cloud of the same territory lie between the bundles, not on them
    vein = grow_tree(np.array([-10.0, 0.0, 80.0]), np.array([0.0, 0.0, -1.0]),
                     rng.uniform([-50, -50, -50], [50, 50, 50], (400, 3)), 5.0, 0.45)
    to_bundle, _ = cKDTree(artery.nodes).query(vein.nodes)
    assert np.median(to_bundle) > 2.0


def test_fissures_split_the_right_lung_into_three_lobes_and_the_left_into_two(chest):
    anat, grid, lab, hu, _ = chest
    for name, lobes in (("lung_right", 3), ("lung_left", 2)):
        cc, n = ndimage.label(lab == L[name])  # 6-connected: a one-voxel fissure sheet divides
        sizes = np.sort(ndimage.sum(np.ones_like(cc), cc, range(1, n + 1)))[::-1]
        assert (sizes > 0.05 * sizes.sum()).sum() == lobes, (name, sizes[:4] / sizes.sum())
    # the fissure is a thin line denser than the lung beside it on a lung window, yet dark on a soft-tissue
    # window (a real fissure is two layers of pleura, far thinner than a voxel), where a grey line gives it away
    fis = anat.thorax.fissures
    idx = np.nonzero(lab == L["lung_fissure"])
    xyz = np.array(grid.origin) + np.stack(idx, axis=1) * SP
    on = np.abs(fis.right_oblique.value(xyz)) < 0.5 * SP
    on &= xyz[:, 0] < float(anat.body_centre[0]) - 40
    sheet = tuple(i[on] for i in idx)
    assert len(sheet[0]) > 500
    lung = np.isin(lab, [L["lung_right"]]) & (ndimage.distance_transform_edt(lab != L["lung_fissure"]) == 3)
    assert np.median(hu[sheet]) > np.median(hu[lung]) + 150
    assert np.median(hu[sheet]) < -400  # below a soft-tissue window's lower edge (level 40, width 400: -160)


@pytest.mark.parametrize("seed", [1, 4, 21])
def test_every_pulmonary_vein_reaches_the_left_atrium_past_the_aorta_and_coronaries(seed):
    """Seed 4's left veins once ran into the descending aorta, seeds 1 and 10's inferior ones into the LCx's
    fat or the LV: the stems now turn until they are clear of them."""
    anat, lumens, calcs, extra, *_ = build(seed, findings=[], thorax=True)
    grid = case_grid(anat, SIZES["small"])
    lab, _ = rasterise(anat, lumens, calcs, grid, extra)
    org, sp = np.array(grid.origin), np.array(grid.spacing)
    pv, la = lab == L["pulmonary_veins"], lab == L["la_blood"]
    joined = _component_of(pv | la, la)
    for stem in anat.thorax.pulmonary_vein_stems:
        i, j, k = np.round((np.asarray(stem) - org) / sp).astype(int)
        assert joined[i - 1:i + 2, j - 1:j + 2, k - 1:k + 2].any(), (seed, stem)
    near_pv = ndimage.binary_dilation(pv, np.ones((3, 3, 3), bool))
    for other in ("lv_blood", "rv_blood", "aortic_root", "ra_blood"):
        assert not (near_pv & (lab == L[other])).any(), (seed, other)
