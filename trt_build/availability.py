"""Whether TensorRT can be used here, and why not: the module and a CUDA device.

Everything that needs TensorRT raises ``TensorRTUnavailable`` with the install commands;
the rest of ``trt_build/`` (profile shapes, the FP16 rewrite, the cache) runs without it.
"""

from __future__ import annotations

INSTALL_LINE_CU12 = "pip install tensorrt-cu12 --extra-index-url https://pypi.nvidia.com"
INSTALL_LINE_CU13 = "pip install tensorrt-cu13 --extra-index-url https://pypi.nvidia.com"

class TensorRTUnavailable(RuntimeError):  # noqa: N818 (the name the issue uses)
    """TensorRT or a CUDA device is missing; the message says how to install TensorRT."""


def install_hint() -> str:
    try:
        import torch

        cuda = torch.version.cuda
    except Exception:  # torch is a dependency; be robust anyway
        cuda = None
    which = ""
    if cuda:
        major = cuda.split(".")[0]
        which = f" (this torch is built for CUDA {cuda}: use tensorrt-cu{major})"
    return (
        "TensorRT needs an NVIDIA GPU with its driver. Install it with NVIDIA's package "
        f"index{which}:\n"
        f"  {INSTALL_LINE_CU12}   # CUDA 12\n"
        f"  {INSTALL_LINE_CU13}   # CUDA 13\n"
        "On PyPI alone, tensorrt-cu12/-cu13 and their -libs are placeholders that download "
        "the real wheels from pypi.nvidia.com, so the install fails without that index. "
        "Without TensorRT, vn3d runs the ONNX files with ONNX Runtime."
    )


def tensorrt_available() -> tuple[bool, str]:
    """(True, "TensorRT <version> on <GPU>") or (False, why not: module missing / no CUDA)."""
    problems = []
    version = None
    try:
        import tensorrt

        version = tensorrt.__version__
    except Exception as exc:  # ImportError, or OSError when libnvinfer is missing
        problems.append(f"tensorrt module not importable ({type(exc).__name__}: {exc})")
    import torch

    if not torch.cuda.is_available():
        problems.append("no CUDA device (torch.cuda.is_available() is False)")
    if problems:
        return False, "; ".join(problems)
    return True, f"TensorRT {version} on {torch.cuda.get_device_name(0)}"


def require_tensorrt():
    """The tensorrt module, or ``TensorRTUnavailable`` with the reason and install lines."""
    ok, reason = tensorrt_available()
    if not ok:
        raise TensorRTUnavailable(f"TensorRT cannot be used: {reason}.\n{install_hint()}")
    import tensorrt

    return tensorrt



def live_tensorrt_version() -> str:
    """``tensorrt.__version__``; ``TensorRTUnavailable`` when the module cannot be imported."""
    try:
        import tensorrt
    except Exception as exc:  # ImportError, or OSError for missing libnvinfer
        raise TensorRTUnavailable(
            f"the tensorrt module cannot be imported ({exc}).\n{install_hint()}"
        ) from exc
    return str(tensorrt.__version__)


def live_gpu_name(device: int = 0) -> str:
    """The CUDA device's name from torch; ``TensorRTUnavailable`` without a CUDA device."""
    import torch

    if not torch.cuda.is_available():
        raise TensorRTUnavailable(
            f"no CUDA device (torch.cuda.is_available() is False).\n{install_hint()}"
        )
    return torch.cuda.get_device_name(device)
