"""Training samples from case folders: the model's own preprocessing, aligned targets, answers and values."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from curriculum_cases import write_case, write_images

from cardiovlm.tools.core.anatomy import STRUCTURES_BY_NAME
from cardiovlm.tools.core.case_format import iter_cases
from cardiovlm.tools.ingest.study import load_study
from cardiovlm.tools.segmentation.masks import mask_from_labels
from cardiovlm.training.curriculum.builder import build_curriculum
from cardiovlm.training.curriculum.jsonl import read_curriculum, write_curriculum
from cardiovlm.training.samples import CurriculumSamples
from cardiovlm.vlm.config import ANSWER_CLASSES, CardioVLMConfig
from cardiovlm.vlm.transforms import HeartRoi

LV = STRUCTURES_BY_NAME["lv_blood"].label_id
# A 26 mm cube on 32 voxels: about the 0.8 mm of the 32 x 32 x 24 test study, so one-voxel calcifications survive.
CONFIG = CardioVLMConfig.tiny(input_shape=(32, 32, 32), roi_mm=26.0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_images(write_case(root))
    path = root / "curriculum.jsonl"
    write_curriculum(build_curriculum(iter_cases(root), seed=1, measure=False), path, llm="default", seed=1)
    return root, CurriculumSamples(read_curriculum(path), root, CONFIG)


def _first(samples: CurriculumSamples, predicate) -> tuple:
    index = next(i for i, r in enumerate(samples.records) if predicate(r))
    return samples.records[index], samples[index]


def test_the_image_is_what_the_model_is_shown_at_inference(data):
    # A second dataset once windowed -300..900 HU and cropped its own way; the one kept must give the
    # model exactly what inference gives it: the study read by the tools, cut by the model's HeartRoi.
    root, samples = data
    record, sample = _first(samples, lambda r: r.stage == 1 and r.target.mask and r.target.mask.label_ids == [LV])
    study = load_study(root / record.study_id)
    expected, _ = HeartRoi(CONFIG)(study.hu, study.spacing)
    assert sample["image"].shape == (1, *CONFIG.input_shape) and sample["image"].dtype == torch.float32
    assert torch.equal(sample["image"], expected.float())
    assert 0 <= sample["image"].min() and sample["image"].max() <= 1
    assert sample["mask"].shape == sample["image"].shape and sample["mask"].sum() > 0
    assert isinstance(sample["instruction"], str) and sample["stage"] == 1


def test_near_segment_masks_keep_only_the_finding_on_that_segment(data):
    _, samples = data
    record, sample = _first(samples, lambda r: r.intent == "segment_finding" and r.target.mask
                            and r.target.mask.near_segments == ["pLAD"])
    case = samples._case(record.study_id)
    everywhere = mask_from_labels(case.labels, record.target.mask.label_ids, spacing=case.model_spacing)
    near = sample["mask"][0].numpy() > 0
    # the pLAD calcification is kept; the one far from the pLAD (also a calcified-plaque label) is not
    assert near.sum() > 0 and near.sum() < everywhere.sum() and not (near & ~everywhere).any()


def test_questions_and_negatives_have_empty_masks_and_their_answers(data):
    _, samples = data
    _, negative = _first(samples, lambda r: r.negative and r.task == "segment")
    assert negative["answer"] == ANSWER_CLASSES.index("not present") and negative["mask"].sum() == 0
    _, measure = _first(samples, lambda r: r.intent == "lesion_length")
    assert measure["value"] == 14.0 and measure["mask"] is None and measure["answer"] == -1
    _, landmark = _first(samples, lambda r: r.task == "landmark")
    assert landmark["landmark"].shape == (3,) and np.isfinite(landmark["landmark"].numpy()).all()
    assert landmark["mask"] is None
