"""MediaPipe's 52 blendshape names -> the face model's ARKit-named expression vector.

MediaPipe Face Landmarker (Blendshape V2) scores 52 categories: ``_neutral`` plus 51
ARKit shapes named ``...Left`` / ``...Right``. ICT-FaceKit has 53: ``_L`` / ``_R`` and
``browInnerUp`` and ``cheekPuff`` split into two sides. The table:

| MediaPipe          | ICT                               |
|--------------------|-----------------------------------|
| ``_neutral``       | dropped                           |
| ``xxxLeft``        | ``xxx_L``                         |
| ``xxxRight``       | ``xxx_R``                         |
| ``browInnerUp``    | ``browInnerUp_L`` and ``_R``      |
| ``cheekPuff``      | ``cheekPuff_L`` and ``_R``        |
| ``jawLeft``, ``jawRight``, ``mouthLeft``, ``mouthRight`` | the same name (movements) |
| anything else      | the same name (``jawOpen``, ...)  |

Sides: both use the subject's own left/right (as ARKit does). Checked on renders: the ICT
head with ``eyeBlink_L = 1`` reads as MediaPipe ``eyeBlinkLeft``, and ``mouthSmile_L`` as
``mouthSmileLeft`` (``tests/test_tracker.py``), so no mirroring happens here.
"""

from __future__ import annotations

import numpy as np

SPLIT = ("browInnerUp", "cheekPuff")
DIRECTIONAL = ("jawLeft", "jawRight", "mouthLeft", "mouthRight")  # movements, not sides

#: MediaPipe's 52 blendshape categories, in its output order (index 0 is ``_neutral``).
BLENDSHAPE_NAMES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
    "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft",
    "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight",
    "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft",
    "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen",
    "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower",
    "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
)  # fmt: skip


def mediapipe_to_arkit(name: str) -> tuple[str, ...]:
    """The ICT/ARKit names one MediaPipe category feeds (empty for ``_neutral``)."""
    if name == "_neutral":
        return ()
    if name in DIRECTIONAL:
        return (name,)
    if name in SPLIT:
        return (f"{name}_L", f"{name}_R")
    for suffix, side in (("Left", "_L"), ("Right", "_R")):
        if name.endswith(suffix):
            return (name[: -len(suffix)] + side,)
    return (name,)


def arkit_names() -> tuple[str, ...]:
    """Every ICT/ARKit name MediaPipe's categories feed, in MediaPipe's order: the
    expression names of a tracker that only reads landmarks for a model without them."""
    return tuple(t for name in BLENDSHAPE_NAMES for t in mediapipe_to_arkit(name))


def mapping_matrix(source_names: list[str], target_names: tuple[str, ...]) -> np.ndarray:
    """A (len(target), len(source)) 0/1 matrix with ``target = M @ source``.

    Raises ``ValueError`` when a source name maps to no target name, or a target name is
    fed by nothing, so a renamed category cannot slip through silently.
    """
    index = {n: i for i, n in enumerate(target_names)}
    m = np.zeros((len(target_names), len(source_names)), np.float32)
    for j, name in enumerate(source_names):
        for target in mediapipe_to_arkit(name):
            if target not in index:
                raise ValueError(f"MediaPipe blendshape {name!r} maps to unknown {target!r}")
            m[index[target], j] = 1.0
    unfed = [n for n, row in zip(target_names, m, strict=True) if not row.any()]
    if unfed:
        raise ValueError(f"no MediaPipe blendshape feeds {', '.join(unfed)}")
    return m
