"""Cache of built TensorRT engines, keyed by what makes an engine valid.

A serialized engine only runs on the TensorRT version and the GPU model that built it, and
is only the right engine for one ONNX file, one precision and one batch range. So the key
is (ONNX sha256, TensorRT version, GPU name, precision, max batch); its ``digest`` names the
file, and any change in one of the fields is a different file, hence a rebuild.

Each engine ``<precision>-<digest>.engine`` has a JSON sidecar ``.json`` that records the
key's fields and the engine file's sha256. ``lookup`` trusts an entry only when the sidecar
parses, names the same key and the engine bytes hash to the recorded value: a truncated,
tampered or half-written entry is a miss and gets rebuilt. Writes are atomic (a temporary
file renamed), the engine before its sidecar, so a crash in between leaves a miss.

TensorRT's timing cache (kernel timings, reusable across networks) is one file per
(TensorRT version, GPU name) under ``timing/``.

Root: ``$VN3D_CACHE/engines``, else ``~/.cache/vn3d/engines``. No TensorRT import here.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from engines.files.assets import sha256_file
from engines.files.disk_cache import cache_root, write_atomic
from trt_build.availability import live_gpu_name, live_tensorrt_version

PRECISIONS = ("fp16", "fp32")
# bumped when the way an engine is made from the same key changes (e.g. the fp16 graph
# rewrite in build.py), so older entries stop matching instead of being reused
ENGINE_FORMAT = 1


@dataclass(frozen=True)
class EngineKey:
    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    precision: str  # "fp16" or "fp32"
    max_batch: int

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {self.precision!r}")
        if int(self.max_batch) < 1:
            raise ValueError(f"max_batch must be >= 1, not {self.max_batch}")

    def fields(self) -> dict:
        return asdict(self)

    @property
    def digest(self) -> str:
        """sha256 (hex, so filename-safe) of the key's fields and the engine format."""
        blob = json.dumps({"format": ENGINE_FORMAT, **self.fields()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


def engine_key(
    onnx_path: str | Path,
    precision: str,
    max_batch: int,
    trt_version: str | None = None,
    gpu_name: str | None = None,
) -> EngineKey:
    """The key for building ``onnx_path``; versions not given come from the live tensorrt
    module and CUDA device (``TensorRTUnavailable`` when there are none)."""
    return EngineKey(
        onnx_sha256=sha256_file(onnx_path),
        tensorrt_version=trt_version if trt_version is not None else live_tensorrt_version(),
        gpu_name=gpu_name if gpu_name is not None else live_gpu_name(),
        precision=precision,
        max_batch=int(max_batch),
    )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "unknown"


class EngineCache:
    """Engines on disk under ``root`` (default ``$VN3D_CACHE/engines``)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_root() / "engines"

    def path_for(self, key: EngineKey) -> Path:
        return self.root / f"{key.precision}-{key.digest}.engine"

    def sidecar_for(self, key: EngineKey) -> Path:
        return self.path_for(key).with_suffix(".json")

    def lookup(self, key: EngineKey) -> Path | None:
        """The engine file for ``key``, or None when it is missing, its sidecar is unreadable
        or names another key, or the engine's bytes do not hash to the recorded sha256."""
        path = self.path_for(key)
        try:
            meta = json.loads(self.sidecar_for(key).read_text())
            if not isinstance(meta, dict) or meta.get("format") != ENGINE_FORMAT:
                return None
            if meta.get("key") != key.fields():
                return None
            if meta.get("engine_sha256") != sha256_file(path):
                return None
        except (OSError, ValueError):
            return None
        return path

    def store(self, key: EngineKey, engine_bytes: bytes) -> Path:
        """Write the engine and then its sidecar, each atomically; returns the engine path."""
        data = bytes(engine_bytes)
        path = self.path_for(key)
        write_atomic(path, data)
        meta = {
            "format": ENGINE_FORMAT,
            "key": key.fields(),
            "engine_sha256": hashlib.sha256(data).hexdigest(),
            "engine_bytes": len(data),
        }
        write_atomic(self.sidecar_for(key), json.dumps(meta, indent=2).encode())
        return path

    def timing_cache_path(self, tensorrt_version: str, gpu_name: str) -> Path:
        """TensorRT's timing cache for one (TensorRT version, GPU name)."""
        tag = hashlib.sha256(f"{tensorrt_version}\0{gpu_name}".encode()).hexdigest()[:12]
        name = f"trt{_slug(tensorrt_version)}-{_slug(gpu_name)}-{tag}.cache"
        return self.root / "timing" / name

    def load_timing_cache(self, tensorrt_version: str, gpu_name: str) -> bytes:
        """The timing cache's bytes, or b"" (a fresh cache) when there is none."""
        try:
            return self.timing_cache_path(tensorrt_version, gpu_name).read_bytes()
        except OSError:
            return b""

    def save_timing_cache(self, tensorrt_version: str, gpu_name: str, data: bytes) -> Path:
        path = self.timing_cache_path(tensorrt_version, gpu_name)
        write_atomic(path, bytes(data))
        return path
