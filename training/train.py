"""Curriculum training of CardioVLM: stages in order, then mixed; one loop for 1 CPU, 1 GPU or many.

The loop runs unchanged under ``torchrun`` (DistributedDataParallel; NCCL on GPUs, gloo on CPUs):
every process draws its own samples from a seeded generator, DDP averages the gradients, so all
ranks hold identical weights and only rank 0 writes checkpoints and logs.

Schedule: ``steps_per_stage`` steps on each curriculum stage present (1 anatomy -> descriptors,
2 anatomy -> anatomy, 3 findings), in that order, then ``mixed_steps`` steps drawing from all stages.
A resumed run draws exactly the samples the uninterrupted run would have drawn.

The parts: the run's configuration (:mod:`cardiovlm.training.train_config`), samples and batches
(:mod:`cardiovlm.training.samples`), losses (:mod:`cardiovlm.training.losses`) and the output folder
(:mod:`cardiovlm.training.run_folder`); this module holds the schedule and the loop.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cardiovlm.tools.core.settings import external_environment
from cardiovlm.training.curriculum.jsonl import read_curriculum
from cardiovlm.training.losses import compute_losses
from cardiovlm.training.run_folder import (
    CHECKPOINT_SUBDIR,
    STATE_FILE,
    init_from,
    load_state,
    log_row,
    save_state,
    tensorboard_writer,
)
from cardiovlm.training.samples import CurriculumSamples, collate
from cardiovlm.training.train_config import TrainConfig, TrainError, load_config_file
from cardiovlm.vlm.config import CardioVLMConfig
from cardiovlm.vlm.model import CardioVLM

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model: CardioVLM  # the trained model (unwrapped from DDP), on its training device
    steps: int  # total optimisation steps done, resumed ones included
    history: list[dict] = field(default_factory=list)  # the logged rows of this process's run


def stage_plan(stages: Sequence[int], config: TrainConfig) -> list[tuple[int | None, int]]:
    """[(stage or None for mixed, end step)] for the stages present, in curriculum order."""
    plan: list[tuple[int | None, int]] = []
    end = 0
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

    env = external_environment()  # torchrun's process coordinates
    world = env.world_size
    if world <= 1:
        return 0, 1, 0, False
    created = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        created = True
    return dist.get_rank(), dist.get_world_size(), env.local_rank, created


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

    from cardiovlm.vlm.checkpoint_io import load_checkpoint

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
    run_device = torch.device(device)
    torch.manual_seed(train_config.seed)
    if resume:
        model = load_checkpoint(out_dir / CHECKPOINT_SUBDIR, device=run_device)
        if model.config != model_config:
            raise TrainError(f"the model config differs from the one of the run in {out_dir}; resume with "
                             "the same --config")
    else:
        model = CardioVLM(model_config).to(run_device)
        if train_config.init_from:
            init_from(model, Path(train_config.init_from))
    model.train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=train_config.lr, weight_decay=train_config.weight_decay)
    use_amp = train_config.amp and run_device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    step = 0
    if resume:
        step = load_state(out_dir, optimizer, scaler, run_device)
    wrapped = (DistributedDataParallel(model, device_ids=[run_device.index] if run_device.type == "cuda" else None,
                                       find_unused_parameters=True) if world > 1 else model)

    plan = stage_plan(stages, train_config)
    total = plan[-1][1]
    groups = getattr(dataset, "groups", None) if train_config.images_per_step else None
    weights = None
    if train_config.balance_targets:
        if getattr(dataset, "kinds", None) is None:
            raise TrainError("balance_targets needs a dataset with a `kinds` attribute (e.g. CurriculumSamples)")
        weights = balanced_weights(dataset.kinds)
    if rank == 0:
        if step:
            log.info("resuming the run in %s at step %d of %d", out_dir, step, total)
        else:
            log.info("training %d samples for %d steps on %s (%d process(es)); output in %s", len(stages), total,
                     run_device, world, out_dir)
    by_stage: dict[int | None, np.ndarray] = {None: np.arange(len(stages))}
    for s in set(stages):
        by_stage[s] = np.flatnonzero(np.asarray(stages) == s)
    writer = tensorboard_writer(out_dir) if rank == 0 else None
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
        with torch.autocast(run_device.type, dtype=amp_dtype, enabled=use_amp):
            out = wrapped(batch["image"].to(run_device), batch["instruction"],
                          batch["choices"] if any(batch["choices"]) else None, batch["image_index"].to(run_device))
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
                log_row(out_dir, row, writer)
                log.info("step %d/%d (stage %s): loss %.4f, lr %.2e, %.0f s", step, total, row["stage"],
                         row["loss"], lr, row["seconds"])
        if rank == 0 and (step % train_config.checkpoint_every == 0 or step == total):
            save_state(model, optimizer, scaler, step, train_config, out_dir)
            log.info("checkpoint saved at step %d in %s", step, out_dir / CHECKPOINT_SUBDIR)
    if writer is not None:
        writer.close()
    if created_group:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    model.eval()
    return TrainResult(model=model, steps=step, history=history)


def train_from_files(curriculum: str | Path, config_file: str | Path, out_dir: str | Path, *,
                     data_root: str | Path | None = None, resume: bool = False,
                     device: str | None = None) -> TrainResult:
    """What ``cardiovlm train`` does: read the curriculum and config, then :func:`train`.
    ``data_root`` (the case folders) defaults to the curriculum file's folder."""
    model_config, train_config = load_config_file(config_file)
    records = read_curriculum(curriculum, include_held_out=False)
    root = Path(data_root) if data_root is not None else Path(curriculum).resolve().parent
    dataset = CurriculumSamples(records, root, model_config)
    return train(dataset, out_dir, model_config=model_config, train_config=train_config, resume=resume,
                 device=device)


__all__ = ["CurriculumSamples", "TrainConfig", "TrainError", "TrainResult", "balanced_weights", "load_config_file",
           "stage_plan", "train", "train_from_files"]
