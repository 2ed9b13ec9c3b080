"""``vn3d doctor``: what this machine has for vn3d, and how to fix what is missing.

Each check gives :class:`Check` lines: OK; MISSING (needed for the default ICT head and
renderer: the exit status becomes 1); WARN (optional or degraded: the exit status stays 0).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engines.files.assets import ASSETS, ENV_VAR, asset_root, sha256_file

OK, MISSING, WARN = "OK", "MISSING", "WARN"
REQUIRED_ASSETS = frozenset({"ict_facekit"})  # the default head; the others serve tracking
PIP_FIX = "pip install -e . (in the project's virtual environment)"
APT_FIX = "apt-get install libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri (Debian/Ubuntu)"
MEDIAPIPE_FIX = (
    "pip install 'mediapipe>=0.10.20' 'opencv-contrib-python>=4.10'; keep one OpenCV "
    "wheel only (opencv-python / opencv-python-headless overwrite the same cv2/)"
)
TENSORRT_FIX = (
    "on a GPU machine: make gpu (or pip install --extra-index-url https://pypi.nvidia.com "
    "tensorrt-cu13; tensorrt-cu12 for CUDA 12); an optional import, used only for TensorRT "
    "engines"
)


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK, MISSING or WARN
    detail: str
    fix: str = ""


def check_asset_root() -> list[Check]:
    root = asset_root()
    source = f"${ENV_VAR}" if os.environ.get(ENV_VAR) else "the default ../shared/assets"
    detail = f"{root.resolve()} (from {source})"
    if root.is_dir():
        return [Check("asset root", OK, detail)]
    fix = f"set ${ENV_VAR} to the assets folder, or run `python scripts/fetch_assets.py all`"
    return [Check("asset root", MISSING, f"{detail} does not exist", fix)]


def check_assets() -> list[Check]:
    checks = []
    for key, asset in ASSETS.items():
        name, path = f"asset {key}", asset_root() / asset.relpath
        bad = MISSING if key in REQUIRED_ASSETS else WARN
        if not path.is_file():
            detail = f"{asset.relpath} not found at {path.resolve()}"
            checks.append(Check(name, bad, detail, asset.how_to_get))
            continue
        try:
            digest = sha256_file(path)
        except OSError as exc:
            checks.append(Check(name, bad, f"{asset.relpath} unreadable: {exc}"))
            continue
        if asset.sha256 and digest != asset.sha256 and key == "ict_facekit" and loads_as_ict(path):
            detail = (
                f"{asset.relpath}: not the reference pack (sha256 {digest[:12]}...), but it loads "
                "as a valid ICT head (expected for a copy packed by scripts/fetch_assets.py)"
            )
            checks.append(Check(name, WARN, detail))
        elif asset.sha256 and digest != asset.sha256:
            detail = (
                f"{asset.relpath}: checksum mismatch (sha256 {digest[:12]}..., "
                f"expected {asset.sha256[:12]}...)"
            )
            checks.append(Check(name, bad, detail, f"replace the file: {asset.how_to_get}"))
        else:
            checks.append(Check(name, OK, f"{asset.relpath}, {asset.licence}, sha256 matches"))
    return checks


def loads_as_ict(path: Path) -> bool:
    """True when the file loads as the ICT head with the expected sizes."""
    from engines.face.ict import ICTFaceModel

    try:
        model = ICTFaceModel(path)
    except Exception:  # any failure means "not a valid pack"
        return False
    return model.n_vertices == 26719 and model.n_expression == 53 and model.n_shape == 100


def check_registered_files() -> list[Check]:
    """FLAME, its landmark embedding, DECA and MICA: optional, found or where to get them."""
    from engines.files.registered import REGISTERED_FILES

    checks = []
    for f in REGISTERED_FILES:
        path, source = f.candidate()
        name = f"{f.what} (optional)"
        if path.is_file():
            try:  # found is not enough: a truncated download or another file must say so
                loaded = load_registered(f.env_var, path)
            except Exception as exc:
                detail = f"{path.resolve()} (from {source}) does not load: " + \
                    str(exc).splitlines()[0][:300]
                checks.append(Check(name, WARN, detail, f"replace it: {f.how_to_get}"))
                continue
            checks.append(Check(name, OK, f"{path.resolve()} (from {source}): {loaded}"))
            continue
        detail = f"not found at {path.resolve()} (from {source}; not redistributable)"
        fix = (f"only for {f.used_for}: {f.how_to_get}; put it at {f.default_path.resolve()} "
               f"or set ${f.env_var}")
        checks.append(Check(name, WARN, detail, fix))
    return checks


def load_registered(env_var: str, path: Path) -> str:
    """Load a registered file as the project will; a line on what it holds."""
    from engines.face.flame import FlameModel
    from engines.face.flame_landmarks import load_landmark_embedding
    from engines.face.flame_texture import FlameAlbedo, read_obj_uvs
    from engines.flame_encoders.deca import load_deca
    from engines.flame_encoders.mica import load_mica

    def flame() -> str:
        model = FlameModel(path, n_expression=None)
        return f"{model.n_vertices} vertices, {model.n_expression} expression components"

    loads = {
        "VN3D_FLAME_MODEL": flame,
        "VN3D_FLAME_LANDMARKS": lambda: load_landmark_embedding(path) and
        "51 fixed + 17 contour landmarks",
        "VN3D_DECA_MODEL": lambda: load_deca(path) and "DECA's coarse encoder loads",
        "VN3D_MICA_MODEL": lambda: load_mica(path) and "MICA (ArcFace + mapping) loads",
        "VN3D_FLAME_UVS": lambda: f"{len(read_obj_uvs(path)[1])} textured triangles",
        "VN3D_FLAME_ALBEDO": lambda: FlameAlbedo.load(path) and "512² albedo, 50 components",
    }
    return loads[env_var]()


def check_renderer() -> list[Check]:
    try:
        from engines.render.renderer import create_context, egl_device

        ctx = create_context()
    except Exception as exc:
        detail = f"no headless OpenGL 3.3 context: {exc.__cause__ or exc}"
        return [Check("EGL renderer", MISSING, detail, APT_FIX)]
    try:
        info = ctx.info
        index, why = egl_device()
        detail = f"{info['GL_RENDERER']}, GL {info['GL_VERSION']} (EGL device {index}: {why})"
        return [Check("EGL renderer", OK, detail)]
    finally:
        ctx.release()


def check_onnx_landmarker() -> list[Check]:
    """MediaPipe's networks under ONNX Runtime (``--landmarker onnx``): files, providers."""
    from engines.tracking.landmarkers import onnx_providers
    from engines.tracking.mediapipe_onnx import model_dirs, models_available

    name = "onnx landmarker (optional)"
    found = next((d for d in model_dirs() if models_available(d)), None)
    if found is None:
        dirs = " or ".join(str(d.resolve()) for d in model_dirs())
        fix = ("point $VN3D_ASSETS at an asset root with mediapipe_onnx/, or convert the "
               ".task yourself: docs/MEDIAPIPE_ONNX.md")  # fmt: skip
        return [Check(name, WARN, f"MediaPipe's ONNX networks not found in {dirs}", fix)]
    providers = [p if isinstance(p, str) else p[0] for p in onnx_providers("auto")]
    where = ("batched across sessions on " if providers[0] != "CPUExecutionProvider"
             else "called by each session on ")  # fmt: skip
    return [Check(name, OK, f"{found.resolve()}; {where}{', '.join(providers)}")]


def check_mediapipe() -> list[Check]:
    try:
        import cv2
        import mediapipe
    except Exception as exc:
        return [Check("MediaPipe + OpenCV", WARN, f"import failed: {exc}", MEDIAPIPE_FIX)]
    versions = f"mediapipe {getattr(mediapipe, '__version__', '?')}, cv2 {cv2.__version__}"
    checks = [Check("MediaPipe + OpenCV", OK, versions)]
    try:
        from mediapipe.tasks.python.vision import FaceLandmarker
    except Exception as exc:
        detail = f"mediapipe.tasks.python.vision.FaceLandmarker: {exc}"
        return [*checks, Check("FaceLandmarker", WARN, detail, MEDIAPIPE_FIX)]
    return [*checks, Check("FaceLandmarker", OK, f"{FaceLandmarker.__module__} importable")]


def check_torch() -> list[Check]:
    try:
        import torch
    except Exception as exc:
        return [Check("torch", MISSING, f"import failed: {exc}", PIP_FIX)]
    if torch.cuda.is_available():
        cuda = f"CUDA {torch.version.cuda} on {torch.cuda.get_device_name(0)}"
    else:
        cuda = "CUDA not available (CPU only)"
    return [Check("torch", OK, f"{torch.__version__}, {cuda}")]


def check_onnxruntime() -> list[Check]:
    try:
        import onnxruntime
    except Exception as exc:
        return [Check("onnxruntime", WARN, f"import failed: {exc}", PIP_FIX)]
    providers = ", ".join(onnxruntime.get_available_providers())
    return [Check("onnxruntime", OK, f"{onnxruntime.__version__}, providers: {providers}")]


def check_tensorrt() -> list[Check]:
    from trt_build.availability import tensorrt_available

    ok, reason = tensorrt_available()
    if ok:
        return [Check("TensorRT", OK, reason)]
    return [Check("TensorRT", WARN, f"not usable: {reason}", TENSORRT_FIX)]


def check_backend() -> list[Check]:
    """Which runtime the encoders use here, picked by itself (CPU: ONNX Runtime)."""
    from engines.inference.backend import describe_backend

    return [Check("encoder backend", OK, describe_backend())]


def check_sample_gallery() -> list[Check]:
    """The out-of-the-box targets (`vn3d dataset sample`, run by `make run`)."""
    from engines.dataset.build import sample_dataset_dir
    from engines.dataset.loader import Dataset, DatasetError

    folder = sample_dataset_dir()
    fix = "vn3d dataset sample (about 1 min; make run does it)"
    if not (folder / "manifest.json").is_file():
        return [Check("sample gallery", WARN, f"not built at {folder}", fix)]
    try:
        n = len(Dataset(folder).subjects)
    except DatasetError as exc:
        return [Check("sample gallery", WARN, str(exc), fix)]
    return [Check("sample gallery", OK, f"{n} subjects at {folder}")]


CHECKS: tuple[Callable[[], list[Check]], ...] = (
    check_asset_root,
    check_assets,
    check_registered_files,
    check_renderer,
    check_mediapipe,
    check_onnx_landmarker,
    check_torch,
    check_onnxruntime,
    check_tensorrt,
    check_backend,
    check_sample_gallery,
)


def run_doctor() -> int:
    """Print one line per check (with the fix under each problem); 1 if anything is MISSING."""
    checks: list[Check] = []
    for check in CHECKS:
        try:
            checks.extend(check())
        except Exception as exc:  # one broken check must not hide the others
            name = check.__name__.removeprefix("check_")
            checks.append(Check(name, WARN, f"check failed: {type(exc).__name__}: {exc}"))
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"{c.status:<7}  {c.name:<{width}}  {c.detail}")
        if c.fix and c.status != OK:
            print(f"{'':<7}  {'':<{width}}  fix: {c.fix}")
    missing = [c.name for c in checks if c.status == MISSING]
    if missing:
        print(f"\nnot ready: missing {', '.join(missing)} (fixes above)")
        return 1
    print("\nready: the default ICT head and the renderer have what they need")
    return 0
