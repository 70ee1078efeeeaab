"""The interactive viewer panel: NiiVue (bundled, BSD-2) showing the loaded CT and the answer's masks.

The browser reads the study as NIfTI files that this module writes into Gradio's file cache, each
session in a folder with an unguessable name. Gradio serves files only from that cache, and with
logins :class:`cardiovlm.ui.access.AccessGuard` serves each file only to the login whose API response named
it, so a viewer file is bound to its session and login like every other download. The files are
deleted with the session (:meth:`ViewerFiles.close`).

NiiVue is loaded from the package (``ui/static/niivue``), never from a CDN: the app runs offline.
"""

from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

STATIC_DIR = Path(__file__).resolve().parent / "static"
NIIVUE_JS = STATIC_DIR / "niivue" / "niivue.umd.js"
VIEWER_JS = STATIC_DIR / "viewer.js"
VIEWER_PRESETS = ("cardiac", "calcium", "lung")  # window buttons offered under the viewer


@dataclass
class ViewerFiles:
    """One session's viewer files: the CT of the study load shown and the masks drawn on it."""

    folder: Path | None = None  # created on first use inside Gradio's file cache
    load_id: int = -1  # the study load whose CT is written
    volume: Path | None = None
    masks: dict[str, Path] = field(default_factory=dict)

    def _dir(self) -> Path:
        if self.folder is None:
            from cardiovlm.ui.workdir import gradio_dir

            # Gradio's upload folder (GRADIO_TEMP_DIR): Gradio serves it, and AccessGuard binds its files
            # to logins. Unguessable: without logins the name is what keeps other browsers off these files.
            self.folder = gradio_dir().resolve() / "viewer" / secrets.token_urlsafe(24)
            self.folder.mkdir(parents=True, mode=0o700)
        return self.folder

    def payload(self, study, load_id: int, masks: dict[str, np.ndarray] | None = None,
                shown: list[str] | None = None, point: tuple[str, tuple[float, float, float]] | None = None) -> str:
        """The viewer's value (JSON): file paths of the CT and of the ``shown`` masks, colours, windows.

        ``point``: a landmark the answer names (name, patient LPS mm); the crosshair goes there rather
        than into the first mask. The CT is written once per study load; a mask once per name and load.
        """
        from cardiovlm.tools.core.anatomy import mask_color
        from cardiovlm.tools.ingest.nifti_io import write_nifti
        from cardiovlm.tools.views.render import WINDOWS

        folder = self._dir()
        if load_id != self.load_id or self.volume is None:
            for old in folder.iterdir():  # the previous study's files go with it
                old.unlink(missing_ok=True)
            self.masks = {}
            # A new name per load, so the browser never shows a cached previous study.
            self.volume = write_nifti(study.hu, study.affine, folder / f"ct_{secrets.token_hex(6)}.nii.gz")
            self.load_id = load_id
        overlays = []
        for name in shown or []:
            mask = (masks or {}).get(name)
            if mask is None:
                continue
            if name not in self.masks:
                self.masks[name] = write_nifti(np.asarray(mask, dtype=np.uint8), study.affine,
                                               folder / f"mask_{len(self.masks)}_{secrets.token_hex(4)}.nii.gz")
            overlays.append({"name": name, "path": str(self.masks[name]), "color": list(mask_color(name))})
        windows = {name: [WINDOWS[name][1] - WINDOWS[name][0] / 2, WINDOWS[name][1] + WINDOWS[name][0] / 2]
                   for name in VIEWER_PRESETS}
        focus = _focus((masks or {})[str(overlays[0]["name"])]) if overlays else None
        landmark = None
        if point is not None and (voxel := _voxel_of(study, point[1])) is not None:
            focus, landmark = voxel, point[0]
        return json.dumps({"volume": str(self.volume), "overlays": overlays, "windows": windows,
                           "load": load_id, "focus": focus, "landmark": landmark})

    def close(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _voxel_of(study, xyz: tuple[float, float, float]) -> list[int] | None:
    """The voxel holding a patient LPS point; None when the point lies outside the study."""
    ijk = np.rint(study.mm_to_index(np.asarray(xyz, dtype=float))[0]).astype(int)
    if np.any(ijk < 0) or np.any(ijk >= np.asarray(study.shape[:3])):
        return None
    return [int(v) for v in ijk]


def answer_point(answer) -> tuple[str, tuple[float, float, float]] | None:
    """The landmark an answer places in the study: a finding in mm that the text quotes as a patient
    LPS position ("… is at -21.4, 9.1, 32.5 mm (patient LPS)"): a located ostium or a lesion's start,
    end or narrowest point. A stenosis answer lists its lesion's points among its findings without
    naming one in the text, so it moves nothing."""
    from cardiovlm.assistant.findings import show

    if answer is None:
        return None
    for finding in answer.findings:
        if finding.unit != "mm" or not isinstance(finding.value, str):
            continue
        if f"{show(finding)} (patient LPS)" not in answer.answer:
            continue
        try:
            xyz = tuple(float(v) for v in finding.value.split(","))
        except ValueError:
            continue
        if len(xyz) == 3:
            name = finding.name.replace(" (LPS)", "").replace(" position (VLM)", "")
            return name, (xyz[0], xyz[1], xyz[2])
    return None


def _focus(mask: np.ndarray) -> list[int] | None:
    """The mask voxel nearest the mask's centre of mass: the crosshair goes there, inside the mask
    (the centre of a curved vessel often lies outside it)."""
    voxels = np.argwhere(np.asarray(mask) > 0)
    if not len(voxels):
        return None
    nearest = voxels[np.argmin(((voxels - voxels.mean(axis=0)) ** 2).sum(axis=1))]
    return [int(v) for v in nearest]


TEMPLATE = """
<div class="cv-viewer">
  <div class="cv-bar">
    <span class="cv-label">Window</span>
    <button type="button" data-preset="cardiac">cardiac</button>
    <button type="button" data-preset="calcium">calcium</button>
    <button type="button" data-preset="lung">lung</button>
    <span class="cv-label">Zoom</span>
    <button type="button" data-zoom="1.25">+</button>
    <button type="button" data-zoom="0.8">&minus;</button>
    <button type="button" data-zoom="0">reset</button>
    <label><input type="checkbox" class="cv-3d"> 3D</label>
    <label>Masks <input type="range" class="cv-opacity" min="0" max="1" step="0.05" value="0.9"></label>
  </div>
  <div class="cv-stage"><canvas class="cv-canvas"></canvas></div>
  <div class="cv-readout" aria-live="polite">No study loaded.</div>
  <div class="cv-help">Click: crosshair · wheel: scroll slices · right-drag or shift-drag: window/level ·
    middle-drag: pan · L/R/A/P/S/I labels on each plane</div>
</div>
"""

CSS = """
.cv-viewer { display: flex; flex-direction: column; gap: 4px; }
.cv-bar { display: flex; flex-wrap: wrap; align-items: center; gap: 4px; font-size: 13px; }
.cv-bar button { padding: 0 6px; font-size: 12px; font-weight: 400; border: 1px solid #888; border-radius: 4px; }
.cv-label { font-weight: 600; margin-left: 6px; }
.cv-opacity { width: 70px; }
.cv-stage { position: relative; width: 100%; height: 310px; background: #000; }
.cv-canvas { width: 100%; height: 100%; display: block; }
.cv-readout { font-family: monospace; font-size: 13px; }
.cv-help { font-size: 11px; opacity: 0.75; }
"""


def viewer_panel():
    """The viewer component (a ``gr.HTML`` whose value is :meth:`ViewerFiles.payload`)."""
    import gradio as gr

    gr.set_static_paths([str(STATIC_DIR)])  # the bundled NiiVue script, served from the package
    head = f'<script src="gradio_api/file={NIIVUE_JS}"></script>'
    return gr.HTML(value="", html_template=TEMPLATE, css_template=CSS, js_on_load=VIEWER_JS.read_text(),
                   head=head, elem_id="niivue-viewer", padding=False)
