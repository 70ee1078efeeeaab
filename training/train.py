"""Curriculum training of CardioVLM: stages in order, then mixed; one loop for 1 CPU, 1 GPU or many.

The loop runs unchanged under ``torchrun`` (DistributedDataParallel; NCCL on GPUs, gloo on CPUs):
every process draws its own samples from a seeded generator, DDP averages the gradients, so all
ranks hold identical weights and only rank 0 writes checkpoints and logs.

Schedule: ``steps_per_stage`` steps on each curriculum stage present (1 anatomy -> descriptors,
2 anatomy -> anatomy, 3 findings), in that order, then ``mixed_steps`` steps drawing from all stages.
Losses: soft Dice on non-empty mask targets plus foreground-weighted BCE (:func:`mask_loss`), cross-entropy for yes / no / not present and
for multiple choice, L1 on the soft-argmax landmark plus cross-entropy of its heatmap at the target
voxel, smooth L1 on ``log1p`` of measured values. Each sample contributes only the losses its record
has a target for.

Output folder::

    checkpoint/        the model (vlm.load reads it): config.json + model.safetensors
    train_state.pt     optimizer, AMP scaler and step, for --resume
    log.csv            one row per logged step (TensorBoard events too when tensorboard is installed)
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vlm.config import ANSWER_CLASSES, CardioVLMConfig, ConfigError
from vlm.model import CardioVLM

CHECKPOINT_SUBDIR = "checkpoint"
STATE_FILE = "train_state.pt"
LOG_FILE = "log.csv"
LOG_FIELDS = ("step", "stage", "loss", "mask_loss", "answer_loss", "choice_loss", "landmark_loss",
              "value_loss", "anatomy_loss", "dice", "answer_accuracy", "lr", "seconds")


class TrainError(ValueError):
    """A training run that cannot start or resume; the message says which file or field is wrong."""


@dataclass
class TrainConfig:
    steps_per_stage: int = 200  # steps on each curriculum stage, in order 1, 2, 3 (absent stages skipped)
    mixed_steps: int = 400  # steps drawing from every stage, after the staged phase
    batch_size: int = 2  # samples (instructions) per step and per process
    images_per_step: int = 0  # > 0: a step draws this many cases and batch_size records among them, so each
    #                           image is encoded once for several instructions (needs a dataset with `groups`)
    lr: float = 3e-4  # AdamW peak learning rate (cosine decay to 10% over the run)
    warmup_steps: int = 20  # linear warm-up steps
    weight_decay: float = 0.01  # AdamW weight decay
    grad_clip: float = 1.0  # max gradient norm; 0 disables clipping
    mask_weight: float = 1.0  # weight of the mask loss (soft Dice on non-empty targets + weighted BCE)
    mask_pos_weight: float = 5.0  # BCE weight of foreground voxels: structures are a few % of the cube
    answer_weight: float = 1.0  # weight of the yes / no / not present and multiple-choice losses
    landmark_weight: float = 1.0  # weight of the landmark loss
    value_weight: float = 0.5  # weight of the measurement regression loss
    anatomy_weight: float = 1.0  # weight of the dense label-map loss (models with anatomy_head only)
    balance_targets: bool = False  # draw records so that every target kind (task, and for masks the
    #                                structure group: chambers, LAD, calcifications...) is equally likely
    init_from: str = ""  # checkpoint folder whose weights start a new run where names and shapes match
    amp: bool = True  # autocast on CUDA (bfloat16 where supported, else float16 with a scaler); ignored on CPU
    checkpoint_every: int = 100  # steps between checkpoints (and one at the end)
    log_every: int = 10  # steps between log rows
    seed: int = 0  # seeds the model init and every process's sample draws

    def __post_init__(self) -> None:
        for name in ("steps_per_stage", "mixed_steps", "warmup_steps", "images_per_step"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train config: {name} must be >= 0")
        for name in ("batch_size", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train config: {name} must be >= 1")
        if self.lr <= 0:
            raise ConfigError("train config: lr must be > 0")

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown train config field(s): {', '.join(unknown)}")
        return cls(**data)


def load_config_file(path: str | Path) -> tuple[CardioVLMConfig, TrainConfig]:
    """Read a JSON or YAML file ``{"model": {...}, "train": {...}}`` (both sections optional)."""
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except Exception as err:  # yaml and json raise unrelated types; both mean "unreadable"
        raise TrainError(f"config file {path} cannot be parsed: {err}") from err
    if not isinstance(data, dict) or set(data) - {"model", "train"}:
        raise TrainError(f"config file {path} must hold a mapping with 'model' and/or 'train' sections")
    try:
        return CardioVLMConfig.from_dict(data.get("model") or {}), TrainConfig.from_dict(data.get("train") or {})
    except (ConfigError, TypeError) as err:
        raise TrainError(f"config file {path}: {err}") from err


# --- samples ------------------------------------------------------------------------------------
# A training sample is a dict:
#   image (1, I, J, K) float tensor in [0, 1] on the model grid    instruction str    stage int
#   mask (1, I, J, K) float tensor or None                         landmark (3,) fractions or None
#   answer int index into ANSWER_CLASSES or -1                     choices list[str]
#   choice int index into choices or -1                            value float or nan


def sample_from_record(record, case: "PreparedCase", config: CardioVLMConfig) -> dict:
    """Turn one ``InstructionRecord`` and its prepared case (see :func:`prepare_case`) into a sample."""
    from tools.masks import mask_from_labels
    from vlm.transforms import index_to_fraction

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
    roi: "RoiGrid"  # where the cube sits in the study
    affine: np.ndarray  # (4, 4) study index -> LPS mm
    landmarks_mm: dict[str, list[float]]  # named landmarks in LPS mm
    model_spacing: tuple[float, float, float]  # mm per model voxel (roi_mm / input_shape)
    anatomy: torch.Tensor | None = None  # (*input_shape) int64 class of each voxel for the dense anatomy
    #                                      head (index into vlm.model.ANATOMY_LABEL_IDS; -100 = unknown id)


def prepare_case(image: np.ndarray, labels: np.ndarray | None, affine: np.ndarray,
                 landmarks_mm: dict[str, list[float]], config: CardioVLMConfig) -> PreparedCase:
    """Study-grid HU image, label map, LPS affine and landmarks -> :class:`PreparedCase` through the same
    heart-centred ROI (``vlm.transforms.HeartRoi``) that inference uses."""
    from vlm.transforms import HeartRoi

    spacing = tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))
    cube, roi = HeartRoi(config)(image, spacing)
    model_labels, anatomy = None, None
    if labels is not None:
        model_labels = roi.sample(labels.astype(np.float32), mode="nearest").round().to(torch.int32).numpy()
        anatomy = torch.from_numpy(anatomy_classes(model_labels))
    return PreparedCase(image=cube.float(), labels=model_labels, roi=roi, affine=affine, landmarks_mm=landmarks_mm,
                        model_spacing=tuple(float(v) for v in np.asarray(roi.step) * spacing), anatomy=anatomy)


def anatomy_classes(labels: np.ndarray) -> np.ndarray:
    """Label ids -> int64 class indices of the dense anatomy head; ids outside the registry -> -100 (ignored)."""
    from vlm.model import ANATOMY_LABEL_IDS

    lookup = np.full(max(int(labels.max(initial=0)), max(ANATOMY_LABEL_IDS)) + 1, -100, dtype=np.int64)
    lookup[list(ANATOMY_LABEL_IDS)] = np.arange(len(ANATOMY_LABEL_IDS))
    return lookup[np.clip(labels, 0, None).astype(np.int64)]


def read_curriculum(path: str | Path, *, include_held_out: bool = False) -> list:
    """``InstructionRecord`` list from a curriculum JSONL (header lines without ``task`` are skipped).
    Records with a held-out phrasing stay out of training unless ``include_held_out``."""
    from training.curriculum.schema import InstructionRecord

    path = Path(path)
    if not path.is_file():
        raise TrainError(f"curriculum file {path} does not exist")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as err:
            raise TrainError(f"{path} line {number} is not JSON: {err}") from err
        if "task" not in data:
            continue  # header record (curriculum version)
        try:
            record = InstructionRecord.model_validate(data)
        except ValueError as err:
            raise TrainError(f"{path} line {number} is not a curriculum record: {err}") from err
        if include_held_out or not record.held_out_phrasing:
            records.append(record)
    if not records:
        raise TrainError(f"curriculum file {path} holds no training records")
    return records


class CurriculumSamples(torch.utils.data.Dataset):
    """Curriculum records paired with their case folders (``tools.case_format`` layout), as samples.

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
        self._cases: OrderedDict[str, tuple] = OrderedDict()
        missing = sorted({r.study_id for r in self.records} - {p.name for p in self.data_root.iterdir()}
                         if self.data_root.is_dir() else {r.study_id for r in self.records})
        if missing:
            raise TrainError(f"case folder(s) missing under {self.data_root}: {', '.join(missing[:5])}")

    def _case(self, case_id: str) -> PreparedCase:
        if case_id not in self._cases:
            from tools import case_format as cf
            from tools.nifti_io import read_nifti

            folder = self.data_root / case_id
            # one reader for image and labels, so both are reoriented to LPS the same way
            ccta = read_nifti(folder / cf.CCTA_NIFTI)
            affine, image = ccta.affine, np.asarray(ccta.hu, dtype=np.float32)
            labels_path = folder / cf.LABELS_NIFTI
            labels = np.asarray(read_nifti(labels_path, labels=True).hu) if labels_path.is_file() else None
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
    """What a record trains, coarsely: its task, and for masks the structure group (``vlm.validation``)
    or "other"; balanced draws (``TrainConfig.balance_targets``) weigh each kind equally."""
    from vlm.validation import structure_group

    if record.target.mask is not None:
        return f"{record.task}:{structure_group(list(record.target.mask.label_ids)) or 'other'}"
    return record.task


# --- loop ---------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    model: CardioVLM  # the trained model (unwrapped from DDP), on its training device
    steps: int  # total optimisation steps done, resumed ones included
    history: list[dict] = field(default_factory=list)  # the logged rows of this process's run


def stage_plan(stages: Sequence[int], config: TrainConfig) -> list[tuple[int | None, int]]:
    """[(stage or None for mixed, end step)] for the stages present, in curriculum order."""
    plan, end = [], 0
    for stage in sorted(set(stages)):
        end += config.steps_per_stage
        plan.append((stage, end))
    plan.append((None, end + config.mixed_steps))
    return [(s, e) for s, e in plan if e > 0]


def _phase_at(plan, step: int) -> int | None:
    for stage, end in plan:
        if step < end:
            return stage
    return None


def collate(samples: list[dict]) -> dict:
    """Stack a list of samples into a batch (targets absent from a sample become masked rows).

    Samples holding the same image object (records of one case) share one row of ``image``;
    ``image_index`` says which row each instruction is about.
    """
    shape = samples[0]["image"].shape
    rows: dict[int, int] = {}
    images, anatomy = [], []
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


def mask_loss(logits: torch.Tensor, target: torch.Tensor, pos_weight: float) -> torch.Tensor:
    """Soft Dice over the samples whose target is non-empty, plus BCE with foreground voxels weighted.

    Dice of an empty target is 0 or 1 with nothing in between, and averaging it in (as MONAI's DiceCE
    does) rewards predicting nothing; the collapsed first checkpoint did exactly that. Empty targets
    ("not present") are therefore pushed down by the BCE term only.
    """
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=torch.tensor(pos_weight, device=logits.device))
    present = target.flatten(1).sum(1) > 0
    if not present.any():
        return bce
    prob = torch.sigmoid(logits[present]).flatten(1)
    truth = target[present].flatten(1)
    soft_dice = (2 * (prob * truth).sum(1) + 1.0) / (prob.sum(1) + truth.sum(1) + 1.0)
    return bce + (1 - soft_dice).mean()


def anatomy_loss(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the label map plus soft Dice averaged over the classes present in the batch,
    so one-voxel-wide coronaries weigh as much as the liver."""
    ce = F.cross_entropy(logits, classes, ignore_index=-100)
    valid = (classes >= 0).unsqueeze(1)
    prob = logits.softmax(1) * valid
    onehot = F.one_hot(classes.clamp(min=0), logits.shape[1]).movedim(-1, 1) * valid
    dims = (0, 2, 3, 4)
    present = onehot.sum(dims) > 0
    dice = (2 * (prob * onehot).sum(dims) + 1.0) / (prob.sum(dims) + onehot.sum(dims) + 1.0)
    return ce + (1 - dice[present]).mean()


def compute_losses(out, batch: dict, config: TrainConfig) -> dict[str, torch.Tensor]:
    """Per-task losses and metrics of one batch; ``loss`` is their weighted sum."""
    device = out.mask_logits.device
    # Every output joins the loss (times zero when its task is absent from the batch): DDP must see
    # a gradient, even a zero one, for every parameter the forward pass used.
    zero = sum(t.float().sum() for t in (out.mask_logits, out.landmark_logits, out.landmark, out.answer_logits,
                                         out.value)) * 0.0
    losses = {"mask_loss": zero, "answer_loss": zero, "choice_loss": zero, "landmark_loss": zero,
              "value_loss": zero, "anatomy_loss": zero}
    if out.anatomy_logits is not None:
        if batch.get("anatomy") is not None:
            losses["anatomy_loss"] = anatomy_loss(out.anatomy_logits.float(), batch["anatomy"].to(device))
        else:
            zero = zero + out.anatomy_logits.float().sum() * 0.0
    metrics = {"dice": math.nan, "answer_accuracy": math.nan}
    rows = batch["has_mask"].to(device)
    if rows.any():
        logits, target = out.mask_logits[rows].float(), batch["mask"].to(device)[rows]
        losses["mask_loss"] = mask_loss(logits, target, config.mask_pos_weight)
        present = target.flatten(1).sum(1) > 0
        if present.any():  # Dice of the non-empty targets, pooled over the batch
            pred, truth = logits[present] > 0, target[present] > 0.5
            metrics["dice"] = 2 * (pred & truth).sum().item() / (pred.sum().item() + truth.sum().item())
    answer = batch["answer"].to(device)
    if (answer >= 0).any():
        logits = out.answer_logits[answer >= 0].float()
        losses["answer_loss"] = F.cross_entropy(logits, answer[answer >= 0])
        metrics["answer_accuracy"] = (logits.argmax(-1) == answer[answer >= 0]).float().mean().item()
    choice = batch["choice"].to(device)
    if out.choice_logits is not None and (choice >= 0).any():
        losses["choice_loss"] = F.cross_entropy(out.choice_logits[choice >= 0], choice[choice >= 0])
    if out.choice_logits is not None:
        zero = zero + out.choice_logits[torch.isfinite(out.choice_logits)].sum() * 0.0
    rows = batch["has_landmark"].to(device)
    if rows.any():
        target = batch["landmark"].to(device)[rows]
        shape = torch.tensor(out.mask_logits.shape[2:], device=device)
        # Heatmap CE at the voxel holding the target sharpens the map (and its confidence).
        voxel = ((target * shape).floor().long().clamp(min=0) .minimum(shape - 1))
        flat = (voxel[:, 0] * shape[1] + voxel[:, 1]) * shape[2] + voxel[:, 2]
        losses["landmark_loss"] = (10.0 * (out.landmark[rows] - target).abs().sum(-1).mean()
                                   + 0.1 * F.cross_entropy(out.landmark_logits[rows].float(), flat))
    value = batch["value"].to(device)
    rows = ~torch.isnan(value)
    if rows.any():
        target = torch.log1p(value[rows].clamp(min=0))
        losses["value_loss"] = F.smooth_l1_loss(out.value[rows].float(), target)
    losses["loss"] = zero + (config.mask_weight * losses["mask_loss"]
                      + config.answer_weight * (losses["answer_loss"] + losses["choice_loss"])
                      + config.landmark_weight * losses["landmark_loss"] + config.value_weight * losses["value_loss"]
                      + config.anatomy_weight * losses["anatomy_loss"])
    return {**losses, **metrics}


def _draw(rng: np.random.Generator, pool: np.ndarray, groups: Sequence | None, config: TrainConfig,
          weights: np.ndarray | None = None) -> np.ndarray:
    """``batch_size`` sample indices from ``pool``; with ``groups``, all from ``images_per_step`` cases.
    ``weights`` (one per dataset index) makes some records likelier than others."""
    if groups is not None:
        case_of = np.asarray([groups[i] for i in pool])
        cases = rng.choice(np.unique(case_of), size=min(config.images_per_step, len(np.unique(case_of))),
                           replace=False)
        pool = pool[np.isin(case_of, cases)]
    p = None if weights is None else weights[pool] / weights[pool].sum()
    return rng.choice(pool, size=config.batch_size, replace=True, p=p)


def balanced_weights(kinds: Sequence[str]) -> np.ndarray:
    """One weight per record, 1 / (records of its kind): every kind is drawn equally often."""
    _, inverse, counts = np.unique(np.asarray(kinds), return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse]


def _learning_rate(step: int, total: int, config: TrainConfig) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _distributed() -> tuple[int, int, int, bool]:
    """(rank, world size, local rank, whether this call initialised the process group)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0, False
    created = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        created = True
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), created


def train(dataset, out_dir: str | Path, *, model_config: CardioVLMConfig, train_config: TrainConfig,
          resume: bool = False, device: str | None = None) -> TrainResult:
    """Train CardioVLM on ``dataset`` and write checkpoints to ``out_dir``.

    Args:
        dataset: indexable samples (see the sample layout above), e.g. :class:`CurriculumSamples`;
            a ``stages`` attribute (one stage per sample) avoids loading every sample to plan.
        out_dir: output folder (``checkpoint/``, ``train_state.pt``, ``log.csv``).
        resume: continue from ``out_dir``'s last checkpoint; without it an existing run is refused.
        device: "cpu", "cuda", ...; default CUDA (this process's local rank) when available.

    Raises:
        TrainError: an empty dataset, an existing run without ``resume``, or a resume with nothing
            (or an incompatible config) to resume from.
    """
    from torch.nn.parallel import DistributedDataParallel

    from vlm.checkpoint_io import load_checkpoint

    out_dir = Path(out_dir)
    if len(dataset) == 0:
        raise TrainError("the training dataset is empty")
    stages = list(getattr(dataset, "stages", None) or [dataset[i]["stage"] for i in range(len(dataset))])
    state_path = out_dir / STATE_FILE
    if state_path.exists() and not resume:
        raise TrainError(f"{out_dir} already holds a training run; pass --resume to continue it or choose "
                         "another --out folder")
    if resume and not state_path.exists():
        raise TrainError(f"nothing to resume: {state_path} does not exist")

    rank, world, local_rank, created_group = _distributed()
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    torch.manual_seed(train_config.seed)
    if resume:
        model = load_checkpoint(out_dir / CHECKPOINT_SUBDIR, device=device)
        if model.config != model_config:
            raise TrainError(f"the model config differs from the one of the run in {out_dir}; resume with "
                             "the same --config")
    else:
        model = CardioVLM(model_config).to(device)
        if train_config.init_from:
            _init_from(model, Path(train_config.init_from))
    model.train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=train_config.lr, weight_decay=train_config.weight_decay)
    use_amp = train_config.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    step = 0
    if resume:
        state = torch.load(state_path, map_location=device, weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        step = int(state["step"])
    wrapped = (DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                       find_unused_parameters=True) if world > 1 else model)

    plan = stage_plan(stages, train_config)
    total = plan[-1][1]
    groups = getattr(dataset, "groups", None) if train_config.images_per_step else None
    weights = None
    if train_config.balance_targets:
        if getattr(dataset, "kinds", None) is None:
            raise TrainError("balance_targets needs a dataset with a `kinds` attribute (e.g. CurriculumSamples)")
        weights = balanced_weights(dataset.kinds)
    by_stage: dict[int | None, np.ndarray] = {None: np.arange(len(stages))}
    for s in set(stages):
        by_stage[s] = np.flatnonzero(np.asarray(stages) == s)
    writer = _tensorboard(out_dir) if rank == 0 else None
    history: list[dict] = []
    started = time.time()
    while step < total:
        stage = _phase_at(plan, step)
        # Seeded by (seed, rank, step): a resumed run draws exactly what the uninterrupted run would.
        rng = np.random.default_rng([train_config.seed, rank, step])
        indices = _draw(rng, by_stage[stage], groups, train_config, weights)
        batch = collate([dataset[int(i)] for i in indices])
        lr = _learning_rate(step, total, train_config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            out = wrapped(batch["image"].to(device), batch["instruction"],
                          batch["choices"] if any(batch["choices"]) else None, batch["image_index"].to(device))
        result = compute_losses(out, batch, train_config)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(result["loss"]).backward()
        if train_config.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(parameters, train_config.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        step += 1
        if step % train_config.log_every == 0 or step == total:
            row = {"step": step, "stage": "mixed" if stage is None else stage, "lr": lr,
                   "seconds": round(time.time() - started, 2),
                   **{k: (float(v) if not torch.is_tensor(v) else float(v.detach())) for k, v in result.items()}}
            history.append(row)
            if rank == 0:
                _log_row(out_dir, row, writer)
        if rank == 0 and (step % train_config.checkpoint_every == 0 or step == total):
            _save_state(model, optimizer, scaler, step, train_config, out_dir)
    if writer is not None:
        writer.close()
    if created_group:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    model.eval()
    return TrainResult(model=model, steps=step, history=history)


def _init_from(model: CardioVLM, folder: Path) -> None:
    """Copy the tensors of checkpoint ``folder`` whose names and shapes match (fine-tuning a grown model)."""
    from safetensors.torch import load_file

    from vlm.checkpoint_io import WEIGHTS_FILE, read_config

    read_config(folder)  # a clear CheckpointError for a folder that is no checkpoint
    state = load_file(str(folder / WEIGHTS_FILE))
    own = model.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matching:
        raise TrainError(f"init_from {folder}: no weight matches this model's names and shapes")
    model.load_state_dict(matching, strict=False)


def _save_state(model: CardioVLM, optimizer, scaler, step: int, config: TrainConfig, out_dir: Path) -> None:
    model.save(out_dir / CHECKPOINT_SUBDIR)
    tmp = out_dir / (STATE_FILE + ".tmp")
    torch.save({"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "step": step,
                "train_config": dataclasses.asdict(config)}, tmp)
    tmp.replace(out_dir / STATE_FILE)


def _log_row(out_dir: Path, row: dict, writer) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOG_FILE
    new = not path.exists()
    with path.open("a", newline="") as handle:
        log = csv.DictWriter(handle, fieldnames=LOG_FIELDS, extrasaction="ignore")
        if new:
            log.writeheader()
        log.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()})
    if writer is not None:
        for key, value in row.items():
            if isinstance(value, float) and not math.isnan(value):
                writer.add_scalar(key, value, row["step"])


def _tensorboard(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional; the CSV log is always written
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))


def train_from_files(curriculum: str | Path, config_file: str | Path, out_dir: str | Path, *,
                     data_root: str | Path | None = None, resume: bool = False,
                     device: str | None = None) -> TrainResult:
    """What ``cardiovlm train`` does: read the curriculum and config, then :func:`train`.
    ``data_root`` (the case folders) defaults to the curriculum file's folder."""
    model_config, train_config = load_config_file(config_file)
    records = read_curriculum(curriculum)
    root = Path(data_root) if data_root is not None else Path(curriculum).resolve().parent
    dataset = CurriculumSamples(records, root, model_config)
    return train(dataset, out_dir, model_config=model_config, train_config=train_config, resume=resume,
                 device=device)
