"""The checkpoint folder format: ``config.json`` (format tag + model config) and ``model.safetensors``.

Writing a folder and reading its configuration need no model class, so the model saves itself through
this module while :mod:`cardiovlm.vlm.checkpoint_io` builds a model from a folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from cardiovlm.tools.core.errors import CardioVLMError
from cardiovlm.vlm.config import CardioVLMConfig, ConfigError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_FORMAT = "cardiovlm-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1


class CheckpointError(CardioVLMError):
    """A checkpoint folder that cannot be loaded; the message names the path and what is wrong."""

    code = "vlm.checkpoint_invalid"


def save_checkpoint(model, checkpoint_dir: str | Path) -> Path:
    """Write ``model`` (a :class:`cardiovlm.vlm.model.CardioVLM`) to ``checkpoint_dir``; returns the folder."""
    from safetensors.torch import save_file

    folder = Path(checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.checkpoint_state_dict().items()}
    # Write to temporary names first so an interrupted save never leaves a half checkpoint.
    save_file(state, str(folder / (WEIGHTS_FILE + ".tmp")), metadata={"format": CHECKPOINT_FORMAT})
    config = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_FORMAT_VERSION,
              "model": model.config.to_dict()}
    (folder / (CONFIG_FILE + ".tmp")).write_text(json.dumps(config, indent=2) + "\n")
    (folder / (WEIGHTS_FILE + ".tmp")).replace(folder / WEIGHTS_FILE)
    (folder / (CONFIG_FILE + ".tmp")).replace(folder / CONFIG_FILE)
    return folder


def read_config(checkpoint_dir: str | Path) -> CardioVLMConfig:
    """The model configuration of a checkpoint folder, validated."""
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist")
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint {folder} has no {CONFIG_FILE}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT or "model" not in data:
        raise CheckpointError(f"{path} is not a CardioVLM checkpoint config (expected "
                              f"'format': '{CHECKPOINT_FORMAT}' and a 'model' section)")
    if data.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {data.get('format_version')!r}; this "
                              f"CardioVLM reads version {CHECKPOINT_FORMAT_VERSION}")
    try:
        return CardioVLMConfig.from_dict(data["model"])
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"{path}: invalid model config: {err}") from err
