"""Preprocessing shared by training and inference: HU windowing, then resizing the WHOLE study.

The model sees the full field of view of a study resized to ``config.input_shape`` (no crop): the
model grid is a pure per-axis scaling of the study grid, so a model voxel maps back to the study
with the study's own affine. Coordinates are exchanged between grids as *field-of-view fractions*
``u = (index + 0.5) / size`` in [0, 1] per axis, which is exact for resizing with
``align_corners=False`` (the MONAI / torch default used here). Resizing a 512x512x300 study to a
small grid loses fine coronary detail; a heart-centred crop or sliding-window inference is the
next step for full-resolution studies (not done here).

Array transforms take (C, I, J, K) arrays like MONAI's; the dictionary twin takes a sample dict.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import (
    Compose,
    EnsureChannelFirst,
    EnsureChannelFirstd,
    Resize,
    Resized,
    ScaleIntensityRange,
    ScaleIntensityRanged,
)

from vlm.config import CardioVLMConfig


def image_transform(config: CardioVLMConfig) -> Compose:
    """(I, J, K) HU array -> (1, *input_shape) float tensor in [0, 1]."""
    low, high = config.hu_window
    return Compose([
        EnsureChannelFirst(channel_dim="no_channel"),
        ScaleIntensityRange(a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True),
        Resize(config.input_shape, mode="trilinear", align_corners=False),
    ])


def image_transformd(config: CardioVLMConfig, *, image_key: str = "image",
                     mask_keys: tuple[str, ...] = ("mask",)) -> Compose:
    """Dictionary twin of :func:`image_transform`; masks (I, J, K) are resized by nearest neighbour
    (``nearest-exact``, so the voxel-centre mapping matches the image's)."""
    low, high = config.hu_window
    keys = (image_key, *mask_keys)
    return Compose([
        EnsureChannelFirstd(keys, channel_dim="no_channel", allow_missing_keys=True),
        ScaleIntensityRanged(image_key, a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True),
        Resized(image_key, config.input_shape, mode="trilinear", align_corners=False),
        Resized(mask_keys, config.input_shape, mode="nearest-exact", allow_missing_keys=True),
    ])


def index_to_fraction(index: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """(N, 3) voxel indices on a grid of ``shape`` -> (N, 3) field-of-view fractions in [0, 1]."""
    return (np.asarray(index, dtype=np.float64) + 0.5) / np.asarray(shape, dtype=np.float64)


def fraction_to_index(fraction: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Inverse of :func:`index_to_fraction`."""
    return np.asarray(fraction, dtype=np.float64) * np.asarray(shape, dtype=np.float64) - 0.5


def logits_to_study_grid(logits: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """(1, 1, *input_shape) mask logits -> (I, J, K) logits on the study grid (trilinear, same
    voxel-centre convention as the forward resize)."""
    return F.interpolate(logits.float(), size=tuple(shape), mode="trilinear", align_corners=False)[0, 0]
