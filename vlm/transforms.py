"""Preprocessing shared by training and inference: HU windowing, then a heart-centred region of interest.

The model sees a fixed-size cube of ``config.roi_mm`` millimetres (per study axis) sampled onto the
``config.input_shape`` grid, centred on the contrast-filled blood pool. The centre is found from HU
alone (no labels), so training and inference place the cube identically: the centroid of the largest
connected component of ``config.blood_pool_hu`` HU inside the central part of the field of view.
Resizing the whole field of view instead (the first design) shrank a 170 mm phantom to 2.7 mm voxels
and wiped out the coronaries; the cube keeps the heart at a fixed physical scale whatever the FOV.

The cube is axis-aligned with the study grid, so model voxel ``m`` (per axis) maps to the fractional
study index ``origin + m * step``, and from there to patient mm through the study's own affine
(:class:`RoiGrid`). Parts of the cube outside the study read as air (0 after windowing); masks come
back on the full study grid with zeros outside the cube, landmarks in study indices.

Array transforms take (I, J, K) arrays; the dictionary twin :class:`HeartRoid` takes a sample dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from cardiovlm.vlm.config import CardioVLMConfig

# Fraction of the field of view, per axis, searched for the blood pool: the heart sits near the centre
# of a cardiac reconstruction, bright bone and contrast in the subclavian veins near its edges.
CENTRAL_FRACTION = 0.6


def blood_pool_centre(hu: np.ndarray, spacing: tuple[float, float, float],
                      hu_range: tuple[float, float] = (150.0, 700.0)) -> np.ndarray:
    """(3,) fractional study index of the contrast-filled blood pool's centroid.

    The largest connected component of ``hu_range`` HU within the central part of the FOV, on a
    ~3 mm subsampled grid (fast on a 512 x 512 x 300 study). Falls back to the FOV centre when no
    voxel is in range (a non-contrast or non-CT study).
    """
    shape = np.asarray(hu.shape)
    stride = np.maximum(1, np.round(3.0 / np.asarray(spacing, dtype=float))).astype(int)
    lo = np.floor(shape * (1 - CENTRAL_FRACTION) / 2).astype(int)
    hi = np.ceil(shape * (1 + CENTRAL_FRACTION) / 2).astype(int)
    sub = np.asarray(hu[lo[0]:hi[0]:stride[0], lo[1]:hi[1]:stride[1], lo[2]:hi[2]:stride[2]], dtype=np.float32)
    pool = (sub >= hu_range[0]) & (sub <= hu_range[1])
    labels, count = ndimage.label(pool)
    if count == 0:
        return (shape - 1) / 2.0
    sizes = np.bincount(labels.ravel())[1:]
    centroid = np.asarray(ndimage.center_of_mass(labels == (1 + int(sizes.argmax()))))
    return lo + centroid * stride


@dataclass(frozen=True)
class RoiGrid:
    """Where the model grid sits in a study: model voxel ``m`` -> study index ``origin + m * step``."""

    origin: tuple[float, float, float]  # fractional study index of model voxel (0, 0, 0)'s centre
    step: tuple[float, float, float]  # study voxels per model voxel, per axis
    model_shape: tuple[int, int, int]  # the model grid (config.input_shape)
    study_shape: tuple[int, int, int]  # the study grid

    @classmethod
    def around(cls, centre: np.ndarray, spacing, config: CardioVLMConfig, study_shape) -> RoiGrid:
        """The ``config.roi_mm`` cube centred on ``centre`` (fractional study index)."""
        n = np.asarray(config.input_shape, dtype=float)
        step = np.asarray(config.roi_mm, dtype=float) / n / np.asarray(spacing, dtype=float)
        origin = np.asarray(centre, dtype=float) - (n - 1) / 2.0 * step
        ox, oy, oz = (float(v) for v in origin)
        sx, sy, sz = (float(v) for v in step)
        mx, my, mz = (int(v) for v in config.input_shape)
        nx, ny, nz = (int(v) for v in study_shape)
        return cls((ox, oy, oz), (sx, sy, sz), (mx, my, mz), (nx, ny, nz))

    def model_to_study(self, index: np.ndarray) -> np.ndarray:
        """(N, 3) model-grid indices -> (N, 3) fractional study indices."""
        return np.asarray(self.origin) + np.asarray(index, dtype=np.float64) * np.asarray(self.step)

    def study_to_model(self, index: np.ndarray) -> np.ndarray:
        """(N, 3) study indices -> (N, 3) fractional model-grid indices (outside [0, n-1] off the cube)."""
        return (np.asarray(index, dtype=np.float64) - np.asarray(self.origin)) / np.asarray(self.step)

    def sample(self, volume: np.ndarray | torch.Tensor, mode: str = "bilinear", fill: float = 0.0) -> torch.Tensor:
        """(I, J, K) study-grid volume -> (*model_shape) float tensor, ``fill`` outside the study.
        ``mode`` "bilinear" (trilinear in 3-D, for images) or "nearest" (for masks)."""
        axes = [torch.as_tensor(self.origin[a] + self.step[a] * np.arange(self.model_shape[a]), dtype=torch.float32)
                for a in range(3)]
        grid = self._normalised(axes, self.study_shape)
        vol = torch.as_tensor(np.asarray(volume, dtype=np.float32))[None, None] - fill
        out = F.grid_sample(vol, grid, mode=mode, padding_mode="zeros", align_corners=True)
        return out[0, 0] + fill

    def logits_to_study(self, logits: torch.Tensor, outside: float = -1e4) -> torch.Tensor:
        """(*model_shape) mask logits -> (*study_shape) logits; ``outside`` (background) off the cube.
        Only the cube's bounding box on the study grid is interpolated."""
        logits = logits.float().reshape(self.model_shape)
        out = torch.full(self.study_shape, outside, dtype=torch.float32, device=logits.device)
        lo, hi, grid = self._study_box
        if grid is None:
            return out
        box = F.grid_sample(logits[None, None] - outside, grid.to(logits.device), mode="bilinear",
                            padding_mode="zeros", align_corners=True)[0, 0] + outside
        out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = box
        return out

    @cached_property
    def _study_box(self) -> tuple[np.ndarray, np.ndarray, torch.Tensor | None]:
        """(lo, hi) of the cube's bounding box on the study grid and the sampling grid of its voxels
        (None when the cube misses the study); kept, as every question on a study maps a mask back."""
        first = self.model_to_study(np.zeros((1, 3)))[0]
        last = self.model_to_study(np.asarray(self.model_shape, dtype=float)[None] - 1)[0]
        lo = np.clip(np.ceil(first), 0, np.asarray(self.study_shape)).astype(int)
        hi = np.clip(np.floor(last) + 1, 0, np.asarray(self.study_shape)).astype(int)
        if np.any(hi <= lo):
            return lo, hi, None
        axes = [torch.as_tensor((np.arange(lo[a], hi[a]) - self.origin[a]) / self.step[a], dtype=torch.float32)
                for a in range(3)]
        return lo, hi, self._normalised(axes, self.model_shape)

    @staticmethod
    def _normalised(axes: list[torch.Tensor], source_shape) -> torch.Tensor:
        """Per-axis sample positions (indices of ``source_shape``) -> grid_sample's (1, I, J, K, 3) grid
        in [-1, 1] with align_corners=True; grid_sample wants (x, y, z) = (k, j, i)."""
        norm = [2.0 * axes[a] / max(1, source_shape[a] - 1) - 1.0 for a in range(3)]
        ii, jj, kk = torch.meshgrid(*norm, indexing="ij")
        return torch.stack([kk, jj, ii], -1)[None]


def window(hu: np.ndarray, config: CardioVLMConfig) -> np.ndarray:
    """HU -> [0, 1] through ``config.hu_window``, clipped."""
    low, high = config.hu_window
    return np.clip((np.asarray(hu, dtype=np.float32) - low) / (high - low), 0.0, 1.0)


class HeartRoi:
    """(I, J, K) HU study with its spacing -> ((1, *input_shape) image in [0, 1], :class:`RoiGrid`)."""

    def __init__(self, config: CardioVLMConfig):
        self.config = config

    def __call__(self, hu: np.ndarray, spacing) -> tuple[torch.Tensor, RoiGrid]:
        centre = blood_pool_centre(hu, spacing, self.config.blood_pool_hu)
        roi = RoiGrid.around(centre, spacing, self.config, hu.shape)
        return roi.sample(window(hu, self.config))[None], roi


class HeartRoid:
    """Dictionary twin of :class:`HeartRoi`: ``image`` (HU) -> model grid, ``mask_keys`` (I, J, K) masks
    -> model grid by nearest neighbour; the :class:`RoiGrid` is stored under ``"roi"``."""

    def __init__(self, config: CardioVLMConfig, *, image_key: str = "image", mask_keys: tuple[str, ...] = ("mask",)):
        self.array = HeartRoi(config)
        self.image_key, self.mask_keys = image_key, mask_keys

    def __call__(self, data: dict, spacing) -> dict:
        out = dict(data)
        out[self.image_key], roi = self.array(data[self.image_key], spacing)
        for key in self.mask_keys:
            if data.get(key) is not None:
                out[key] = roi.sample(data[key], mode="nearest")[None]
        out["roi"] = roi
        return out


def index_to_fraction(index: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """(N, 3) voxel indices on a grid of ``shape`` -> (N, 3) fractions in [0, 1] (voxel centres at (m + 0.5) / n)."""
    return (np.asarray(index, dtype=np.float64) + 0.5) / np.asarray(shape, dtype=np.float64)


def fraction_to_index(fraction: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Inverse of :func:`index_to_fraction`."""
    return np.asarray(fraction, dtype=np.float64) * np.asarray(shape, dtype=np.float64) - 0.5
