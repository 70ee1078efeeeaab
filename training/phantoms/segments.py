"""Chains of tapered capsules: the geometry of every thoracic tube (vessels, airways, oesophagus, bones' arches)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cardiovlm.training.phantoms.geometry import _spline


@dataclass
class Segments:
    """Tapered capsules: segment n runs from ``p0[n]`` (radius ``r0[n]``) to ``p1[n]`` (radius ``r1[n]``).

    ``ecc`` (default 1: round) squeezes a segment's section along the direction perpendicular to it that is
    closest to anterior-posterior: veins and the oesophagus are oval, not round."""

    p0: np.ndarray
    p1: np.ndarray
    r0: np.ndarray
    r1: np.ndarray
    ecc: np.ndarray | None = None

    @classmethod
    def empty(cls) -> Segments:
        return cls(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), np.zeros(0))

    @classmethod
    def polyline(cls, ctrl, r_start: float, r_end: float | None = None, step: float = 2.0) -> Segments:
        """A smooth path through control points, tapering linearly from ``r_start`` to ``r_end``."""
        pts = _spline(np.asarray(ctrl, dtype=np.float64), step)
        r = np.linspace(r_start, r_start if r_end is None else r_end, len(pts))
        return cls(pts[:-1], pts[1:], r[:-1], r[1:])

    def eccentricity(self) -> np.ndarray:
        return np.ones(len(self.r0)) if self.ecc is None else self.ecc

    def varied(self, rng: np.random.Generator, calibre_sd: float, ecc: tuple[float, float]) -> Segments:
        """The same path with a calibre that wanders smoothly (relative SD ``calibre_sd`` over ~10 mm) and an
        oval section (ratio of minor to major axis drawn from ``ecc``, varying slowly along the path)."""
        n = len(self.r0)
        if n == 0:
            return self
        smooth = lambda v: np.convolve(np.r_[v[:4][::-1], v, v[-4:][::-1]], np.ones(5) / 5, "same")[4:-4]  # noqa: E731
        f = 1 + calibre_sd * np.sqrt(5) * smooth(rng.normal(size=n + 1))
        e = np.clip(rng.uniform(*ecc) + 0.03 * smooth(rng.normal(size=n)) * np.sqrt(5), 0.4, 1.0)
        return Segments(self.p0, self.p1, self.r0 * f[:-1], self.r1 * f[1:], e)

    def __add__(self, other: Segments) -> Segments:
        ecc = None
        if self.ecc is not None or other.ecc is not None:
            ecc = np.r_[self.eccentricity(), other.eccentricity()]
        return Segments(np.vstack([self.p0, other.p0]), np.vstack([self.p1, other.p1]),
                        np.r_[self.r0, other.r0], np.r_[self.r1, other.r1], ecc)

    def __len__(self) -> int:
        return len(self.r0)
