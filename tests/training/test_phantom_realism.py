"""Generator 2.0 (realistic=True): thorax labels, kernel noise texture and level, mixing, blooming, motion."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from cardiovlm.tools.core import case_format as cf
from cardiovlm.tools.core.anatomy import CORONARY_LABELS, SEGMENTS_BY_CODE, STRUCTURES_BY_NAME
from cardiovlm.tools.ingest.nifti_io import read_nifti
from cardiovlm.training.phantoms import FindingRequest, PhantomError, generate_case
from cardiovlm.training.phantoms.generate import build
from cardiovlm.training.phantoms.noise import NoiseModel, kernel_noise, local_sd, radial_nps_peak
from cardiovlm.training.phantoms.physics import bloom, sample_physics
from cardiovlm.training.phantoms.raster import Contrast, Grid, form_image, rasterise
from cardiovlm.training.phantoms.thorax import sample_thorax

L = {n: s.label_id for n, s in STRUCTURES_BY_NAME.items()}
CA = FindingRequest("pLAD", "calcified_plaque", stenosis_percent=30, length_mm=8, calcium_peak_hu=900,
                    calcium_size_mm=3)


@pytest.fixture(scope="module")
def realistic(phantom_case):
    root = phantom_case(seed=21, findings=[CA], with_dicom=False, with_cac=False, realistic=True)
    return (root, np.asarray(read_nifti(root / cf.CCTA_NIFTI).hu).astype(np.float32),
            np.asarray(read_nifti(root / cf.LABELS_NIFTI, labels=True).hu))


def test_thorax_structures_are_registry_labels_in_the_label_map(realistic):
    root, _, lab = realistic
    present = set(np.unique(lab).tolist())
    for name in ("superior_vena_cava", "inferior_vena_cava", "pulmonary_arteries", "pulmonary_veins", "oesophagus",
                 "ribs", "costal_cartilage", "azygos_vein", "spine", "aorta"):
        assert L[name] in present, name
    table = cf.load_case(root).label_table()
    assert table[L["superior_vena_cava"]] == "superior_vena_cava"
    assert cf.load_case(root).manifest.generator_version == "2.0"


def test_pulmonary_vessels_keep_clear_of_the_coronaries(realistic):
    _, _, lab = realistic
    coronary = np.isin(lab, CORONARY_LABELS)
    dist = ndimage.distance_transform_edt(~coronary)  # 1 mm voxels
    for name in ("pulmonary_arteries", "pulmonary_veins", "superior_vena_cava", "inferior_vena_cava"):
        vessel = lab == L[name]
        assert vessel.sum() > 100, name
        assert dist[vessel].min() >= 3.0, (name, dist[vessel].min())


def test_venous_contrast_is_dense_in_the_svc_and_mixed_in_the_right_atrium(realistic):
    _, hu, lab = realistic
    svc = ndimage.binary_erosion(lab == L["superior_vena_cava"], iterations=2)
    lv = ndimage.binary_erosion(lab == L["lv_blood"], iterations=3)
    ra = ndimage.binary_erosion(lab == L["ra_blood"], iterations=3)
    assert hu[svc].mean() > 650  # undiluted contrast from the injected arm vein
    assert hu[ra].std() > 1.5 * hu[lv].std()  # swirls of dense and unopacified blood


def test_kernel_noise_has_its_peak_and_level_and_blurred_white_noise_does_not():
    rng = np.random.default_rng(0)
    noise = kernel_noise((96, 96, 48), (1.5, 1.5, 1.5), 22.0, rng)
    peak = radial_nps_peak(np.moveaxis(noise[:48, :48], 2, 0), (1.5, 1.5))
    assert abs(peak - NoiseModel.peak_per_mm) <= 0.05
    assert local_sd(noise, np.ones(noise.shape, bool)) == pytest.approx(22.0, rel=0.05)
    # control: the 1.0 generator's noise (white noise blurred once) peaks near zero frequency
    white = ndimage.gaussian_filter(rng.standard_normal((96, 96, 48)), 0.6 / 1.5)
    assert radial_nps_peak(np.moveaxis(white[:48, :48], 2, 0), (1.5, 1.5)) < 0.1


def test_noise_follows_slice_thickness_and_body_size():
    model = NoiseModel()
    assert model.sd_at(1.5, model.ref_diameter_mm) == pytest.approx(22.0)
    assert model.sd_at(0.75, model.ref_diameter_mm) == pytest.approx(22.0 * np.sqrt(2))
    assert model.sd_at(1.5, model.ref_diameter_mm + model.doubling_mm) == pytest.approx(44.0)
    with pytest.raises(ValueError, match="positive"):
        model.sd_at(0.0, 300.0)


def test_realistic_noise_matches_the_real_reference_at_its_voxel_size(tmp_path):
    root = generate_case(tmp_path, seed=4, size="chest", findings=[], with_dicom=False, with_cac=False,
                         realistic=True, noise_sd_hu=None)
    hu = np.asarray(read_nifti(root / cf.CCTA_NIFTI).hu).astype(np.float32)
    lab = np.asarray(read_nifti(root / cf.LABELS_NIFTI, labels=True).hu)
    expected = cf.load_case(root).manifest.noise_sd_hu
    soft = local_sd(hu, np.isin(lab, [L["soft_tissue"], L["liver"]]))
    blood = local_sd(hu, ndimage.binary_erosion(np.isin(lab, [L["aorta"], L["lv_blood"]]), iterations=2))
    assert soft == pytest.approx(expected, rel=0.2)
    assert blood > soft  # incompletely mixed contrast adds to the quantum noise in blood


def test_blooming_widens_dense_objects_at_their_requested_peak():
    grid = Grid((40, 40, 40), (0.5, 0.5, 0.5), (0.0, 0.0, 0.0))
    x, y, z = grid.axes()
    ball = (x - 10) ** 2 + (y - 10) ** 2 + (z - 10) ** 2 <= 0.8 ** 2
    hu = np.where(ball, 1000.0, 40.0).astype(np.float32)
    psf = [0.5 / 0.5] * 3
    plain = ndimage.gaussian_filter(hu, psf)  # the scanner's PSF alone
    bloomed = ndimage.gaussian_filter(bloom(hu, ball, 40.0, grid, 0.6, psf_sigma_mm=0.5), psf)
    assert bloomed.max() == pytest.approx(1000.0, rel=0.03)  # the reader measures the requested peak
    assert plain.max() < 0.9 * 1000.0  # control: the PSF alone lowers a 1.6 mm nodule's peak
    assert (bloomed > 300).sum() > 1.3 * (plain > 300).sum()  # and it looks larger


def test_motion_blur_is_worst_at_the_mid_rca():
    anat, lumens, calcs, extra, _, _, _ = build(8, findings=[], dominance="right", thorax=True)
    centre = anat.heart.base + 0.3 * anat.heart.length * anat.heart.u
    grid = Grid.centred(np.round(centre, 1), (150.0, 150.0, 110.0), (1.0, 1.0, 1.0))
    lab, parts = rasterise(anat, lumens, calcs, grid, extra)
    c = Contrast(blood_left=450.0, blood_right=400.0)
    still = sample_physics(anat, np.random.default_rng(1), heart_rate_bpm=75)
    images = [form_image(lab, parts, grid, c, 0.0, np.random.default_rng(2), dataclasses.replace(still, motion_mm=m))
              for m in (0.0, still.motion_mm)]
    diff = np.abs(images[1].astype(np.float32) - images[0])
    near = {code: lab == SEGMENTS_BY_CODE[code].label_id for code in ("mRCA", "pLAD", "dLCx")}
    assert diff[near["mRCA"]].mean() > 3 * max(diff[near["pLAD"]].mean(), diff[near["dLCx"]].mean())


def test_default_phantoms_stay_generator_1_images(tmp_path):
    root = generate_case(tmp_path, seed=2, findings=[], with_dicom=False, with_cac=False)
    lab = read_nifti(root / cf.LABELS_NIFTI, labels=True).hu
    assert int(lab.max()) <= 43  # no thorax labels unless asked for


def test_bad_realism_requests_are_refused(tmp_path):
    with pytest.raises(PhantomError, match="realistic"):
        generate_case(tmp_path, seed=1, size="chest", with_dicom=False)
    anat = build(1)[0]
    with pytest.raises(ValueError, match="sex"):
        sample_thorax(np.random.default_rng(0), anat, sex="other")
    with pytest.raises(ValueError, match="heart rate"):
        sample_physics(build(1, thorax=True)[0], np.random.default_rng(0), heart_rate_bpm=10)


def test_cli_writes_a_realistic_case(tmp_path, capsys):
    import argparse

    from cardiovlm.ui.cli.phantoms import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["phantoms", "--out", str(tmp_path), "--realistic", "--no-dicom", "--no-cac",
                              "--seed", "3"])
    assert args.func(args) == 0
    lab = read_nifti(tmp_path / "phantom_00000" / cf.LABELS_NIFTI, labels=True).hu
    assert L["superior_vena_cava"] in np.unique(lab)
    assert "wrote 1 case" in capsys.readouterr().out


def test_arterial_phase_draws_stay_in_the_documented_range_and_cover_both_real_scans():
    from cardiovlm.training.phantoms.acquisition import RANGES

    phase = RANGES.arterial_phase
    draws = np.array([phase.draw(np.random.default_rng(i)) for i in range(2000)])
    assert draws.min() >= 250.0 and draws.max() <= 552.0  # adequate opacification up to the denser real scan + 2 SD
    assert 0.7 <= np.mean((draws >= 300) & (draws <= 450)) <= 0.9  # most inside the protocols' aim
    # both real references (CCTA 285 HU, chest CT 474 HU) are drawn now and then, neither is the rule
    assert 0.02 <= np.mean(draws <= 285) <= 0.15 and 0.02 <= np.mean(draws >= 474) <= 0.15


def test_realistic_phantom_blood_is_the_drawn_arterial_phase(realistic):
    root, hu, lab = realistic
    nominal = cf.load_case(root).manifest.contrast_blood_hu
    assert 250.0 <= nominal <= 552.0
    lv = ndimage.binary_erosion(lab == L["lv_blood"], iterations=3)
    assert hu[lv].mean() == pytest.approx(nominal, abs=0.1 * nominal)  # what a reader measures is what was drawn


def test_acquisition_knobs_refuse_values_the_generator_cannot_make():
    from cardiovlm.training.phantoms.acquisition import Acquisition, AcquisitionError

    for bad, says in (({"sex": "other"}, "sex"), ({"body_size_sd": 3.0}, "body size"),
                      ({"heart_rate_bpm": 20.0}, "heart rate"), ({"kernel": "bone"}, "kernel")):
        with pytest.raises(AcquisitionError, match=says) as err:
            Acquisition(**bad)
        assert err.value.code == "phantom.acquisition_invalid"
    assert not Acquisition().any and Acquisition(kernel="soft").any


def _realism_benchmark():
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "phantom_realism.py"
    spec = importlib.util.spec_from_file_location("phantom_realism", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_realism_report_counts_phantoms_inside_a_range_and_flags_a_narrow_spread():
    bench = _realism_benchmark()
    wall = bench.ANATOMY["LV wall, drawn septum (mm)"]
    covering = np.linspace(5.0, 15.0, 40)  # SD 2.9: covers the population; the tails lie outside the range
    s = bench.summarise(covering, wall)
    assert s.inside == int(((covering >= wall.low) & (covering <= wall.high)).sum()) and 0.75 <= s.share < 0.95
    said = bench.misses("wall", s, wall)
    assert any("inside" in m for m in said) and not any("spread" in m for m in said)
    # each phantom is judged on its own sex's range: a 13 mm wall is normal for a man, thick for a woman
    assert bench.summarise([13.0, 13.0], wall, ["male", "female"]).inside == 1
    # control: every phantom at the population mean is inside the range but does not cover its spread
    narrow = bench.summarise(np.full(40, 10.0) + np.linspace(-0.1, 0.1, 40), wall)
    assert narrow.share == 1.0 and any("spread" in m for m in bench.misses("wall", narrow, wall))
    # a failed measurement (NaN) counts as outside
    assert bench.summarise([0.25, float("nan")], bench.IMAGE["NPS peak (1/mm)"]).inside == 1
