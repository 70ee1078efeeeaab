"""Training reads a case folder the way the tools do: any NIfTI voxel order gives the same training sample."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from cardiovlm.tools.core import case_format as cf
from cardiovlm.tools.core.anatomy import STRUCTURES_BY_NAME
from cardiovlm.training.samples import CurriculumSamples
from cardiovlm.vlm.config import CardioVLMConfig

AORTA = STRUCTURES_BY_NAME["aorta"].label_id


def _volume() -> tuple[np.ndarray, np.ndarray]:
    """An off-centre bright block (so a flipped axis shows) and its label map, in LPS [i, j, k] order."""
    hu = np.full((80, 60, 24), -50, dtype=np.int16)
    hu[8:36, 14:40, 4:16] = 300  # larger than a model voxel of the tiny config
    labels = np.where(hu > 0, AORTA, 0).astype(np.uint8)
    return hu, labels


def _write(folder: Path, hu: np.ndarray, labels: np.ndarray, ras_affine: np.ndarray) -> None:
    folder.mkdir(parents=True)
    nib.save(nib.Nifti1Image(hu, ras_affine), str(folder / cf.CCTA_NIFTI))
    nib.save(nib.Nifti1Image(labels, ras_affine), str(folder / cf.LABELS_NIFTI))


def test_a_case_stored_in_ras_voxel_order_trains_on_the_same_cube_and_labels(tmp_path):
    hu, labels = _volume()
    lps_affine = np.diag([0.8, 0.8, 2.0, 1.0])
    ras_of_lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps_affine
    _write(tmp_path / "lps" / "case", hu, labels, ras_of_lps)
    # the same patient with the first two voxel axes reversed, as many NIfTI writers store it (RAS order)
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = [(hu.shape[0] - 1), (hu.shape[1] - 1)]
    _write(tmp_path / "ras" / "case", hu[::-1, ::-1].copy(), labels[::-1, ::-1].copy(), ras_of_lps @ flip)

    config = CardioVLMConfig.tiny(input_shape=(16, 16, 16))
    cases = {order: CurriculumSamples([], tmp_path / order, config)._case("case") for order in ("lps", "ras")}
    np.testing.assert_allclose(cases["ras"].affine, cases["lps"].affine, atol=1e-4)
    assert np.array_equal(cases["ras"].labels, cases["lps"].labels)
    assert (cases["lps"].labels == AORTA).any()
    np.testing.assert_allclose(cases["ras"].image.numpy(), cases["lps"].image.numpy(), atol=1e-5)
