"""ONNX files of the networks the project owns (landmark encoder, ERM, emotion detector):
one float32 input and one output, both with a dynamic batch axis named ``batch``, so ONNX
Runtime, and TensorRT through ``trt_build/``, run them at any batch size.

``vn3d engines export`` writes all three into one folder (:func:`export_all`);
:func:`onnx_parity` is the check the tests run (ONNX Runtime vs PyTorch)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

NETWORKS = ("landmark_encoder", "erm", "emotion_detector")


def export_onnx(module: torch.nn.Module, n_inputs: int, path: Path, input_name: str,
                output_name: str) -> Path:
    """Export ``module`` (B, n_inputs) -> (B, ...) with a dynamic batch axis."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = module.training
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated, not broken
        torch.onnx.export(
            module, (torch.zeros(2, n_inputs),), str(path),
            input_names=[input_name], output_names=[output_name],
            dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
            dynamo=False,
        )
    module.train(was_training)
    return path


def onnx_parity(module: torch.nn.Module, path: Path, x: np.ndarray) -> float:
    """Max |ONNX Runtime - PyTorch| on the CPU for inputs ``x`` (B, n_inputs)."""
    from engines.inference_backend import OnnxRunner

    with torch.no_grad():
        ref = module(torch.as_tensor(x, dtype=torch.float32)).numpy()
    return float(np.abs(OnnxRunner(path)(np.asarray(x, np.float32)) - ref).max())


Network = tuple[torch.nn.Module, int, str, str]  # module, n_inputs, input name, output name


def project_networks(expression_names: tuple[str, ...]) -> dict[str, Network]:
    """Every network the project owns, by name."""
    from engines.emotion import default_emotion_models
    from engines.landmark_encoder import N_INPUTS, load_encoder

    emotion = default_emotion_models(expression_names)
    return {
        "landmark_encoder": (load_encoder(), N_INPUTS, "landmarks", "psi_rotation"),
        "erm": (emotion.erm, emotion.erm.n_inputs, "intensities", "params"),
        "emotion_detector": (emotion.detector, len(expression_names), "psi", "logits"),
    }


def export_all(out: Path, expression_names: tuple[str, ...]) -> dict[str, Path]:
    """Write ``<name>.onnx`` for every network into ``out``."""
    return {name: export_onnx(m, n, Path(out) / f"{name}.onnx", i, o)
            for name, (m, n, i, o) in project_networks(expression_names).items()}
