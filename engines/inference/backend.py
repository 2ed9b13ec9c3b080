"""Which runtime executes the project's ONNX networks (ERM, landmark encoder), chosen by
what the machine has:

* ``tensorrt``: the tensorrt module imports and there is a CUDA device (engines built and
  cached by ``trt_build.build``);
* ``onnxruntime-cuda``: ONNX Runtime with its CUDAExecutionProvider and a CUDA device;
* ``onnxruntime-cpu``: everywhere else. Without CUDA this is picked by itself and
  ``vn3d doctor`` says so (``describe_backend``).

tensorrt, onnxruntime and torch are imported inside the functions, so importing this
module costs nothing and never fails.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

BACKENDS = ("tensorrt", "onnxruntime-cuda", "onnxruntime-cpu")


class BackendUnavailableError(RuntimeError):
    """A backend was asked for by name and this machine cannot run it."""


def _cuda_device() -> str | None:
    """The first CUDA device's name, or None."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:
        pass
    return None


def _ort_cuda() -> tuple[bool, str]:
    try:
        import onnxruntime
    except Exception as exc:
        return False, f"onnxruntime not importable ({exc})"
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return False, "onnxruntime has no CUDAExecutionProvider"
    return True, f"onnxruntime {onnxruntime.__version__} CUDAExecutionProvider"


def backend_status() -> dict[str, tuple[bool, str]]:
    """backend -> (usable here, why / why not)."""
    from trt_build.availability import tensorrt_available

    gpu = _cuda_device()
    trt_ok, trt_reason = tensorrt_available()
    ort_ok, ort_reason = _ort_cuda()
    if gpu is None:
        ort_ok, ort_reason = False, "no CUDA device"
    else:
        ort_reason = f"{ort_reason} on {gpu}" if ort_ok else ort_reason
    return {
        "tensorrt": (trt_ok, trt_reason),
        "onnxruntime-cuda": (ort_ok, ort_reason),
        "onnxruntime-cpu": (True, "CPUExecutionProvider"),
    }


def select_backend(prefer: str = "auto") -> str:
    """``prefer`` if it can run here (``BackendUnavailableError`` if not), or with "auto" the
    first usable of tensorrt, onnxruntime-cuda, onnxruntime-cpu."""
    if prefer != "auto" and prefer not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {BACKENDS}, not {prefer!r}")
    status = backend_status()
    if prefer != "auto":
        ok, reason = status[prefer]
        if not ok:
            raise BackendUnavailableError(f"{prefer} cannot run here: {reason}")
        return prefer
    return next(name for name in BACKENDS if status[name][0])


def describe_backend() -> str:
    """One line for ``vn3d doctor``: the backend "auto" picks and why."""
    status = backend_status()
    chosen = next(name for name in BACKENDS if status[name][0])
    if chosen != "onnxruntime-cpu":
        return f"{chosen} ({status[chosen][1]})"
    gpu = _cuda_device()
    if gpu is None:
        return "onnxruntime-cpu (no CUDA device: TensorRT/CUDA paths off)"
    return (
        f"onnxruntime-cpu (CUDA device {gpu}, but TensorRT: {status['tensorrt'][1]}; "
        f"ONNX Runtime: {status['onnxruntime-cuda'][1]})"
    )


class OnnxRunner:
    """An ONNX file with one input and one output (float32, dynamic batch) on ONNX Runtime."""

    def __init__(
        self,
        onnx_path: str | Path,
        providers: list[str] | None = None,
        threads: int | None = None,
    ) -> None:
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        # idle pool threads sleep instead of spinning: these networks are small and share
        # the process's cores with tracking and rendering (spinning cost ~25 % of a core
        # and a fifth of the server's frame rate, docs/PERFORMANCE.md)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads is not None:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.onnx_path = Path(onnx_path)
        self.session = onnxruntime.InferenceSession(
            str(self.onnx_path), opts, providers=providers or ["CPUExecutionProvider"]
        )
        ins, outs = self.session.get_inputs(), self.session.get_outputs()
        if len(ins) != 1 or len(outs) != 1:
            names = [i.name for i in ins], [o.name for o in outs]
            raise ValueError(f"OnnxRunner needs one input and one output, got {names}")
        self.input_name, self.output_name = ins[0].name, outs[0].name
        self.providers = self.session.get_providers()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = self.session.run([self.output_name], {self.input_name: x})[0]
        return np.asarray(out, dtype=np.float32)


def load_runner(
    onnx_path: str | Path,
    backend: str = "auto",
    precision: str = "fp16",
    cache=None,
) -> Callable[[np.ndarray], np.ndarray]:
    """A callable (B, ...) float32 -> (B, ...) float32 for ``onnx_path`` on ``backend``.

    tensorrt: the engine of ``precision`` from ``cache`` (built on a miss; default
    ``EngineCache()``). ONNX Runtime runs the file as it is (float32); ``precision`` is
    ignored there.
    """
    chosen = select_backend(backend)
    if chosen == "tensorrt":
        from trt_build.build import TrtRunner, build_engine
        from trt_build.engine_cache import EngineCache

        path = build_engine(onnx_path, precision, cache if cache is not None else EngineCache())
        return TrtRunner(path)
    if chosen == "onnxruntime-cuda":
        return OnnxRunner(onnx_path, ["CUDAExecutionProvider", "CPUExecutionProvider"])
    return OnnxRunner(onnx_path, ["CPUExecutionProvider"])
