"""The install is deterministic: one OpenCV (mediapipe's contrib build), importable with
mediapipe, and the headless GL context works."""

from __future__ import annotations

from importlib import metadata


def test_cv2_and_mediapipe_import_together() -> None:
    import cv2
    import mediapipe as mp
    from mediapipe.tasks.python import vision

    assert hasattr(cv2, "imread") and hasattr(vision, "FaceLandmarker")
    assert mp.__version__


def test_exactly_one_opencv_distribution_is_installed() -> None:
    names = {d.metadata["Name"].lower() for d in metadata.distributions()}
    opencvs = {n for n in names if n.startswith("opencv")}
    assert opencvs == {"opencv-contrib-python"}, opencvs


def test_egl_context_reports_a_renderer() -> None:
    from engines.render.renderer import create_context

    ctx = create_context()
    try:
        assert ctx.info["GL_RENDERER"]
        assert ctx.version_code >= 330
    finally:
        ctx.release()


def test_torch_training_after_a_gl_context_does_not_crash() -> None:
    import subprocess
    import sys

    code = (
        "from engines.render.renderer import create_context\n"
        "ctx = create_context()\n"
        "import torch\n"
        "m = torch.nn.Linear(2, 1)\n"
        "opt = torch.optim.Adam(m.parameters())\n"
        "m(torch.ones(1, 2)).sum().backward()\n"
        "opt.step()\n"
        "import torch._dynamo\n"
        "print('survived')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "survived" in out.stdout, out.stderr[-2000:]
