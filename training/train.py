"""Curriculum training of CardioVLM: stages in order, then mixed; one loop for 1 CPU, 1 GPU or many.

The loop runs unchanged under ``torchrun`` (DistributedDataParallel; NCCL on GPUs, gloo on CPUs):
every process draws its own samples from a seeded generator, DDP averages the gradients, so all
ranks hold identical weights and only rank 0 writes checkpoints and logs.

Schedule: ``steps_per_stage`` steps on each curriculum stage present (1 anatomy -> descriptors,
2 anatomy -> anatomy, 3 findings), in that order, then ``mixed_steps`` steps drawing from all stages.
Losses: DiceCE (``monai.losses.DiceCELoss``) for masks, cross-entropy for yes / no / not present and
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
              "value_loss", "dice", "answer_accuracy", "lr", "seconds")


class TrainError(ValueError):
    """A training run that cannot start or resume; the message says which file or field is wrong."""


@dataclass
class TrainConfig:
    steps_per_stage: int = 200  # steps on each curriculum stage, in order 1, 2, 3 (absent stages skipped)
    mixed_steps: int = 400  # steps drawing from every stage, after the staged phase
    batch_size: int = 2  # samples per step and per process
    lr: float = 3e-4  # AdamW peak learning rate (cosine decay to 10% over the run)
    warmup_steps: int = 20  # linear warm-up steps
    weight_decay: float = 0.01  # AdamW weight decay
    grad_clip: float = 1.0  # max gradient norm; 0 disables clipping
    mask_weight: float = 1.0  # weight of the DiceCE mask loss
    answer_weight: float = 1.0  # weight of the yes / no / not present and multiple-choice losses
    landmark_weight: float = 1.0  # weight of the landmark loss
    value_weight: float = 0.5  # weight of the measurement regression loss
    amp: bool = True  # autocast on CUDA (bfloat16 where supported, else float16 with a scaler); ignored on CPU
    checkpoint_every: int = 100  # steps between checkpoints (and one at the end)
    log_every: int = 10  # steps between log rows
    seed: int = 0  # seeds the model init and every process's sample draws

    def __post_init__(self) -> None:
        for name in ("steps_per_stage", "mixed_steps", "warmup_steps"):
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


def sample_from_record(record, image: np.ndarray, labels: np.ndarray | None, affine: np.ndarray,
                       landmarks_mm: dict[str, list[float]], config: CardioVLMConfig) -> dict:
    """Turn one ``InstructionRecord`` and its case arrays (study grid, LPS affine) into a sample."""
    from tools.masks import mask_from_labels
    from vlm.transforms import image_transformd, index_to_fraction

    target = record.target
    spacing = tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))
    data = {"image": image.astype(np.float32)}
    if target.mask is not None:
        if labels is None:
            raise TrainError(f"record {record.id}: a mask target but case {record.study_id} has no label map")
        data["mask"] = mask_from_labels(labels, target.mask.label_ids, spacing=spacing,
                                        near_segments=target.mask.near_segments or None,
                                        near_mm=target.mask.near_mm).astype(np.float32)
    elif record.task == "segment":  # a negative "segment X" with no mask: the target is empty
        data["mask"] = np.zeros(image.shape, np.float32)
    data = image_transformd(config)(data)
    landmark = None
    if target.landmark is not None:
        if target.landmark not in landmarks_mm:
            raise TrainError(f"record {record.id}: landmark {target.landmark!r} is not in the case landmarks")
        xyz = np.asarray(landmarks_mm[target.landmark], dtype=np.float64)
        index = (xyz - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
        landmark = torch.as_tensor(index_to_fraction(index, image.shape), dtype=torch.float32)
    answer, choice = -1, -1
    if target.answer is not None:
        if target.answer in ANSWER_CLASSES and not (target.choices and target.answer in target.choices):
            answer = ANSWER_CLASSES.index(target.answer)
        elif target.answer in target.choices:
            choice = target.choices.index(target.answer)
        else:
            raise TrainError(f"record {record.id}: answer {target.answer!r} is neither yes/no/not present "
                             f"nor one of its choices")
    return {"image": torch.as_tensor(data["image"]).float(), "instruction": record.instruction,
            "stage": int(record.stage), "mask": (torch.as_tensor(data["mask"]).float() if "mask" in data else None),
            "landmark": landmark, "answer": answer, "choices": list(target.choices), "choice": choice,
            "value": float(target.value) if target.value is not None else math.nan}


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

    Cases are read lazily with nibabel and the last ``cache_cases`` are kept in memory.
    """

    def __init__(self, records: Sequence, data_root: str | Path, config: CardioVLMConfig, cache_cases: int = 8):
        self.records = list(records)
        self.data_root = Path(data_root)
        self.config = config
        self.stages = [int(r.stage) for r in self.records]
        self.cache_cases = cache_cases
        self._cases: OrderedDict[str, tuple] = OrderedDict()
        missing = sorted({r.study_id for r in self.records} - {p.name for p in self.data_root.iterdir()}
                         if self.data_root.is_dir() else {r.study_id for r in self.records})
        if missing:
            raise TrainError(f"case folder(s) missing under {self.data_root}: {', '.join(missing[:5])}")

    def _case(self, case_id: str) -> tuple:
        if case_id not in self._cases:
            import nibabel as nib

            from tools import case_format as cf

            folder = self.data_root / case_id
            ccta = nib.load(str(folder / cf.CCTA_NIFTI))
            affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ccta.affine  # NIfTI RAS -> our LPS
            image = np.asarray(ccta.dataobj, dtype=np.float32)
            labels_path = folder / cf.LABELS_NIFTI
            labels = np.asarray(nib.load(str(labels_path)).dataobj) if labels_path.is_file() else None
            landmarks_path = folder / cf.LANDMARKS_FILE
            landmarks = json.loads(landmarks_path.read_text()) if landmarks_path.is_file() else {}
            self._cases[case_id] = (image, labels, affine, landmarks)
            while len(self._cases) > self.cache_cases:
                self._cases.popitem(last=False)
        self._cases.move_to_end(case_id)
        return self._cases[case_id]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        return sample_from_record(record, *self._case(record.study_id), self.config)


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
    """Stack a list of samples into a batch (targets absent from a sample become masked rows)."""
    shape = samples[0]["image"].shape
    return {
        "image": torch.stack([s["image"] for s in samples]),
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


def compute_losses(out, batch: dict, config: TrainConfig, dice_ce) -> dict[str, torch.Tensor]:
    """Per-task losses and metrics of one batch; ``loss`` is their weighted sum."""
    device = out.mask_logits.device
    # Every output joins the loss (times zero when its task is absent from the batch): DDP must see
    # a gradient, even a zero one, for every parameter the forward pass used.
    zero = sum(t.float().sum() for t in (out.mask_logits, out.landmark_logits, out.landmark, out.answer_logits,
                                         out.value)) * 0.0
    losses = {"mask_loss": zero, "answer_loss": zero, "choice_loss": zero, "landmark_loss": zero,
              "value_loss": zero}
    metrics = {"dice": math.nan, "answer_accuracy": math.nan}
    rows = batch["has_mask"].to(device)
    if rows.any():
        logits, target = out.mask_logits[rows].float(), batch["mask"].to(device)[rows]
        losses["mask_loss"] = dice_ce(logits, target)
        pred = logits > 0
        inter = (pred & (target > 0.5)).sum().item()
        total = pred.sum().item() + (target > 0.5).sum().item()
        metrics["dice"] = 2 * inter / total if total else 1.0
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
                      + config.landmark_weight * losses["landmark_loss"] + config.value_weight * losses["value_loss"])
    return {**losses, **metrics}


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
    from monai.losses import DiceCELoss
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
    by_stage: dict[int | None, np.ndarray] = {None: np.arange(len(stages))}
    for s in set(stages):
        by_stage[s] = np.flatnonzero(np.asarray(stages) == s)
    dice_ce = DiceCELoss(sigmoid=True)
    writer = _tensorboard(out_dir) if rank == 0 else None
    history: list[dict] = []
    started = time.time()
    while step < total:
        stage = _phase_at(plan, step)
        # Seeded by (seed, rank, step): a resumed run draws exactly what the uninterrupted run would.
        rng = np.random.default_rng([train_config.seed, rank, step])
        indices = rng.choice(by_stage[stage], size=train_config.batch_size, replace=True)
        batch = collate([dataset[int(i)] for i in indices])
        lr = _learning_rate(step, total, train_config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            out = wrapped(batch["image"].to(device), batch["instruction"],
                          batch["choices"] if any(batch["choices"]) else None)
        result = compute_losses(out, batch, train_config, dice_ce)
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
