"""Torch ``Dataset`` pairing each curriculum instruction with its study volume and target.

Each item is a dict::

    image        float32 tensor (1, *shape): HU windowed to [0, 1], heart-centred crop resized to shape
    target       float32 tensor (1, *shape): the instruction's mask (a small sphere for a landmark,
                 zeros for a question or a negative); transformed with the image, so they stay aligned
    has_mask     bool: the target tensor is meaningful (segment and landmark tasks, not negatives)
    instruction  str
    answer       str ('' when the target is a mask), value float (nan when none), unit str
    stage, task, study_id, record_id

Images are read with ``tools.study.load_nifti`` from the case layout of ``tools.case_format``.
Volumes are cached per study (bounded LRU), since a study carries tens of instructions.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from monai.transforms import (
    Compose, CropForegroundd, EnsureTyped, RandAffined, RandGaussianNoised, RandScaleIntensityd, Resized,
    ScaleIntensityRanged,
)
from scipy import ndimage
from torch.utils.data import Dataset

from tools.anatomy import CORONARY_LABELS, SEGMENTS_BY_CODE, STRUCTURES
from tools.case_format import CCTA_NIFTI, LABELS_NIFTI, LANDMARKS_FILE, load_case
from tools.study import load_nifti

from training.curriculum.builder import read_curriculum
from training.curriculum.schema import InstructionRecord

# Labels whose bounding box is "the heart" for the crop: chambers, myocardium, roots, coronaries.
HEART_LABELS = tuple(s.label_id for s in STRUCTURES if s.group == "heart" or s.name == "aortic_root") + CORONARY_LABELS


@dataclass
class VolumeConfig:
    """How a study becomes a training volume."""

    shape: tuple[int, int, int] = (96, 96, 96)  # fixed training shape (i, j, k) after crop and resize
    window_hu: tuple[float, float] = (-300.0, 900.0)  # HU mapped to [0, 1]; covers fat to calcium
    crop_margin_mm: float = 10.0  # margin around the heart's bounding box
    landmark_radius_mm: float = 3.0  # sphere drawn as a landmark's target
    augment: bool = False  # light random affine, noise and contrast; never a flip (left/right matter)


@dataclass
class _Volume:
    hu: np.ndarray
    labels: np.ndarray | None
    spacing: tuple[float, float, float]
    landmarks_ijk: dict[str, np.ndarray]
    heart: np.ndarray  # bool: what the crop keeps (the heart dilated by the margin)


def build_transforms(config: VolumeConfig) -> Compose:
    """MONAI dictionary transforms shared by training and inference (keys image, target, heart)."""
    low, high = config.window_hu
    steps = [
        ScaleIntensityRanged(keys="image", a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True),
        CropForegroundd(keys=["image", "target"], source_key="heart", allow_smaller=True),
        Resized(keys=["image", "target"], spatial_size=config.shape, mode=("trilinear", "nearest")),
    ]
    if config.augment:
        steps += [
            RandAffined(keys=["image", "target"], prob=0.5, rotate_range=(0.08, 0.08, 0.08),
                        scale_range=(0.08, 0.08, 0.08), mode=("bilinear", "nearest"), padding_mode="border"),
            RandScaleIntensityd(keys="image", factors=0.1, prob=0.3),
            RandGaussianNoised(keys="image", std=0.02, prob=0.3),
        ]
    steps.append(EnsureTyped(keys=["image", "target"], dtype=torch.float32, track_meta=False))
    return Compose(steps)


class CurriculumDataset(Dataset):
    """Curriculum records of a JSONL file with their case volumes.

    Args:
        curriculum: the JSONL file written by ``cardiovlm curriculum``.
        data_dir: folder holding the case folders named by ``study_id``.
        split: "train" leaves out held-out phrasings, "held_out" keeps only them, "all" keeps every record.
        stages: keep only these stages (e.g. ``(1,)`` for the first curriculum phase).
        config: volume shape, window, crop margin, augmentation.
        cache_size: how many studies to keep decoded in memory.

    Raises:
        ValueError: unknown split, empty selection, or a bad cache size.
    """

    def __init__(self, curriculum: str | Path, data_dir: str | Path, *,
                 split: Literal["train", "held_out", "all"] = "train", stages: tuple[int, ...] = (1, 2, 3),
                 config: VolumeConfig | None = None, cache_size: int = 4, seed: int = 0):
        if split not in ("train", "held_out", "all"):
            raise ValueError(f"split must be 'train', 'held_out' or 'all', got {split!r}")
        if cache_size < 1:
            raise ValueError(f"cache_size must be at least 1, got {cache_size}")
        _, records = read_curriculum(curriculum)
        keep = {"train": lambda r: not r.held_out_phrasing, "held_out": lambda r: r.held_out_phrasing,
                "all": lambda r: True}[split]
        self.records: list[InstructionRecord] = [r for r in records if keep(r) and r.stage in stages]
        if not self.records:
            raise ValueError(f"no {split} records of stages {stages} in {curriculum}")
        self.data_dir = Path(data_dir)
        self.config = config or VolumeConfig()
        self.transforms = build_transforms(self.config)
        self.transforms.set_random_state(seed=seed)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, _Volume] = OrderedDict()

    def __len__(self) -> int:
        return len(self.records)

    def _volume(self, study_id: str) -> _Volume:
        if study_id in self._cache:
            self._cache.move_to_end(study_id)
            return self._cache[study_id]
        case = load_case(self.data_dir / study_id)
        image = load_nifti(case.path(CCTA_NIFTI))
        labels = load_nifti(case.path(LABELS_NIFTI), labels=True).hu if case.has(LABELS_NIFTI) else None
        landmarks = {}
        if case.has(LANDMARKS_FILE):
            landmarks = {k: image.mm_to_index(np.asarray(v))[0] for k, v in case.landmarks().items()}
        volume = _Volume(image.hu.astype(np.float32), labels, image.spacing, landmarks,
                         self._crop_region(labels, image.hu.shape, image.spacing))
        self._cache[study_id] = volume
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return volume

    def _crop_region(self, labels: np.ndarray | None, shape, spacing) -> np.ndarray:
        """The heart labels dilated by the crop margin; the whole volume without a label map."""
        heart = np.isin(labels, HEART_LABELS) if labels is not None else np.ones(shape, dtype=bool)
        if self.config.crop_margin_mm > 0 and heart.any() and not heart.all():
            # Dilate by the margin (in voxels per axis) so the crop keeps some context.
            margin = [max(1, round(self.config.crop_margin_mm / s)) for s in spacing]
            heart = ndimage.maximum_filter(heart, size=[2 * m + 1 for m in margin])
        return heart

    def target_mask(self, record: InstructionRecord, volume: _Volume) -> np.ndarray | None:
        """The record's target as a boolean array on the study grid, None when it has no mask."""
        target = record.target
        if target.mask is not None:
            if volume.labels is None:
                raise ValueError(f"study {record.study_id} has no label map for mask target {record.id}")
            mask = np.isin(volume.labels, target.mask.label_ids)
            if target.mask.near_segments:
                lumen = np.isin(volume.labels, [SEGMENTS_BY_CODE[s].label_id for s in target.mask.near_segments])
                near = np.zeros_like(mask)
                if lumen.any():
                    # Distances only inside the lumen's bounding box grown by near_mm (much cheaper).
                    pad = [int(np.ceil(target.mask.near_mm / s)) + 1 for s in volume.spacing]
                    idx = np.nonzero(lumen)
                    box = tuple(slice(max(0, i.min() - p), i.max() + p + 1) for i, p in zip(idx, pad))
                    distance = ndimage.distance_transform_edt(~lumen[box], sampling=volume.spacing)
                    near[box] = distance <= target.mask.near_mm
                mask &= near
            return mask
        if target.landmark is not None:
            if target.landmark not in volume.landmarks_ijk:
                raise ValueError(f"study {record.study_id} has no landmark {target.landmark!r}")
            centre = volume.landmarks_ijk[target.landmark]
            radius = [self.config.landmark_radius_mm / s for s in volume.spacing]
            box = tuple(slice(max(0, int(np.floor(c - r))), max(0, int(np.ceil(c + r)) + 1))
                        for c, r in zip(centre, radius))
            sphere = np.zeros(volume.hu.shape, dtype=bool)
            grid = np.mgrid[box].astype(np.float32)  # voxel indices of the box only
            offset = (grid - centre.reshape(3, 1, 1, 1)) * np.asarray(volume.spacing, dtype=np.float32).reshape(3, 1, 1, 1)
            sphere[box] = (offset ** 2).sum(0) <= self.config.landmark_radius_mm ** 2
            return sphere
        return None

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        volume = self._volume(record.study_id)
        mask = self.target_mask(record, volume)
        item = self.transforms({
            "image": volume.hu[None],
            "target": (mask if mask is not None else np.zeros(volume.hu.shape, dtype=bool))[None].astype(np.float32),
            "heart": volume.heart[None],
        })
        return {
            "image": item["image"], "target": item["target"], "has_mask": mask is not None,
            "instruction": record.instruction, "answer": record.target.answer or "",
            "value": record.target.value if record.target.value is not None else math.nan,
            "unit": record.target.unit or "", "stage": record.stage, "task": record.task,
            "study_id": record.study_id, "record_id": record.id,
        }
