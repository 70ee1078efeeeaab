"""CT image noise with the texture of a filtered-back-projection soft-tissue kernel, and how to measure it.

The noise power spectrum (NPS) of FBP in the axial plane is the ramp filter times the squared
apodisation window: ``NPS(f) ~ f * W(f)**2`` (Kijewski & Judy, Phys Med Biol 1987;32:565). With a
Gaussian window ``W(f) = exp(-f**2 / f0**2)`` the spectrum peaks at ``f0 / 2``. Soft-tissue and cardiac
kernels (Siemens B26f-B35f, GE Soft/Standard) peak at about 0.2-0.3 /mm (Solomon, Christianson & Samei,
Med Phys 2012, doi:10.1118/1.4752209, which matches kernels across vendors by this peak; Anam et al., Algorithms 2022,
measured about 0.2 /mm on an FBP body kernel), so the default peak is 0.25 /mm. Along z the noise is
shaped by the slice sensitivity profile, a Gaussian with a FWHM of one slice.

Noise SD follows slice thickness as ``1/sqrt(thickness)`` (the photons of a thicker slice add up); the
in-plane pixel only samples the kernel's noise field, whose variance it keeps. The reference is a
real arterial-phase chest CT at 1.5 mm: 22 HU local SD in soft tissue (``shared/REFERENCE.md``).
Noise rises with body size: at a fixed tube current it grows by sqrt(2) per 4 cm of water-equivalent
diameter (the rule that the mAs must double per 4 cm); tube-current modulation makes up about half of
that in cardiac protocols, so the model uses a doubling per 16 cm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft, ndimage


@dataclass(frozen=True)
class NoiseModel:
    """Quantum noise of one acquisition."""

    peak_per_mm: float = 0.25  # NPS peak frequency of the reconstruction kernel (1/mm)
    sd_ref_hu: float = 22.0  # local SD in soft tissue at the reference slice thickness
    ref_thickness_mm: float = 1.5  # slice thickness of the real reference scan
    ref_diameter_mm: float = 275.0  # effective body diameter the reference SD belongs to
    doubling_mm: float = 160.0  # body-diameter increase that doubles the SD (with tube-current modulation)

    def sd_at(self, thickness_mm: float, diameter_mm: float, dose_factor: float = 1.0) -> float:
        """Noise SD (HU) of a slice ``thickness_mm`` thick through a body of effective ``diameter_mm``."""
        if thickness_mm <= 0 or diameter_mm <= 0:
            raise ValueError("slice thickness and body diameter must be positive")
        size = 2.0 ** ((diameter_mm - self.ref_diameter_mm) / self.doubling_mm)
        return float(self.sd_ref_hu * np.sqrt(self.ref_thickness_mm / thickness_mm) * size * dose_factor)


def kernel_noise(shape: tuple[int, int, int], spacing, sd: float, rng: np.random.Generator,
                 peak_per_mm: float = NoiseModel.peak_per_mm) -> np.ndarray:
    """Zero-mean float32 noise of standard deviation ``sd`` with a ramp x Gaussian-apodisation NPS.

    Axes are (i, j) in-plane and k along z, as the phantoms' grids.
    """
    sx, sy, sz = (float(s) for s in spacing)
    white = rng.standard_normal(shape, dtype=np.float32)
    spec = fft.rfftn(white, workers=1)
    fx = fft.fftfreq(shape[0], sx).astype(np.float32)[:, None, None]
    fy = fft.fftfreq(shape[1], sy).astype(np.float32)[None, :, None]
    fz = fft.rfftfreq(shape[2], sz).astype(np.float32)[None, None, :]
    fr = np.sqrt(fx ** 2 + fy ** 2)
    f0 = 2.0 * peak_per_mm
    sigma_z = sz / 2.355  # slice sensitivity profile: FWHM one slice
    # amplitude filter = sqrt(NPS): sqrt(ramp) x window, times the slice profile's transfer function
    gain = np.sqrt(fr) * np.exp(-(fr / f0) ** 2) * np.exp(-2.0 * (np.pi * sigma_z * fz) ** 2)
    spec *= gain
    noise = fft.irfftn(spec, s=shape, workers=1).astype(np.float32)
    noise *= sd / max(float(noise.std()), 1e-6)
    return noise


def smooth_field(shape, spacing, corr_mm: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-SD Gaussian random field with correlation length ``corr_mm`` (float32)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32),
                                    [corr_mm / float(s) for s in spacing], mode="wrap")
    return field / max(float(field.std()), 1e-6)


def local_sd(image: np.ndarray, mask: np.ndarray, window: int = 5) -> float:
    """Median over ``mask`` of the SD in a ``window``-voxel cube (the "local noise SD" of a tissue).

    Only voxels whose whole window lies in the mask count, so edges between tissues do not.
    """
    img = image.astype(np.float32)
    mean = ndimage.uniform_filter(img, window)
    sq = ndimage.uniform_filter(img * img, window)
    sd = np.sqrt(np.clip(sq - mean * mean, 0, None) * window ** 3 / (window ** 3 - 1))
    core = ndimage.binary_erosion(mask, np.ones((window,) * 3, bool))
    if not core.any():
        raise ValueError("the mask has no voxel whose whole window lies inside it")
    return float(np.median(sd[core]))


def radial_nps_peak(noise_slices: np.ndarray, spacing_xy: tuple[float, float]) -> float:
    """Frequency (1/mm) where the radially averaged 2D NPS of (N, I, J) noise-only ROIs peaks."""
    rois = noise_slices - noise_slices.mean(axis=(1, 2), keepdims=True)
    nps = (np.abs(np.fft.fft2(rois)) ** 2).mean(axis=0)
    fx = np.fft.fftfreq(rois.shape[1], spacing_xy[0])[:, None]
    fy = np.fft.fftfreq(rois.shape[2], spacing_xy[1])[None, :]
    fr = np.sqrt(fx ** 2 + fy ** 2)
    df = 1.0 / (max(rois.shape[1] * spacing_xy[0], rois.shape[2] * spacing_xy[1]))
    bins = np.arange(0, fr.max() + df, df)
    which = np.digitize(fr.ravel(), bins)
    sums = np.bincount(which, nps.ravel(), len(bins) + 1)
    counts = np.bincount(which, minlength=len(bins) + 1)
    radial = sums[1:len(bins)] / np.maximum(counts[1:len(bins)], 1)
    centres = bins[:-1] + df / 2
    smooth = np.convolve(radial, np.ones(3) / 3, mode="same")
    return float(centres[int(np.argmax(smooth[1:])) + 1])
