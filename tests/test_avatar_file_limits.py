"""Hostile avatar files (`vn3d avatar import`, uploads, the store): every bomb is refused
before it is inflated, decoded or allocated, with peak memory bounded."""

from __future__ import annotations

import io
import json
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest

from avatars.files import (
    MAX_FILE_BYTES,
    AvatarFileError,
    avatar_files,
    read_avatar,
    zip_bytes,
)
from engines.files.assets import sha256_bytes

PEAK_LIMIT = 48 * 1024 * 1024  # bytes the reader may hold at once on any of these inputs


@pytest.fixture(scope="module")
def files(ict, probe_avatar) -> dict[str, bytes]:
    return avatar_files(probe_avatar, ict)


def relisted(files: dict[str, bytes], **new: bytes) -> dict[str, bytes]:
    """``files`` with some replaced and the manifest listing their true sizes and sums."""
    out = {**files, **new}
    manifest = json.loads(files["manifest.json"])
    for name, data in new.items():
        manifest["files"][name] = {"sha256": sha256_bytes(data), "bytes": len(data)}
    out["manifest.json"] = json.dumps(manifest).encode()
    return out


def peak_while(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def refused(data: bytes, ict, match: str) -> int:
    """Peak bytes held while ``read_avatar`` refuses ``data`` with ``match``."""
    def read() -> None:
        with pytest.raises(AvatarFileError, match=match):
            read_avatar(data, ict)
    return peak_while(read)


def params_with(files: dict[str, bytes], name: str, shape: tuple[int, ...], zeros: int) -> bytes:
    """params.npz with member ``name`` (replaced or added) whose .npy header says float64
    ``shape``, followed by ``zeros`` zero bytes, deflated (256 MB is a few hundred KB)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    out = io.BytesIO()
    with (zipfile.ZipFile(io.BytesIO(files["params.npz"])) as src,
          zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst):
        for info in src.infolist():
            if info.filename != name:
                dst.writestr(info.filename, src.read(info))
        with dst.open(name, "w", force_zip64=True) as f:
            f.write(header.getvalue())
            chunk = bytes(1 << 20)
            for _ in range(zeros >> 20):
                f.write(chunk)
    return out.getvalue()


def test_the_probe_avatar_reads(ict, files) -> None:
    assert read_avatar(zip_bytes(files), ict).texture.shape == (64, 128, 3)


def test_an_unlisted_huge_array_in_params_is_never_loaded(ict, files) -> None:
    params = params_with(files, "extra.npy", (1 << 25,), 256 << 20)  # 256 MB of zeros
    assert len(params) < 2 << 20
    data = zip_bytes(relisted(files, **{"params.npz": params}))
    peak = peak_while(lambda: read_avatar(data, ict))  # read fine: extra is ignored
    assert peak < PEAK_LIMIT, peak


def test_an_array_whose_header_lies_is_refused_before_allocation(ict, files) -> None:
    params = params_with(files, "hair_rgb.npy", (1 << 25,), 256 << 20)
    data = zip_bytes(relisted(files, **{"params.npz": params}))
    assert refused(data, ict, "hair_rgb") < PEAK_LIMIT


def test_a_huge_texture_is_refused_from_its_header(ict, files) -> None:
    png = bytearray(files["texture.png"])
    png[16:24] = struct.pack(">II", 32768, 16384)  # 16384 x 32768: 1.5 GB decoded
    data = zip_bytes(relisted(files, **{"texture.png": bytes(png)}))
    assert refused(data, ict, "texture.png must be") < PEAK_LIMIT


def test_a_zip_entry_larger_than_its_manifest_says_is_not_inflated(ict, files) -> None:
    manifest = json.loads(files["manifest.json"])
    manifest["files"]["texture.png"]["bytes"] = 10  # the real one is larger
    data = zip_bytes({**files, "manifest.json": json.dumps(manifest).encode()})
    assert refused(data, ict, "the manifest says 10") < PEAK_LIMIT


def test_sizes_past_the_limits_are_refused(ict, files) -> None:
    manifest = json.loads(files["manifest.json"])
    manifest["files"]["avatar.glb"]["bytes"] = MAX_FILE_BYTES + 1
    data = zip_bytes({**files, "manifest.json": json.dumps(manifest).encode()})
    refused(data, ict, "size in bytes")


def test_duplicate_and_many_entries_are_refused(ict, files) -> None:
    def zipped(names: list[str]) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zf:
            zf.writestr("manifest.json", files["manifest.json"])
            for name in names:
                zf.writestr(name, files[name])
        return out.getvalue()

    with pytest.warns(UserWarning, match="Duplicate name"):
        twice = zipped(["params.npz", "texture.png", "texture.png"])
    refused(twice, ict, "appears twice")
    with pytest.warns(UserWarning, match="Duplicate name"):
        many = zipped(["params.npz"] + ["texture.png"] * 2000)
    refused(many, ict, "2002 entries")


def test_entries_that_share_bytes_are_refused(ict, files) -> None:
    """Two central-directory records pointing at one stream (the 60,000-entry bomb's trick)."""
    data = bytearray(zip_bytes(files))
    eocd = data.rfind(b"PK\x05\x06")
    cd = struct.unpack("<I", data[eocd + 16 : eocd + 20])[0]
    records, pos = [], cd
    while data[pos : pos + 4] == b"PK\x01\x02":
        n, m, k = struct.unpack("<HHH", data[pos + 28 : pos + 34])
        records.append(pos)
        pos += 46 + n + m + k
    first_offset = data[records[1] + 42 : records[1] + 46]
    data[records[2] + 42 : records[2] + 46] = first_offset  # the third entry: the second's bytes
    refused(bytes(data), ict, "overlap")


def test_a_folder_reads_only_listed_files_of_the_listed_size(ict, files, tmp_path) -> None:
    folder = tmp_path / "a"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "hair.obj").write_bytes(b"x" * 1000)  # not listed (no hair): not read
    assert read_avatar(folder, ict).hair is None
    (folder / "texture.png").write_bytes(files["texture.png"] + b"more")
    with pytest.raises(AvatarFileError, match="the manifest says"):
        read_avatar(folder, ict)


def test_the_same_files_zip_to_the_same_bytes(monkeypatch, files) -> None:
    """Zips made at different times are identical (two first downloads of an avatar at
    once each make one: the server test that fetches 40 at once saw two different ones)."""
    import time

    first = zip_bytes(files)
    later = time.localtime(time.time() + 3 * 86400)
    monkeypatch.setattr(time, "localtime", lambda *args: later)
    assert zip_bytes(files) == first
    with zipfile.ZipFile(io.BytesIO(first)) as zf:
        assert zf.namelist()[0] == "manifest.json" and zf.testzip() is None
