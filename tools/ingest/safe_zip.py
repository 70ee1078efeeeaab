"""Extract an uploaded zip without letting it escape its folder or fill the disk.

Checks run on the central directory before a single byte is written: entry names (absolute paths,
drive letters, ``..`` components), symlink entries, encryption, the number of entries and the total
declared uncompressed size. Extraction then counts the bytes actually decompressed, so a zip whose
headers under-declare sizes (a "zip bomb" with lying headers) is stopped as well.
"""

from __future__ import annotations

import lzma
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from cardiovlm.tools.ingest.study_errors import DamagedZipError, UnsafeZipError, ZipTooLargeError

_CHUNK = 1 << 20
# What reading a damaged archive raises, from the directory parser and the three decompressors.
_READ_ERRORS = (zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, OSError, ValueError, RuntimeError,
                struct.error)


def _unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    name = info.filename.replace("\\", "/")
    if "\x00" in name:
        return "a NUL character in its name"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "a '..' path component"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    if info.flag_bits & 0x1:
        return "encryption"
    return None


def check_zip(path: Path, *, max_bytes: int, max_members: int) -> list[zipfile.ZipInfo]:
    """Validate the central directory of ``path`` and return its file entries (directories left out).

    Raises:
        UnsafeZipError: unreadable zip, unsafe entry name, symlink or encrypted entry.
        ZipTooLargeError: more than ``max_members`` entries or more than ``max_bytes`` declared.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except _READ_ERRORS as err:
        raise DamagedZipError(
            f"{path.name}: not a readable zip archive (its directory is damaged or truncated)") from err
    for info in infos:
        reason = _unsafe_reason(info)
        if reason:
            raise UnsafeZipError(
                f"{path.name}: refused, entry {info.filename!r} uses {reason}; nothing was extracted")
    files = [i for i in infos if not i.is_dir()]
    if len(files) > max_members:
        raise ZipTooLargeError(f"{path.name}: {len(files)} files, more than the limit of {max_members}")
    declared = sum(i.file_size for i in files)
    if declared > max_bytes:
        raise ZipTooLargeError(
            f"{path.name}: expands to {declared / 2**20:.0f} MiB, more than the limit of "
            f"{max_bytes / 2**20:.0f} MiB; nothing was extracted")
    return files


def _entry_chunks(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> Iterator[bytes]:
    """The decompressed bytes of one entry, chunk by chunk.

    Opening an entry and reading it fail alike on a damaged archive (a bad local header, data that
    does not decompress, a wrong checksum), so both give the one DamagedZipError; writing the chunks
    is the caller's and its errors (a full disk) are not blamed on the zip.
    """
    try:
        with zf.open(info) as src:
            while chunk := src.read(_CHUNK):
                yield chunk
    except NotImplementedError as err:  # before _READ_ERRORS: it is a RuntimeError
        raise DamagedZipError(
            f"{path.name}: entry {info.filename!r} uses a compression method this installation cannot "
            "read; re-create the zip with ordinary (deflate) compression") from err
    except _READ_ERRORS as err:
        raise DamagedZipError(
            f"{path.name}: entry {info.filename!r} is damaged (its data cannot be read or does not "
            "decompress); nothing was loaded") from err


def extract_zip(path: Path, dest: Path, *, max_bytes: int, max_members: int) -> list[Path]:
    """Extract the files of zip ``path`` under ``dest`` after :func:`check_zip`; return their paths.

    The caller owns ``dest`` (normally a ``tempfile.TemporaryDirectory``) and removes it. Raises the
    errors of :func:`check_zip`, and ZipTooLargeError as soon as the decompressed bytes exceed what
    an entry declared or ``max_bytes`` in total.
    """
    files = check_zip(path, max_bytes=max_bytes, max_members=max_members)
    root = dest.resolve()
    written, total = [], 0
    with zipfile.ZipFile(path) as zf:
        for info in files:
            target = (root / info.filename.replace("\\", "/")).resolve()
            if root not in target.parents:  # belt and braces after the name checks
                raise UnsafeZipError(f"{path.name}: entry {info.filename!r} would be written outside the folder")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                dst = open(target, "wb")
            except OSError as err:  # a file and a folder of one name, or a name too long for the disk
                raise UnsafeZipError(
                    f"{path.name}: entry {info.filename!r} cannot be written (its name clashes with another "
                    "entry or is too long); nothing was loaded") from err
            with dst:
                size = 0
                for chunk in _entry_chunks(zf, info, path):
                    size += len(chunk)
                    total += len(chunk)
                    if size > info.file_size or total > max_bytes:
                        raise ZipTooLargeError(
                            f"{path.name}: entry {info.filename!r} expands beyond its declared size "
                            "or the size limit; extraction stopped")
                    dst.write(chunk)
            written.append(target)
    return written


__all__ = ["check_zip", "extract_zip"]
