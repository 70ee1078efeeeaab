"""CardioVLM network shapes, study-space geometry, the embedding cache and checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cardiovlm import vlm
from cardiovlm.tools.ingest.study_value import Study
from cardiovlm.vlm import CardioVLM, CardioVLMConfig, CheckpointError, ConfigError, VLMOutput

torch.set_num_threads(1)


def tiny(**overrides) -> CardioVLMConfig:
    return CardioVLMConfig.tiny(**{"input_shape": (16, 16, 16), **overrides})


def block_study(shape=(40, 28, 22), block=(slice(10, 20), slice(5, 12), slice(8, 14))) -> Study:
    """A study unlike the model grid: anisotropic spacing, an axis flipped and a rotation, an offset."""
    hu = np.full(shape, -100, dtype=np.int16)
    hu[block] = 700
    spacing = (0.6, 0.8, 1.5)
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = (-30.0, 12.5, 140.0)
    return Study(hu=hu, spacing=spacing, affine=affine)


@pytest.mark.parametrize("input_shape,blocks_down,tokens", [((16, 16, 16), (1, 1, 1), 64),
                                                             ((32, 16, 24), (1, 1), 16 * 8 * 12)])
def test_forward_shapes(input_shape, blocks_down, tokens):
    config = CardioVLMConfig.tiny(input_shape=input_shape, blocks_down=blocks_down)
    model = CardioVLM(config)
    image = torch.rand(3, 1, *input_shape)
    image_tokens, features = model.encode_image(image)
    assert image_tokens.shape == (3, tokens, config.width)
    assert features.shape == (3, config.feature_channels, *input_shape)
    out = model(image, ["segment the aorta", "is there a stent in the LAD?", "which artery is calcified?"],
                [[], [], ["left main", "right coronary artery", "circumflex"]])
    assert out.mask_logits.shape == (3, 1, *input_shape)
    assert out.landmark.shape == (3, 3) and bool(((out.landmark >= 0) & (out.landmark <= 1)).all())
    assert out.answer_logits.shape == (3, 3)
    assert out.choice_logits.shape == (3, 3)
    assert torch.isinf(out.choice_logits[0]).all() and torch.isfinite(out.choice_logits[2]).all()
    assert out.value.shape == (3,)


def test_bad_configs_and_inputs_are_refused_with_the_field_named():
    with pytest.raises(ConfigError, match="divisible by 4"):
        CardioVLMConfig.tiny(input_shape=(18, 16, 16))
    with pytest.raises(ConfigError, match="fusion_heads"):
        CardioVLMConfig.tiny(width=30, fusion_heads=4)
    with pytest.raises(ConfigError, match="unknown model config field"):
        CardioVLMConfig.from_dict({"widht": 64})
    model = CardioVLM(tiny())
    with pytest.raises(ValueError, match="differs from the model input shape"):
        model(torch.rand(1, 1, 8, 8, 8), ["segment the aorta"])
    with pytest.raises(ValueError, match="instruction is empty"):
        model.run(block_study(), "  ")


@pytest.mark.parametrize("modality,calibrated", [("MR", False), ("PT", False), ("CT", False)])
def test_run_refuses_a_study_that_is_not_ct_in_hu(modality, calibrated):
    """Every use of the model, not only the assistant's tools, refuses an image that is not CT in HU."""
    import dataclasses

    from cardiovlm.vlm.input_check import NotCTError

    model = CardioVLM(tiny())
    study = dataclasses.replace(block_study(), modality=modality, hu_calibrated=calibrated)
    with pytest.raises(NotCTError, match="not CT" if modality != "CT" else "not Hounsfield units") as refused:
        model.run(study, "segment the aorta")
    assert refused.value.code == "not_ct" and "no mask or answer" in str(refused.value)
    assert model.run(block_study(), "segment the aorta").mask.shape == block_study().shape  # CT in HU: answered


class _IntensityModel(CardioVLM):
    """A CardioVLM whose 'features' are the preprocessed image itself and whose mask is 'bright voxels':
    isolates the preprocessing and the return to study space from learning."""

    def encode_image(self, image):
        return torch.zeros(image.shape[0], 64, self.config.width), image

    def decode(self, tokens, features, instructions, choices=None, image_index=None):
        bright = features[:, 0] > 0.5
        weights = bright.flatten(1).float()
        landmark = (weights @ self.voxel_fractions) / weights.sum(1, keepdim=True)
        return VLMOutput(mask_logits=(features - 0.5) * 40, landmark_logits=weights, landmark=landmark,
                         landmark_spread=torch.zeros(len(instructions)),
                         answer_logits=torch.tensor([[2.0, 0.0, 0.0]]), choice_logits=None, value=torch.zeros(1))


def test_mask_and_landmark_land_in_study_space():
    study = block_study()
    # A 40 mm cube on 32 voxels: 1.25 mm model voxels around the bright block (the blood-pool stand-in).
    result = _IntensityModel(tiny(input_shape=(32, 32, 32), roi_mm=40.0)).run(study, "segment the bright block")
    assert result.mask.shape == study.shape
    truth = study.hu > 300
    dice = 2 * (result.mask & truth).sum() / (result.mask.sum() + truth.sum())
    assert dice > 0.9
    centre_index = np.array([(10 + 19) / 2, (5 + 11) / 2, (8 + 13) / 2])
    expected_mm = study.index_to_mm(centre_index)[0]
    # Within one study voxel's diagonal (1.8 mm) of the block centre, in patient LPS mm.
    assert np.linalg.norm(np.array(result.landmark_mm) - expected_mm) < 1.8
    assert result.answer == "yes"


def test_image_encoder_runs_once_for_two_questions_on_one_study(monkeypatch):
    model = CardioVLM(tiny(cache_entries=1))
    calls = []
    forward = model.image_encoder.forward
    monkeypatch.setattr(model.image_encoder, "forward", lambda image: calls.append(1) or forward(image))
    study = block_study()
    first = model.run(study, "segment the left ventricle")
    model.run(study, "is there a calcified plaque in the LAD?")
    assert len(calls) == 1
    other = block_study(block=(slice(0, 5), slice(0, 5), slice(0, 5)))
    model.run(other, "segment the left ventricle")
    assert len(calls) == 2
    again = model.run(study, "segment the left ventricle")  # evicted: cache holds one study
    assert len(calls) == 3
    np.testing.assert_array_equal(first.mask, again.mask)


def test_cached_embedding_is_a_plain_tensor():
    # MONAI's MetaTensor hook on every op made each cached instruction several times slower.
    model = CardioVLM(tiny())
    tokens, features, _ = model.embed_study(block_study())
    assert type(tokens) is torch.Tensor and type(features) is torch.Tensor


class _FixedAnswerModel(CardioVLM):
    """The tiny model with its answer and choice logits set: isolates how ``run`` turns them into an answer."""

    answer_logits = torch.tensor([[0.0, 0.0, 0.0]])
    choice_logits = torch.tensor([[0.0, 0.0, 0.0]])

    def decode(self, tokens, features, instructions, choices=None, image_index=None):
        import dataclasses

        out = super().decode(tokens, features, instructions, choices, image_index)
        return dataclasses.replace(out, answer_logits=self.answer_logits,
                                   choice_logits=self.choice_logits if choices else out.choice_logits)


def test_multiple_choice_answers_the_likeliest_option_unless_the_answer_head_says_absent():
    model = _FixedAnswerModel(tiny())
    options = ["left main", "left anterior descending artery", "right coronary artery"]
    model.choice_logits = torch.tensor([[0.0, 2.0, 1.0]])
    result = model.run(block_study(), "which artery has the calcification?", choices=options)
    expected = torch.tensor([0.0, 2.0, 1.0]).softmax(-1).tolist()
    assert result.answer == "left anterior descending artery"
    assert result.answer_confidence == pytest.approx(expected[1], abs=1e-6)
    assert result.choice_probabilities == pytest.approx(dict(zip(options, expected)), abs=1e-6)
    # Another study: the likeliest option is the answer, whichever position it has.
    model.choice_logits = torch.tensor([[3.0, 0.0, 1.0]])
    other = block_study(block=(slice(0, 5), slice(0, 5), slice(0, 5)))
    assert model.run(other, "which artery has the calcification?", choices=options).answer == "left main"
    # The [ANS] head above 0.5 on "not present" overrides the options: the thing asked about is absent.
    model.answer_logits = torch.tensor([[0.0, 0.0, 3.0]])
    absent = model.run(other, "which artery has the stent?", choices=options)
    assert absent.answer == "not present" and absent.answer_confidence > 0.5
    # Without options the [ANS] head answers on its own.
    model.answer_logits = torch.tensor([[0.0, 2.0, 0.0]])
    assert model.run(other, "is there a stent?").answer == "no"
    with pytest.raises(ValueError, match="choices"):
        model.run(block_study(), "which artery?", choices=[])


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(3)
    model = CardioVLM(tiny()).eval()
    model.save(tmp_path / "ckpt")
    loaded = vlm.load(tmp_path / "ckpt", device="cpu")
    assert loaded.config == model.config
    study = block_study()
    for instruction, choices in (("segment the aorta", None), ("which vessel?", ["LAD", "RCA"])):
        a, b = model.run(study, instruction, choices), loaded.run(study, instruction, choices)
        np.testing.assert_array_equal(a.mask, b.mask)
        assert a.answer_probabilities == b.answer_probabilities
        assert a.choice_probabilities == b.choice_probabilities
        assert a.landmark_mm == b.landmark_mm


def test_minilm_checkpoint_leaves_out_the_frozen_text_model(tmp_path):
    model = CardioVLM(tiny(text_encoder="minilm")).eval()
    model.save(tmp_path / "ckpt")
    size = (tmp_path / "ckpt" / "model.safetensors").stat().st_size
    assert size < 5_000_000  # MiniLM alone is ~90 MB; it is loaded from its package instead
    loaded = vlm.load(tmp_path / "ckpt", device="cpu")
    image = torch.rand(1, 1, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(image, ["segment the aorta"]).answer_logits,
                                   loaded(image, ["segment the aorta"]).answer_logits, rtol=0, atol=0)


def test_frozen_minilm_states_are_the_same_in_training_and_inference():
    # They are cached per text; computed with dropout in training they would differ from inference's.
    encoder = CardioVLM(tiny(text_encoder="minilm")).text_encoder.train()
    with torch.no_grad():
        trained, _ = encoder(["segment the aorta", "is there a stent?"])
        encoder._states.clear()
        encoder.eval()
        inferred, _ = encoder(["segment the aorta", "is there a stent?"])
    torch.testing.assert_close(trained, inferred, rtol=0, atol=1e-6)


def test_missing_or_corrupt_checkpoint_gives_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'nowhere'} does not exist"):
        vlm.load(tmp_path / "nowhere")
    folder = tmp_path / "ckpt"
    CardioVLM(tiny()).save(folder)
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors is not a readable safetensors file"):
        vlm.load(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        vlm.load(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        vlm.load(folder)
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match="has no config.json"):
        vlm.load(folder)


def test_weights_that_do_not_fit_the_config_are_named(tmp_path):
    folder = tmp_path / "ckpt"
    CardioVLM(tiny()).save(folder)
    config = json.loads((folder / "config.json").read_text())
    config["model"]["width"] = 64
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="does not match its config.json .*wrong shape"):
        vlm.load(folder)
