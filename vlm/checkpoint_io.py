"""Loading a checkpoint folder into a :class:`cardiovlm.vlm.model.CardioVLM`; the format is
:mod:`cardiovlm.vlm.checkpoint_format`."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from cardiovlm.vlm.checkpoint_format import (
    CHECKPOINT_FORMAT_VERSION,
    CONFIG_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    read_config,
)
from cardiovlm.vlm.model import CardioVLM

log = logging.getLogger(__name__)


def load_checkpoint(checkpoint_dir: str | Path, *, device: str | torch.device | None = None):
    """Build a :class:`cardiovlm.vlm.model.CardioVLM` from a checkpoint folder, in eval mode.

    Raises:
        CheckpointError: missing folder or files, unreadable JSON or weights, or weights that do not
            fit the configured network (the message lists the offending tensors).
        cardiovlm.vlm.text_encoder.TextEncoderUnavailable: a MiniLM checkpoint on a machine without the model.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    started = time.perf_counter()
    folder = Path(checkpoint_dir)
    config = read_config(folder)  # refuses any format version but CHECKPOINT_FORMAT_VERSION
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"checkpoint {folder} has no {WEIGHTS_FILE}")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{weights} is not a readable safetensors file: {err}") from err
    model = CardioVLM(config)
    expected = model.checkpoint_state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = [f"{label}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
                 if keys]
        raise CheckpointError(f"{weights} does not match its {CONFIG_FILE} ({'; '.join(parts)})")
    model.load_state_dict(state, strict=False)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    log.info("loaded VLM checkpoint %s (format version %d, %d tensors) on %s in %.2f s", folder.resolve(),
             CHECKPOINT_FORMAT_VERSION, len(state), device, time.perf_counter() - started)
    return model
