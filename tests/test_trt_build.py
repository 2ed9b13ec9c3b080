"""TensorRT engine builds and the inference backend choice.

CPU tests cover everything that does not need TensorRT: the engine key and cache (hit,
tampering, rebuild on any changed field), the optimisation profile shapes, the FP16 graph
rewrite that FP16 engines are built from (run on ONNX Runtime's CPU), the backend choice,
ONNX Runtime parity with torch and the install message. GPU tests build real engines and
skip with the reason when TensorRT or a CUDA device is missing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from engines.inference.backend import (
    BackendUnavailableError,
    OnnxRunner,
    describe_backend,
    load_runner,
    select_backend,
)
from trt_build import build as trt_build_mod
from trt_build.availability import INSTALL_LINE_CU12, TensorRTUnavailable, tensorrt_available
from trt_build.build import (
    FP16_RTOL,
    build_engine,
    cached_engine,
    parity_tolerance,
    profile_shapes,
    to_fp16_model,
)
from trt_build.engine_cache import EngineCache, EngineKey, engine_key

IN, HIDDEN, OUT = 12, 32, 7
TRT_OK, TRT_REASON = tensorrt_available()
CUDA = torch.cuda.is_available()
needs_trt = pytest.mark.skipif(
    not TRT_OK, reason=f"needs TensorRT and a CUDA device; here: {TRT_REASON}"
)


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(IN, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, OUT)
    ).eval()


def export(model: torch.nn.Module, path: Path, dynamic: bool = True) -> Path:
    axes = {"x": {0: "batch"}, "y": {0: "batch"}} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated, not broken
        torch.onnx.export(
            model,
            (torch.zeros(1, IN),),
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes=axes,
            dynamo=False,
        )
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    model = tiny_model()
    return model, export(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def inputs(batch: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, IN), dtype=np.float32)


def reference(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


KEY = EngineKey("ab" * 32, "10.13.3.9", "NVIDIA H100 80GB HBM3", "fp16", 64)


# ---------------------------------------------------------------- engine key and cache


def test_engine_key_digest_is_stable_and_changes_with_every_field() -> None:
    same = EngineKey(**KEY.fields())
    assert same.digest == KEY.digest and len(KEY.digest) == 64
    assert all(c in "0123456789abcdef" for c in KEY.digest)  # filename-safe
    changed = {
        "onnx_sha256": "cd" * 32,
        "tensorrt_version": "10.14.1.48",
        "gpu_name": "NVIDIA GeForce RTX 4090",
        "precision": "fp32",
        "max_batch": 32,
    }
    assert set(changed) == set(KEY.fields())
    digests = {dataclasses.replace(KEY, **{f: v}).digest for f, v in changed.items()}
    assert len(digests) == len(changed) and KEY.digest not in digests
    with pytest.raises(ValueError, match="precision"):
        dataclasses.replace(KEY, precision="int8")


def test_engine_key_hashes_the_onnx_file(tiny, tmp_path: Path) -> None:
    _, path = tiny
    key = engine_key(path, "fp32", 64, trt_version="10.0", gpu_name="GPU")
    assert key.onnx_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (key.tensorrt_version, key.gpu_name, key.precision, key.max_batch) == (
        "10.0",
        "GPU",
        "fp32",
        64,
    )
    if not TRT_OK:  # live versions are needed when not given
        with pytest.raises(TensorRTUnavailable, match="tensorrt-cu12"):
            engine_key(path, "fp32", 64)


def test_cache_store_then_lookup_hits(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    assert cache.lookup(KEY) is None
    path = cache.store(KEY, b"engine-bytes")
    assert path == cache.path_for(KEY) and path.read_bytes() == b"engine-bytes"
    assert cache.lookup(KEY) == path
    assert cached_engine(cache, KEY) == path
    assert cached_engine(cache, KEY, force=True) is None  # --force rebuilds
    assert not list(tmp_path.glob(".tmp-*"))  # atomic writes leave no temporaries


def test_cache_tampered_engine_or_sidecar_is_a_miss(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    path = cache.store(KEY, b"engine-bytes")
    path.write_bytes(b"engine-bytez")  # same size, other bytes
    assert cache.lookup(KEY) is None

    cache.store(KEY, b"engine-bytes")
    sidecar = cache.sidecar_for(KEY)
    meta = json.loads(sidecar.read_text())
    meta["key"]["gpu_name"] = "another GPU"
    sidecar.write_text(json.dumps(meta))
    assert cache.lookup(KEY) is None

    sidecar.write_text("{not json")
    assert cache.lookup(KEY) is None
    sidecar.unlink()
    assert cache.lookup(KEY) is None
    cache.store(KEY, b"engine-bytes")
    path.unlink()
    assert cache.lookup(KEY) is None


def test_cache_misses_when_any_key_field_changes(tiny, tmp_path: Path) -> None:
    _, path = tiny
    cache = EngineCache(tmp_path)
    key = engine_key(path, "fp16", 64, trt_version="10.13.3.9", gpu_name="NVIDIA H100")
    cache.store(key, b"engine")
    assert cache.lookup(key) is not None
    for other in (
        dataclasses.replace(key, tensorrt_version="10.14.1.48"),
        dataclasses.replace(key, gpu_name="NVIDIA L4"),
        dataclasses.replace(key, precision="fp32"),
        dataclasses.replace(key, max_batch=128),
    ):
        assert cache.path_for(other) != cache.path_for(key)
        assert cache.lookup(other) is None
    # new ONNX bytes (other weights) -> another key -> a miss, i.e. a rebuild
    changed = export(tiny_model(seed=1), tmp_path / "changed.onnx")
    key2 = engine_key(changed, "fp16", 64, trt_version="10.13.3.9", gpu_name="NVIDIA H100")
    assert key2.onnx_sha256 != key.onnx_sha256
    assert cache.lookup(key2) is None


def test_cache_root_and_timing_cache_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VN3D_CACHE", str(tmp_path))
    cache = EngineCache()
    assert cache.root == tmp_path / "engines"
    a = cache.timing_cache_path("10.13.3.9", "NVIDIA H100 80GB HBM3")
    assert a.parent == tmp_path / "engines" / "timing"
    assert " " not in a.name and "/" not in a.name
    assert a != cache.timing_cache_path("10.14.1.48", "NVIDIA H100 80GB HBM3")
    assert a != cache.timing_cache_path("10.13.3.9", "NVIDIA L4")
    assert cache.load_timing_cache("10.13.3.9", "NVIDIA H100 80GB HBM3") == b""
    cache.save_timing_cache("10.13.3.9", "NVIDIA H100 80GB HBM3", b"timings")
    assert cache.load_timing_cache("10.13.3.9", "NVIDIA H100 80GB HBM3") == b"timings"


# ---------------------------------------------------------------- ONNX-side pieces


def test_profile_shapes_from_the_onnx(tiny, tmp_path: Path) -> None:
    _, path = tiny
    assert profile_shapes(path) == {"x": ((1, IN), (32, IN), (64, IN))}
    assert profile_shapes(path, max_batch=8) == {"x": ((1, IN), (8, IN), (8, IN))}
    fixed = export(tiny_model(), tmp_path / "fixed.onnx", dynamic=False)
    with pytest.raises(ValueError, match="fixed batch"):
        profile_shapes(fixed)


def test_fp16_rewrite_keeps_float32_io_and_parity(tiny) -> None:
    """The graph FP16 engines are built from, run on ONNX Runtime's CPU: float16 weights,
    float32 input/output, within the FP16 tolerance of the float32 model."""
    import onnxruntime

    model, path = tiny
    half = to_fp16_model(onnx.load(str(path)))
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert {i.data_type for i in half.graph.initializer} == {f16}
    assert half.graph.input[0].type.tensor_type.elem_type == f32
    assert half.graph.output[0].type.tensor_type.elem_type == f32
    nodes = half.graph.node
    assert (nodes[0].op_type, nodes[-1].op_type) == ("Cast", "Cast")
    sess = onnxruntime.InferenceSession(
        half.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    x = inputs(64)
    ref = reference(model, x)
    out = sess.run(None, {"x": x})[0]
    assert out.dtype == np.float32 and out.shape == ref.shape
    err = float(np.abs(out - ref).max())
    assert err <= parity_tolerance("fp16", ref)
    assert err > 0  # it really computed in float16
    assert parity_tolerance("fp16", ref) == FP16_RTOL * max(float(np.abs(ref).max()), 1.0)


# ---------------------------------------------------------------- backend choice, ORT


@pytest.mark.skipif(CUDA, reason="this machine has a CUDA device: the CPU choice is not made")
def test_without_cuda_onnxruntime_cpu_is_chosen() -> None:
    assert select_backend() == "onnxruntime-cpu"
    assert select_backend("onnxruntime-cpu") == "onnxruntime-cpu"
    line = describe_backend()
    assert line.startswith("onnxruntime-cpu") and "no CUDA device" in line
    for name in ("tensorrt", "onnxruntime-cuda"):
        with pytest.raises(BackendUnavailableError):
            select_backend(name)
    with pytest.raises(ValueError):
        select_backend("tpu")


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_onnx_runner_matches_torch(tiny, batch: int) -> None:
    model, path = tiny
    runner = OnnxRunner(path, threads=1)
    x = inputs(batch)
    out = runner(x)
    assert out.shape == (batch, OUT) and out.dtype == np.float32
    assert float(np.abs(out - reference(model, x)).max()) <= 1e-4


@pytest.mark.skipif(CUDA, reason="this machine has a CUDA device: auto picks a GPU backend")
def test_load_runner_auto_is_onnxruntime_on_cpu(tiny) -> None:
    model, path = tiny
    runner = load_runner(path)
    assert isinstance(runner, OnnxRunner) and runner.providers == ["CPUExecutionProvider"]
    x = inputs(5)
    assert float(np.abs(runner(x) - reference(model, x)).max()) <= 1e-4


@pytest.mark.skipif(TRT_OK, reason="TensorRT and CUDA are present: nothing is unavailable")
def test_build_engine_without_tensorrt_says_how_to_install(tiny, tmp_path: Path) -> None:
    _, path = tiny
    ok, reason = tensorrt_available()
    assert not ok and ("tensorrt module" in reason or "no CUDA device" in reason)
    with pytest.raises(TensorRTUnavailable) as info:
        build_engine(path, "fp16", EngineCache(tmp_path))
    message = str(info.value)
    assert INSTALL_LINE_CU12 in message and "tensorrt-cu13" in message
    assert reason in message
    assert not any(tmp_path.iterdir())  # nothing half-built left behind


# ---------------------------------------------------------------- build flow, stand-in TRT


class FakeTRT:
    """Just enough of the tensorrt module for ``build_engine``: the "engine" it builds is a
    JSON record of what the builder was asked for, so the CPU can check the flow (profile,
    precision, flags, timing cache, engine cache) that real builds take."""

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            self.severity = severity

    class NetworkDefinitionCreationFlag:
        STRONGLY_TYPED = 1

    class MemoryPoolType:
        WORKSPACE = 0

    class BuilderFlag:
        TF32 = 7

    # over 80 lines on purpose: the stand-in's classes are defined here, together, so the
    # slice of the TensorRT API that build.py uses reads as one piece
    def __init__(self, version: str = "10.13.3.9") -> None:
        self.__version__ = version
        self.builds = 0
        fake = self

        class Network:
            def __init__(self, flags):
                self.flags, self.model = flags, None

            @property
            def num_inputs(self):
                return len(self.model.graph.input)

            def get_input(self, i):
                return self.model.graph.input[i]

        class Parser:
            def __init__(self, network, logger):
                self.network, self.num_errors = network, 0

            def parse(self, data):
                self.network.model = onnx.load_from_string(data)
                return True

        class Profile(dict):
            def set_shape(self, name, lo, opt, hi):
                self[name] = [list(lo), list(opt), list(hi)]

        class Cache:
            def __init__(self, blob):
                self.blob = bytes(blob)

            def serialize(self):
                return self.blob + b"+timing"

        class Config:
            def __init__(self):
                self.cleared, self.profiles, self.pool, self.cache = [], [], None, None

            def set_memory_pool_limit(self, pool, size):
                self.pool = size

            def clear_flag(self, flag):
                self.cleared.append(flag)

            def add_optimization_profile(self, profile):
                self.profiles.append(profile)

            def create_timing_cache(self, blob):
                return Cache(blob)

            def set_timing_cache(self, cache, ignore_mismatch):
                self.cache = cache
                return True

            def get_timing_cache(self):
                return self.cache

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                return Network(flags)

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                fake.builds += 1
                types = sorted({i.data_type for i in network.model.graph.initializer})
                record = {
                    "flags": network.flags,
                    "tf32_cleared": FakeTRT.BuilderFlag.TF32 in config.cleared,
                    "workspace": config.pool,
                    "profiles": config.profiles,
                    "weight_types": types,
                    "timing_in": config.cache.blob.decode(),
                }
                return json.dumps(record).encode()

        self.Builder, self.OnnxParser = Builder, Parser


@pytest.fixture
def fake_trt(monkeypatch: pytest.MonkeyPatch) -> FakeTRT:
    fake = FakeTRT()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=0: "Fake GPU 80GB")
    return fake


def test_build_flow_with_a_stand_in_tensorrt(fake_trt: FakeTRT, tmp_path: Path) -> None:
    """build_engine end to end minus the GPU: profile shapes, precision, flags, timing cache
    and the engine cache (hit without rebuild; new ONNX, precision or TRT version rebuild)."""
    path = export(tiny_model(), tmp_path / "m.onnx")
    cache = EngineCache(tmp_path / "cache")
    assert tensorrt_available() == (True, "TensorRT 10.13.3.9 on Fake GPU 80GB")
    assert select_backend() == "tensorrt"
    assert describe_backend() == "tensorrt (TensorRT 10.13.3.9 on Fake GPU 80GB)"

    fp16 = build_engine(path, "fp16", cache, workspace_mb=256)
    record = json.loads(fp16.read_bytes())
    assert record["profiles"] == [{"x": [[1, IN], [32, IN], [64, IN]]}]
    assert record["weight_types"] == [onnx.TensorProto.FLOAT16]
    assert record["flags"] == 1 << FakeTRT.NetworkDefinitionCreationFlag.STRONGLY_TYPED
    assert record["tf32_cleared"] and record["workspace"] == 256 << 20
    assert record["timing_in"] == ""  # no timing cache yet: a fresh one
    timing = cache.timing_cache_path("10.13.3.9", "Fake GPU 80GB")
    assert timing.read_bytes() == b"+timing"

    mtime = fp16.stat().st_mtime_ns
    assert build_engine(path, "fp16", cache) == fp16 and fake_trt.builds == 1
    assert fp16.stat().st_mtime_ns == mtime
    assert build_engine(path, "fp16", cache, force=True) == fp16 and fake_trt.builds == 2

    fp32 = build_engine(path, "fp32", cache, max_batch=16, opt_batch=32)
    record = json.loads(fp32.read_bytes())
    assert fp32 != fp16 and record["weight_types"] == [onnx.TensorProto.FLOAT]
    assert record["profiles"] == [{"x": [[1, IN], [16, IN], [16, IN]]}]
    assert record["timing_in"] == "+timing+timing"  # the saved cache is loaded and extended

    export(tiny_model(seed=1), path)  # other weights, same name
    assert build_engine(path, "fp16", cache) != fp16 and fake_trt.builds == 4

    fake_trt.__version__ = "11.4.0.106"  # new TensorRT: rebuild; strongly typed is implicit
    v11 = build_engine(path, "fp16", cache)
    assert fake_trt.builds == 5 and json.loads(v11.read_bytes())["flags"] == 0
    assert cache.timing_cache_path("11.4.0.106", "Fake GPU 80GB").is_file()


# ---------------------------------------------------------------- GPU: real engines


@needs_trt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_parity_with_onnxruntime(tiny, tmp_path: Path, precision: str) -> None:
    from trt_build.build import TrtRunner

    _, path = tiny
    cache = EngineCache(tmp_path)
    engine = build_engine(path, precision, cache)
    assert cache.lookup(engine_key(path, precision, 64)) == engine
    trt_runner, ort_runner = TrtRunner(engine), OnnxRunner(path)
    assert (trt_runner.min_batch, trt_runner.max_batch) == (1, 64)
    for batch in (1, 7, 32, 64):
        x = inputs(batch, seed=batch)
        ref = ort_runner(x)
        out = trt_runner(x)
        assert out.shape == ref.shape and out.dtype == np.float32
        # fp32: 1e-4 absolute; fp16: 2e-2 of the output scale (reasoning at FP16_RTOL)
        assert float(np.abs(out - ref).max()) <= parity_tolerance(precision, ref)
    with pytest.raises(ValueError, match="outside the engine's profile"):
        trt_runner(inputs(65))
    timing = cache.timing_cache_path(*_live_versions())
    assert timing.is_file() and timing.stat().st_size > 0


def _live_versions() -> tuple[str, str]:
    import tensorrt

    return str(tensorrt.__version__), torch.cuda.get_device_name(0)


@needs_trt
def test_second_build_is_a_cache_hit_and_changed_onnx_rebuilds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = export(tiny_model(), tmp_path / "m.onnx")
    cache = EngineCache(tmp_path / "cache")
    first = build_engine(path, "fp16", cache)
    mtime = first.stat().st_mtime_ns

    def no_build(*args, **kwargs):
        raise AssertionError("rebuilt although the key matches")

    with monkeypatch.context() as m:
        m.setattr(trt_build_mod, "build_serialized", no_build)
        again = build_engine(path, "fp16", cache)
    assert again == first and first.stat().st_mtime_ns == mtime

    export(tiny_model(seed=1), path)  # same file name, other weights
    rebuilt = build_engine(path, "fp16", cache)
    assert rebuilt != first and rebuilt.is_file() and first.is_file()
    os.utime(rebuilt)  # a touched file is still a hit (the key is the bytes, not mtime)
    assert build_engine(path, "fp16", cache) == rebuilt
