"""Hyperparameters of the CardioVLM network, one typed place, saved as JSON next to the weights."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from cardiovlm.tools.core.errors import CardioVLMError

# Answer classes of the yes/no head; index order is part of the checkpoint format.
ANSWER_CLASSES: tuple[str, ...] = ("yes", "no", "not present")


class ConfigError(CardioVLMError):
    """A model configuration that cannot build a network; the message names the field."""

    code = "vlm.config_invalid"


@dataclass
class CardioVLMConfig:
    # --- image side ---
    input_shape: tuple[int, int, int] = (64, 64, 64)  # model grid (i, j, k) the heart-centred cube is sampled on
    roi_mm: float = 144.0  # edge of the heart-centred cube (mm, per study axis); roi_mm / input_shape = model voxel
    blood_pool_hu: tuple[float, float] = (150.0, 700.0)  # HU of contrast-filled blood, to centre the cube (no labels)
    hu_window: tuple[float, float] = (-200.0, 800.0)  # HU mapped to [0, 1], clipped outside
    init_filters: int = 8  # SegResNet channels at full resolution; doubled per level
    blocks_down: tuple[int, ...] = (1, 2, 2, 4)  # residual blocks per encoder level; len = levels
    feature_channels: int = 16  # per-voxel decoder feature size the [SEG]/[LMK] queries are dotted with
    anatomy_head: bool = False  # a 1x1x1 classifier of every registry label on the voxel features, trained
    #                             with the label map (dense supervision); unused at inference
    # --- instruction side ---
    text_encoder: Literal["minilm", "hashed"] = "minilm"  # frozen offline MiniLM, or a tiny hashed-word encoder
    text_vocab_size: int = 4096  # hash buckets of the "hashed" encoder (ignored for MiniLM)
    text_layers: int = 1  # transformer layers of the "hashed" encoder (ignored for MiniLM)
    freeze_text: bool = True  # keep the MiniLM weights fixed (they are not saved in checkpoints then)
    max_text_tokens: int = 48  # instructions and choice texts are truncated to this many tokens
    # --- fusion transformer ---
    width: int = 128  # token width of the fusion transformer
    fusion_layers: int = 2  # transformer encoder layers over [queries; image tokens; instruction tokens]
    fusion_heads: int = 4  # attention heads; must divide width
    dropout: float = 0.0  # dropout inside the fusion transformer
    # --- inference ---
    mask_threshold: float = 0.5  # probability above which a voxel belongs to the mask
    cache_entries: int = 4  # studies whose image embedding is kept (LRU); bounds memory

    def __post_init__(self) -> None:
        # JSON gives lists back; keep tuples so configs compare equal after a round trip.
        self.input_shape = tuple(int(n) for n in self.input_shape)  # type: ignore[assignment]
        self.hu_window = tuple(float(v) for v in self.hu_window)  # type: ignore[assignment]
        self.blood_pool_hu = tuple(float(v) for v in self.blood_pool_hu)  # type: ignore[assignment]
        self.roi_mm = float(self.roi_mm)
        self.blocks_down = tuple(int(n) for n in self.blocks_down)
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise ConfigError(f"input_shape must be three positive sizes, got {self.input_shape}")
        factor = 2 ** (len(self.blocks_down) - 1)
        if any(n % factor for n in self.input_shape):
            raise ConfigError(f"input_shape {self.input_shape} must be divisible by {factor} "
                              f"(2 ** (len(blocks_down) - 1)) for the encoder's downsampling")
        if self.roi_mm <= 0:
            raise ConfigError(f"roi_mm must be a positive cube edge in mm, got {self.roi_mm}")
        if len(self.blood_pool_hu) != 2 or self.blood_pool_hu[0] >= self.blood_pool_hu[1]:
            raise ConfigError(f"blood_pool_hu must be (low, high) with low < high, got {self.blood_pool_hu}")
        if self.hu_window[0] >= self.hu_window[1]:
            raise ConfigError(f"hu_window must be (low, high) with low < high, got {self.hu_window}")
        if self.width % self.fusion_heads:
            raise ConfigError(f"width {self.width} is not divisible by fusion_heads {self.fusion_heads}")
        if self.text_encoder not in ("minilm", "hashed"):
            raise ConfigError(f"text_encoder must be 'minilm' or 'hashed', got {self.text_encoder!r}")
        if self.init_filters % 8:
            raise ConfigError(f"init_filters must be a multiple of 8 (SegResNet group norm), got {self.init_filters}")
        if self.cache_entries < 0:
            raise ConfigError(f"cache_entries must be >= 0, got {self.cache_entries}")

    @property
    def token_grid(self) -> tuple[int, int, int]:
        """Shape of the image-token grid (the encoder bottleneck)."""
        factor = 2 ** (len(self.blocks_down) - 1)
        x, y, z = (n // factor for n in self.input_shape)
        return x, y, z

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CardioVLMConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model config field(s): {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def tiny(cls, **overrides) -> CardioVLMConfig:
        """A configuration that trains on the CPU in seconds (tests, smoke runs)."""
        base: dict[str, Any] = dict(input_shape=(32, 32, 32), init_filters=8, blocks_down=(1, 1, 1), feature_channels=8,
                    text_encoder="hashed", text_vocab_size=512, width=32, fusion_layers=1, fusion_heads=2,
                    max_text_tokens=24)
        base.update(overrides)
        return cls(**base)

