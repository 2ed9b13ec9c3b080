"""Every network the project owns (landmark encoder, ERM, emotion detector), by name, and
``vn3d engines export``: all of them as ONNX files in one folder."""

from __future__ import annotations

from pathlib import Path

import torch

from engines.emotion.models import default_emotion_models
from engines.encoder.network import N_INPUTS, load_encoder
from engines.inference.onnx_export import export_onnx

NETWORKS = ("landmark_encoder", "erm", "emotion_detector")

Network = tuple[torch.nn.Module, int, str, str]  # module, n_inputs, input name, output name


def project_networks(expression_names: tuple[str, ...]) -> dict[str, Network]:
    """Every network the project owns, by name."""
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
