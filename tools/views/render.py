"""Slices of a study as RGB images, with CT windows and coloured mask overlays.

Shared by the UI's slice viewer, the assistant's answer overlays and the phantom previews, so a
mask looks the same wherever it is shown. Images follow radiological display convention: axial
and coronal views show the patient's left on the image right, anterior / superior at the top.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Plane = Literal["axial", "coronal", "sagittal"]

# (width, level) in HU.
WINDOWS: dict[str, tuple[float, float]] = {
    "cardiac": (600.0, 150.0),
    "calcium": (1200.0, 300.0),
    "lung": (1500.0, -600.0),
    "bone": (2000.0, 500.0),
    "soft tissue": (400.0, 40.0),
}


def window(hu: np.ndarray, preset: str = "cardiac") -> np.ndarray:
    """HU -> uint8 grey levels with a named window."""
    if preset not in WINDOWS:
        raise ValueError(f"unknown window {preset!r}; choose one of {', '.join(WINDOWS)}")
    width, level = WINDOWS[preset]
    low = level - width / 2
    return (np.clip((hu.astype(np.float32) - low) / width, 0.0, 1.0) * 255).astype(np.uint8)


def slice_of(volume: np.ndarray, plane: Plane, index: int) -> np.ndarray:
    """A 2D view of an LPS-indexed volume [i, j, k], oriented for display (rows top to bottom).

    axial: rows = anterior -> posterior, columns = patient right -> left (radiological convention).
    coronal: rows = superior -> inferior, columns = right -> left.
    sagittal: rows = superior -> inferior, columns = anterior -> posterior.
    """
    if plane == "axial":
        return volume[:, :, index].T  # (j, i): row j (anterior first), column i (right first)
    if plane == "coronal":
        return volume[:, index, ::-1].T  # (k reversed, i)
    if plane == "sagittal":
        return volume[index, :, ::-1].T  # (k reversed, j)
    raise ValueError(f"unknown plane {plane!r}; choose axial, coronal or sagittal")


def plane_size(shape: tuple[int, int, int], plane: Plane) -> int:
    """Number of slices along a plane's normal."""
    return {"axial": shape[2], "coronal": shape[1], "sagittal": shape[0]}[plane]


def overlay(grey: np.ndarray, masks: list[tuple[np.ndarray, tuple[int, int, int]]], alpha: float = 0.45,
            outline: bool = True) -> np.ndarray:
    """Blend coloured 2D masks over a uint8 grey image; returns (H, W, 3) uint8.

    Each mask is drawn filled at ``alpha`` with a solid outline, so small vessels stay visible.
    """
    from scipy import ndimage

    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    for mask, color in masks:
        if not mask.any():
            continue
        color_arr = np.asarray(color, np.float32)
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * color_arr
        if outline:
            edge = mask & ~ndimage.binary_erosion(mask)
            rgb[edge] = color_arr
    return rgb.clip(0, 255).astype(np.uint8)


def render(hu: np.ndarray, plane: Plane = "axial", index: int | None = None, preset: str = "cardiac",
           masks: list[tuple[np.ndarray, tuple[int, int, int]]] | None = None) -> np.ndarray:
    """One displayed slice of a study with optional 3D masks; ``index`` defaults to the middle."""
    n = plane_size(hu.shape, plane)
    index = n // 2 if index is None else int(np.clip(index, 0, n - 1))
    grey = window(slice_of(hu, plane, index), preset)
    return overlay(grey, [(slice_of(m, plane, index), c) for m, c in (masks or [])])


def best_slice(mask: np.ndarray, plane: Plane = "axial") -> int:
    """The slice along ``plane`` that shows most of ``mask`` (the middle slice if the mask is empty)."""
    axis = {"axial": 2, "coronal": 1, "sagittal": 0}[plane]
    counts = mask.sum(axis=tuple(a for a in range(3) if a != axis))
    if not counts.any():
        return mask.shape[axis] // 2
    return int(np.argmax(counts))


def save_png(rgb: np.ndarray, path) -> None:
    from PIL import Image

    Image.fromarray(rgb).save(path)
