"""CardioVLM: image tokens and instruction tokens concatenated, fused by a transformer, decoded by
learned [SEG], [LMK] and [ANS] queries into a mask, a landmark and an answer.

One forward pass serves every kind of instruction: the [SEG] query dotted with the voxel features gives
the mask, the [LMK] query a heatmap whose soft-argmax is the landmark, the [ANS] query the yes / no /
not-present answer, so a question and the mask that backs it come from the same fused state."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cardiovlm.tools.core.anatomy import label_table
from cardiovlm.vlm.checkpoint_format import save_checkpoint
from cardiovlm.vlm.config import ANSWER_CLASSES, CardioVLMConfig
from cardiovlm.vlm.image_encoder import ImageEncoder
from cardiovlm.vlm.input_check import require_ct
from cardiovlm.vlm.result import VLMResult, study_fingerprint
from cardiovlm.vlm.text_encoder import InstructionEncoder
from cardiovlm.vlm.transforms import HeartRoi, RoiGrid, fraction_to_index

NUM_QUERIES = 3  # [SEG], [LMK], [ANS]
# Classes of the dense anatomy head: background then the registry labels the shipped checkpoint was trained
# on (ids 0-43), in id order; thorax labels added later (44+) count as unknown (-100) until a retrain.
ANATOMY_LABEL_IDS: tuple[int, ...] = tuple(i for i in sorted(label_table()) if i <= 43)


@dataclass
class VLMOutput:
    """Raw network outputs for a batch of B (image, instruction) pairs on the model grid (I, J, K)."""

    mask_logits: torch.Tensor  # (B, 1, I, J, K)
    landmark_logits: torch.Tensor  # (B, I*J*K) heatmap logits, row-major
    landmark: torch.Tensor  # (B, 3) soft-argmax position as fractions of the model grid (the ROI cube), in [0, 1]
    landmark_spread: torch.Tensor  # (B,) std of the heatmap in fractions (0 sharp, 0.5 uniform)
    answer_logits: torch.Tensor  # (B, 3) over ANSWER_CLASSES: yes, no, not present
    choice_logits: torch.Tensor | None  # (B, C) one score per option, -inf on padding options
    value: torch.Tensor  # (B,) log1p of a measured quantity (for "measure" instructions)
    anatomy_logits: torch.Tensor | None = None  # (M, L, I, J, K) per-image scores of the L registry labels
    #                                              (ANATOMY_LABEL_IDS); only with config.anatomy_head


class CardioVLM(nn.Module):
    """The anatomically aware vision-language model.

    Image (B, 1, I, J, K) -> SegResNet -> tokens (B, N, W) and voxel features (B, C, I, J, K).
    Instruction -> MiniLM (or hashed) -> tokens (B, T, W).
    [queries (3) + pooled instruction; image tokens + position (N); instruction tokens (T)] -> transformer.
    [SEG]·features -> mask logits; [LMK]·features -> heatmap -> soft-argmax landmark;
    [ANS] -> yes / no / not present, and [ANS]·option embeddings -> multiple-choice scores.

    Examples::

        >>> model = CardioVLM(CardioVLMConfig.tiny())
        >>> out = model(torch.rand(2, 1, 32, 32, 32), ["segment the aorta", "is there a stent?"])
        >>> tuple(out.mask_logits.shape), tuple(out.answer_logits.shape)
        ((2, 1, 32, 32, 32), (2, 3))
    """

    def __init__(self, config: CardioVLMConfig):
        super().__init__()
        self.config = config
        width = config.width
        self.image_encoder = ImageEncoder(init_filters=config.init_filters, blocks_down=config.blocks_down,
                                          feature_channels=config.feature_channels, width=width)
        self.text_encoder = InstructionEncoder(kind=config.text_encoder, width=width,
                                               max_tokens=config.max_text_tokens,
                                               vocab_size=config.text_vocab_size, layers=config.text_layers,
                                               freeze=config.freeze_text)
        n_tokens = math.prod(config.token_grid)
        self.queries = nn.Parameter(torch.randn(1, NUM_QUERIES, width) * 0.02)
        self.image_position = nn.Parameter(torch.randn(1, n_tokens, width) * 0.02)
        self.text_type = nn.Parameter(torch.zeros(1, 1, width))
        self.query_from_text = nn.Linear(width, NUM_QUERIES * width)
        layer = nn.TransformerEncoderLayer(width, nhead=config.fusion_heads, dim_feedforward=4 * width,
                                           dropout=config.dropout, batch_first=True, norm_first=True)
        self.fusion = nn.TransformerEncoder(layer, num_layers=config.fusion_layers, enable_nested_tensor=False)
        self.fusion_norm = nn.LayerNorm(width)
        c = config.feature_channels
        self.seg_head = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, c + 1))
        self.landmark_head = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, c + 1))
        self.answer_head = nn.Linear(width, len(ANSWER_CLASSES))
        self.choice_query = nn.Linear(width, width)
        self.choice_key = nn.Linear(width, width)
        self.value_head = nn.Linear(width, 1)
        # Dense supervision with the whole label map makes the voxel features tell every structure apart,
        # so the [SEG] query only has to pick one; per-instruction masks alone teach this slowly.
        self.anatomy_head = nn.Conv3d(c, len(ANATOMY_LABEL_IDS), 1) if config.anatomy_head else None
        # Fraction coordinates of every model voxel centre, for the soft-argmax.
        grids = torch.meshgrid(*[(torch.arange(n) + 0.5) / n for n in config.input_shape], indexing="ij")
        self.register_buffer("voxel_fractions", torch.stack([g.flatten() for g in grids], 1), persistent=False)
        self._cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor, RoiGrid]] = OrderedDict()

    # --- network -------------------------------------------------------------------------------
    def encode_image(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, I, J, K) -> image tokens (B, N, W), voxel features (B, C, I, J, K)."""
        if tuple(image.shape[2:]) != self.config.input_shape:
            raise ValueError(f"image grid {tuple(image.shape[2:])} differs from the model input shape "
                             f"{self.config.input_shape}; preprocess with cardiovlm.vlm.transforms.HeartRoi")
        return self.image_encoder(image)

    def _pool_texts(self, texts: list[str]) -> torch.Tensor:
        """Texts -> (len(texts), W) mean of their token embeddings."""
        tokens, valid = self.text_encoder(texts)
        weights = valid.unsqueeze(-1).to(tokens.dtype)
        return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    def decode(self, tokens: torch.Tensor, features: torch.Tensor, instructions: list[str],
               choices: list[list[str]] | None = None, image_index: torch.Tensor | None = None) -> VLMOutput:
        """Fuse cached image embeddings with instructions and run the heads.

        Args:
            tokens: (M, N, W) image tokens; features: (M, C, I, J, K) voxel features.
            instructions: B instruction texts.
            choices: optional B lists of option texts (may differ in length; empty list = none).
            image_index: (B,) which of the M images each instruction is about; default one image per
                instruction (M = B). Several instructions per image share one encoder pass (training).
        """
        if image_index is not None:
            tokens, features = tokens[image_index], features[image_index]
        batch = tokens.shape[0]
        if len(instructions) != batch:
            raise ValueError(f"{len(instructions)} instructions for a batch of {batch} images")
        text, valid = self.text_encoder(instructions)
        weights = valid.unsqueeze(-1).to(text.dtype)
        pooled = (text * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        # Queries start from the instruction itself (SAT-style text queries), so what is asked for
        # steers the heads directly; the transformer then adds image context.
        queries = self.queries + self.query_from_text(pooled).view(batch, NUM_QUERIES, -1)
        sequence = torch.cat([queries.to(tokens.dtype),
                              tokens + self.image_position, text + self.text_type], dim=1)
        keep = torch.cat([torch.ones(batch, NUM_QUERIES + tokens.shape[1], dtype=torch.bool,
                                     device=valid.device), valid], dim=1)
        fused = self.fusion_norm(self.fusion(sequence, src_key_padding_mask=~keep))
        q_seg, q_lmk, q_ans = fused[:, 0], fused[:, 1], fused[:, 2]

        scale = features.shape[1] ** -0.5
        seg = self.seg_head(q_seg)
        mask_logits = (torch.einsum("bc,bcijk->bijk", seg[:, :-1], features) * scale
                       + seg[:, -1, None, None, None]).unsqueeze(1)
        lmk = self.landmark_head(q_lmk)
        heat = torch.einsum("bc,bcn->bn", lmk[:, :-1], features.flatten(2)) * scale + lmk[:, -1:]
        prob = heat.float().softmax(-1)
        landmark = prob @ self.voxel_fractions
        second = prob @ self.voxel_fractions.square()
        spread = (second - landmark.square()).clamp(min=0).sum(-1).sqrt()

        choice_logits = None
        if choices is not None and any(choices):
            if len(choices) != batch:
                raise ValueError(f"{len(choices)} choice lists for a batch of {batch} instructions")
            most = max(len(c) for c in choices)
            flat = [text for options in choices for text in options]
            keys = self.choice_key(self._pool_texts(flat))
            query = self.choice_query(q_ans)
            choice_logits = torch.full((batch, most), float("-inf"), device=q_ans.device)
            start = 0
            for row, options in enumerate(choices):
                n = len(options)
                if n:
                    choice_logits[row, :n] = (keys[start:start + n] @ query[row]).float() / math.sqrt(query.shape[-1])
                start += n
        return VLMOutput(mask_logits=mask_logits, landmark_logits=heat, landmark=landmark, landmark_spread=spread,
                         answer_logits=self.answer_head(q_ans), choice_logits=choice_logits,
                         value=self.value_head(q_ans).squeeze(-1))

    def forward(self, image: torch.Tensor, instructions: list[str], choices: list[list[str]] | None = None,
                image_index: torch.Tensor | None = None) -> VLMOutput:
        """(M, 1, I, J, K) preprocessed images with B instructions -> :class:`VLMOutput` (see :meth:`decode`)."""
        tokens, features = self.encode_image(image)
        out = self.decode(tokens, features, instructions, choices, image_index)
        if self.anatomy_head is not None:
            out.anatomy_logits = self.anatomy_head(features)
        return out

    # --- inference on a study ------------------------------------------------------------------
    def embed_study(self, study) -> tuple[torch.Tensor, torch.Tensor, RoiGrid]:
        """Image tokens, features and the heart-centred ROI of a study, from the LRU cache when seen."""
        key = study_fingerprint(study)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        device = self.queries.device
        image, roi = HeartRoi(self.config)(study.hu, study.spacing)
        with torch.no_grad():
            embedding = (*self.encode_image(image.to(device=device, dtype=torch.float32)[None]), roi)
        if self.config.cache_entries:
            self._cache[key] = embedding
            while len(self._cache) > self.config.cache_entries:
                self._cache.popitem(last=False)
        return embedding

    def clear_cache(self) -> None:
        self._cache.clear()

    @torch.no_grad()
    def run(self, study, instruction: str, choices: list[str] | None = None) -> VLMResult:
        """Answer one instruction about a study.

        Args:
            study: a ``cardiovlm.tools.ingest.study.Study`` (any shape, spacing and affine).
            instruction: free text, e.g. "segment the left anterior descending artery".
            choices: options of a multiple-choice question, if it is one.

        Returns:
            :class:`VLMResult` with the mask on the study grid (background outside the heart-centred
            cube the model sees, ``cardiovlm.vlm.transforms``), the landmark in patient LPS mm,
            the answer and a confidence for each.

        Raises:
            cardiovlm.vlm.input_check.NotCTError: the study is not CT in Hounsfield units (the rest of
                ``cardiovlm.vlm.input_check.check_input`` is for callers facing users: the assistant's VLM tools).
            ValueError: an empty instruction or empty choices.
        """
        require_ct(study)
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError("the instruction is empty; ask something such as 'segment the aorta'")
        if choices is not None and (not choices or not all(isinstance(c, str) and c.strip() for c in choices)):
            raise ValueError("choices must be a non-empty list of non-empty option texts")
        was_training = self.training
        self.eval()
        try:
            tokens, features, roi = self.embed_study(study)
            out = self.decode(tokens, features, [instruction], [list(choices)] if choices else None)
        finally:
            self.train(was_training)
        return self._result(study, roi, instruction, choices, out)

    def _result(self, study, roi: RoiGrid, instruction: str, choices: list[str] | None,
                out: VLMOutput) -> VLMResult:
        threshold = self.config.mask_threshold
        # Background outside the heart-centred cube: the model never saw it.
        prob = torch.sigmoid(roi.logits_to_study(out.mask_logits[0, 0]))
        mask = prob > threshold
        mask_confidence = float(prob[mask].mean()) if mask.any() else float(1.0 - prob.max())
        model_index = fraction_to_index(out.landmark[0].double().cpu().numpy(), self.config.input_shape)
        landmark_mm = study.index_to_mm(roi.model_to_study(model_index[None]))[0]
        landmark_confidence = float(max(0.0, 1.0 - float(out.landmark_spread[0]) / 0.5))
        answer_prob = out.answer_logits[0].float().softmax(-1).cpu().numpy()
        choice_probabilities: dict[str, float] | None = None
        if choices and out.choice_logits is not None:  # decode scores the options whenever there are any
            choice_prob = out.choice_logits[0].softmax(-1).cpu().numpy()
            choice_probabilities = {c: float(p) for c, p in zip(choices, choice_prob)}
            best = int(choice_prob.argmax())
            # The [ANS] head can still say the asked-about thing is absent.
            if answer_prob[2] > 0.5:
                answer, answer_confidence = ANSWER_CLASSES[2], float(answer_prob[2])
            else:
                answer, answer_confidence = choices[best], float(choice_prob[best])
        else:
            best = int(answer_prob.argmax())
            answer, answer_confidence = ANSWER_CLASSES[best], float(answer_prob[best])
        x, y, z = (float(v) for v in landmark_mm)
        return VLMResult(
            instruction=instruction, mask=mask.cpu().numpy(), mask_confidence=mask_confidence,
            landmark_mm=(x, y, z), landmark_confidence=landmark_confidence,
            answer=answer, answer_confidence=answer_confidence,
            answer_probabilities={name: float(p) for name, p in zip(ANSWER_CLASSES, answer_prob)},
            choice_probabilities=choice_probabilities,
            value=float(torch.expm1(out.value[0].float())),
        )

    # --- persistence ---------------------------------------------------------------------------
    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights a checkpoint holds (a frozen MiniLM is left out: it ships with its package)."""
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("text_encoder.")}
        state.update({f"text_encoder.{k}": v for k, v in self.text_encoder.trainable_state_dict().items()})
        return state

    def save(self, checkpoint_dir: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``checkpoint_dir``."""
        return save_checkpoint(self, checkpoint_dir)
