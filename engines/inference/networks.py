"""Every network the project owns (landmark encoder, ERM, emotion detector), by name, and
``vn3d engines export``: all of them as ONNX files in one folder; with ``flame``, also
DECA's encoder and MICA from the user's registered files."""

from __future__ import annotations

from pathlib import Path

import torch

from engines.emotion.models import default_emotion_models
from engines.encoder.network import N_INPUTS, load_encoder
from engines.inference.onnx_export import export_onnx

NETWORKS = ("landmark_encoder", "erm", "emotion_detector", "emotion_detector_calibrated")
FLAME_NETWORKS = ("deca_encoder", "mica")

# module, n_inputs (an int, or the item's shape), input name, output name
Network = tuple[torch.nn.Module, int | tuple[int, ...], str, str]


def project_networks(expression_names: tuple[str, ...]) -> dict[str, Network]:
    """Every network the project owns, by name."""
    emotion = default_emotion_models(expression_names)
    return {
        "landmark_encoder": (load_encoder(), N_INPUTS, "landmarks", "psi_rotation"),
        "erm": (emotion.erm, emotion.erm.n_inputs, "intensities", "params"),
        "emotion_detector": (emotion.detector, len(expression_names), "psi", "logits"),
        "emotion_detector_calibrated": (emotion.calibrated_detector, len(expression_names),
                                        "psi", "logits"),
    }


def flame_networks() -> dict[str, Network]:
    """DECA's coarse encoder and MICA, loaded from the files ``vn3d doctor`` lists."""
    from engines.flame_encoders.deca import CROP_SIZE, load_deca
    from engines.flame_encoders.mica import ARCFACE_SIZE, load_mica

    return {
        "deca_encoder": (load_deca(), (3, CROP_SIZE, CROP_SIZE), "image", "code"),
        "mica": (load_mica(), (3, ARCFACE_SIZE, ARCFACE_SIZE), "aligned_face", "shape"),
    }


def export_all(out: Path, expression_names: tuple[str, ...], flame: bool = False
               ) -> dict[str, Path]:
    """Write ``<name>.onnx`` for every network into ``out`` (``flame``: DECA and MICA too)."""
    networks = project_networks(expression_names) | (flame_networks() if flame else {})
    return {name: export_onnx(m, n, Path(out) / f"{name}.onnx", i, o)
            for name, (m, n, i, o) in networks.items()}
