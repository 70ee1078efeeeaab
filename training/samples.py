"""Training samples: a curriculum record and its case on the model grid, as tensors; and batches of them.

Training and inference see a study through the same preprocessing: the case is read with the tools'
NIfTI reader (reoriented to LPS) and cut to the model's heart-centred cube with ``cardiovlm.vlm.transforms.HeartRoi``
(the model config's HU window and input shape), so the model trains on what it is later shown.

A training sample is a dict::

    image (1, I, J, K) float tensor in [0, 1] on the model grid    instruction str    stage int
    mask (1, I, J, K) float tensor or None                         landmark (3,) fractions or None
    answer int index into ANSWER_CLASSES or -1                     choices list[str]
    choice int index into choices or -1                            value float or nan
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cardiovlm.training.train_config import TrainError
from cardiovlm.vlm.config import ANSWER_CLASSES, CardioVLMConfig
from cardiovlm.vlm.transforms import RoiGrid


def sample_from_record(record, case: PreparedCase, config: CardioVLMConfig) -> dict:
    """Turn one ``InstructionRecord`` and its prepared case (see :func:`prepare_case`) into a sample."""
    from cardiovlm.tools.segmentation.masks import mask_from_labels
    from cardiovlm.vlm.transforms import index_to_fraction

    target = record.target
    mask = None
    if target.mask is not None:
        if case.labels is None:
            raise TrainError(f"record {record.id}: a mask target but case {record.study_id} has no label map")
        mask = mask_from_labels(case.labels, target.mask.label_ids, spacing=case.model_spacing,
                                near_segments=target.mask.near_segments or None, near_mm=target.mask.near_mm)
        mask = torch.from_numpy(mask.astype(np.float32))[None]
    elif record.task == "segment":  # a negative "segment X" with no mask: the target is empty
        mask = torch.zeros(1, *config.input_shape)
    landmark = None
    if target.landmark is not None:
        if target.landmark not in case.landmarks_mm:
            raise TrainError(f"record {record.id}: landmark {target.landmark!r} is not in the case landmarks")
        xyz = np.asarray(case.landmarks_mm[target.landmark], dtype=np.float64)
        study_index = (xyz - case.affine[:3, 3]) @ np.linalg.inv(case.affine[:3, :3]).T
        model_index = case.roi.study_to_model(study_index[None])[0]
        landmark = torch.as_tensor(index_to_fraction(model_index, config.input_shape), dtype=torch.float32)
    answer, choice = -1, -1
    if target.answer is not None:
        if target.answer in ANSWER_CLASSES and not (target.choices and target.answer in target.choices):
            answer = ANSWER_CLASSES.index(target.answer)
        elif target.answer in target.choices:
            choice = target.choices.index(target.answer)
        else:
            raise TrainError(f"record {record.id}: answer {target.answer!r} is neither yes/no/not present "
                             f"nor one of its choices")
    # The image tensor is the case's own object: collate stacks it once for all its instructions.
    return {"image": case.image, "anatomy": case.anatomy, "instruction": record.instruction,
            "stage": int(record.stage), "mask": mask,
            "landmark": landmark, "answer": answer, "choices": list(target.choices), "choice": choice,
            "value": float(target.value) if target.value is not None else math.nan}


@dataclass
class PreparedCase:
    """A case on the model grid: what every record of the case needs, computed once."""

    image: torch.Tensor  # (1, *input_shape) windowed heart-centred cube
    labels: np.ndarray | None  # (*input_shape) label map sampled by nearest neighbour into the cube
    roi: RoiGrid  # where the cube sits in the study
    affine: np.ndarray  # (4, 4) study index -> LPS mm
    landmarks_mm: dict[str, list[float]]  # named landmarks in LPS mm
    model_spacing: tuple[float, float, float]  # mm per model voxel (roi_mm / input_shape)
    anatomy: torch.Tensor | None = None  # (*input_shape) int64 class of each voxel for the dense anatomy
    #                                      head (index into cardiovlm.vlm.model.ANATOMY_LABEL_IDS; -100 = unknown id)


def prepare_case(image: np.ndarray, labels: np.ndarray | None, affine: np.ndarray,
                 landmarks_mm: dict[str, list[float]], config: CardioVLMConfig) -> PreparedCase:
    """Study-grid HU image, label map, LPS affine and landmarks -> :class:`PreparedCase` through the same
    heart-centred ROI (``cardiovlm.vlm.transforms.HeartRoi``) that inference uses."""
    from cardiovlm.vlm.transforms import HeartRoi

    spacing = tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))
    cube, roi = HeartRoi(config)(image, spacing)
    model_labels, anatomy = None, None
    if labels is not None:
        model_labels = roi.sample(labels.astype(np.float32), mode="nearest").round().to(torch.int32).numpy()
        anatomy = torch.from_numpy(anatomy_classes(model_labels))
    return PreparedCase(image=cube.float(), labels=model_labels, roi=roi, affine=affine, landmarks_mm=landmarks_mm,
                        model_spacing=_triple(np.asarray(roi.step) * spacing), anatomy=anatomy)


def _triple(values) -> tuple[float, float, float]:
    i, j, k = (float(v) for v in values)
    return i, j, k


def anatomy_classes(labels: np.ndarray) -> np.ndarray:
    """Label ids -> int64 class indices of the dense anatomy head; ids outside the registry -> -100 (ignored)."""
    from cardiovlm.vlm.model import ANATOMY_LABEL_IDS

    lookup = np.full(max(int(labels.max(initial=0)), max(ANATOMY_LABEL_IDS)) + 1, -100, dtype=np.int64)
    lookup[list(ANATOMY_LABEL_IDS)] = np.arange(len(ANATOMY_LABEL_IDS))
    return lookup[np.clip(labels, 0, None).astype(np.int64)]


class CurriculumSamples(torch.utils.data.Dataset):
    """Curriculum records paired with their case folders (``cardiovlm.tools.core.case_format`` layout), as samples.

    Cases are read lazily with nibabel, prepared once on the model grid (:func:`prepare_case`, about
    2 MB each) and the last ``cache_cases`` are kept in memory.
    """

    def __init__(self, records: Sequence, data_root: str | Path, config: CardioVLMConfig, cache_cases: int = 256):
        self.records = list(records)
        self.data_root = Path(data_root)
        self.config = config
        self.stages = [int(r.stage) for r in self.records]
        self.groups = [r.study_id for r in self.records]  # records of one case share one image
        self.kinds = [target_kind(r) for r in self.records]  # for balanced draws
        self.cache_cases = cache_cases
        self._cases: OrderedDict[str, PreparedCase] = OrderedDict()
        missing = sorted({r.study_id for r in self.records} - {p.name for p in self.data_root.iterdir()}
                         if self.data_root.is_dir() else {r.study_id for r in self.records})
        if missing:
            raise TrainError(f"case folder(s) missing under {self.data_root}: {', '.join(missing[:5])}")

    def _case(self, case_id: str) -> PreparedCase:
        if case_id not in self._cases:
            from cardiovlm.tools.core import case_format as cf
            from cardiovlm.tools.ingest.nifti_io import read_nifti

            folder = self.data_root / case_id
            ccta = read_nifti(folder / cf.CCTA_NIFTI)
            affine, image = ccta.affine, np.asarray(ccta.hu, dtype=np.float32)
            # the case format's label reader reorients the map to LPS as the image above is
            labels = np.asarray(cf.read_labels(folder)) if (folder / cf.LABELS_NIFTI).is_file() else None
            landmarks_path = folder / cf.LANDMARKS_FILE
            landmarks = json.loads(landmarks_path.read_text()) if landmarks_path.is_file() else {}
            self._cases[case_id] = prepare_case(image, labels, affine, landmarks, self.config)
            while len(self._cases) > self.cache_cases:
                self._cases.popitem(last=False)
        self._cases.move_to_end(case_id)
        return self._cases[case_id]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        return sample_from_record(record, self._case(record.study_id), self.config)


def target_kind(record) -> str:
    """What a record trains, coarsely: its task, and for masks the structure group (``cardiovlm.vlm.validation``)
    or "other"; balanced draws (``TrainConfig.balance_targets``) weigh each kind equally."""
    from cardiovlm.vlm.validation import structure_group

    if record.target.mask is not None:
        return f"{record.task}:{structure_group(list(record.target.mask.label_ids)) or 'other'}"
    return record.task



def collate(samples: list[dict]) -> dict:
    """Stack a list of samples into a batch (targets absent from a sample become masked rows).

    Samples holding the same image object (records of one case) share one row of ``image``;
    ``image_index`` says which row each instruction is about.
    """
    shape = samples[0]["image"].shape
    rows: dict[int, int] = {}
    images: list[torch.Tensor] = []
    anatomy: list[torch.Tensor | None] = []
    for s in samples:
        if id(s["image"]) not in rows:
            rows[id(s["image"])] = len(images)
            images.append(s["image"])
            anatomy.append(s.get("anatomy"))
    return {
        "image": torch.stack(images),
        # Per image, like "image": only when every image of the batch has a label map.
        "anatomy": torch.stack(anatomy) if all(a is not None for a in anatomy) else None,
        "image_index": torch.tensor([rows[id(s["image"])] for s in samples]),
        "instruction": [s["instruction"] for s in samples],
        "has_mask": torch.tensor([s["mask"] is not None for s in samples]),
        "mask": torch.stack([s["mask"] if s["mask"] is not None else torch.zeros(shape) for s in samples]),
        "has_landmark": torch.tensor([s["landmark"] is not None for s in samples]),
        "landmark": torch.stack([s["landmark"] if s["landmark"] is not None else torch.zeros(3) for s in samples]),
        "answer": torch.tensor([s["answer"] for s in samples]),
        "choices": [list(s["choices"]) for s in samples],
        "choice": torch.tensor([s["choice"] for s in samples]),
        "value": torch.tensor([s["value"] for s in samples], dtype=torch.float32),
    }
