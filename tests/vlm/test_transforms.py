"""The heart-centred region of interest: found from HU alone, and masks / landmarks mapped back to the study."""

from __future__ import annotations

import numpy as np
import torch

from cardiovlm.tools.ingest.study_value import Study
from cardiovlm.vlm import CardioVLMConfig
from cardiovlm.vlm.transforms import HeartRoi, HeartRoid, RoiGrid, blood_pool_centre


def off_centre_study() -> Study:
    """A 120 x 100 x 60 study (FOV larger than the cube) whose contrast-filled 'blood pool' sits off the
    FOV centre, with bright bone at the edge that must not pull the centre; anisotropic, flipped, offset."""
    hu = np.full((120, 100, 60), -50, dtype=np.int16)
    hu[50:70, 30:46, 20:36] = 400  # blood pool: centre (59.5, 37.5, 27.5)
    hu[0:6, :, :] = 1200  # bone at the FOV edge, outside the blood-pool HU range and the central search
    spacing = (0.8, 0.8, 1.25)
    affine = np.eye(4)
    affine[:3, :3] = np.diag([-1.0, 1.0, 1.0]) @ np.diag(spacing)
    affine[:3, 3] = (40.0, -20.0, 100.0)
    return Study(hu=hu, spacing=spacing, affine=affine)


def test_blood_pool_centre_is_found_without_labels():
    study = off_centre_study()
    centre = blood_pool_centre(study.hu, study.spacing)
    np.testing.assert_allclose(centre, (59.5, 37.5, 27.5), atol=1.5)


def test_cube_round_trip_puts_the_mask_back_in_place_with_zeros_outside():
    study = off_centre_study()
    config = CardioVLMConfig.tiny(input_shape=(32, 32, 32), roi_mm=48.0)
    image, roi = HeartRoi(config)(study.hu, study.spacing)
    assert image.shape == (1, 32, 32, 32) and 0 <= float(image.min()) and float(image.max()) <= 1
    # One model voxel is 1.5 mm: 1.875 study voxels along i and j, 1.2 along k.
    np.testing.assert_allclose(roi.step, (1.875, 1.875, 1.2))
    # The pool, cut out on the model grid and returned as logits, lands where it was in the study.
    pool = (study.hu == 400).astype(np.float32)
    model_mask = roi.sample(pool, mode="nearest")
    back = (roi.logits_to_study((model_mask - 0.5) * 20) > 0).numpy()
    assert back.shape == study.shape
    dice = 2 * (back & (pool > 0)).sum() / (back.sum() + pool.sum())
    assert dice > 0.9
    # Outside the 48 mm cube (about +-30 study voxels along i around 59.5) nothing is predicted.
    everything = roi.logits_to_study(torch.full((32, 32, 32), 10.0)) > 0
    rows = np.flatnonzero(everything.numpy().any(axis=(1, 2)))
    assert 25 <= rows.min() <= 31 and 88 <= rows.max() <= 94


def test_landmark_maps_through_the_cube_to_patient_mm():
    study = off_centre_study()
    config = CardioVLMConfig.tiny(input_shape=(32, 32, 32), roi_mm=48.0)
    _, roi = HeartRoi(config)(study.hu, study.spacing)
    target_index = np.array([[55.0, 40.0, 30.0]])
    model_index = roi.study_to_model(target_index)
    np.testing.assert_allclose(roi.model_to_study(model_index), target_index)
    # The affine (with its flipped i axis) takes the study index to mm.
    mm = study.index_to_mm(roi.model_to_study(model_index))[0]
    np.testing.assert_allclose(mm, (40.0 - 55.0 * 0.8, -20.0 + 40.0 * 0.8, 100.0 + 30.0 * 1.25))


def test_dictionary_twin_matches_the_array_transform():
    study = off_centre_study()
    config = CardioVLMConfig.tiny(input_shape=(16, 16, 16), roi_mm=48.0)
    mask = (study.hu == 400).astype(np.float32)
    out = HeartRoid(config)({"image": study.hu, "mask": mask}, study.spacing)
    image, roi = HeartRoi(config)(study.hu, study.spacing)
    assert torch.equal(out["image"], image) and out["roi"] == roi and isinstance(out["roi"], RoiGrid)
    assert out["mask"].shape == (1, 16, 16, 16) and set(np.unique(out["mask"].numpy())) == {0.0, 1.0}
