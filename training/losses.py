"""Training losses: each sample contributes only the losses its record has a target for.

Soft Dice on non-empty mask targets plus foreground-weighted BCE (:func:`mask_loss`), cross-entropy for
yes / no / not present and for multiple choice, L1 on the soft-argmax landmark plus cross-entropy of
its heatmap at the target voxel, smooth L1 on ``log1p`` of measured values, and for models with an
anatomy head cross-entropy plus soft Dice over the label map (:func:`anatomy_loss`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cardiovlm.training.train_config import TrainConfig


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
