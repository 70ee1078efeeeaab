"""An answer's downloads, named after the case and the answer (never after a server folder).

A reader who saves several answers of several studies finds them by name:
``lad_stenosis_answer02_stent_coverage.json``, ``..._LAD.nii.gz``, ``..._report.html``. The files are
written into the study load's own output folder, so a study switch never overwrites them.
"""

from __future__ import annotations

import json
import re
import shutil
from html import escape
from pathlib import Path

from cardiovlm.ui.redact import hide_server_paths

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe(text: str, limit: int = 40) -> str:
    return _UNSAFE.sub("_", str(text)).strip("._-")[:limit] or "x"


def case_label(ctx) -> str:
    """The loaded study's name for downloads: the case folder's name, else "study_<date>" of a DICOM study.

    An upload's file name is not used: it may hold the patient's name.
    """
    if getattr(ctx, "case", None) is not None:
        return _safe(ctx.case.root.name)
    date = ctx.study.metadata.get("study_date") if ctx is not None else None
    return f"study_{_safe(date)}" if date else "study"


def answer_stem(ctx, turn: int, answer) -> str:
    """``<case>_answer<NN>_<topic>``: the topic is the first tool the answer used (else "answer")."""
    topic = next((t.name for t in answer.tool_calls if t.ok), None) or "answer"
    return f"{case_label(ctx)}_answer{turn:02d}_{_safe(topic)}"


def write_answer_files(answer, ctx, turn: int) -> list[str]:
    """Write the answer's JSON and printable HTML and copy its masks under the answer's name; their paths."""
    folder = ctx.outputs() / "downloads"
    folder.mkdir(parents=True, exist_ok=True)
    stem = answer_stem(ctx, turn, answer)
    files, names = [], {}
    for mask in answer.masks:
        source = Path(mask.path)
        if not source.is_file():
            continue
        suffix = "".join(source.suffixes[-2:]) if source.name.endswith(".nii.gz") else source.suffix
        target = folder / f"{stem}_{_safe(mask.name)}{suffix}"
        shutil.copyfile(source, target)
        files.append(str(target))
        names[mask.path] = target.name
    # The saved answer names its files as downloaded: no server folder appears in it.
    data = answer.model_dump()
    for mask in data["masks"]:
        mask["path"] = names.get(mask["path"], Path(mask["path"]).name)
    if data.get("overlay_png"):
        data["overlay_png"] = Path(data["overlay_png"]).name
    report_json = folder / f"{stem}.json"
    report_json.write_text(hide_server_paths(json.dumps(data, indent=1)))
    report_html = folder / f"{stem}_report.html"
    report_html.write_text(printable(answer))
    return [*files, str(report_json), str(report_html)]


def printable(answer) -> str:
    """The answer as a small self-contained HTML page (every text escaped)."""
    rows = "".join(f"<tr><td>{escape(f.name)}</td><td>{escape(str(f.value))}</td><td>{escape(f.unit)}</td>"
                   f"<td>{escape(f.tool)}</td></tr>" for f in answer.findings)
    def shown(text) -> str:
        return escape(hide_server_paths(str(text)))

    trace = "".join(f"<li>{escape(t.name)} {shown(t.args)} {'ok' if t.ok else 'failed: ' + shown(t.message or '')}"
                    f"</li>" for t in answer.tool_calls)
    return (f"<!doctype html><meta charset='utf-8'><title>CardioVLM answer</title>"
            f"<h1>CardioVLM answer</h1><p><b>{escape(answer.question)}</b></p><p>{shown(answer.answer)}</p>"
            f"<table border=1 cellpadding=4><tr><th>finding</th><th>value</th><th>unit</th><th>tool</th></tr>{rows}"
            f"</table><h2>Tool calls</h2><ol>{trace}</ol><p><i>{escape(answer.disclaimer)}</i></p>")
