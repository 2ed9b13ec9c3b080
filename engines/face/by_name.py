"""The face models by the name every command and the server use."""

from __future__ import annotations

from engines.face.model import FaceModel

FACE_MODELS = ("ict", "flame")
FACE_MODEL_HELP = (
    "ict (the open default) or flame (FLAME's head driven by the same expressions; needs "
    "the FLAME file and DECA's landmark embedding: vn3d doctor)"
)


def load_face_model(name: str) -> FaceModel:
    """``ict`` (open default) or ``flame`` (FLAME's head driven by ICT's parameters)."""
    if name == "flame":
        from engines.face.flame_arkit import load_flame_arkit

        return load_flame_arkit()
    if name != "ict":
        raise ValueError(f"unknown face model {name!r}; one of {', '.join(FACE_MODELS)}")
    from engines.face.ict import ICTFaceModel

    return ICTFaceModel()
