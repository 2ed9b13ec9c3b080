"""What several command groups share: the face model by name, output paths, number lists."""

from __future__ import annotations

import argparse
from pathlib import Path

from engines.face.model import FaceModel


def load_model(name: str) -> FaceModel:
    """The face model by name (``engines.face.by_name``)."""
    from engines.face.by_name import load_face_model

    return load_face_model(name)


def add_landmarker_flag(p: argparse.ArgumentParser) -> None:
    """``--landmarker tflite|onnx``: which runtime runs MediaPipe's face networks."""
    from engines.tracking.landmarkers import DEFAULT_LANDMARKER, LANDMARKER_HELP, LANDMARKERS

    p.add_argument("--landmarker", choices=LANDMARKERS, default=DEFAULT_LANDMARKER,
                   help=LANDMARKER_HELP)


def output_path(text: str) -> Path:
    """The output file's path, with its folder created."""
    out = Path(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def parse_floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None
