"""Files derived from the assets and cached between runs: ``$VN3D_CACHE``, else
``~/.cache/vn3d``. Each kind of file lives under a versioned folder name, so a change in
how it is made starts a new folder instead of reading stale data. Writes are atomic."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

CACHE_ENV = "VN3D_CACHE"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "vn3d")


def load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a cached .npz, or None when it is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError):
        return None


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file atomically: a temporary file in the same folder, renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    """Write an .npz atomically (a temporary file renamed); a cache that cannot be
    written is skipped (read-only home, full disk)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError:
        return
