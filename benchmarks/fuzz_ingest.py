"""Mutation fuzz of study ingest: every hostile input must end as a load or a typed ``StudyError``.

A small valid CT series (6 slices of 16 x 12 int16 pixels, written by ``cardiovlm.tools.dicom.dicom_write``), the same
volume as NIfTI and the series as a zip are mutated at random, one case per run, and given to
``cardiovlm.tools.ingest.study.load_study``:

* DICOM (70 % of runs): flipped bytes anywhere or in the header of one slice, a tag of one slice or of
  every slice set to a hostile raw value (text that is no number, NaN, 1e30, wrong value counts, zero,
  colour and bit-depth codes, other UIDs and transfer syntaxes) or deleted, a truncated slice, a
  duplicated slice, and extra entries in the folder (junk, an empty file, a nested zip, a named pipe);
  one to three of these per run.
* NIfTI (15 %): flipped header bytes, hostile header fields (dimensions, voxel sizes, data type,
  scaling, a singular or zero-length affine) or a truncated file.
* zip (15 %): flipped or truncated bytes of the archive, or a mutated series inside it.

Each run ends in one of: ``loaded`` (checked for a sane result: finite values, Hounsfield units within
``IngestLimits`` for CT, plausible voxel sizes, an invertible affine; otherwise ``insane``), a typed
error (counted by its ``code``; a message that reads like a Python internal one is counted as
``internal_message`` as well), ``untyped`` (any other exception, counted by its code site: the
deepest frame in this repository), or ``hang`` (no answer within ``--timeout`` seconds, enforced with
``SIGALRM``; a load that outlives the alarm because it swallowed it counts as a hang too). Runs are
seeded (``random.Random(f"{seed}-{run}")``), so a failing run is replayed with
``--seed S --start N --runs 1 --verbose``.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/fuzz_ingest.py --runs 20000 [--seed 0] [--timeout 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import random
import re
import shutil
import signal
import struct
import tempfile
import time
import traceback
import warnings
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom import config as pydicom_config
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from cardiovlm.tools.dicom.dicom_write import write_ct_series
from cardiovlm.tools.ingest.study import load_study
from cardiovlm.tools.ingest.study_errors import StudyError
from cardiovlm.tools.ingest.study_value import LIMITS

REPO = Path(__file__).resolve().parents[1]
SHAPE = (16, 12, 6)

# Words of Python's own exception messages: a typed error that carries them speaks to a programmer.
_INTERNAL = re.compile(
    r"Traceback|object has no attribute|could not convert|invalid literal|NoneType|unsupported operand|"
    r"out of bounds|\[Errno|codec can't|unpack requires|buffer size|<class |dtype\(|not subscriptable|"
    r"takes \d+ positional")

_TEXT_VALUES = ["", "abc", "1e30", "-1e30", "nan", "inf", "-inf", "-1", "0", "1000", "1e-30", "1\\2",
                "1\\0\\0\\0\\1", "0\\0\\0\\0\\0\\0", "1\\0\\0\\0\\1\\0\\5", "3.5", "-0", "1,5", "+-1",
                "99999999999999999999", "0.5", "0\\0\\0", "nan\\nan\\nan", "1\\0\\0\\0\\0\\1", "1\\1\\0\\1\\1\\0"]
_NUMERIC_TAGS = {  # keyword -> VR
    "RescaleSlope": "DS", "RescaleIntercept": "DS", "PixelSpacing": "DS", "ImageOrientationPatient": "DS",
    "ImagePositionPatient": "DS", "SliceThickness": "DS", "SpacingBetweenSlices": "DS", "SliceLocation": "DS",
    "NumberOfFrames": "IS", "InstanceNumber": "IS", "AcquisitionNumber": "IS", "SeriesNumber": "IS", "KVP": "DS",
}
_US_TAGS = ["Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "SamplesPerPixel"]
_US_VALUES = [0, 1, 3, 7, 8, 12, 16, 17, 24, 32, 64, 255, 4096, 65535]
_TEXT_TAGS = {
    "PhotometricInterpretation": ("CS", ["RGB", "YBR_FULL", "PALETTE COLOR", "", "MONOCHROME1", "XYZ"]),
    "Modality": ("CS", ["MR", "SR", "", "SEG", "OT"]),
    "SOPClassUID": ("UI", ["1.2.840.10008.5.1.4.1.1.88.11", "1.2.840.10008.5.1.4.1.1.66.4",
                           "1.2.840.10008.5.1.4.1.1.7", "1.2.3", "", "not a uid"]),
    "SeriesInstanceUID": ("UI", ["1.2.3.4.5", "", "1.2.840.99"]),
    "ImageType": ("CS", ["ORIGINAL\\PRIMARY\\LOCALIZER", ""]),
    "SOPInstanceUID": ("UI", ["1.2.3", ""]),
}
_SYNTAXES = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.50",
             "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5", "1.2.3.4", "1.2.840.10008.1.2.4.201"]


@dataclass
class Base:
    """The valid inputs every mutation starts from."""

    slices: list[bytes]
    nifti: bytes


@dataclass
class Counts:
    runs: int = 0
    loaded: int = 0
    typed: Counter = field(default_factory=Counter)  # code -> count
    internal_message: Counter = field(default_factory=Counter)  # code -> count of internal-looking messages
    untyped: Counter = field(default_factory=Counter)  # "file:line ExceptionType" -> count
    insane: Counter = field(default_factory=Counter)  # what was wrong with a loaded study
    hangs: int = 0
    slowest_s: float = 0.0  # the longest single load (hangs included, cut at the timeout)
    examples: dict = field(default_factory=dict)  # outcome key -> first run that produced it
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"runs": self.runs, "loaded": self.loaded, "typed_errors": sum(self.typed.values()),
                "typed_by_code": dict(self.typed.most_common()), "internal_messages": dict(self.internal_message),
                "untyped": sum(self.untyped.values()), "untyped_by_site": dict(self.untyped.most_common()),
                "insane_loads": dict(self.insane), "hangs": self.hangs,
                "slowest_run_s": round(self.slowest_s, 2), "examples": self.examples,
                "seconds": round(self.seconds, 1)}


def make_base(workdir: Path) -> Base:
    hu = np.random.default_rng(0).integers(-1000, 1500, SHAPE).astype(np.int16)
    paths = write_ct_series(hu, np.diag([0.5, 0.5, 1.0, 1.0]), workdir / "base", series_description="fuzz base",
                            uid_seed="fuzz")
    slices = [p.read_bytes() for p in paths]
    img = nib.Nifti1Image(hu, np.diag([-0.5, -0.5, 1.0, 1.0]))
    nifti = img.to_bytes()
    shutil.rmtree(workdir / "base")
    return Base(slices, nifti)


def _raw(ds: pydicom.Dataset, keyword: str, vr: str, value: bytes) -> None:
    """Store ``value`` as the raw bytes of ``keyword``: pydicom would refuse to write most of them."""
    tag = Tag(keyword)
    if len(value) % 2:
        value += b" " if vr != "UI" else b"\x00"
    ds._dict[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)


def _tag_mutation(rng: random.Random, ds: pydicom.Dataset) -> str:
    kind = rng.choice(["numeric", "numeric", "us", "text", "delete", "syntax", "pixels"])
    if kind == "numeric":
        keyword = rng.choice(list(_NUMERIC_TAGS))
        value = rng.choice(_TEXT_VALUES)
        _raw(ds, keyword, _NUMERIC_TAGS[keyword], value.encode())
        return f"{keyword}={value!r}"
    if kind == "us":
        keyword = rng.choice(_US_TAGS)
        if rng.random() < 0.15:
            _raw(ds, keyword, "US", struct.pack("<HH", 16, 16))
            return f"{keyword}=(16,16)"
        value = rng.choice(_US_VALUES)
        _raw(ds, keyword, "US", struct.pack("<H", value))
        return f"{keyword}={value}"
    if kind == "text":
        keyword = rng.choice(list(_TEXT_TAGS))
        vr, values = _TEXT_TAGS[keyword]
        value = rng.choice(values)
        _raw(ds, keyword, vr, value.encode())
        return f"{keyword}={value!r}"
    if kind == "delete":
        keyword = rng.choice([*_NUMERIC_TAGS, *_US_TAGS, "PhotometricInterpretation", "Modality", "SOPClassUID",
                              "SeriesInstanceUID", "PixelData"])
        if keyword in ds:
            del ds[keyword]
        return f"del {keyword}"
    if kind == "syntax":
        value = rng.choice(_SYNTAXES)
        ds.file_meta.TransferSyntaxUID = value
        return f"TransferSyntaxUID={value}"
    data = ds.PixelData
    cut = rng.choice([0, 1, len(data) // 2, len(data) - 1, len(data) * 2])
    ds.PixelData = (data + data)[:cut] if cut > len(data) else data[:cut]
    return f"PixelData[{cut}]"


def _flip(rng: random.Random, data: bytes, n: int, end: int | None = None) -> bytes:
    buf = bytearray(data)
    for _ in range(n):
        pos = rng.randrange(0, end or len(buf))
        buf[pos] ^= 1 << rng.randrange(8) if rng.random() < 0.5 else rng.randrange(1, 256)
    return bytes(buf)


def _header_end(data: bytes) -> int:
    """Offset of the PixelData element (7FE0,0010), i.e. the length of the header."""
    at = data.rfind(b"\xe0\x7f\x10\x00")
    return at if at > 0 else len(data)


def mutate_slices(rng: random.Random, base: Base) -> tuple[list[bytes], list[str]]:
    """One to three mutations of the series; returns the new file contents and what was done."""
    slices, done = list(base.slices), []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        op = rng.choice(["flip", "header_flip", "header_flip", "tag", "tag", "tag", "tag_all", "truncate"])
        k = rng.randrange(len(slices))
        if op == "flip":
            slices[k] = _flip(rng, slices[k], rng.randint(1, 8))
        elif op == "header_flip":
            slices[k] = _flip(rng, slices[k], rng.randint(1, 4), _header_end(slices[k]))
        elif op == "truncate":
            slices[k] = slices[k][:rng.randrange(len(slices[k]))]
        else:
            targets = range(len(slices)) if op == "tag_all" else [k]
            seed, what = rng.random(), "nothing"
            for t in targets:
                out = io.BytesIO()
                try:  # an earlier mutation may have broken this slice, or pydicom refuses to write
                    ds = pydicom.dcmread(io.BytesIO(slices[t]))
                    what = _tag_mutation(random.Random(seed), ds)
                    ds.save_as(out, enforce_file_format=False)
                except Exception:  # noqa: BLE001 - the combination: then the slice stays as it was
                    continue
                slices[t] = out.getvalue()
            op = f"{op}:{what}"
        done.append(f"{op}@{k}")
    return slices, done


def write_folder(rng: random.Random, folder: Path, slices: list[bytes], done: list[str]) -> None:
    folder.mkdir(parents=True)
    for n, data in enumerate(slices):
        (folder / f"slice_{n + 1:03d}.dcm").write_bytes(data)
    extra = rng.random()
    if extra < 0.03:
        os.mkfifo(folder / "pipe")
        done.append("named pipe")
    elif extra < 0.06:
        (folder / "empty.dcm").write_bytes(b"")
        done.append("empty file")
    elif extra < 0.08:
        with zipfile.ZipFile(folder / "inner.zip", "w") as zf:
            zf.writestr("slice.dcm", slices[0])
        done.append("nested zip")
    elif extra < 0.10:
        (folder / "copy.dcm").write_bytes(slices[rng.randrange(len(slices))])
        done.append("duplicate slice")
    elif extra < 0.12:
        (folder / "junk.bin").write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 600))))
        done.append("junk file")


def mutate_nifti(rng: random.Random, base: Base, folder: Path) -> tuple[Path, list[str]]:
    folder.mkdir(parents=True)
    op = rng.choice(["flip", "field", "field", "truncate"])
    data = base.nifti
    if op == "flip":
        data = _flip(rng, data, rng.randint(1, 4), 352)
        done = ["nifti header flip"]
    elif op == "truncate":
        data = data[:rng.randrange(len(data))]
        done = ["nifti truncate"]
    else:
        img = nib.Nifti1Image.from_bytes(data)
        hdr = img.header
        field_ = rng.choice(["pixdim", "dim", "datatype", "scl", "sform", "qform"])
        value = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if field_ == "pixdim":
                value = rng.choice([0.0, 1e30, float("nan"), -1.0, 1e-30, float("inf")])
                hdr["pixdim"][rng.randint(1, 3)] = value
                hdr.set_sform(None, code=0)
                hdr.set_qform(None, code=0)
            elif field_ == "dim":
                value = rng.choice([0, 1, 32767, -1, 2])
                hdr["dim"][rng.randint(0, 4)] = value
            elif field_ == "datatype":
                value = rng.choice([1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1280, 1536, 2304, 99])
                hdr["datatype"] = value
                hdr["bitpix"] = {1: 1, 2: 8, 4: 16, 8: 32, 16: 32, 32: 64, 64: 64, 128: 24, 256: 8, 512: 16,
                                 768: 32, 1024: 64, 1280: 64, 1536: 128, 2304: 32}.get(value, 16)
            elif field_ == "scl":
                value = rng.choice([1e30, -1.0, 0.0, float("nan"), float("inf"), 1e12])
                hdr["scl_slope"] = value
            else:
                affine = np.diag([-0.5, -0.5, 1.0, 1.0])
                choice = rng.choice(["zero_z", "singular", "huge", "nan"])
                if choice == "zero_z":
                    affine[2, 2] = 0.0
                elif choice == "singular":
                    affine[:3, 1] = affine[:3, 0]
                elif choice == "huge":
                    affine[:3, :3] *= 1e30
                else:
                    affine[0, 3] = float("nan")
                value = choice
                if field_ == "sform":  # written raw: nibabel's setters refuse what cannot be decomposed
                    hdr["srow_x"], hdr["srow_y"], hdr["srow_z"] = affine[0], affine[1], affine[2]
                    hdr["sform_code"] = 1
                else:
                    hdr["qform_code"], hdr["sform_code"] = 1, 0
                    hdr["pixdim"][3] = {"zero_z": 0.0, "nan": float("nan"), "huge": 1e30}.get(choice, -0.0)
        data = hdr.binaryblock + base.nifti[348:]
        done = [f"nifti {field_}={value}"]
    path = folder / rng.choice(["image.nii", "image.nii", "image.nii.gz"])
    if path.suffix == ".gz":
        import gzip

        data = gzip.compress(data, compresslevel=1)
    path.write_bytes(data)
    return path, done


def make_case(rng: random.Random, base: Base, work: Path) -> tuple[Path, list[str]]:
    """Write one mutated input under ``work``; returns the path to load and what was done."""
    target = rng.random()
    if target < 0.70:
        slices, done = mutate_slices(rng, base)
        write_folder(rng, work / "series", slices, done)
        return work / "series", done
    if target < 0.85:
        return mutate_nifti(rng, base, work / "nifti")
    slices, done = mutate_slices(rng, base) if rng.random() < 0.5 else (list(base.slices), [])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, data in enumerate(slices):
            zf.writestr(f"DICOM/slice_{n + 1:03d}.dcm", data)
    data = buf.getvalue()
    if rng.random() < 0.5 or not done:
        data = _flip(rng, data, rng.randint(1, 6)) if rng.random() < 0.7 else data[:rng.randrange(len(data))]
        done.append("zip bytes")
    work.mkdir(parents=True, exist_ok=True)
    (work / "upload.zip").write_bytes(data)
    return work / "upload.zip", done


class Hang(BaseException):
    """Raised by the alarm when a load runs past its time.

    A BaseException, like KeyboardInterrupt: code under test that catches ``Exception`` around a
    blocking read must not swallow it (and turn a hang into a quiet success)."""


@contextlib.contextmanager
def deadline(seconds: float):
    """Raise :class:`Hang` in the body after ``seconds``; restores any alarm already set (pytest-timeout)."""

    def on_alarm(signum, frame):
        raise Hang()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    outer, _ = signal.getitimer(signal.ITIMER_REAL)
    start = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - start), 0.001))


def sanity_problem(study) -> str | None:
    """Why a loaded study is not sane, or None."""
    hu = np.asarray(study.hu)
    if hu.ndim != 3 or min(hu.shape) < 1 or hu.shape[2] < 2:
        return f"shape {hu.shape}"
    if hu.dtype.kind == "f" and not np.all(np.isfinite(hu)):
        return "non-finite values"
    if study.hu_calibrated and (float(hu.min()) < LIMITS.min_hu or float(hu.max()) > LIMITS.max_hu):
        return "HU out of range"
    spacing = np.asarray(study.spacing, float)
    if not np.all(np.isfinite(spacing)) or spacing.min() < LIMITS.min_voxel_mm or spacing.max() > LIMITS.max_voxel_mm:
        return "implausible spacing"
    if not np.all(np.isfinite(study.affine)) or abs(np.linalg.det(study.affine[:3, :3])) < 1e-9:
        return "singular affine"
    return None


def _site(err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    ours = [f for f in frames if str(REPO) in f.filename and "/.venv/" not in f.filename
            and not f.filename.endswith("fuzz_ingest.py")]
    frame = (ours or frames)[-1]
    return f"{Path(frame.filename).name}:{frame.lineno} {type(err).__name__}"


def run_one(path: Path, timeout_s: float) -> tuple[str, str]:
    """(outcome, detail): outcome is loaded / typed / untyped / insane / hang."""
    start = time.monotonic()
    try:
        with deadline(timeout_s):
            study = load_study(path)
    except Hang:
        return "hang", ""
    except StudyError as err:
        result = ("typed", err.code + ("\tinternal" if _INTERNAL.search(str(err)) else "") + f"\t{err}")
    except Exception as err:  # noqa: BLE001 - any other exception is what this benchmark counts
        result = ("untyped", _site(err) + f"\t{err}")
    else:
        problem = sanity_problem(study)
        result = ("insane", problem) if problem else ("loaded", "")
    if time.monotonic() - start >= timeout_s:  # the alarm fired, but the code under test swallowed it
        return "hang", ""
    return result


def fuzz(runs: int, *, seed: int = 0, start: int = 0, timeout_s: float = 10.0, verbose: bool = False,
         progress_every: int = 0) -> Counts:
    """Run ``runs`` seeded mutations (``start`` .. ``start + runs - 1``) and count the outcomes."""
    for name in ("pydicom", "nibabel"):  # both log every damaged input (pydicom with a traceback)
        logging.getLogger(name).setLevel(logging.CRITICAL)
    pydicom_config.settings.writing_validation_mode = pydicom_config.IGNORE
    counts = Counts()
    t0 = time.perf_counter()
    scratch = "/dev/shm" if os.path.isdir("/dev/shm") else None  # memory-backed: no disk I/O per run
    with tempfile.TemporaryDirectory(prefix="cardiovlm-fuzz-", dir=scratch) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = Path(tmp)
        base = make_base(root)
        for run in range(start, start + runs):
            rng = random.Random(f"{seed}-{run}")
            work = root / "case"
            shutil.rmtree(work, ignore_errors=True)
            try:
                path, done = make_case(rng, base, work)
            except Exception as err:  # the mutator itself failed: a bug here, not in ingest
                raise RuntimeError(f"run {run}: mutation failed") from err
            started = time.perf_counter()
            outcome, detail = run_one(path, timeout_s)
            counts.slowest_s = max(counts.slowest_s, time.perf_counter() - started)
            counts.runs += 1
            code, _, message = detail.partition("\t")
            if outcome == "loaded":
                counts.loaded += 1
                key = "loaded"
            elif outcome == "typed":
                counts.typed[code] += 1
                if message.startswith("internal\t"):
                    counts.internal_message[code] += 1
                    message = message[len("internal\t"):]
                    key = f"internal {code}"
                else:
                    key = f"typed {code}"
            elif outcome == "untyped":
                counts.untyped[code] += 1
                key = f"untyped {code}"
            elif outcome == "insane":
                counts.insane[detail] += 1
                key = f"insane {detail}"
            else:
                counts.hangs += 1
                key = "hang"
            counts.examples.setdefault(key, {"run": run, "mutations": done, "message": message[:300]})
            if verbose:
                print(run, outcome, code, "|", "; ".join(done), "|", message[:200])
            if progress_every and counts.runs % progress_every == 0:
                print(f"[{counts.runs} runs, {time.perf_counter() - t0:.0f} s] loaded {counts.loaded}, typed "
                      f"{sum(counts.typed.values())}, untyped {sum(counts.untyped.values())}, hangs {counts.hangs}",
                      flush=True)
    counts.seconds = time.perf_counter() - t0
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0, help="first run number (to replay one run)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before a load counts as a hang")
    parser.add_argument("--verbose", action="store_true", help="one line per run")
    parser.add_argument("--json", type=Path, help="also write the counts as JSON here")
    args = parser.parse_args()
    counts = fuzz(args.runs, seed=args.seed, start=args.start, timeout_s=args.timeout, verbose=args.verbose,
                  progress_every=0 if args.verbose else 1000)
    result = counts.as_dict()
    print(f"runs {counts.runs} in {counts.seconds:.0f} s: loaded {counts.loaded}, typed errors "
          f"{sum(counts.typed.values())}, untyped exceptions {sum(counts.untyped.values())}, hangs {counts.hangs}, "
          f"insane loads {sum(counts.insane.values())}, "
          f"internal-looking messages {sum(counts.internal_message.values())}, "
          f"slowest load {counts.slowest_s:.2f} s")
    print("typed errors by code:")
    for code, n in counts.typed.most_common():
        print(f"  {code:36s} {n}")
    if counts.untyped:
        print("untyped exceptions by code site:")
        for site, n in counts.untyped.most_common():
            print(f"  {site:50s} {n}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
