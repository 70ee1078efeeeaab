"""The curriculum record: one instruction with its target, study and provenance.

Written by the curriculum builder (JSONL, one record per line, with a header record giving the
curriculum version, :mod:`cardiovlm.training.curriculum.jsonl`) and read by training and evaluation. Stages go
from simple to hard: 1 anatomy -> descriptors, 2 anatomy -> anatomy, 3 anatomy -> findings.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

CURRICULUM_VERSION = "1"

Task = Literal["segment", "landmark", "yes_no", "choice", "measure"]


class MaskTarget(BaseModel):
    """Target mask = voxels whose label is in ``label_ids``, optionally only those within
    ``near_mm`` of the lumen of ``near_segments`` (e.g. the calcium of the LAD only)."""

    label_ids: list[int]
    near_segments: list[str] = Field(default_factory=list, description="SCCT segment codes")
    near_mm: float = 2.5


class Target(BaseModel):
    mask: MaskTarget | None = None
    landmark: str | None = Field(None, description="landmark name from landmarks.json")
    answer: str | None = Field(None, description="'yes', 'no', 'not present', or the right choice text")
    choices: list[str] = Field(default_factory=list, description="options of a multiple-choice question")
    value: float | None = None
    unit: str | None = None


class Provenance(BaseModel):
    source: Literal["report", "ground_truth", "measurement", "anatomy"] = Field(
        description="where the target came from: a report span, phantom ground truth, a tool measurement "
        "on ground-truth masks, or the anatomy registry")
    report_span: tuple[int, int] | None = Field(None, description="character span in report.txt")
    text: str | None = Field(None, description="the report text of that span, or the tool used")


class InstructionRecord(BaseModel):
    id: str
    study_id: str = Field(description="case id (folder name under the data root)")
    stage: Literal[1, 2, 3]
    task: Task
    intent: str = Field(description="template id the instruction was generated from")
    instruction: str
    target: Target
    provenance: Provenance
    phrasing_id: str = Field(description="which paraphrase of the intent was used")
    held_out_phrasing: bool = Field(False, description="phrasing kept out of training, for evaluation")
    negative: bool = Field(False, description="asks for something absent; target says 'not present'")
