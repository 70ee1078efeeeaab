"""What kind of CT series a volume is (non-contrast calcium scoring or contrast CCTA), and the
acquisition warnings a calcium-score reader needs.

The kind is read from the image and the DICOM headers, never from how many series are loaded:

* image: the blood pool. Unenhanced blood measures about 40 HU, like myocardium; an arterial-phase
  CCTA fills the chambers and aorta with 250-500 HU. The 90th percentile of soft tissue and blood
  (-40 to 600 HU, after a 1 mm Gaussian so noise does not reach the band) in the central half of
  the field of view (where the heart lies on a cardiac or chest reconstruction) is that blood pool
  when contrast is present; at or above ``contrast_blood_hu`` (160 HU) the series is contrast
  enhanced. Bone above 600 HU and air are outside the band, so vertebrae do not pass for contrast.
* headers: ContrastBolusAgent (kept as ``metadata["contrast"]`` by ``tools.dicom_read``) and the
  series description ("calcium", "CaSc", "score"). They are reported beside the image finding;
  when they disagree the image decides and a warning says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import ndimage

SeriesKind = Literal["non_contrast", "contrast"]
AGATSTON_SLICE_MM = 3.0
AGATSTON_KVP = 120.0
CALCIUM_WORDS = ("calcium", "casc", "cac", "score", "agatston")


@dataclass(frozen=True)
class SeriesConfig:
    contrast_blood_hu: float = 160.0  # blood-pool 90th percentile at or above this: contrast enhanced
    band_hu: tuple[float, float] = (-40.0, 600.0)  # soft tissue and blood, not fat, air or cortical bone
    central_fraction: float = 0.5  # central part of the in-plane field of view searched
    min_slices: int = 20  # fewer 3 mm slices than this cannot cover a heart (~12 cm)


@dataclass
class SeriesKindResult:
    kind: SeriesKind
    blood_pool_hu: float  # the image measurement the kind rests on
    header_contrast: bool | None  # ContrastBolusAgent present (None: no DICOM header)
    header_says_calcium: bool  # the series description names a calcium score
    method: str
    warnings: list[str] = field(default_factory=list)


def blood_pool_hu(hu: np.ndarray, spacing, config: SeriesConfig = SeriesConfig()) -> float:
    """90th percentile of smoothed soft-tissue/blood HU in the central part of the field of view."""
    sigma = [1.0 / float(s) for s in spacing]
    ni, nj, nk = hu.shape
    f = (1 - config.central_fraction) / 2
    box = (slice(int(ni * f), max(int(ni * (1 - f)), int(ni * f) + 1)),
           slice(int(nj * f), max(int(nj * (1 - f)), int(nj * f) + 1)), slice(0, nk))
    smooth = ndimage.gaussian_filter(hu[box].astype(np.float32), sigma)
    lo, hi = config.band_hu
    values = smooth[(smooth > lo) & (smooth < hi)]
    if values.size == 0:
        return float("nan")
    return float(np.percentile(values, 90))


def series_kind(hu: np.ndarray, spacing, metadata: dict | None = None,
                config: SeriesConfig = SeriesConfig()) -> SeriesKindResult:
    """Non-contrast or contrast, from the blood-pool attenuation, with the headers as a cross-check."""
    metadata = metadata or {}
    pool = blood_pool_hu(hu, spacing, config)
    header_contrast = metadata.get("contrast") if metadata.get("format") == "DICOM" else None
    description = f"{metadata.get('series_description') or ''} {metadata.get('study_description') or ''}".lower()
    says_calcium = any(w in description for w in CALCIUM_WORDS)
    warnings = []
    if np.isnan(pool):
        # No soft tissue in the centre (an odd crop): the headers are all there is.
        kind: SeriesKind = "contrast" if header_contrast else "non_contrast"
        warnings.append("no soft tissue in the centre of the image to measure the blood pool; series kind "
                        f"taken from the DICOM headers ({kind.replace('_', '-')})")
    else:
        kind = "contrast" if pool >= config.contrast_blood_hu else "non_contrast"
        if header_contrast is not None and header_contrast != (kind == "contrast"):
            warnings.append(f"the DICOM header {'names' if header_contrast else 'names no'} contrast agent but the "
                            f"blood pool measures {pool:.0f} HU: read as {kind.replace('_', '-')} from the image")
        if says_calcium and kind == "contrast":
            warnings.append(f"the series is described as a calcium score but its blood pool measures {pool:.0f} HU "
                            "(contrast enhanced): no Agatston score on it")
    method = (f"series kind from the blood pool: 90th percentile of {config.band_hu[0]:g}..{config.band_hu[1]:g} HU "
              f"(1 mm Gaussian) in the central {config.central_fraction:.0%} of the field of view = "
              f"{pool:.0f} HU; contrast at >= {config.contrast_blood_hu:g} HU")
    return SeriesKindResult(kind=kind, blood_pool_hu=pool, header_contrast=header_contrast,
                            header_says_calcium=says_calcium, method=method, warnings=warnings)


def acquisition_warnings(spacing, metadata: dict | None, n_slices: int,
                         config: SeriesConfig = SeriesConfig()) -> list[str]:
    """Warnings on a calcium-scoring acquisition that departs from the Agatston protocol
    (contiguous 3 mm slices, 120 kVp, the whole heart covered)."""
    metadata = metadata or {}
    out = []
    step = float(spacing[2])
    thickness = metadata.get("slice_thickness_mm")
    if abs(step - AGATSTON_SLICE_MM) > 0.05:
        out.append(f"slices are {step:g} mm apart, not the 3 mm of the Agatston definition: lesion areas are "
                   f"scaled by {step:g}/3 mm (thickness/3 factor method); scores from other slice spacings "
                   "are not interchangeable with 3 mm scores")
    if thickness is not None and thickness > step + 0.05:
        out.append(f"overlapping slices ({thickness:g} mm thick every {step:g} mm): each voxel is counted once per "
                   f"slice position with the {step:g}/3 mm factor; an overlapping reconstruction overstates "
                   "small lesions compared with contiguous 3 mm slices")
    elif thickness is not None and abs(thickness - AGATSTON_SLICE_MM) > 0.05 and abs(thickness - step) <= 0.05:
        pass  # already said by the spacing warning
    kvp = metadata.get("kvp")
    if kvp is not None and abs(float(kvp) - AGATSTON_KVP) > 0.5:
        out.append(f"acquired at {float(kvp):g} kVp, not 120 kVp: the 130 HU threshold and the weight bands are "
                   "defined at 120 kVp and calcium attenuation rises at lower kVp, so this score is not "
                   "comparable with 120 kVp scores (no kV correction applied)")
    if n_slices < config.min_slices * AGATSTON_SLICE_MM / max(step, 1e-6):
        out.append(f"only {n_slices} slices ({n_slices * step:.0f} mm along the body axis): the heart (about "
                   "12 cm) may not be covered, so calcium outside the scanned range is missing")
    return out
