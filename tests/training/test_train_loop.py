"""The curriculum training loop: a tiny model learns a trivial curriculum on the CPU, runs resume,
the ``cardiovlm train`` CLI reads case folders, and two gloo processes under torchrun stay in sync."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from cardiovlm import vlm
from cardiovlm.training.train import stage_plan, train
from cardiovlm.training.train_config import TrainConfig, TrainError
from cardiovlm.vlm import CardioVLM, CardioVLMConfig

torch.set_num_threads(1)

SIZE = 16


def shapes_samples(n: int, seed: int) -> list[dict]:
    """Model-grid images with a bright cube (in 2 of 3 images) and a dark sphere, and instructions:
    stage 1 "segment the bright cube" / "segment the dark sphere", stage 2 cube landmark and presence."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(SIZE)] * 3, indexing="ij"), -1)
    samples = []
    for i in range(n):
        image = 0.3 + 0.03 * rng.standard_normal((SIZE,) * 3)
        c = rng.integers(4, SIZE - 4, 3)
        cube = np.all(np.abs(grid - c) <= 2, -1)
        sphere = ((grid - rng.integers(4, SIZE - 4, 3)) ** 2).sum(-1) <= 6
        sphere &= ~cube
        has_cube = i % 3 != 0
        if has_cube:
            image[cube] = 0.9
        image[sphere] = 0.02
        base = {"image": torch.tensor(image, dtype=torch.float32)[None], "landmark": None, "choices": [],
                "choice": -1, "value": float("nan"), "mask": None, "answer": -1}
        samples.append({**base, "instruction": "segment the dark sphere", "stage": 1,
                        "mask": torch.tensor(sphere, dtype=torch.float32)[None]})
        if has_cube:
            samples.append({**base, "instruction": "segment the bright cube", "stage": 1,
                            "mask": torch.tensor(cube, dtype=torch.float32)[None]})
            samples.append({**base, "instruction": "locate the centre of the cube", "stage": 2,
                            "landmark": torch.tensor((c + 0.5) / SIZE, dtype=torch.float32)})
        samples.append({**base, "instruction": "is there a bright cube?", "stage": 2, "answer": 0 if has_cube else 1})
    return samples


def tiny_config(**overrides) -> CardioVLMConfig:
    return CardioVLMConfig.tiny(input_shape=(SIZE,) * 3, **overrides)


def dice(pred: torch.Tensor, target: torch.Tensor) -> float:
    return float(2 * (pred & target).sum() / (pred.sum() + target.sum()).clamp(min=1))


def test_stage_plan_follows_stages_in_order_then_mixed():
    plan = stage_plan([3, 1, 1, 2], TrainConfig(steps_per_stage=5, mixed_steps=7))
    assert plan == [(1, 5), (2, 10), (3, 15), (None, 22)]


@pytest.mark.slow
def test_tiny_model_learns_a_trivial_curriculum(tmp_path):
    torch.manual_seed(0)
    config = TrainConfig(steps_per_stage=100, mixed_steps=60, batch_size=4, lr=3e-3, warmup_steps=5,
                         log_every=10, checkpoint_every=1000)
    # The frozen MiniLM (the production instruction encoder) tells "dark sphere" from "bright cube" at
    # once; the hashed test encoder needs a few hundred steps before masks follow the instruction.
    model_config = CardioVLMConfig.tiny(input_shape=(SIZE,) * 3, text_encoder="minilm")
    result = train(shapes_samples(12, seed=0), tmp_path / "run", model_config=model_config, train_config=config)
    assert result.steps == 260
    mask_losses = [row["mask_loss"] for row in result.history if row["stage"] in (1, "mixed")]
    assert mask_losses[-1] < 0.7 * mask_losses[0]
    # Held-out images: the instruction decides which object is segmented, and presence is answered.
    model = result.model
    held_out = shapes_samples(9, seed=99)
    scores = {"cube": [], "sphere": [], "wrong": []}
    correct = []
    with torch.no_grad():
        for sample in held_out:
            out = model(sample["image"][None], [sample["instruction"]])
            if sample["mask"] is not None:
                pred, target = out.mask_logits[0] > 0, sample["mask"] > 0.5
                scores["cube" if "cube" in sample["instruction"] else "sphere"].append(dice(pred, target))
            if sample["answer"] >= 0:
                correct.append(int(out.answer_logits[0].argmax()) == sample["answer"])
        for sample in held_out:
            if sample["instruction"] == "segment the bright cube":
                sphere_mask = next(s["mask"] for s in held_out if s["image"] is sample["image"]
                                   and "sphere" in s["instruction"])
                pred = model(sample["image"][None], ["segment the dark sphere"]).mask_logits[0] > 0
                scores["wrong"].append(dice(pred, sample["mask"] > 0.5) if sphere_mask.sum() else 0.0)
    assert np.mean(scores["cube"]) > 0.7, scores
    assert np.mean(scores["sphere"]) > 0.6, scores
    assert np.mean(scores["wrong"]) < 0.2, scores  # "sphere" does not give the cube
    assert np.mean(correct) >= 0.75
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert log[0].startswith("step,stage,loss") and len(log) == 1 + len(result.history)


def test_resume_continues_from_the_saved_step(tmp_path, caplog):
    samples = shapes_samples(3, seed=1)
    config = TrainConfig(steps_per_stage=2, mixed_steps=2, batch_size=2, log_every=1, checkpoint_every=2)
    first = train(samples, tmp_path / "run", model_config=tiny_config(), train_config=config)
    assert first.steps == 6
    with pytest.raises(TrainError, match="already holds a training run"):
        train(samples, tmp_path / "run", model_config=tiny_config(), train_config=config)
    longer = TrainConfig(steps_per_stage=2, mixed_steps=5, batch_size=2, log_every=1, checkpoint_every=2)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        resumed = train(samples, tmp_path / "run", model_config=tiny_config(), train_config=longer, resume=True)
    assert resumed.steps == 9
    # What an engineer watching the run looks for: the checkpoint read, where it resumed, each step's
    # loss, each checkpoint written.
    logged = caplog.text
    assert f"loaded VLM checkpoint {(tmp_path / 'run' / 'checkpoint').resolve()} (format version 1" in logged
    assert f"resuming the run in {tmp_path / 'run'} at step 6 of 9" in logged
    assert re.search(r"step 7/9 \(stage mixed\): loss \d+\.\d{4}", logged), logged
    assert logged.count("checkpoint saved at step") == 2 and "checkpoint saved at step 9" in logged
    assert [row["step"] for row in resumed.history] == [7, 8, 9]
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in log[1:]] == [str(n) for n in range(1, 10)]
    # The resumed run starts from the saved weights, not from a fresh initialisation.
    fresh = CardioVLM(tiny_config()).state_dict()
    saved = vlm.load(tmp_path / "run" / "checkpoint", device="cpu").state_dict()
    assert not torch.equal(saved["answer_head.weight"], fresh["answer_head.weight"])
    with pytest.raises(TrainError, match="nothing to resume"):
        train(samples, tmp_path / "other", model_config=tiny_config(), train_config=config, resume=True)


def _write_case(folder: Path) -> None:
    """A minimal case folder in the cardiovlm.tools.core.case_format layout: CCTA, label map, landmarks."""
    import nibabel as nib

    from cardiovlm.tools.core import case_format as cf
    from cardiovlm.tools.core.anatomy import STRUCTURES_BY_NAME

    folder.mkdir(parents=True)
    hu = np.full((24, 20, 12), -50, dtype=np.int16)
    labels = np.zeros(hu.shape, dtype=np.uint8)
    hu[6:14, 6:12, 3:9] = 300
    labels[6:14, 6:12, 3:9] = STRUCTURES_BY_NAME["aorta"].label_id
    affine_lps = np.diag([0.8, 0.8, 2.0, 1.0])
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps
    nib.save(nib.Nifti1Image(hu, ras), str(folder / cf.CCTA_NIFTI))
    nib.save(nib.Nifti1Image(labels, ras), str(folder / cf.LABELS_NIFTI))
    (folder / cf.LANDMARKS_FILE).write_text(json.dumps({"aortic_annulus_centre": [8.0, 7.2, 12.0]}))


def _record(i: int, task: str, instruction: str, target: dict, stage: int = 1) -> dict:
    return {"id": f"r{i}", "study_id": "case_000", "stage": stage, "task": task, "intent": "test",
            "instruction": instruction, "target": target, "provenance": {"source": "ground_truth"},
            "phrasing_id": "p0"}


def _write_curriculum(path: Path, records: list[dict]) -> None:
    """A curriculum file as the builder writes it: versioned header line, then the records."""
    from cardiovlm.training.curriculum.jsonl import write_curriculum
    from cardiovlm.training.curriculum.schema import InstructionRecord

    write_curriculum([InstructionRecord.model_validate(r) for r in records], path, llm="test", seed=0)


def test_cli_trains_from_a_curriculum_file(tmp_path):
    from cardiovlm.tools.core.anatomy import STRUCTURES_BY_NAME
    from cardiovlm.ui.cli import main

    _write_case(tmp_path / "data" / "case_000")
    aorta = STRUCTURES_BY_NAME["aorta"].label_id
    lines = [_record(0, "segment", "segment the aorta", {"mask": {"label_ids": [aorta]}}),
             _record(1, "yes_no", "is there a stent?", {"answer": "no"}, stage=3),
             _record(2, "landmark", "locate the aortic annulus", {"landmark": "aortic_annulus_centre"}, stage=2),
             _record(3, "choice", "which is the biggest vessel?",
                     {"answer": "aorta", "choices": ["aorta", "left main"]}, stage=2)]
    curriculum = tmp_path / "data" / "curriculum.jsonl"
    _write_curriculum(curriculum, lines)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model": {**tiny_config().to_dict()},
                                  "train": {"steps_per_stage": 1, "mixed_steps": 2, "log_every": 1}}))
    out = tmp_path / "out"
    assert main(["train", "--curriculum", str(curriculum), "--config", str(config), "--out", str(out)]) == 0
    assert len((out / "log.csv").read_text().splitlines()) == 1 + 5
    model = vlm.load(out / "checkpoint", device="cpu")
    assert model.config == tiny_config()

    config.write_text(json.dumps({"train": {"steps_per_stag": 1}}))
    assert main(["train", "--curriculum", str(curriculum), "--config", str(config), "--out", str(tmp_path / "o2")]) == 2


def test_cli_refuses_a_curriculum_of_another_version_before_training(tmp_path, capsys):
    # Training once read curricula with its own reader, which skipped header lines unchecked: a file
    # of another curriculum version trained silently. It now reads through the builder's one reader.
    from cardiovlm.ui.cli import main

    _write_case(tmp_path / "data" / "case_000")
    curriculum = tmp_path / "data" / "curriculum.jsonl"
    _write_curriculum(curriculum, [_record(0, "yes_no", "is there a stent?", {"answer": "no"}, stage=3)])
    curriculum.write_text(curriculum.read_text().replace('"curriculum_version": "1"', '"curriculum_version": "0"'))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model": tiny_config().to_dict(), "train": {"steps_per_stage": 1, "mixed_steps": 1}}))
    out = tmp_path / "out"
    assert main(["train", "--curriculum", str(curriculum), "--config", str(config), "--out", str(out)]) == 2
    assert "curriculum version 0" in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
def test_torchrun_two_cpu_processes_end_with_identical_weights(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, torch
        torch.set_num_threads(1)
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_train_loop import shapes_samples, tiny_config
        from cardiovlm.training.train import TrainConfig, train
        rank = int(os.environ["RANK"])
        samples = shapes_samples(3, seed=5)
        config = TrainConfig(steps_per_stage=2, mixed_steps=2, batch_size=2, log_every=2, checkpoint_every=100)
        result = train(samples, {str(tmp_path / "run")!r}, model_config=tiny_config(), train_config=config,
                       device="cpu")
        torch.save(result.model.state_dict(), os.path.join({str(tmp_path)!r}, f"rank{{rank}}.pt"))
    """))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path.cwd())}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--master_addr=127.0.0.1", f"--master_port={port}", str(script)],
                         env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    first, second = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    assert (tmp_path / "run" / "checkpoint" / "model.safetensors").is_file()


def test_balanced_draws_give_rare_target_kinds_as_many_draws_as_common_ones():
    from cardiovlm.training.train import _draw, balanced_weights

    kinds = ["segment:LAD"] * 90 + ["segment:chambers"] * 10
    config = TrainConfig(batch_size=2000)
    rng = np.random.default_rng(0)
    pool = np.arange(len(kinds))
    plain = _draw(rng, pool, None, config)
    balanced = _draw(rng, pool, None, config, balanced_weights(kinds))
    assert np.mean(plain >= 90) < 0.15  # unweighted: chambers are 10 % of the records
    assert 0.45 < np.mean(balanced >= 90) < 0.55  # balanced: half of the draws


def test_anatomy_classes_map_registry_ids_and_ignore_unknown_ones():
    from cardiovlm.training.samples import anatomy_classes
    from cardiovlm.vlm.model import ANATOMY_LABEL_IDS

    classes = anatomy_classes(np.array([[[0, 15, 25, 99]]]))
    assert classes.tolist() == [[[0, ANATOMY_LABEL_IDS.index(15), ANATOMY_LABEL_IDS.index(25), -100]]]


def test_anatomy_head_and_balanced_targets_train_from_case_folders(tmp_path):
    from cardiovlm.tools.core.anatomy import STRUCTURES_BY_NAME
    from cardiovlm.ui.cli import main

    _write_case(tmp_path / "data" / "case_000")
    aorta = STRUCTURES_BY_NAME["aorta"].label_id
    lines = [_record(0, "segment", "segment the aorta", {"mask": {"label_ids": [aorta]}}),
             _record(1, "yes_no", "is there a stent?", {"answer": "no"}, stage=3)]
    curriculum = tmp_path / "data" / "curriculum.jsonl"
    _write_curriculum(curriculum, lines)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model": tiny_config(anatomy_head=True).to_dict(),
                                  "train": {"steps_per_stage": 0, "mixed_steps": 30, "log_every": 1, "lr": 3e-3,
                                            "batch_size": 2, "images_per_step": 1, "balance_targets": True}}))
    out = tmp_path / "out"
    assert main(["train", "--curriculum", str(curriculum), "--config", str(config), "--out", str(out)]) == 0
    import csv

    rows = list(csv.DictReader((out / "log.csv").open()))
    anatomy = [float(r["anatomy_loss"]) for r in rows]
    assert anatomy[0] > 0 and np.mean(anatomy[-5:]) < 0.85 * np.mean(anatomy[:5])  # the label map is learned
    model = vlm.load(out / "checkpoint", device="cpu")
    assert model.config.anatomy_head and model.anatomy_head is not None


def test_init_from_copies_matching_weights_and_keeps_new_ones(tmp_path):
    from cardiovlm.training.run_folder import init_from

    torch.manual_seed(0)
    old = CardioVLM(tiny_config())
    old.save(tmp_path / "old")
    torch.manual_seed(1)
    grown = CardioVLM(tiny_config(anatomy_head=True))
    head_before = grown.anatomy_head.weight.clone()
    init_from(grown, tmp_path / "old")
    assert torch.equal(grown.answer_head.weight, old.answer_head.weight)
    assert torch.equal(grown.anatomy_head.weight, head_before)  # not in the old checkpoint: left as initialised
    from cardiovlm.vlm.checkpoint_format import CheckpointError

    with pytest.raises(CheckpointError, match="does not exist"):
        init_from(grown, tmp_path / "missing")
