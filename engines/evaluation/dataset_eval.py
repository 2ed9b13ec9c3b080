"""``vn3d eval DATASET``: the paper's image measurements on a built dataset.

For every subject and expression that has a photo I: the subject's model with that
photo's fitted expression and camera is rendered over the photo (I_r), and over the face
region (the photo's MediaPipe face oval) PSNR, SSIM, LPIPS (SqueezeNet backbone) and the
dlib identity distance are measured (:mod:`engines.evaluation.image_metrics`). Writes ``eval.md``
(a table laid out like the paper's Table 2, and one per expression), ``eval.json`` and
``eval_per_expression.png`` into the dataset folder.

Then the mesh part (:mod:`engines.evaluation.mesh_eval`): NoW-style scan-to-mesh errors against
exact synthetic ground truth (each subject's known parameters rendered and
reconstructed) and against real scans when given, as a table laid out like the paper's
Table 3, one per expression, a heat map on the head (``eval_mesh_heatmap.png``) and bars
per expression (``eval_mesh_per_expression.png``).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from avatars.identity_fit import PhotoFit
from engines.dataset.loader import Dataset, DatasetError, load_checked
from engines.evaluation.image_metrics import (
    FaceIdentity,
    Lpips,
    LpipsUnavailable,
    face_region_mask,
    psnr,
)
from engines.evaluation.image_metrics import ssim as ssim_metric
from engines.evaluation.mesh_eval import check_scan_args, evaluate_meshes, report_lines
from engines.evaluation.over_photo import render_over_photo
from engines.evaluation.tables import fmt
from engines.face.model import FaceModel

METRICS = ("psnr", "ssim", "lpips", "identity")
PAPER_ROWS = (  # Table 2 of the seed paper: their own data and metric variants
    ("seed paper (reported)", 30.07, 0.84, 0.09, 0.25),
    ("MoFaNeRF (reported)", 31.49, 0.95, 0.06, None),
)


def evaluate_dataset(path: Path, model: FaceModel, synthetic: bool = True,
                     scans: Path | None = None, scan_units: str = "mm", seed: int = 0) -> dict:
    """Both parts of ``vn3d eval``; ``synthetic``: the mesh part on synthetic ground truth
    (``seed`` draws the render angles), ``scans``: a folder of real scans
    (``SUBJECT/EXPRESSION.obj`` + ``.lmk.txt``, see :mod:`engines.evaluation.mesh_eval`) in
    ``scan_units``."""
    ds = Dataset(path)
    check_scan_args(scans, scan_units)  # before the long parts
    lpips, identity = Lpips(), FaceIdentity()
    try:
        lpips.load()
    except LpipsUnavailable:
        lpips = None
    rows = []
    pairs = [(s, e) for s in ds.subjects for e in ds.expressions if ds.pair(s, e).image]
    for subject, expr in tqdm(pairs, desc="eval", unit="pair"):
        pair = ds.pair(subject, expr)
        image = cv2.imread(str(pair.image), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"{pair.image} is missing or unreadable")
        image = np.ascontiguousarray(image[:, :, ::-1])
        target = ds.target(subject, model)  # identity and texture, checked
        p = load_checked(ds.folder(subject) / f"{expr}.npz", {
            "expression": (model.n_expression,), "photo_rotation": (3,),
            "photo_translation": (3,), "photo_focal": (), "photo_size": (2,),
            "photo_landmarks": (468, 2),
        })
        fit = PhotoFit(target.shape[0].numpy(), p["expression"], p["photo_rotation"],
                       p["photo_translation"], float(p["photo_focal"]), image.shape[1],
                       image.shape[0], 0.0, p["photo_landmarks"])
        render = render_over_photo(model, fit, target.texture, image)
        mask = face_region_mask(p["photo_landmarks"], image.shape)
        rows.append({
            "subject": subject, "expression": expr,
            "psnr": psnr(image, render, mask), "ssim": ssim_metric(image, render, mask),
            "lpips": lpips(image, render, mask) if lpips else None,
            "identity": identity.distance(image, render),
        })
    summary = {k: mean([r[k] for r in rows]) for k in METRICS}
    per_expr = {
        e: {k: mean([r[k] for r in rows if r["expression"] == e]) for k in METRICS}
        for e in ds.expressions if any(r["expression"] == e for r in rows)
    }
    result = {"pairs": len(rows), "summary": summary, "per_expression": per_expr, "rows": rows,
              "lpips_backbone": "squeezenet1_1 (lpips v0.1)",
              "identity_model": "dlib ResNet, Euclidean (same person < 0.6)"}
    result["mesh"] = evaluate_meshes(ds, model, synthetic, scans, scan_units, seed)
    root = ds.root
    (root / "eval.json").write_text(json.dumps(result, indent=2))
    (root / "eval.md").write_text(report(result))
    plot_per_expression(per_expr, root / "eval_per_expression.png")
    return result


def mean(values: list) -> float | None:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def report(result: dict) -> str:
    s = result["summary"]
    lines = [
        "# Dataset evaluation",
        "",
        f"{result['pairs']} photo/model pairs. I_r = the subject's model with the photo's "
        "fitted expression and camera, rendered by vn3d's renderer over the photo; "
        "measured over the photo's face oval. LPIPS: SqueezeNet backbone (not the papers' "
        "AlexNet). Identity: dlib ResNet distance (the paper's DFID is another model).",
        "",
        "## Image reconstruction (layout of the paper's Table 2)",
        "",
        "| Method | PSNR ↑ | SSIM ↑ | LPIPS ↓ | identity distance ↓ |",
        "|---|---|---|---|---|",
        f"| vn3d (this dataset) | {fmt(s['psnr'], 2)} | {fmt(s['ssim'])} | {fmt(s['lpips'])} | "
        f"{fmt(s['identity'])} |",
    ]
    for name, *vals in PAPER_ROWS:
        lines.append(f"| {name} | " + " | ".join(fmt(v, 2) for v in vals) + " |")
    lines += ["", "## Per expression", "", "| expression | PSNR | SSIM | LPIPS | identity |",
              "|---|---|---|---|---|"]
    for e, m in result["per_expression"].items():
        lines.append(f"| {e} | {fmt(m['psnr'], 2)} | {fmt(m['ssim'])} | {fmt(m['lpips'])} | "
                     f"{fmt(m['identity'])} |")
    lines += ["", "![per expression](eval_per_expression.png)", ""]
    if result.get("mesh"):
        lines += report_lines(result["mesh"])
    return "\n".join(lines)


def plot_per_expression(per_expr: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(per_expr)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax, key, label in ((axes[0], "psnr", "PSNR dB"), (axes[1], "ssim", "SSIM")):
        ax.bar(names, [per_expr[n][key] or 0 for n in names], color="#4a7bd0")
        ax.set_title(label)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
