"""``cardiovlm phantoms`` acquisition knobs: each reaches the case; a bad value is one clear line, no traceback."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cardiovlm.tools.core import case_format as cf
from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE
from cardiovlm.tools.ingest.nifti_io import read_nifti
from cardiovlm.training.phantoms.acquisition import KERNELS, draw_patient
from cardiovlm.training.phantoms.generate import case_seed
from cardiovlm.training.phantoms.noise import radial_nps_peak
from cardiovlm.ui.cli import main
from cardiovlm.ui.cli.phantoms import KERNEL_NAMES

SEED = 1
FAST = ["--realistic", "--no-dicom", "--no-cac", "--seed", str(SEED), "--healthy", "--dominance", "right"]


def _case(tmp_path, name: str, *knobs: str):
    out = tmp_path / name
    assert main(["phantoms", "--out", str(out), *FAST, *knobs]) == 0
    root = out / "phantom_00000"
    image = np.asarray(read_nifti(root / cf.CCTA_NIFTI).hu).astype(np.float32)
    return root, image, json.loads((root / cf.MANIFEST_FILE).read_text())


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("knobs")
    common = ("--sex", "female", "--body-size", "1.5")
    return {"slow": _case(tmp, "slow", *common, "--heart-rate", "45", "--noise-hu", "0"),
            "fast": _case(tmp, "fast", *common, "--heart-rate", "110", "--noise-hu", "0"),
            "sharp": _case(tmp, "sharp", *common, "--heart-rate", "110", "--noise-hu", "25", "--kernel", "sharp")}


def test_sex_reaches_the_manifest_and_the_clinical_record(cases):
    # control: this seed draws a man, so the record shows the knob and not the draw
    assert draw_patient(np.random.default_rng([case_seed(SEED, 0), 2]))[0] == "male"
    root, _, manifest = cases["slow"]
    assert manifest["acquisition"]["sex"] == "female"
    assert json.loads((root / cf.CLINICAL_FILE).read_text())["sex"] == "female"


def test_heart_rate_blurs_the_mid_rca_and_changes_nothing_else(cases):
    (root, slow, m_slow), (_, fast, m_fast) = cases["slow"], cases["fast"]
    assert (m_slow["acquisition"]["heart_rate_bpm"], m_fast["acquisition"]["heart_rate_bpm"]) == (45.0, 110.0)
    assert m_fast["acquisition"]["motion_mm"] > 2 * m_slow["acquisition"]["motion_mm"]
    # the seed's other draws stay: same contrast, same noise, same anatomy
    assert m_fast["contrast_blood_hu"] == m_slow["contrast_blood_hu"]
    lab = np.asarray(read_nifti(root / cf.LABELS_NIFTI, labels=True).hu)
    diff = np.abs(fast - slow)
    near = {code: lab == SEGMENTS_BY_CODE[code].label_id for code in ("mRCA", "pLAD")}
    assert diff[near["mRCA"]].mean() > 3 * diff[near["pLAD"]].mean()


def test_kernel_sets_the_noise_texture(cases):
    """The sharp kernel's noise (image minus the same case without noise) peaks at its NPS peak, not the default's."""
    _, clean, _ = cases["fast"]
    _, image, manifest = cases["sharp"]
    assert manifest["acquisition"]["kernel"] == "sharp"
    noise = image - clean  # the same seed: everything but the noise is identical
    c = np.array(noise.shape) // 2
    rois = np.moveaxis(noise[c[0] - 32:c[0] + 32, c[1] - 32:c[1] + 32, c[2] - 20:c[2] + 20], 2, 0)
    peak = radial_nps_peak(rois, (1.0, 1.0))
    assert abs(peak - KERNELS["sharp"].nps_peak_per_mm) <= 0.05
    assert peak > KERNELS["standard"].nps_peak_per_mm + 0.1  # control: the default kernel's texture is coarser


def test_cli_kernel_choices_are_the_generators_kernels():
    assert set(KERNEL_NAMES) == set(KERNELS)


@pytest.mark.parametrize("knobs, says", [
    (["--realistic", "--heart-rate", "300"], "heart rate must be between 40 and 120 bpm"),
    (["--realistic", "--body-size", "9"], "body size must be between"),
    (["--sex", "female"], "realistic"),  # a knob of the realistic generator only
    (["--realistic", "--blood-hu", "5000"], "blood_hu must be between"),
])
def test_bad_knob_values_get_one_clear_line(tmp_path, capsys, knobs, says):
    assert main(["phantoms", "--out", str(tmp_path), "--no-dicom", "--no-cac", *knobs]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # refused before any case was written
