"""What a training run keeps in its output folder, and how a resumed run reads it back.

Output folder::

    checkpoint/        the model (vlm.load reads it): config.json + model.safetensors
    train_state.pt     optimizer, AMP scaler and step, for --resume
    log.csv            one row per logged step (TensorBoard events too when tensorboard is installed)
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import torch

from cardiovlm.training.train_config import TrainConfig, TrainError
from cardiovlm.vlm.model import CardioVLM

CHECKPOINT_SUBDIR = "checkpoint"
STATE_FILE = "train_state.pt"
LOG_FILE = "log.csv"
LOG_FIELDS = ("step", "stage", "loss", "mask_loss", "answer_loss", "choice_loss", "landmark_loss",
              "value_loss", "anatomy_loss", "dice", "answer_accuracy", "lr", "seconds")



def init_from(model: CardioVLM, folder: Path) -> None:
    """Copy the tensors of checkpoint ``folder`` whose names and shapes match (fine-tuning a grown model)."""
    from safetensors.torch import load_file

    from cardiovlm.vlm.checkpoint_format import WEIGHTS_FILE, read_config

    read_config(folder)  # a clear CheckpointError for a folder that is no checkpoint
    state = load_file(str(folder / WEIGHTS_FILE))
    own = model.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matching:
        raise TrainError(f"init_from {folder}: no weight matches this model's names and shapes")
    model.load_state_dict(matching, strict=False)


def save_state(model: CardioVLM, optimizer, scaler, step: int, config: TrainConfig, out_dir: Path) -> None:
    model.save(out_dir / CHECKPOINT_SUBDIR)
    tmp = out_dir / (STATE_FILE + ".tmp")
    torch.save({"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "step": step,
                "train_config": dataclasses.asdict(config)}, tmp)
    tmp.replace(out_dir / STATE_FILE)


def log_row(out_dir: Path, row: dict, writer) -> None:
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


def tensorboard_writer(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional; the CSV log is always written
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))


def load_state(out_dir: Path, optimizer, scaler, device: torch.device) -> int:
    """Restore the optimizer and AMP scaler of the run in ``out_dir``; returns the step it had reached."""
    state = torch.load(out_dir / STATE_FILE, map_location=device, weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    return int(state["step"])
