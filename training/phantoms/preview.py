"""PNG previews of a phantom: axial and coronal slices through the heart and a coronary MIP slab."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cardiovlm.tools.core.anatomy import CORONARY_LABELS

WINDOW = (150.0, 600.0)  # cardiac window: level, width (HU)


def _grey(img: np.ndarray, level: float = WINDOW[0], width: float = WINDOW[1]) -> np.ndarray:
    return np.clip((img - (level - width / 2)) / width, 0.0, 1.0)


def write_previews(hu: np.ndarray, labels: np.ndarray, grid, out_dir: Path) -> list[Path]:
    """axial.png, coronal.png and mip.png (10 mm axial slab MIP through the coronaries) in ``out_dir``.

    Views are drawn with the patient's right on the image left and anterior at the top (radiological
    convention); the pixel aspect follows the voxel spacing.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    sx, sy, sz = grid.spacing
    cor = np.isin(labels, CORONARY_LABELS)
    k = int(np.argmax(cor.sum(axis=(0, 1)))) if cor.any() else hu.shape[2] // 2
    j = int(np.argmax(cor.sum(axis=(0, 2)))) if cor.any() else hu.shape[1] // 2
    slab = max(1, int(round(5.0 / sz)))
    views = {
        "axial": (hu[:, :, k].T, sy / sx),
        "coronal": (hu[:, j, :].T[::-1], sz / sx),
        "mip": (hu[:, :, max(k - slab, 0):k + slab + 1].max(axis=2).T, sy / sx),
    }
    paths = []
    for name, (img, aspect) in views.items():
        fig = plt.figure(figsize=(6, 6 * img.shape[0] * aspect / img.shape[1]), dpi=110)
        ax = fig.add_axes([0, 0, 1, 1])
        level, width = (300.0, 1000.0) if name == "mip" else WINDOW
        ax.imshow(_grey(img, level, width), cmap="gray", aspect=aspect, interpolation="bilinear", vmin=0, vmax=1)
        ax.set_axis_off()
        path = out_dir / f"{name}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths
