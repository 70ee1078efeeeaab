"""Answers and tool steps name a server file by its file name, never by its server path."""

import tempfile
from pathlib import Path

from cardiovlm.tools.core.settings import get_settings
from cardiovlm.ui.redact import hide_server_paths


def test_paths_under_the_work_and_temp_folders_become_file_names():
    work = Path(get_settings().ui_work_dir) / "123-abc" / "sessions" / "session-x" / "outputs" / "LAD.nii.gz"
    temp = Path(tempfile.gettempdir()) / "tmpq1w2" / "report.html"
    text = f'Saved the mask to {work}. Report: "{temp}", see ({work})'
    shown = hide_server_paths(text)
    assert shown == 'Saved the mask to LAD.nii.gz. Report: "report.html", see (LAD.nii.gz)'


def test_other_text_is_left_as_written():
    text = "LAD 70% stenosis at 12.5 mm; ratio 1/2; see /usr/share/doc"
    assert hide_server_paths(text) == text
