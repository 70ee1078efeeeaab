"""The torch Dataset: instruction, windowed heart crop at the training shape, aligned targets."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from curriculum_cases import write_case, write_images  # noqa: E402

from tools.anatomy import STRUCTURES_BY_NAME  # noqa: E402
from tools.case_format import iter_cases  # noqa: E402
from training.curriculum.builder import build_curriculum, write_curriculum  # noqa: E402
from training.curriculum.dataset import CurriculumDataset, VolumeConfig  # noqa: E402

LV = STRUCTURES_BY_NAME["lv_blood"].label_id


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_images(write_case(root))
    path = root / "curriculum.jsonl"
    write_curriculum(build_curriculum(iter_cases(root), seed=1, measure=False), path, llm="default", seed=1)
    return root, path


def _first(ds, predicate):
    return next(ds[i] for i, r in enumerate(ds.records) if predicate(r))


def test_items_have_the_training_shape_and_window(data):
    root, path = data
    ds = CurriculumDataset(path, root, config=VolumeConfig(shape=(16, 16, 16)))
    item = _first(ds, lambda r: r.stage == 1 and r.target.mask and r.target.mask.label_ids == [LV])
    assert item["image"].shape == item["target"].shape == (1, 16, 16, 16)
    assert item["image"].dtype == torch.float32 and 0 <= item["image"].min() and item["image"].max() <= 1
    assert item["has_mask"] and item["target"].sum() > 0 and isinstance(item["instruction"], str)


def test_near_segment_masks_keep_only_the_finding_on_that_segment(data):
    root, path = data
    ds = CurriculumDataset(path, root, config=VolumeConfig(shape=(32, 32, 24), crop_margin_mm=0))
    record = next(r for r in ds.records if r.intent == "segment_finding" and r.target.mask
                  and r.target.mask.near_segments == ["pLAD"])
    mask = ds.target_mask(record, ds._volume(record.study_id))
    assert mask.sum() == 3 and not mask[30, 30, 22]


def test_questions_and_negatives_have_empty_targets_and_answers(data):
    root, path = data
    ds = CurriculumDataset(path, root, split="all", config=VolumeConfig(shape=(8, 8, 8)))
    negative = _first(ds, lambda r: r.negative and r.task == "segment")
    assert negative["answer"] == "not present" and not negative["has_mask"] and negative["target"].sum() == 0
    measure = _first(ds, lambda r: r.intent == "lesion_length")
    assert measure["value"] == 14.0 and measure["unit"] == "mm"
    landmark = _first(ds, lambda r: r.task == "landmark")
    assert landmark["has_mask"] and landmark["target"].sum() > 0


def test_held_out_split_and_augmentation(data):
    root, path = data
    train = CurriculumDataset(path, root, split="train", config=VolumeConfig(shape=(8, 8, 8)))
    every = CurriculumDataset(path, root, split="all", config=VolumeConfig(shape=(8, 8, 8)))
    assert not any(r.held_out_phrasing for r in train.records) and len(train) < len(every)
    aug = CurriculumDataset(path, root, split="all", config=VolumeConfig(shape=(8, 8, 8), augment=True), seed=2)
    assert np.isfinite(aug[0]["image"].numpy()).all()
    with pytest.raises(ValueError, match="split"):
        CurriculumDataset(path, root, split="test")
    with pytest.raises(ValueError, match="no train records"):
        CurriculumDataset(path, root, stages=(4,))
