"""The training run's configuration: a typed :class:`TrainConfig`, read with the model's from one file."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from cardiovlm.tools.core.errors import CardioVLMError
from cardiovlm.vlm.config import CardioVLMConfig, ConfigError


class TrainError(CardioVLMError):
    """A training run that cannot start or resume; the message says which file or field is wrong."""

    code = "train.cannot_start"


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
    def from_dict(cls, data: dict) -> TrainConfig:
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

