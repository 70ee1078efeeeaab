"""What kind of CT series a volume is (non-contrast calcium scoring or contrast CCTA), and the
acquisition warnings a calcium-score reader needs.

The kind is read from the image and the DICOM headers, never from how many series are loaded:

* image: the blood pool. Unenhanced blood measures about 40 HU, like myocardium; an arterial-phase
  CCTA fills the chambers and aorta with 250-500 HU. After a 1 mm Gaussian (so noise does not
  decide), the largest connected region between ``contrast_blood_hu`` (160 HU) and 600 HU in the
  central half of the field of view (the heart; spine and sternum lie at its edges) is taken;
  when it holds at least ``min_pool_ml`` (50 mL: a left ventricle alone holds 100 mL or more,
  while a vertebral body's cancellous bone, the largest unenhanced structure in that band, holds
  15-40 mL and calcified plaque far less) the series is contrast enhanced. Cortical bone above
  600 HU is outside the band, so the spine does not join into one long region.
* headers: ContrastBolusAgent (kept as ``metadata["contrast"]`` by ``cardiovlm.tools.ingest.dicom_read``) and the
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
    contrast_blood_hu: float = 160.0  # lower edge of the enhanced blood band (unenhanced blood ~40 HU)
    band_top_hu: float = 600.0  # upper edge: below cortical bone
    min_pool_ml: float = 50.0  # an enhanced blood pool at least this large (LV alone > 100 mL)
    central_fraction: float = 0.5  # in-plane centre searched: the heart, not the spine or sternum
    min_slices: int = 20  # fewer 3 mm slices than this cannot cover a heart (~12 cm)


@dataclass
class SeriesKindResult:
    kind: SeriesKind
    blood_pool_ml: float  # the largest enhanced-blood-like region, the measurement the kind rests on
    blood_pool_hu: float | None  # its median HU (None when there is none)
    header_contrast: bool | None  # ContrastBolusAgent present (None: no DICOM header)
    header_says_calcium: bool  # the series description names a calcium score
    method: str
    warnings: list[str] = field(default_factory=list)


def enhanced_blood_pool(hu: np.ndarray, spacing, config: SeriesConfig = SeriesConfig()) -> tuple[float, float | None]:
    """(volume mL, median HU) of the largest connected smoothed region in the enhanced-blood band."""
    import cc3d

    ni, nj, _ = hu.shape
    f = (1 - config.central_fraction) / 2
    box = (slice(int(ni * f), max(int(ni * (1 - f)), int(ni * f) + 1)),
           slice(int(nj * f), max(int(nj * (1 - f)), int(nj * f) + 1)))
    hu = hu[box]
    smooth = ndimage.gaussian_filter(hu.astype(np.float32), [1.0 / float(s) for s in spacing])
    band = (smooth >= config.contrast_blood_hu) & (smooth < config.band_top_hu)
    labels, n = cc3d.connected_components(band, connectivity=6, return_N=True)
    if n == 0:
        return 0.0, None
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    best = int(np.argmax(sizes))
    return float(sizes[best] * np.prod(spacing) / 1000.0), float(np.median(hu[labels == best]))


def series_kind(hu: np.ndarray, spacing, metadata: dict | None = None,
                config: SeriesConfig = SeriesConfig()) -> SeriesKindResult:
    """Non-contrast or contrast, from the enhanced blood pool, with the headers as a cross-check."""
    metadata = metadata or {}
    pool_ml, pool_hu = enhanced_blood_pool(hu, spacing, config)
    header_contrast = metadata.get("contrast") if metadata.get("format") == "DICOM" else None
    description = f"{metadata.get('series_description') or ''} {metadata.get('study_description') or ''}".lower()
    says_calcium = any(w in description for w in CALCIUM_WORDS)
    kind: SeriesKind = "contrast" if pool_ml >= config.min_pool_ml else "non_contrast"
    warnings = []
    if header_contrast is not None and header_contrast != (kind == "contrast"):
        warnings.append(f"the DICOM header {'names' if header_contrast else 'names no'} a contrast agent but the "
                        f"image {'has' if kind == 'contrast' else 'has no'} enhanced blood pool: read as "
                        f"{kind.replace('_', '-')} from the image")
    if says_calcium and kind == "contrast":
        warnings.append("the series is described as a calcium score but its blood pool is enhanced "
                        f"({pool_hu:.0f} HU): no Agatston score on it")
    found = f"{pool_ml:.0f} mL at median {pool_hu:.0f} HU" if pool_hu is not None else "none"
    method = (f"series kind from the blood pool: largest connected region of {config.contrast_blood_hu:g}-"
              f"{config.band_top_hu:g} HU (1 mm Gaussian) in the central {config.central_fraction:.0%} of the field of view "  # noqa: E501
              f"= {found}; contrast enhanced when >= "
              f"{config.min_pool_ml:g} mL")
    return SeriesKindResult(kind=kind, blood_pool_ml=pool_ml, blood_pool_hu=pool_hu, header_contrast=header_contrast,
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
