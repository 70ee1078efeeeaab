"""Every reader of a case folder puts the label map on the image voxel for voxel, whatever voxel
order the NIfTI files store (here RAS order: the first two axes reversed against LPS)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from cardiovlm.tools.core import case_format as cf
from cardiovlm.tools.core.anatomy import STRUCTURES_BY_NAME
from cardiovlm.tools.ingest.study import load_study
from cardiovlm.tools.quant.context import load_context

AORTA = STRUCTURES_BY_NAME["aorta"].label_id


def _case(root: Path, *, ras_order: bool) -> Path:
    """An off-centre bright block labelled aorta (a flipped axis moves it off its label)."""
    hu = np.full((40, 30, 12), -50, dtype=np.int16)
    hu[4:18, 7:20, 2:8] = 300
    labels = np.where(hu > 0, AORTA, 0).astype(np.uint8)
    ras_of_lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.diag([0.8, 0.8, 2.0, 1.0])
    if ras_order:  # the same patient, stored with i and j reversed as many NIfTI writers do
        flip = np.diag([-1.0, -1.0, 1.0, 1.0])
        flip[:2, 3] = [hu.shape[0] - 1, hu.shape[1] - 1]
        ras_of_lps = ras_of_lps @ flip
        hu, labels = hu[::-1, ::-1].copy(), labels[::-1, ::-1].copy()
    folder = root / ("ras" if ras_order else "lps")
    folder.mkdir(parents=True)
    nib.save(nib.Nifti1Image(hu, ras_of_lps), str(folder / cf.CCTA_NIFTI))
    nib.save(nib.Nifti1Image(labels, ras_of_lps), str(folder / cf.LABELS_NIFTI))
    grid = cf.GridInfo(shape=hu.shape, spacing_mm=(0.8, 0.8, 2.0), origin_mm=(0.0, 0.0, 0.0))
    cf.write_json(folder / cf.MANIFEST_FILE, cf.CaseManifest(case_id=folder.name, ccta=grid,
                                                            files=[cf.CCTA_NIFTI, cf.LABELS_NIFTI]))
    return folder


def _aligned(hu: np.ndarray, labels: np.ndarray) -> bool:
    return labels.shape == hu.shape and np.array_equal(labels == AORTA, hu > 0)


@pytest.mark.parametrize("ras_order", [False, True])
def test_case_format_reads_labels_in_the_images_voxel_order(tmp_path, ras_order):
    folder = _case(tmp_path, ras_order=ras_order)
    assert _aligned(load_study(folder).hu, cf.read_labels(folder))


def test_evaluation_reads_the_label_map_aligned_with_the_image(tmp_path):
    from cardiovlm.training.evaluate import _case_arrays

    study, labels, _ = _case_arrays(_case(tmp_path, ras_order=True))
    assert (labels == AORTA).any() and _aligned(study.hu, labels)


def test_the_tools_reference_label_map_is_aligned_with_the_image(tmp_path):
    ctx = load_context(_case(tmp_path, ras_order=True), anatomy="case_labels")
    assert _aligned(ctx.study.hu, ctx.labels)


def test_a_case_without_a_label_map_is_told_so(tmp_path):
    folder = _case(tmp_path, ras_order=False)
    (folder / cf.LABELS_NIFTI).unlink()
    with pytest.raises(cf.CaseFormatError, match="has no labels.nii.gz"):
        cf.read_labels(folder)
