"""TensorRT engines (FP16 / FP32) from the project's ONNX files, with a dynamic batch.

``build_engine`` returns the cached engine when its key (ONNX sha256, TensorRT version, GPU
name, precision, max batch) matches, else it parses the ONNX, gives every input one
optimisation profile (batch 1 / ``opt_batch`` / ``max_batch``, the other dimensions from
the ONNX), reuses and updates the timing cache, builds and stores the engine.

Precision comes from the graph itself: TensorRT 11 builds every network strongly typed
(``BuilderFlag.FP16`` is gone), and TensorRT 10 is asked for a strongly typed network too,
so one recipe serves both. FP16 engines are built from a rewritten ONNX (``to_fp16_model``)
whose weights and activations are float16 while the input and output stay float32 (a Cast
after each input and before each output); FP32 engines are the ONNX as it is with TF32
math switched off, so they match ONNX Runtime to float32 rounding.

TensorRT is an optional import: ``availability.tensorrt_available()`` says whether it can be
used and why not, and everything that needs it raises ``TensorRTUnavailable`` with the install
commands. The pieces that do not need it (profile shapes, the FP16 rewrite, the cache
decision) are plain functions that run on the CPU.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from trt_build.availability import require_tensorrt
from trt_build.engine_cache import EngineCache, EngineKey, engine_key, live_gpu_name

# Parity with ONNX Runtime (float32 on the CPU), shared with tests and the GPU check script.
# FP32: same float32 arithmetic, only summation order differs -> 1e-4 absolute.
# FP16: float16 keeps 11 significant bits, unit roundoff u = 2^-11 ~ 4.9e-4. Every layer
# rounds its input, its weights and its output to fp16 (GEMMs accumulate in fp32), about
# 3u ~ 1.5e-3 relative to that layer's scale; over a depth of L layers plus the two I/O
# casts the errors add to ~(3L + 2)u, ~5.4e-3 for the ERM's three Linear layers. 2e-2 of
# the output scale leaves a ~4x margin for weights of norm > 1 and ReLUs switching near 0.
# The scale is max|reference|, floored at 1 (blendshape weights live in [0, 1]).
FP32_ATOL = 1e-4
FP16_RTOL = 2e-2


# ---------------------------------------------------------------- CPU-side pieces (no TRT)


def _load_onnx(onnx_path: str | Path, with_weights: bool = True):
    import onnx

    return onnx.load(str(onnx_path), load_external_data=with_weights)


def graph_inputs(model) -> list:
    """The graph's real inputs (initializers listed as inputs by old exporters left out)."""
    weights = {init.name for init in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in weights]


def profile_shapes(
    onnx_path: str | Path, max_batch: int = 64, opt_batch: int = 32, min_batch: int = 1
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """input name -> (min, opt, max) shapes: the batch (axis 0, which must be dynamic) at
    ``min_batch`` / ``opt_batch`` (clamped into range) / ``max_batch``, the other axes as the
    ONNX gives them (they must be fixed)."""
    if not 1 <= min_batch <= max_batch:
        raise ValueError(f"need 1 <= min_batch <= max_batch, got {min_batch}, {max_batch}")
    opt = min(max(opt_batch, min_batch), max_batch)
    shapes = {}
    for inp in graph_inputs(_load_onnx(onnx_path, with_weights=False)):
        dims = inp.type.tensor_type.shape.dim
        if not dims:
            raise ValueError(f"input {inp.name!r} has no batch axis")
        if dims[0].HasField("dim_value") and dims[0].dim_value > 0:
            raise ValueError(
                f"input {inp.name!r} has a fixed batch of {dims[0].dim_value}; export it "
                "with dynamic_axes={name: {0: 'batch'}}"
            )
        rest = []
        for axis, d in enumerate(dims[1:], 1):
            if not (d.HasField("dim_value") and d.dim_value > 0):
                raise ValueError(
                    f"input {inp.name!r} axis {axis} is dynamic; only the batch may be"
                )
            rest.append(int(d.dim_value))
        shapes[inp.name] = (
            (min_batch, *rest),
            (opt, *rest),
            (max_batch, *rest),
        )
    if not shapes:
        raise ValueError(f"{onnx_path} has no inputs")
    return shapes


# inputs that ONNX requires to stay float32 whatever the compute type (op, input index)
_KEEP_FP32_INPUTS = {("Resize", 1), ("Resize", 2)}
_FP16_MAX = float(np.finfo(np.float16).max)


def to_fp16_model(model):
    """A copy of an ONNX model computing in float16 with float32 inputs and outputs: float
    initializers and Constant tensors become float16 (clipped to ±65504), Casts to float
    become Casts to float16, a Cast to float16 follows each float input and a Cast back to
    float precedes each float output. For the project's feed-forward nets (Gemm / MatMul /
    Add / activations); graphs with subgraphs (If, Loop) are refused."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = copy.deepcopy(model)
    g = m.graph
    FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16  # noqa: N806

    keep = set()
    for node in g.node:
        for att in node.attribute:
            if att.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                raise ValueError(f"{node.op_type} with a subgraph: not supported by to_fp16_model")
        for idx, name in enumerate(node.input):
            if (node.op_type, idx) in _KEEP_FP32_INPUTS:
                keep.add(name)

    def half(tensor):
        arr = numpy_helper.to_array(tensor).astype(np.float32)
        arr = np.clip(arr, -_FP16_MAX, _FP16_MAX).astype(np.float16)
        return numpy_helper.from_array(arr, tensor.name)

    for i, init in enumerate(g.initializer):
        if init.data_type == FLOAT and init.name not in keep:
            g.initializer[i].CopyFrom(half(init))
    for node in g.node:
        for att in node.attribute:
            is_float_constant = (
                node.op_type == "Constant" and att.name == "value" and att.t.data_type == FLOAT
            )
            if is_float_constant and node.output[0] not in keep:
                att.t.CopyFrom(half(att.t))
            if node.op_type == "Cast" and att.name == "to" and att.i == FLOAT:
                att.i = HALF

    weights = {init.name for init in g.initializer}
    inputs = [
        i.name for i in g.input if i.name not in weights and i.type.tensor_type.elem_type == FLOAT
    ]
    outputs = [o.name for o in g.output if o.type.tensor_type.elem_type == FLOAT]
    renamed = {name: f"{name}__fp16" for name in inputs}
    out_renamed = {name: f"{name}__fp16" for name in outputs if name not in renamed}
    for node in g.node:
        for idx, name in enumerate(node.input):
            if name in renamed and name not in keep:
                node.input[idx] = renamed[name]
            elif name in out_renamed:
                node.input[idx] = out_renamed[name]
        for idx, name in enumerate(node.output):
            if name in out_renamed:
                node.output[idx] = out_renamed[name]
    head = [
        helper.make_node("Cast", [n], [renamed[n]], name=f"{n}__to_fp16", to=HALF) for n in inputs
    ]
    tail = [
        helper.make_node(
            "Cast", [out_renamed.get(n, renamed.get(n, n))], [n], name=f"{n}__to_fp32", to=FLOAT
        )
        for n in outputs
    ]
    nodes = head + list(g.node) + tail
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]  # float32 annotations of intermediates are stale now
    onnx.checker.check_model(m)
    return m


def onnx_bytes_for(onnx_path: str | Path, precision: str) -> bytes:
    """The serialized ONNX that TensorRT parses for ``precision``."""
    if precision == "fp32":
        return _load_onnx(onnx_path).SerializeToString()
    if precision == "fp16":
        return to_fp16_model(_load_onnx(onnx_path)).SerializeToString()
    raise ValueError(f"precision must be 'fp16' or 'fp32', not {precision!r}")


def cached_engine(cache: EngineCache, key: EngineKey, force: bool = False) -> Path | None:
    """The engine to reuse for ``key``, or None when it must be built (forced, missing, or
    a corrupt / mismatching entry)."""
    return None if force else cache.lookup(key)


def parity_tolerance(precision: str, reference: np.ndarray) -> float:
    """Largest allowed max-abs difference from the float32 reference (see FP16_RTOL)."""
    if precision == "fp32":
        return FP32_ATOL
    scale = max(float(np.abs(reference).max(initial=0.0)), 1.0)
    return FP16_RTOL * scale


# ---------------------------------------------------------------- TensorRT


_LOGGER = None


def _logger(trt):
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


def _trt_major(trt) -> int:
    try:
        return int(str(trt.__version__).split(".")[0])
    except ValueError:
        return 0


def build_serialized(
    trt,
    onnx_bytes: bytes,
    shapes: dict,
    workspace_mb: int,
    timing_cache: bytes = b"",
) -> tuple[bytes, bytes]:
    """(engine bytes, updated timing cache bytes) for a parsed ONNX and its profile."""
    logger = _logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    strongly = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly is not None and _trt_major(trt) < 11:  # always on (flag deprecated) in 11
        flags |= 1 << int(strongly)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse the ONNX:\n{errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # FP32 engines: float32 math, not TF32
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        if name not in shapes:
            raise RuntimeError(f"TensorRT sees an input {name!r} that the ONNX file does not")
        lo, opt, hi = shapes[name]
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)

    try:
        cache = config.create_timing_cache(timing_cache)
        ok = config.set_timing_cache(cache, ignore_mismatch=False)
    except Exception:  # an unreadable cache file: start a fresh one
        ok = False
    if not ok:
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT could not build the engine (see its log above)")
    timing = bytes(memoryview(config.get_timing_cache().serialize()))
    return bytes(memoryview(serialized)), timing


def build_engine(
    onnx_path: str | Path,
    precision: str,
    cache: EngineCache,
    max_batch: int = 64,
    opt_batch: int = 32,
    workspace_mb: int = 1024,
    force: bool = False,
) -> Path:
    """The engine file for ``onnx_path`` at ``precision``: from the cache when its key
    matches (and ``force`` is off), else built, stored and returned."""
    trt = require_tensorrt()
    key = engine_key(onnx_path, precision, max_batch, str(trt.__version__), live_gpu_name())
    hit = cached_engine(cache, key, force)
    if hit is not None:
        return hit
    shapes = profile_shapes(onnx_path, max_batch=max_batch, opt_batch=opt_batch)
    blob = cache.load_timing_cache(key.tensorrt_version, key.gpu_name)
    engine, timing = build_serialized(
        trt, onnx_bytes_for(onnx_path, precision), shapes, workspace_mb, blob
    )
    cache.save_timing_cache(key.tensorrt_version, key.gpu_name, timing)
    return cache.store(key, engine)


class TrtRunner:
    """A built engine with one input and one output and a dynamic batch; device buffers are
    torch CUDA tensors, work goes on torch's current stream."""

    def __init__(self, engine_path: str | Path) -> None:
        trt = require_tensorrt()
        import torch

        self._torch = torch
        self.device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.init()
        self.engine_path = Path(engine_path)
        runtime = trt.Runtime(_logger(trt))
        self.engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self.engine is None:
            raise RuntimeError(
                f"TensorRT could not load {self.engine_path} (built by another TensorRT "
                "version or GPU?): rebuild it with `vn3d engines build --force`"
            )
        self._runtime = runtime  # keep alive as long as the engine
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        ins = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(ins) != 1 or len(outs) != 1:
            raise ValueError(f"TrtRunner needs one input and one output, got {ins} -> {outs}")
        self.input_name, self.output_name = ins[0], outs[0]

        def torch_dtype(name):
            np_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            return torch.from_numpy(np.empty(0, np_dtype)).dtype

        self.input_dtype = torch_dtype(self.input_name)
        self.output_dtype = torch_dtype(self.output_name)
        lo, _, hi = self.engine.get_tensor_profile_shape(self.input_name, 0)
        self.min_batch, self.max_batch = int(lo[0]), int(hi[0])
        self.feature_shape = tuple(int(d) for d in hi[1:])

    def run_torch(self, x):
        """Run on a CUDA tensor (B, ...); returns the output CUDA tensor, queued on the
        current stream (not synchronised: for timing)."""
        torch = self._torch
        x = x.to(device=self.device, dtype=self.input_dtype).contiguous()
        if tuple(x.shape[1:]) != self.feature_shape:
            raise ValueError(f"input shape {tuple(x.shape)}, expected (B, *{self.feature_shape})")
        if not self.min_batch <= x.shape[0] <= self.max_batch:
            raise ValueError(
                f"batch {x.shape[0]} outside the engine's profile "
                f"[{self.min_batch}, {self.max_batch}]"
            )
        self.context.set_input_shape(self.input_name, tuple(x.shape))
        out_shape = tuple(self.context.get_tensor_shape(self.output_name))
        out = torch.empty(out_shape, dtype=self.output_dtype, device=self.device)
        self.context.set_tensor_address(self.input_name, x.data_ptr())
        self.context.set_tensor_address(self.output_name, out.data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        return out

    def __call__(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = self.run_torch(torch.from_numpy(x).to(self.device))
        torch.cuda.current_stream(self.device).synchronize()
        return out.float().cpu().numpy()
