"""Instruction encoder: the offline MiniLM sentence model, or a tiny hashed-word encoder for tests."""

from __future__ import annotations

import re
import zlib
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from cardiovlm.tools.core.errors import CardioVLMError
from cardiovlm.tools.core.settings import OFFLINE_HUB, set_library_environment

MINILM_WIDTH = 384  # hidden size of all-MiniLM-L6-v2
TEXT_CACHE_ENTRIES = 8192  # frozen-MiniLM states kept per distinct text (a curriculum has a few thousand)


class TextEncoderUnavailable(CardioVLMError):
    """The offline MiniLM model cannot be found; the message says how to get it or avoid it."""

    code = "vlm.text_encoder_missing"


def minilm_path() -> Path:
    """Folder of the offline all-MiniLM-L6-v2 model (``cardiovlm.tools.core.embeddings.model_dir``)."""
    from cardiovlm.tools.core.embeddings import EmbeddingModelMissing, model_dir

    try:
        return model_dir()
    except EmbeddingModelMissing as err:
        raise TextEncoderUnavailable(f"{err}; or use a model config with text_encoder='hashed'") from err


class InstructionEncoder(nn.Module):
    """Texts -> token embeddings at the fusion width, with a padding mask.

    ``kind="minilm"``: the frozen (by default) all-MiniLM-L6-v2 transformer, loaded offline from its
    package folder with ``transformers.AutoModel``; its 384-wide token states are projected to ``width``.
    ``kind="hashed"``: lower-cased words hashed (CRC32) into ``vocab_size`` buckets, embedded and
    passed through a small transformer; random weights, no files needed, so tests and machines
    without the MiniLM package can build a model.

    Args:
        kind: "minilm" or "hashed".
        width: output token width.
        max_tokens: texts are truncated to this many tokens.
        vocab_size, layers: size of the "hashed" encoder.
        freeze: keep the MiniLM weights fixed (the output projection always trains).
    """

    def __init__(self, *, kind: str, width: int, max_tokens: int, vocab_size: int = 4096,
                 layers: int = 1, freeze: bool = True):
        super().__init__()
        self.kind = kind
        self.max_tokens = max_tokens
        self.freeze = freeze
        if kind == "minilm":
            from transformers import AutoModel, AutoTokenizer

            set_library_environment(OFFLINE_HUB)  # a local folder; never reach a hub
            path = minilm_path()
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self.backbone = AutoModel.from_pretrained(str(path), local_files_only=True)
            if freeze:
                self.backbone.requires_grad_(False)
            in_width = MINILM_WIDTH
        elif kind == "hashed":
            self.vocab_size = vocab_size
            in_width = width
            self.embed = nn.Embedding(vocab_size + 1, width, padding_idx=0)  # 0 = padding
            self.position = nn.Parameter(torch.zeros(1, max_tokens, width))
            layer = nn.TransformerEncoderLayer(width, nhead=max(1, width // 16), dim_feedforward=2 * width,
                                               dropout=0.0, batch_first=True, norm_first=True)
            self.backbone = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
        else:
            raise ValueError(f"unknown instruction encoder kind {kind!r}; use 'minilm' or 'hashed'")
        self.project = nn.Linear(in_width, width)
        self._states: OrderedDict[str, torch.Tensor] = OrderedDict()

    def _hash_ids(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.zeros(len(texts), self.max_tokens, dtype=torch.long)
        for row, text in enumerate(texts):
            words = re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text.lower())[: self.max_tokens] or ["<empty>"]
            for col, word in enumerate(words):
                ids[row, col] = 1 + zlib.crc32(word.encode()) % self.vocab_size
        keep = int((ids != 0).sum(1).max())
        return ids[:, :keep], ids[:, :keep] != 0

    def forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``texts`` (B strings) -> tokens (B, T, width) and ``valid`` (B, T) bool, True for real tokens."""
        device = self.project.weight.device
        if self.kind == "hashed":
            ids, valid = self._hash_ids(texts)
            ids, valid = ids.to(device), valid.to(device)
            x = self.embed(ids) + self.position[:, : ids.shape[1]]
            x = self.backbone(x, src_key_padding_mask=~valid)
        elif self.freeze:
            x, valid = self._frozen_states(texts, device)
        else:
            batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens,
                                   return_tensors="pt").to(device)
            valid = batch["attention_mask"].bool()
            x = self.backbone(**batch).last_hidden_state
        return self.project(x), valid

    def _frozen_states(self, texts: list[str], device) -> tuple[torch.Tensor, torch.Tensor]:
        """MiniLM token states of ``texts``, padded, from a bounded per-text cache: a frozen MiniLM gives
        the same states for the same text, and running it every step dominated CPU training."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._states))
        if missing:
            batch = self.tokenizer(missing, padding=True, truncation=True, max_length=self.max_tokens,
                                   return_tensors="pt").to(device)
            # Always without dropout: a frozen model's states must be the ones inference will see.
            self.backbone.eval()
            with torch.no_grad():
                hidden = self.backbone(**batch).last_hidden_state
            for text, states, keep in zip(missing, hidden, batch["attention_mask"].bool()):
                self._states[text] = states[keep]
        for text in texts:
            self._states.move_to_end(text)
        rows = [self._states[t] for t in texts]
        while len(self._states) > TEXT_CACHE_ENTRIES:
            self._states.popitem(last=False)
        length = max(r.shape[0] for r in rows)
        x = torch.zeros(len(rows), length, MINILM_WIDTH, device=device)
        valid = torch.zeros(len(rows), length, dtype=torch.bool, device=device)
        for i, r in enumerate(rows):
            x[i, : r.shape[0]], valid[i, : r.shape[0]] = r, True
        return x, valid

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights a checkpoint must hold: everything but a frozen MiniLM (it ships with its package)."""
        state = self.state_dict()
        if self.kind == "minilm" and self.freeze:
            state = {k: v for k, v in state.items() if not k.startswith("backbone.")}
        return state
