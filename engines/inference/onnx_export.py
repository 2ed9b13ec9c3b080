"""ONNX export of a network: one float32 input (B, n) or (B, C, H, W) and one output, both
with a dynamic batch axis named ``batch``, so ONNX Runtime, and TensorRT through
``trt_build/``, run it at any batch size. :func:`onnx_parity` is the check the tests run
(ONNX Runtime vs PyTorch)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from engines.inference.backend import OnnxRunner


def export_onnx(module: torch.nn.Module, n_inputs: int | tuple[int, ...], path: Path,
                input_name: str, output_name: str) -> Path:
    """Export ``module`` (B, n_inputs) -> (B, ...) with a dynamic batch axis; ``n_inputs``
    is a tuple for inputs with more axes (an image: (3, 224, 224))."""
    item = n_inputs if isinstance(n_inputs, tuple) else (n_inputs,)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = module.training
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated, not broken
        torch.onnx.export(
            module, (torch.zeros(2, *item),), str(path),
            input_names=[input_name], output_names=[output_name],
            dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
            dynamo=False,
        )
    module.train(was_training)
    return path


def onnx_parity(module: torch.nn.Module, path: Path, x: np.ndarray) -> float:
    """Max |ONNX Runtime - PyTorch| on the CPU for inputs ``x`` (B, ...)."""
    with torch.no_grad():
        ref = module(torch.as_tensor(x, dtype=torch.float32)).numpy()
    return float(np.abs(OnnxRunner(path)(np.asarray(x, np.float32)) - ref).max())
