"""The curriculum file: JSON lines, a versioned header line first, then one instruction record a line.

Written by the curriculum builder (``cardiovlm curriculum``) and read by training and evaluation
through the one reader here, with one set of rules:

- the header line ``{"header": {...}}`` comes first; a file without one (records written by hand)
  is read, but a header of another curriculum version is refused;
- every other non-blank line is an :class:`~cardiovlm.training.curriculum.schema.InstructionRecord`; any line
  that is neither (not JSON, not a record, a header out of place) is refused with its line number;
- records with a held-out phrasing are left out unless asked for, and a file left with no record
  is refused.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from pydantic import BaseModel, Field

from cardiovlm.tools.core.errors import CardioVLMError
from cardiovlm.training.curriculum.schema import CURRICULUM_VERSION, InstructionRecord


class CurriculumFileError(CardioVLMError):
    """A curriculum file that cannot be read; the message names the file (and line) and what is wrong."""

    code = "curriculum.file_invalid"


class CurriculumHeader(BaseModel):
    """First line of a curriculum JSONL file."""

    curriculum_version: str = CURRICULUM_VERSION
    llm: str
    seed: int
    studies: int
    records: int
    counts: dict[str, int] = Field(description="records per 'stage<N>/<task>'")
    distinct_phrasings: int
    held_out_records: int


def summarise(records: list[InstructionRecord]) -> dict:
    """Counts per stage and task, distinct phrasings, held-out records."""
    counts = Counter(f"stage{r.stage}/{r.task}" for r in records)
    return {"counts": dict(sorted(counts.items())), "distinct_phrasings": len({r.phrasing_id for r in records}),
            "held_out_records": sum(r.held_out_phrasing for r in records)}


def write_curriculum(records: list[InstructionRecord], path: str | Path, *, llm: str, seed: int) -> CurriculumHeader:
    """Write the header line then one record per line."""
    header = CurriculumHeader(llm=llm, seed=seed, studies=len({r.study_id for r in records}),
                              records=len(records), **summarise(records))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        out.write(json.dumps({"header": header.model_dump()}) + "\n")
        for r in records:
            out.write(r.model_dump_json() + "\n")
    return header


def json_lines(path: str | Path, *, what: str = "curriculum file",
               error: type[ValueError] = CurriculumFileError) -> list[tuple[int, dict]]:
    """(line number, JSON object) of each non-blank line of a JSON-lines file (a curriculum, a manifest).

    Raises:
        ``error``: the file does not exist, or a line is not JSON or not a JSON object (with its number).
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} does not exist")
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as err:
            raise error(f"{path} line {number} is not JSON: {err}") from err
        if not isinstance(data, dict):
            raise error(f"{path} line {number} is not a JSON object")
        out.append((number, data))
    return out


def _header(path: str | Path, lines: list[tuple[int, dict]]) -> CurriculumHeader | None:
    if not lines or "header" not in lines[0][1]:
        return None
    number, data = lines[0]
    try:
        header = CurriculumHeader.model_validate(data["header"])
    except ValueError as err:
        raise CurriculumFileError(f"{path} line {number} is not a curriculum header: {err}") from err
    if header.curriculum_version != CURRICULUM_VERSION:
        raise CurriculumFileError(f"{path} has curriculum version {header.curriculum_version}; this code reads "
                                  f"version {CURRICULUM_VERSION}: rebuild it with `cardiovlm curriculum`")
    return header


def read_header(path: str | Path) -> CurriculumHeader | None:
    """The file's header (None for a file of records only); refuses another curriculum version."""
    return _header(path, json_lines(path))


def read_curriculum(path: str | Path, *, include_held_out: bool = True) -> list[InstructionRecord]:
    """The instruction records of a curriculum file (rules in the module docstring).

    Args:
        include_held_out: keep records worded with a held-out phrasing (evaluation); False for training.

    Raises:
        CurriculumFileError: a missing file, another curriculum version, a line that is not a record,
            or no record left.
    """
    lines = json_lines(path)
    body = lines[1:] if _header(path, lines) is not None else lines
    records = []
    for number, data in body:
        try:
            record = InstructionRecord.model_validate(data)
        except ValueError as err:
            raise CurriculumFileError(f"{path} line {number} is not a curriculum record: {err}") from err
        if include_held_out or not record.held_out_phrasing:
            records.append(record)
    if not records:
        raise CurriculumFileError(f"curriculum file {path} holds no {'' if include_held_out else 'training '}records")
    return records
