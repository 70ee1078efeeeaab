"""The series of a study: list them by kind, pick the CCTA and the calcium-scoring series, load both.

A CCTA examination usually holds several series: a localizer (scout), a non-contrast
calcium-scoring series (3 mm slices, 120 kVp) and the contrast CCTA (thin slices), sometimes more
phases or reformats. :func:`list_series` reads only the headers and gives each series a kind;
:func:`pick_series` chooses the CCTA and the calcium series (or checks an explicit pick);
:func:`load_series_context` loads both into one :class:`cardiovlm.tools.quant.context.StudyContext`, so calcium
answers use the calcium series and stenosis answers the CCTA.

Kinds are read from the headers (the image decides later: ``cardiovlm.tools.quant.calcium_series`` reads the blood
pool of the series it scores, and a "calcium" series whose blood is enhanced is not scored):

* localizer: ImageType says LOCALIZER (a scout or topogram);
* other: not a CT volume (one image, a multi-frame object, another modality) or not axial (a reformat);
* calcium scoring: the description names a calcium score ("calcium", "CaSc", "CAC", "score",
  "Agatston"), or no contrast agent in the header and slices at least ``CalciumRule.min_thickness_mm``
  (2.5 mm) thick: calcium scoring is reconstructed at 3 mm, a CCTA at 0.5-1 mm;
* ccta: any other axial CT volume.
"""

from __future__ import annotations

import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from cardiovlm.tools.core import case_format as cf
from cardiovlm.tools.ingest.study_errors import (
    EmptyFolderError,
    NotAVolumeError,
    SeriesNotFoundError,
    SeriesPickError,
    StudyNotFoundError,
    UnsupportedFormatError,
)
from cardiovlm.tools.ingest.study_value import Study
from cardiovlm.tools.quant.calcium_series import CALCIUM_WORDS

if TYPE_CHECKING:
    from cardiovlm.tools.core.settings import Settings
    from cardiovlm.tools.ingest.dicom_read import FolderScan, SeriesFiles
    from cardiovlm.tools.quant.context import AnatomySource, StudyContext

SeriesKind = Literal["ccta", "calcium_scoring", "localizer", "other"]
NO_SERIES = "none"  # an explicit pick of "no calcium-scoring series"
KIND_NAMES = {"ccta": "CCTA", "calcium_scoring": "calcium scoring", "localizer": "localizer", "other": "other"}
NO_NUMBER = "—"  # no SeriesNumber: a NIfTI file has none, and a DICOM header may lack it


@dataclass(frozen=True)
class CalciumRule:
    min_thickness_mm: float = 2.5  # calcium scoring is reconstructed at 3 mm; a CCTA at 0.5-1 mm


class SeriesInfo(BaseModel):
    """One series of a study, as listed for the clinician (headers only, no pixels read)."""

    uid: str = Field(description="SeriesInstanceUID (for a NIfTI file of a case folder: its file name)")
    number: str = Field(description="SeriesNumber as the scanner wrote it ('—' when absent, as for a NIfTI file)")
    description: str = Field(description="SeriesDescription")
    modality: str
    kind: SeriesKind
    kind_reason: str = Field(description="why this kind: the header values it rests on")
    n_slices: int
    slice_thickness_mm: float | None = None
    slice_spacing_mm: float | None = Field(None, description="distance between slice positions")
    kvp: float | None = Field(None, description="tube voltage, kV")
    contrast_agent: bool | None = Field(None, description="ContrastBolusAgent present (None: no DICOM header)")
    frame_of_reference_uid: str | None = None
    loadable: bool = Field(description="a 3D image series that can be loaded as a volume")

    def label(self) -> str:
        """A one-line name for a picker: number (when there is one), kind, description, slices, thickness, kVp."""
        parts = [f"{self.n_slices} slice{'s' if self.n_slices != 1 else ''}"]
        if self.slice_thickness_mm is not None:
            parts.append(f"{self.slice_thickness_mm:g} mm")
        if self.kvp is not None:
            parts.append(f"{self.kvp:g} kVp")
        number = f"series {self.number} · " if self.number != NO_NUMBER else ""
        return (f"{number}{KIND_NAMES[self.kind]} · '{self.description or 'no description'}' "
                f"({', '.join(parts)})")


class SeriesPick(BaseModel):
    """Which series are loaded as the CCTA and as the calcium-scoring series, and why."""

    ccta: str = Field(description="uid of the series loaded as the study (the CCTA)")
    calcium: str | None = Field(description="uid of the calcium-scoring series loaded beside it; None: none")
    automatic: bool = Field(description="chosen by the rules above, not by the user")
    reason: str


def series_info(files: SeriesFiles, rule: CalciumRule = CalciumRule()) -> SeriesInfo:
    """Describe one DICOM series from its headers and give it a kind."""
    n = len(files.headers)
    thickness, kvp, agent = files.number_of("SliceThickness"), files.number_of("KVP"), files.has_contrast_agent
    description = files.description
    volume = n >= 2 and files.frames == 1 and not files.is_localizer
    if files.is_localizer:
        kind, why = "localizer", "ImageType says LOCALIZER"
    elif files.modality != "CT":
        kind, why = "other", f"modality {files.modality}, not CT"
    elif not volume:
        kind, why = "other", ("a multi-frame object" if files.frames > 1 else "a single image, not a volume")
    elif not files.is_axial:
        kind, why = "other", "not axial (a reformat)"
    elif any(w in description.lower() for w in CALCIUM_WORDS):
        kind, why = "calcium_scoring", f"the description '{description}' names a calcium score"
    elif not agent and thickness is not None and thickness >= rule.min_thickness_mm:
        kind, why = "calcium_scoring", (f"{thickness:g} mm slices and no contrast agent in the header "
                                        f"(calcium scoring is reconstructed at 3 mm)")
    else:
        kind = "ccta"
        why = ("a contrast agent is named in the header" if agent else
               f"thin axial CT ({thickness:g} mm slices)" if thickness is not None else "an axial CT volume")
    return SeriesInfo(uid=files.uid, number=files.text_of("SeriesNumber") or NO_NUMBER, description=description,
                      modality=files.modality,
                      kind=kind, kind_reason=why, n_slices=n, slice_thickness_mm=thickness,
                      slice_spacing_mm=round(files.slice_spacing, 3) if files.slice_spacing else None,
                      kvp=kvp, contrast_agent=agent, loadable=volume,
                      frame_of_reference_uid=files.text_of("FrameOfReferenceUID") or None)


def list_scan(scan: FolderScan) -> list[SeriesInfo]:
    """The series of a scanned folder, in the order a clinician reads them (by series number)."""
    infos = [series_info(files) for files in scan.series.values()]
    return sorted(infos, key=lambda s: (not s.number.isdigit(), int(s.number) if s.number.isdigit() else 0, s.uid))


def _nifti_info(path: Path, kind: SeriesKind, description: str, reason: str) -> SeriesInfo:
    import nibabel as nib

    try:
        image = nib.load(path)
        shape, zooms = image.shape, image.header.get_zooms()
    except Exception as err:  # noqa: BLE001 - nibabel raises several types for a damaged file
        raise UnsupportedFormatError(f"{path.name}: not a readable NIfTI file ({type(err).__name__})") from None
    n = int(shape[2]) if len(shape) >= 3 else 1
    step = float(zooms[2]) if len(zooms) >= 3 else None
    return SeriesInfo(uid=path.name, number=NO_NUMBER, description=description, modality="CT", kind=kind,
                      kind_reason=reason, n_slices=n, slice_thickness_mm=step,
                      slice_spacing_mm=step, loadable=len(shape) == 3 and n >= 2)


def _case_listing(root: Path) -> list[SeriesInfo]:
    """A case folder: its CCTA and its calcium-scoring series, as DICOM when present, else NIfTI."""
    from cardiovlm.tools.ingest.dicom_read import scan_folder

    out = []
    series: tuple[tuple[str, str, SeriesKind, str], ...] = (
        (cf.CCTA_DICOM_DIR, cf.CCTA_NIFTI, "ccta", "CCTA"),
        (cf.CAC_DICOM_DIR, cf.CAC_NIFTI, "calcium_scoring", "calcium scoring"))
    for dicom_dir, nifti, kind, name in series:
        folder = root / dicom_dir
        if folder.is_dir() and any(folder.iterdir()):
            for info in list_scan(scan_folder(folder)):
                out.append(info.model_copy(update={"kind": kind, "kind_reason": f"the case folder's {dicom_dir}/"}))
        elif (root / nifti).is_file():
            out.append(_nifti_info(root / nifti, kind, f"{name}, NIfTI file {nifti} (no series number)",
                                   f"the case folder's {nifti}"))
    return out


@contextmanager
def _dicom_folder(path: Path, settings: Settings):
    """The folder holding a study's DICOM files: the folder itself, or a zip extracted for the duration."""
    if path.is_dir():
        yield path
        return
    from cardiovlm.tools.ingest.safe_zip import extract_zip

    with tempfile.TemporaryDirectory(prefix="cardiovlm-series-") as tmp:
        extract_zip(path, Path(tmp), max_bytes=settings.max_zip_bytes, max_members=settings.max_zip_members)
        yield Path(tmp)


def _is_zip(path: Path) -> bool:
    return path.is_file() and (path.name.lower().endswith(".zip") or zipfile.is_zipfile(path))


def _check_dicom_source(path: Path) -> None:
    """Raise the typed error for a path that is no DICOM folder or zip."""
    if not path.exists():
        raise StudyNotFoundError(f"{path.name}: no such file or folder")
    if not path.is_dir() and not _is_zip(path):
        raise UnsupportedFormatError(f"{path.name}: not a DICOM folder, a zip of DICOM files or a NIfTI file")


def list_series(path: str | Path, *, settings: Settings | None = None) -> list[SeriesInfo]:
    """Every series of a DICOM folder, a zip of DICOM, a case folder or a NIfTI file, with its kind.

    Only headers are read. A NIfTI file is one series (its file name as uid).

    Raises:
        StudyError: the path does not exist or holds no DICOM (the same typed errors as loading).
    """
    from cardiovlm.tools.core.settings import get_settings

    settings = settings or get_settings()
    path = Path(path)
    if path.is_dir() and cf.is_case_dir(path):
        return _case_listing(path)
    if path.is_file() and path.name.lower().endswith((".nii", ".nii.gz")):
        return [_nifti_info(path, "other", "NIfTI volume", "a NIfTI file carries no series description")]
    _check_dicom_source(path)
    with _dicom_folder(path, settings) as folder:
        return list_scan(_scan(path, folder))


def _best(candidates: list[SeriesInfo]) -> SeriesInfo | None:
    return max(candidates, key=lambda s: s.n_slices) if candidates else None


def pick_series(listing: list[SeriesInfo], *, ccta_series: str | None = None,
                calcium_series: str | None = None) -> SeriesPick:
    """The CCTA and the calcium-scoring series: the ones given, else chosen by kind.

    Automatic choice: the CCTA is the CCTA-kind series with the most slices (else the largest
    loadable volume, as a study of one series is loaded whatever it is); the calcium series is the
    calcium-scoring series with the most slices that is not the CCTA.

    Args:
        ccta_series: uid of the series to load as the study; None: automatic.
        calcium_series: uid of the calcium-scoring series; :data:`NO_SERIES` for none; None: automatic.

    Raises:
        SeriesNotFoundError: a uid that is not in ``listing``.
        SeriesPickError: a pick that cannot be loaded (a localizer, a single image) or the same
            series as both.
    """
    by_uid = {s.uid: s for s in listing}
    loadable = [s for s in listing if s.loadable]
    if not loadable:
        raise NotAVolumeError("no 3D image series in this study, only: "
                              + ("; ".join(s.label() for s in listing) or "nothing"))

    def given(uid: str, part: str) -> SeriesInfo:
        if uid not in by_uid:
            raise SeriesNotFoundError(f"there is no series {uid!r} in this study to load as the {part}; its series "
                                      f"are: {'; '.join(s.label() for s in listing)}")
        chosen = by_uid[uid]
        if not chosen.loadable:
            raise SeriesPickError(f"{chosen.label()} cannot be loaded as the {part}: it is {chosen.kind_reason}"
                                  if chosen.kind != "localizer" else
                                  f"{chosen.label()} is a localizer, not a volume: it cannot be the {part}")
        return chosen

    auto = _best([s for s in loadable if s.kind == "ccta"])
    ccta_why = "the CCTA series with the most slices"
    if auto is None:
        auto = _best([s for s in loadable if s.kind != "localizer"]) or loadable[0]
        ccta_why = "no series looks like a CCTA: the largest volume"
    ccta = auto
    if ccta_series and ccta_series != auto.uid:  # a pick equal to the automatic one keeps its reason
        ccta, ccta_why = given(ccta_series, "CCTA"), "picked by the user"
    auto_calcium = _best([s for s in loadable if s.kind == "calcium_scoring" and s.uid != ccta.uid])
    calcium, calcium_why = auto_calcium, ("the calcium-scoring series with the most slices" if auto_calcium else
                                          "none: no other series looks like a calcium-scoring series")
    if calcium_series == NO_SERIES and auto_calcium is not None:
        calcium, calcium_why = None, "none, as picked by the user"
    elif calcium_series and calcium_series != NO_SERIES and calcium_series != (auto_calcium and auto_calcium.uid):
        calcium, calcium_why = given(calcium_series, "calcium-scoring series"), "picked by the user"
        if calcium.uid == ccta.uid:
            raise SeriesPickError(f"{ccta.label()} cannot be both the CCTA and the calcium-scoring series")
    reason = f"CCTA: {ccta.label()}, {ccta_why}; calcium scoring: " + (
        f"{calcium.label()}, {calcium_why}" if calcium else calcium_why)
    others = [s for s in listing if s.uid not in (ccta.uid, calcium.uid if calcium else None)]
    if others:
        reason += "; not loaded: " + "; ".join(s.label() for s in others)
    return SeriesPick(ccta=ccta.uid, calcium=calcium.uid if calcium else None,
                      automatic=ccta is auto and calcium is auto_calcium, reason=reason)


@dataclass
class LoadedSeries:
    """The picked series, loaded."""

    ccta: Study
    calcium: Study | None
    listing: list[SeriesInfo]
    pick: SeriesPick


def _scan(path: Path, folder: Path) -> FolderScan:
    """The headers of a folder (or of a zip extracted into ``folder``), named after what the user gave."""
    from cardiovlm.tools.ingest.dicom_read import scan_folder

    try:
        return scan_folder(folder)
    except EmptyFolderError:
        if folder == path:
            raise
        raise EmptyFolderError(f"{path.name}: the zip holds no files, no DICOM series to load") from None


def _load_case_series(root: Path, uid: str, settings: Settings) -> Study:
    """One series of a case folder: a NIfTI file by name, else the DICOM folder that holds the uid."""
    from cardiovlm.tools.ingest.dicom_read import read_dicom_folder, scan_folder
    from cardiovlm.tools.ingest.study import load_nifti

    if (root / uid).is_file():
        return load_nifti(root / uid)
    for dicom_dir in (cf.CCTA_DICOM_DIR, cf.CAC_DICOM_DIR):
        folder = root / dicom_dir
        if folder.is_dir():
            scan = scan_folder(folder)
            if uid in scan.series:
                return read_dicom_folder(folder, settings=settings, series_uid=uid, scan=scan)
    raise SeriesNotFoundError(f"case {root.name} holds no series {uid!r}")


def _note_pairing(ccta: Study, calcium: Study, listing: dict[str, SeriesInfo], pick: SeriesPick) -> None:
    """Say when the two series do not share a frame of reference: the CCTA's anatomy is carried to the
    calcium series in patient coordinates, which then do not match."""
    if pick.calcium is None:  # no calcium series was picked: nothing to pair
        return
    a, b = listing[pick.ccta].frame_of_reference_uid, listing[pick.calcium].frame_of_reference_uid
    if a and b and a != b:
        ccta.warnings.append("the calcium-scoring series has another frame of reference than the CCTA: the coronary "
                             "tree found in the CCTA may not line up with it, so per-artery calcium may be misplaced")


def load_series(path: str | Path, *, ccta_series: str | None = None, calcium_series: str | None = None,
                settings: Settings | None = None) -> LoadedSeries:
    """Load the CCTA and the calcium-scoring series of a DICOM folder, a zip, a case folder or a NIfTI
    file (see :func:`pick_series`); a zip is extracted once, for listing and loading together.

    ``ccta.series_choice`` says what was loaded and why, and names the series left out. A session
    loads a case folder through :func:`load_series_context` (its clinical data come with it).

    Raises:
        StudyError: the typed ingest errors, SeriesNotFoundError / SeriesPickError for a bad pick.
    """
    from cardiovlm.tools.core.settings import get_settings
    from cardiovlm.tools.ingest.dicom_read import read_dicom_folder
    from cardiovlm.tools.ingest.study import load_nifti

    settings = settings or get_settings()
    path = Path(path)
    if path.is_file() and path.name.lower().endswith((".nii", ".nii.gz")):
        listing = list_series(path, settings=settings)
        pick = pick_series(listing, ccta_series=ccta_series, calcium_series=calcium_series)
        return LoadedSeries(ccta=load_nifti(path), calcium=None, listing=listing, pick=pick)
    if path.is_dir() and cf.is_case_dir(path):
        listing = _case_listing(path)
        pick = pick_series(listing, ccta_series=ccta_series, calcium_series=calcium_series)
        ccta = _load_case_series(path, pick.ccta, settings)
        calcium = _load_case_series(path, pick.calcium, settings) if pick.calcium else None
    else:
        _check_dicom_source(path)
        with _dicom_folder(path, settings) as folder:
            scan = _scan(path, folder)
            listing = list_scan(scan)
            pick = pick_series(listing, ccta_series=ccta_series, calcium_series=calcium_series)
            ccta = read_dicom_folder(folder, settings=settings, series_uid=pick.ccta, scan=scan)
            calcium = (read_dicom_folder(folder, settings=settings, series_uid=pick.calcium, scan=scan)
                       if pick.calcium else None)
    for study in (ccta, calcium):
        if study is not None:
            study.source = str(path)
    if calcium is not None:
        _note_pairing(ccta, calcium, {s.uid: s for s in listing}, pick)
    if len(listing) > 1:
        ccta.series_choice = pick.reason
    return LoadedSeries(ccta=ccta, calcium=calcium, listing=listing, pick=pick)


def load_series_context(path: str | Path, *, anatomy: AnatomySource = "image", ccta_series: str | None = None,
                        calcium_series: str | None = None) -> tuple[StudyContext, list[SeriesInfo], SeriesPick]:
    """A session's study context with the picked CCTA and calcium-scoring series, and the listing.

    A case folder is loaded by :func:`cardiovlm.tools.quant.context.load_context` (its clinical data and reference
    come with it); there the pick can only drop its calcium series (``calcium_series=NO_SERIES``).
    """
    from cardiovlm.tools.quant.context import StudyContext, load_context, with_image_anatomy

    path = Path(path)
    if path.is_dir() and cf.is_case_dir(path):
        listing = _case_listing(path)
        pick = pick_series(listing, ccta_series=ccta_series, calcium_series=calcium_series)
        own = [s.uid for s in listing if s.kind == "ccta"]
        if pick.ccta not in own:
            raise SeriesPickError(f"a case folder's study is its CCTA ({', '.join(own) or 'none'}); load the other "
                                  "series as a file of its own")
        context = load_context(path, anatomy=anatomy)
        if pick.calcium is None:
            context.cac, context.cac_labels = None, None
        elif context.cac is not None:
            context.cac.source = str(path)
        return context, listing, pick
    loaded = load_series(path, ccta_series=ccta_series, calcium_series=calcium_series)
    context = with_image_anatomy(StudyContext(study=loaded.ccta, cac=loaded.calcium))
    return context, loaded.listing, loaded.pick
