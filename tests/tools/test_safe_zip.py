"""A zip whose entries cannot be opened or read gives one typed error, whichever step fails.

Opening an entry (its local header, its compression method) and reading it (its compressed data, its
checksum) go through one reader, so a damaged upload reads the same to the user wherever the damage is.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import pytest

from cardiovlm.tools.ingest.safe_zip import extract_zip
from cardiovlm.tools.ingest.study import load_study
from cardiovlm.tools.ingest.study_errors import DamagedZipError

LIMITS = {"max_bytes": 1 << 24, "max_members": 100}
PAYLOAD = bytes(range(256)) * 400  # 100 KiB that deflates to a few hundred bytes
# What the user reads for a damaged entry, whether opening or reading it failed.
DAMAGED = r"upload.zip: entry 'series/slice_0001.dcm' is damaged \(its data cannot be read or does not decompress\)"


def _zip(tmp_path: Path, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    path = tmp_path / "upload.zip"
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        zf.writestr("series/slice_0001.dcm", PAYLOAD)
    return path


def _data_offset(raw: bytes) -> int:
    """Where the first entry's compressed data starts (after its local header)."""
    name_len, extra_len = struct.unpack("<HH", raw[26:30])
    return 30 + name_len + extra_len


def _damaged(tmp_path: Path, edit, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """A zip of one entry whose bytes ``edit`` changed in place."""
    path = _zip(tmp_path, compression)
    raw = bytearray(path.read_bytes())
    edit(raw)
    path.write_bytes(bytes(raw))
    return path


def _bad_deflate(raw: bytearray) -> None:
    start = _data_offset(raw)
    raw[start:start + 40] = b"\xff" * 40  # an invalid deflate block: fails while reading


def test_an_intact_zip_extracts_its_bytes(tmp_path):
    written = extract_zip(_zip(tmp_path), tmp_path / "out", **LIMITS)
    assert [p.read_bytes() for p in written] == [PAYLOAD]


def test_data_that_does_not_decompress_is_a_damaged_zip(tmp_path):
    with pytest.raises(DamagedZipError, match=DAMAGED) as err:
        extract_zip(_damaged(tmp_path, _bad_deflate), tmp_path / "out", **LIMITS)
    assert err.value.code == DamagedZipError.code


def test_a_bad_local_header_is_the_same_damaged_zip(tmp_path):
    def bad_magic(raw: bytearray) -> None:
        raw[0:4] = b"XXXX"  # the entry's local header: fails while opening, the directory still reads

    with pytest.raises(DamagedZipError, match=DAMAGED):
        extract_zip(_damaged(tmp_path, bad_magic), tmp_path / "out", **LIMITS)


def test_a_wrong_checksum_is_a_damaged_zip(tmp_path):
    def flip_a_byte(raw: bytearray) -> None:
        raw[_data_offset(raw) + 1000] ^= 0xFF  # stored data changed: only the CRC at the end of the read notices

    with pytest.raises(DamagedZipError, match=DAMAGED):
        extract_zip(_damaged(tmp_path, flip_a_byte, zipfile.ZIP_STORED), tmp_path / "out", **LIMITS)


def test_an_unknown_compression_method_says_how_to_fix_the_zip(tmp_path):
    def method_99(raw: bytearray) -> None:
        struct.pack_into("<H", raw, 8, 99)  # local header's method
        struct.pack_into("<H", raw, raw.rindex(b"PK\x01\x02") + 10, 99)  # central directory's method

    with pytest.raises(DamagedZipError, match="compression method .* re-create the zip"):
        extract_zip(_damaged(tmp_path, method_99, zipfile.ZIP_STORED), tmp_path / "out", **LIMITS)


def test_load_study_turns_a_damaged_upload_into_the_typed_error(tmp_path):
    with pytest.raises(DamagedZipError, match=DAMAGED):
        load_study(_damaged(tmp_path, _bad_deflate))
