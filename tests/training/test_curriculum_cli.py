"""`cardiovlm curriculum` end to end on a small case folder."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from curriculum_cases import write_case

from cardiovlm.ui.cli import main


def test_curriculum_command_writes_the_file_and_prints_the_table(tmp_path, capsys):
    write_case(tmp_path / "data", "case_a")
    write_case(tmp_path / "data", "case_b")
    out = tmp_path / "c.jsonl"
    assert main(["curriculum", "--data", str(tmp_path / "data"), "--out", str(out), "--seed", "2"]) == 0
    header = json.loads(out.read_text().splitlines()[0])["header"]
    assert header["studies"] == 2 and header["llm"] == "default"
    printed = capsys.readouterr().out
    for row in ("stage1/segment", "stage2/choice", "stage3/measure", "distinct phrasings"):
        assert row in printed
    assert f"{header['records']}" in printed


def test_curriculum_command_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["curriculum", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "c.jsonl")]) == 2
    assert "no case folders" in capsys.readouterr().err
    write_case(tmp_path / "d")
    assert main(["curriculum", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "c.jsonl"),
                 "--llm", "openai:nourl"]) == 2
    assert "malformed LLM spec" in capsys.readouterr().err
