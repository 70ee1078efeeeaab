"""Is this study something the VLM was trained for? Checked before it draws a mask or answers.

The checkpoint learned contrast-enhanced cardiac CT (CCTA) phantoms: a heart-centred field of view
(170-195 mm across, 120-130 mm long), 0.65-1 mm voxels, a blood pool of 280-520 HU. On anything else
it still returns confident masks and answers (on two non-contrast slices it once drew the same box
for every structure), so inputs outside that range are refused with a typed error and no output.

The check reads the study's metadata (modality, slice thickness, series description) and the image
itself, on a ~2 mm subsampled grid so it stays fast on a 512 x 512 x 300 study:

* modality: not CT, or intensities not calibrated in HU -> :class:`NotCTError`;
* slices: fewer than ``min_slices`` along any axis, or a series described as a localizer ->
  :class:`LocalizerError`;
* slice thickness (metadata) or spacing above ``max_slice_mm`` -> :class:`ThickSlicesError`;
* a blank volume (one value almost everywhere) -> :class:`BlankVolumeError`;
* a noise volume: neighbouring voxels uncorrelated (a CT image is smooth at voxel scale; phantoms
  have a lag-1 correlation of 0.92-0.96, white noise 0) -> :class:`NoiseVolumeError`;
* field of view outside the cardiac range, or no lung around the heart -> :class:`FieldOfViewError`;
* no enhanced blood pool: the largest connected region of ``blood_pool_hu`` HU is smaller than
  ``min_blood_pool_ml`` (on phantoms 145-195 mL with contrast, 23 mL of bone without)
  -> :class:`NoContrastError`.

Example::

    from cardiovlm.vlm.input_check import check_input
    report = check_input(study)          # raises UnsupportedInputError (with .code) when refused
    print(report.blood_pool_hu)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy import ndimage

from cardiovlm.tools.ingest.study_errors import StudyError
from cardiovlm.tools.ingest.study_value import Study

_REFUSAL = "the VLM gives no mask or answer for it"


class UnsupportedInputError(StudyError):
    """The study is outside what the VLM was trained for; ``code`` names the reason (stable, for routing)."""

    code: ClassVar[str] = "unsupported_input"


class NotCTError(UnsupportedInputError):
    code = "not_ct"


class LocalizerError(UnsupportedInputError):
    code = "too_few_slices"


class ThickSlicesError(UnsupportedInputError):
    code = "thick_slices"


class BlankVolumeError(UnsupportedInputError):
    code = "blank_volume"


class NoiseVolumeError(UnsupportedInputError):
    code = "noise_volume"


class FieldOfViewError(UnsupportedInputError):
    code = "not_cardiac_field_of_view"


class NoContrastError(UnsupportedInputError):
    code = "no_contrast"


@dataclass(frozen=True)
class InputCheckConfig:
    """Limits of what the VLM was trained for (shipped checkpoint: CCTA phantoms, see its model card)."""

    min_slices: int = 16  # per axis; a localizer has 1-3, a heart at 3 mm needs ~40
    max_slice_mm: float = 2.5  # coarser than the model's 2.25 mm grid: it would see interpolated slices
    min_transverse_mm: float = 100.0  # narrower cannot hold the heart (~120 mm across)
    max_transverse_mm: float = 260.0  # wider is a chest or body reconstruction (trained on 170-195 mm)
    min_length_mm: float = 60.0  # along the patient axis
    max_length_mm: float = 220.0  # trained on 120-130 mm; a chest CT is 300+ mm
    min_lung_fraction: float = 0.02  # air-filled lung (-950..-500 HU) beside the heart; phantoms 0.50-0.56
    blank_std_hu: float = 2.0  # below: one value everywhere (all air, all water, zeros)
    min_neighbour_correlation: float = 0.5  # below: noise rather than an image
    blood_pool_hu: tuple[float, float] = (180.0, 700.0)  # enhanced blood; unenhanced blood is ~40 HU
    min_blood_pool_ml: float = 60.0  # largest enhanced region; LV alone holds ~120 mL
    grid_mm: float = 2.0  # subsampling of the image statistics


@dataclass(frozen=True)
class InputCheckReport:
    """What the check measured on an accepted study."""

    extent_mm: tuple[float, float, float]  # field of view along i, j, k
    slice_mm: float  # slice spacing (or thickness from the metadata, the larger)
    lung_fraction: float  # share of voxels at -950..-500 HU
    neighbour_correlation: float  # lag-1 correlation of voxel values (smallest over the axes)
    blood_pool_ml: float  # volume of the largest enhanced region
    blood_pool_hu: float  # its median attenuation


_LOCALIZER_WORDS = re.compile(r"locali[sz]er|scout|topogram|surview|scanogram|pilot", re.IGNORECASE)


def _neighbour_correlation(hu: np.ndarray) -> float:
    """Smallest lag-1 correlation over the three axes, on a central block of at most 48^3 voxels."""
    centre = [n // 2 for n in hu.shape]
    block = np.asarray(hu[tuple(slice(max(0, c - 24), c + 24) for c in centre)], dtype=np.float64)
    values = []
    for axis in range(3):
        a = np.take(block, range(block.shape[axis] - 1), axis=axis).ravel()
        b = np.take(block, range(1, block.shape[axis]), axis=axis).ravel()
        if a.std() == 0 or b.std() == 0:
            continue
        values.append(float(np.corrcoef(a, b)[0, 1]))
    return min(values) if values else 1.0


def require_ct(study: Study) -> None:
    """Refuse a study that is not CT in Hounsfield units (:class:`NotCTError`).

    ``CardioVLM.run`` calls it on every study: no use of the model (library, tools, evaluation) reads an
    MR or uncalibrated image as if it were HU. The rest of :func:`check_input` is left to the callers
    that face users, since evaluation deliberately shows the model blank and noise CT volumes as controls.
    """
    trained = f"the VLM was trained on contrast-enhanced cardiac CT in Hounsfield units only; {_REFUSAL}"
    if str(study.modality).upper() != "CT":
        raise NotCTError(f"this series is {study.modality}, not CT: {trained}")
    if not study.hu_calibrated:
        raise NotCTError(f"this image's values are not Hounsfield units (a label map or an uncalibrated "
                         f"image): {trained}")


def check_input(study: Study, config: InputCheckConfig | None = None) -> InputCheckReport:
    """Refuse a study the VLM was not trained for; return what was measured on one it was.

    Args:
        study: a ``cardiovlm.tools.ingest.study_value.Study`` (LPS ``[i, j, k]``, k along the patient axis).
        config: the limits (default :class:`InputCheckConfig`).

    Raises:
        UnsupportedInputError: one of its subclasses, with a message that says what the input is,
            what the model was trained for, and that no mask or answer is given.
    """
    config = config or InputCheckConfig()
    require_ct(study)
    description = " ".join(str(study.metadata.get(k) or "") for k in ("series_description", "study_description"))
    if _LOCALIZER_WORDS.search(description):
        raise LocalizerError(f"this series is a localizer ('{description.strip()}'), not a CT volume of the heart; "
                             f"{_REFUSAL}")
    if min(study.shape) < config.min_slices:
        raise LocalizerError(f"this series has only {min(study.shape)} slice(s) along one axis (shape "
                             f"{'x'.join(map(str, study.shape))}): a localizer or a partial series, not a volume "
                             f"of the heart (at least {config.min_slices} slices needed); {_REFUSAL}")
    thickness = float(study.metadata.get("slice_thickness_mm") or 0.0)
    slice_mm = max(float(study.spacing[2]), thickness)
    if slice_mm > config.max_slice_mm:
        raise ThickSlicesError(f"slices are {slice_mm:.1f} mm thick; the VLM was trained on 0.65-1 mm CCTA and "
                               f"needs slices of at most {config.max_slice_mm:.1f} mm; {_REFUSAL}")
    stride = tuple(max(1, int(round(config.grid_mm / s))) for s in study.spacing)
    sub = np.asarray(study.hu[::stride[0], ::stride[1], ::stride[2]], dtype=np.float32)
    if float(sub.std()) < config.blank_std_hu:
        raise BlankVolumeError(f"the volume is blank (every voxel about {float(np.median(sub)):.0f} HU): there is "
                               f"no image to read; {_REFUSAL}")
    correlation = _neighbour_correlation(study.hu)
    if correlation < config.min_neighbour_correlation:
        raise NoiseVolumeError(f"the volume looks like noise (neighbouring voxels correlate {correlation:.2f}; a CT "
                               f"image is above {config.min_neighbour_correlation:.1f}); {_REFUSAL}")
    ex, ey, ez = (float(n * s) for n, s in zip(study.shape, study.spacing))
    extent = (ex, ey, ez)
    transverse = min(extent[:2]), max(extent[:2])
    if (transverse[0] < config.min_transverse_mm or transverse[1] > config.max_transverse_mm
            or not config.min_length_mm <= extent[2] <= config.max_length_mm):
        raise FieldOfViewError(
            f"the field of view is {extent[0]:.0f} x {extent[1]:.0f} x {extent[2]:.0f} mm; the VLM was trained on "
            f"heart-centred reconstructions ({config.min_transverse_mm:.0f}-{config.max_transverse_mm:.0f} mm across, "
            f"{config.min_length_mm:.0f}-{config.max_length_mm:.0f} mm long), so this is not a cardiac field of view "
            f"it knows; {_REFUSAL}")
    lung = float(np.mean((sub > -950) & (sub < -500)))
    if lung < config.min_lung_fraction:
        raise FieldOfViewError(f"no lung is in the field of view ({lung:.1%} of voxels at -950..-500 HU): this is "
                               f"not a cardiac CT of the chest; {_REFUSAL}")
    lo, hi = config.blood_pool_hu
    labels, count = ndimage.label((sub >= lo) & (sub <= hi))
    voxel_ml = float(np.prod(np.asarray(study.spacing) * np.asarray(stride))) / 1000.0
    pool_ml, pool_hu = 0.0, float("nan")
    if count:
        sizes = np.bincount(labels.ravel())[1:]
        largest = 1 + int(sizes.argmax())
        pool_ml, pool_hu = float(sizes.max()) * voxel_ml, float(np.median(sub[labels == largest]))
    if pool_ml < config.min_blood_pool_ml:
        raise NoContrastError(
            f"no contrast-enhanced blood pool was found (largest region at {lo:.0f}-{hi:.0f} HU: {pool_ml:.0f} mL, "
            f"{config.min_blood_pool_ml:.0f} mL needed): a non-contrast or poorly timed scan; the VLM was trained on "
            f"CCTA with an enhanced blood pool; {_REFUSAL}")
    return InputCheckReport(extent_mm=extent, slice_mm=slice_mm, lung_fraction=round(lung, 4),
                            neighbour_correlation=round(correlation, 4), blood_pool_ml=round(pool_ml, 1),
                            blood_pool_hu=round(pool_hu, 1))


__all__ = ["BlankVolumeError", "FieldOfViewError", "InputCheckConfig", "InputCheckReport", "LocalizerError",
           "NoContrastError", "NoiseVolumeError", "NotCTError", "ThickSlicesError", "UnsupportedInputError",
           "check_input", "require_ct"]
