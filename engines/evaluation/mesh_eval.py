"""``vn3d eval``'s mesh part: NoW-style mesh accuracy of a built dataset.

The metric (:mod:`engines.evaluation.mesh_accuracy`): the reconstruction is aligned rigidly to the
ground truth on 7 landmarks (the four eye corners, the nose tip, the two mouth corners:
iBUG-68 points 36, 39, 42, 45, 30, 48, 54, in that order), then every ground-truth point
within :data:`FACE_RADIUS_MM` of the nose tip gets its distance to the closest point on
the reconstruction's skin triangles (point to triangle, not point to vertex). Reported in
mm: median, mean and std of all those distances pooled (over a whole set, or over one
expression), like the NoW benchmark's table. The alignment uses the landmarks only (no
ICP refinement afterwards), so landmark placement errors count in the result.

Two sources of ground truth:

**Synthetic** (exact): for each subject and each of the 7 expressions, the subject's
known parameters (``identity.npz`` shape, ``EXPRESSION.npz`` expression and pose) give
the ground-truth mesh. It is rendered textured with the subject's ``texture.png`` by the
project's :class:`~engines.render.renderer.MeshRenderer` (512 x 512, the portrait camera, plain
background) turned by a random yaw in ±20° and pitch in ±10° (seeded), and the project's
own reconstruction runs on that render, the same path ``vn3d dataset build`` takes
(:mod:`engines.evaluation.reconstruction`; ICT: MediaPipe landmarks ->
:meth:`LandmarkFitter.fit` -> the fitted shape and expression at zero pose; FLAME: DECA
and MICA). The scan is the ground truth's face skin (ICT ``M_Face`` vertices within
95 mm of the nose tip, fixed ids on the template, 5470 points; FLAME: every vertex off
the eyeballs within that radius), with its landmarks from the ground truth's own landmark
vertices (FLAME: the vertices nearest DECA's embedded landmarks); the reconstruction's
landmarks are its own landmark vertices. The render's field of view (20°) is the one the
ICT fit assumes, so focal length errors are not part of these numbers. Per vertex errors,
averaged over all meshes, make the heat map.

**Real scans** (``--scans DIR``, units by ``--scan-units mm|cm|m``)::

    DIR/SUBJECT/EXPRESSION.obj       a scan (its points: the vertices its faces use, or
                                     every vertex when it has no faces)
    DIR/SUBJECT/EXPRESSION.lmk.txt   7 rows "x y z" in the scan's units, in the order
                                     above (right-eye outer, right-eye inner, left-eye
                                     inner, left-eye outer corner as iBUG numbers them;
                                     nose tip; mouth corners 48, 54)

SUBJECT must be a built subject of the dataset and EXPRESSION one of neutral, happy,
sad, afraid, angry, surprised, disgusted; the scan is compared with the dataset's model
of that subject and expression (its shape, expression and pose). Scans that do not match,
or whose files are missing or malformed, are listed as skipped with the reason. A scan
is cropped to the points within 95 mm of its nose-tip landmark; a landmark residual
after the alignment above 10 mm is flagged (usually wrong units or landmark order).

FaceScape (https://facescape.nju.edu.cn, research licence; not shipped) as input. Its
TU models lie as ``SUBJECT_ID/models_reg/N_EXPRESSION.obj`` (e.g. ``1/models_reg/
1_neutral.obj``), 20 expressions: 1_neutral, 2_smile, 3_mouth_stretch, 4_anger,
5_jaw_left, 6_jaw_right, 7_jaw_forward, 8_mouth_left, 9_mouth_right, 10_dimpler,
11_chin_raiser, 12_lip_puckerer, 13_lip_funneler, 14_sadness, 15_lip_roll, 16_grin,
17_cheek_blowing, 18_eye_closed, 19_brow_raiser, 20_brow_lower. Four correspond to our
labels::

    FaceScape      vn3d
    1_neutral  ->  neutral
    2_smile    ->  happy
    4_anger    ->  angry
    14_sadness ->  sad
    (none)         afraid, surprised, disgusted (19_brow_raiser or 3_mouth_stretch are
                   parts of surprise, not the expression; leave them out)

To use them: build the dataset from photos of the same people under the same subject
names (``vn3d dataset build``), copy or link ``SUBJECT_ID/models_reg/1_neutral.obj`` to
``DIR/SUBJECT/neutral.obj`` (and so on per the table), and write each scan's 7 landmarks
to ``DIR/SUBJECT/EXPRESSION.lmk.txt``. All TU models share one topology, so the
landmarks can be read off fixed vertices: FaceScape's toolkit ships 68 landmark vertex
indices (``toolkit/predef/landmark_indices.npz``, key ``v10``, iBUG-68 order); rows 36,
39, 42, 45, 30, 48, 54 of the OBJ's vertices at those indices are the 7 points (or pick
the 7 points by hand in a mesh viewer). Check the units of the models you have (a head
about 150 units wide is in mm) and pass ``--scan-units`` to match; the TU models are full
heads, and the 95 mm crop round the nose tip keeps the face.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from avatars.builder import AvatarError
from engines.dataset.loader import Dataset, DatasetError
from engines.evaluation.mesh_accuracy import NOW_IBUG, scan_to_mesh
from engines.evaluation.reconstruction import Reconstruction, eyeball_vertices, landmark_vertices
from engines.evaluation.tables import fmt
from engines.face.model import FaceModel
from engines.render.camera import PerspectiveCamera

FACE_RADIUS_MM = 95.0  # ground-truth points this close to the nose tip are measured
REGION_MATERIALS = ("M_Face",)  # the synthetic scan: face skin
TARGET_MATERIALS = ("M_Face", "M_BackHead")  # the reconstruction's surface measured against
RENDER_SIZE = 512
MAX_YAW_DEG, MAX_PITCH_DEG = 20.0, 10.0
BACKGROUND = (0.55, 0.57, 0.60)  # plain sRGB background of the synthetic renders
SCAN_UNITS = {"mm": 1e-3, "cm": 1e-2, "m": 1.0}  # metres per unit
LANDMARK_WARN_MM = 10.0  # landmark RMS after alignment above this is flagged
MIN_SCAN_POINTS = 100
HEATMAP_FILE = "eval_mesh_heatmap.png"
BARS_FILE = "eval_mesh_per_expression.png"
STATS = ("median_mm", "mean_mm", "std_mm")


class ScanError(ValueError):
    """A scan or its landmark file is missing or malformed; says which and why."""


@dataclass(frozen=True)
class FaceRegion:
    """Where the error is measured, as fixed ids of the model's topology."""

    vertex_ids: np.ndarray  # (N,) the synthetic scan's points: face skin near the nose tip
    target_faces: np.ndarray  # (F, 3) the reconstruction's triangles measured against
    landmark_ids: np.ndarray  # (7,) vertex ids of the NoW landmarks
    units_in_mm: float  # model units -> mm


def rest_vertices(model: FaceModel) -> np.ndarray:  # (V, 3) float64
    """The model's mean head at rest."""
    with torch.no_grad():
        rest = model.prepare_identity(torch.zeros(1, model.n_shape))[0].numpy()
    return rest.astype(np.float64)


def face_region(model: FaceModel) -> FaceRegion:
    """ICT: its face skin and head; FLAME (one material): every triangle off the eyeballs."""
    topo = model.topology
    names = set(topo.material_names)
    region = tuple(m for m in REGION_MATERIALS if m in names)
    target = tuple(m for m in TARGET_MATERIALS if m in names)
    off_eyes = ~eyeball_vertices(model)[topo.faces].any(1)  # (F,)
    region_faces = topo.faces[topo.face_ids(region)] if region else topo.faces[off_eyes]
    target_faces = topo.faces[topo.face_ids(target)] if target else topo.faces[off_eyes]
    units_in_mm = model.units_in_metres * 1000.0
    rest = rest_vertices(model)
    landmarks = landmark_vertices(model, rest)  # (7,) in NOW_IBUG's order
    nose = rest[landmarks[list(NOW_IBUG).index(30)]]
    ids = np.unique(region_faces)
    near = np.linalg.norm(rest[ids] - nose, axis=1) * units_in_mm < FACE_RADIUS_MM
    return FaceRegion(
        ids[near],
        np.ascontiguousarray(target_faces, np.int64),
        landmarks,
        units_in_mm,
    )


@dataclass
class MeshSet:
    """The errors of one source (synthetic or scans): a row per mesh, the distances."""

    source: str
    rows: list[dict] = field(default_factory=list)
    distances: list[np.ndarray] = field(default_factory=list)  # per row, mm
    skipped: list[dict] = field(default_factory=list)  # {"item", "reason"}
    per_vertex_mm: np.ndarray | None = None  # synthetic: mean over rows per region vertex

    def add(self, row: dict, distances: np.ndarray) -> None:
        self.rows.append(row)
        self.distances.append(distances)

    def summary(self, expression: str | None = None) -> dict[str, float] | None:
        d = [
            x
            for r, x in zip(self.rows, self.distances, strict=True)
            if expression is None or r["expression"] == expression
        ]
        if not d:
            return None
        pooled = np.concatenate(d)
        return {
            "median_mm": float(np.median(pooled)),
            "mean_mm": float(pooled.mean()),
            "std_mm": float(pooled.std()),
        }

    def to_json(self, expressions: tuple[str, ...]) -> dict:
        return {
            "meshes": len(self.rows),
            "summary": self.summary(),
            "per_expression": {
                e: self.summary(e)
                for e in expressions
                if any(r["expression"] == e for r in self.rows)
            },
            "rows": self.rows,
            "skipped": self.skipped,
        }


def measure(
    scan: np.ndarray, scan_lms: np.ndarray, mesh: np.ndarray, region: FaceRegion
) -> tuple[dict, np.ndarray]:
    """NoW-style errors of a reconstruction ``mesh`` (V, 3) against scan points (N, 3)
    with landmarks (7, 3), all in model units. Returns (stats row, distances mm)."""
    err = scan_to_mesh(scan, scan_lms, mesh, region.target_faces,
                       mesh[region.landmark_ids], units_in_mm=region.units_in_mm)
    return (
        {**err.row(), "points": len(scan), "landmark_rms_mm": err.landmark_rms_mm},
        err.distances_mm,
    )


def model_mesh(model: FaceModel, shape, expression, pose=None) -> np.ndarray:  # (V, 3) f64
    with torch.no_grad():
        pose_t = (
            torch.zeros(1, model.n_pose)
            if pose is None
            else torch.as_tensor(np.asarray(pose)[None], dtype=torch.float32)
        )
        v = model(
            torch.as_tensor(np.asarray(shape).reshape(1, -1), dtype=torch.float32),
            torch.as_tensor(np.asarray(expression)[None], dtype=torch.float32),
            pose_t,
        )
    return v[0].numpy().astype(np.float64)


def turn(vertices: np.ndarray, yaw_deg: float, pitch_deg: float, centre: np.ndarray) -> np.ndarray:
    """Vertices turned about ``centre`` by a yaw (about y) then a pitch (about x)."""
    rot = (
        cv2.Rodrigues(np.array([math.radians(pitch_deg), 0.0, 0.0]))[0]
        @ cv2.Rodrigues(np.array([0.0, math.radians(yaw_deg), 0.0]))[0]
    )
    return (vertices - centre) @ rot.T + centre


def evaluate_synthetic(
    ds: Dataset,
    model: FaceModel,
    seed: int = 0,
    save_renders: Path | None = None,
    progress: bool = True,
) -> MeshSet:
    """Reconstruct each subject x expression from a render of its known parameters and
    measure against that exact ground truth (see the module's docstring)."""
    from engines.render.renderer import MeshRenderer, RenderConfig

    region = face_region(model)
    result = MeshSet("synthetic")
    items = [(s, e) for s in ds.subjects for e in ds.expressions]
    rng = np.random.default_rng(seed)  # drawn up front: a failure does not shift the rest
    angles = rng.uniform(
        [-MAX_YAW_DEG, -MAX_PITCH_DEG], [MAX_YAW_DEG, MAX_PITCH_DEG], (len(items), 2)
    )
    camera = PerspectiveCamera.portrait(model.units_in_metres, centre=model.view_centre)
    per_vertex = np.zeros(len(region.vertex_ids))
    reconstruct = Reconstruction(model)
    if save_renders is not None:
        Path(save_renders).mkdir(parents=True, exist_ok=True)
    try:
        with MeshRenderer(
            model.topology, RenderConfig(RENDER_SIZE, RENDER_SIZE, background=BACKGROUND)
        ) as r:
            current = None
            bar = tqdm(
                list(zip(items, angles, strict=True)),
                desc="mesh eval (synthetic)",
                unit="mesh",
                disable=not progress,
            )
            for (subject, expr), (yaw, pitch) in bar:
                if subject != current:
                    target = ds.target(subject, model)
                    r.set_texture(target.texture)
                    shape, current = target.shape[0].numpy(), subject
                psi, pose = ds.parameters(subject, expr)
                truth = model_mesh(model, shape, psi, pose)
                shown = turn(truth, yaw, pitch, truth[region.vertex_ids].mean(0))
                image = r.render(shown.astype(np.float32), camera)
                if save_renders is not None:
                    cv2.imwrite(
                        str(Path(save_renders) / f"{subject}_{expr}.png"), image[:, :, ::-1]
                    )
                try:
                    recon = reconstruct(image)
                except AvatarError as exc:
                    result.skipped.append({"item": f"{subject}/{expr}", "reason": str(exc)})
                    continue
                row, dist = measure(
                    truth[region.vertex_ids], truth[region.landmark_ids], recon, region
                )
                result.add(
                    {
                        "subject": subject,
                        "expression": expr,
                        **row,
                        "yaw_deg": round(float(yaw), 2),
                        "pitch_deg": round(float(pitch), 2),
                        "synthesised": ds.pair(subject, expr).synthesised,
                    },
                    dist,
                )
                per_vertex += dist
    finally:
        reconstruct.close()
    if result.rows:
        result.per_vertex_mm = per_vertex / len(result.rows)
    return result


def read_obj_points(path: Path) -> np.ndarray:
    """A scan's points (N, 3) from an OBJ: the vertices its faces use, or all of them
    when it has no faces."""
    vertices, used = [], []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("v "):
                    vertices.append(line.split()[1:4])
                elif line.startswith("f "):
                    used.extend(int(tok.split("/")[0]) for tok in line.split()[1:])
        v = np.array(vertices, np.float64)
    except (OSError, ValueError) as exc:
        raise ScanError(f"{path}: not a readable OBJ ({exc})") from exc
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0 or not np.isfinite(v).all():
        raise ScanError(f"{path}: no vertices, or vertices that are not 3 finite numbers")
    if not used:
        return v
    ids = np.array(used, np.int64)
    ids = np.where(ids < 0, len(v) + ids, ids - 1)  # OBJ: 1-based, negative = from the end
    if ids.min() < 0 or ids.max() >= len(v):
        raise ScanError(f"{path}: a face refers to a vertex that does not exist")
    return v[np.unique(ids)]


def read_landmarks(path: Path) -> np.ndarray:
    """(7, 3) landmarks from a text file of 7 rows 'x y z'."""
    if not path.is_file():
        raise ScanError(
            f"{path} is missing: each scan needs its 7 landmarks (x y z per row: "
            "4 eye corners, nose tip, 2 mouth corners)"
        )
    try:
        lms = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise ScanError(f"{path}: not rows of numbers ({exc})") from exc
    if lms.shape != (7, 3) or not np.isfinite(lms).all():
        raise ScanError(
            f"{path}: must be 7 rows of 3 finite numbers (x y z); got shape {lms.shape}"
        )
    return lms


def load_scan(obj: Path, units: str, model: FaceModel) -> tuple[np.ndarray, np.ndarray]:
    """A scan's face points (N, 3) and landmarks (7, 3) in the model's units, cropped to
    :data:`FACE_RADIUS_MM` round the nose-tip landmark."""
    check_scan_args(None, units)
    obj = Path(obj)
    lms = read_landmarks(obj.with_name(obj.stem + ".lmk.txt"))
    if not obj.is_file():
        raise ScanError(f"{obj} is missing")
    points = read_obj_points(obj)
    scale = SCAN_UNITS[units] / model.units_in_metres
    points, lms = points * scale, lms * scale
    radius = FACE_RADIUS_MM / (model.units_in_metres * 1000.0)
    points = points[np.linalg.norm(points - lms[4], axis=1) < radius]
    if len(points) < MIN_SCAN_POINTS:
        raise ScanError(
            f"{obj}: {len(points)} points within {FACE_RADIUS_MM:.0f} mm of the "
            "nose-tip landmark (row 5): check --scan-units and the landmark order"
        )
    return points, lms


def evaluate_scans(
    ds: Dataset, model: FaceModel, scans: Path, units: str = "mm", progress: bool = True
) -> MeshSet:
    """Each ``scans/SUBJECT/EXPRESSION.obj`` against the dataset's model of that subject
    and expression; the others are listed as skipped with the reason."""
    check_scan_args(scans, units)
    region = face_region(model)
    result = MeshSet("scans")
    found = sorted(p for p in Path(scans).glob("*/*") if p.suffix.lower() == ".obj")
    found += sorted(p for p in Path(scans).glob("*") if p.suffix.lower() == ".obj")
    for obj in tqdm(found, desc="mesh eval (scans)", unit="scan", disable=not progress):
        item = obj.relative_to(scans).as_posix()
        subject, expr = obj.parent.name, obj.stem.lower()
        try:
            if obj.parent == Path(scans):
                raise ScanError("scans go in SUBJECT/EXPRESSION.obj, not at the top level")
            if subject not in ds.subjects:
                raise ScanError(f"no subject {subject!r} in the dataset")
            if expr not in ds.expressions:
                raise ScanError(
                    f"expression {obj.stem!r} is not one of {', '.join(ds.expressions)}"
                )
            points, lms = load_scan(obj, units, model)
            psi, pose = ds.parameters(subject, expr)
            shape = ds.shape(subject, model)
        except (ScanError, DatasetError) as exc:
            result.skipped.append({"item": item, "reason": str(exc)})
            continue
        row, dist = measure(points, lms, model_mesh(model, shape, psi, pose), region)
        row["check"] = (
            "landmarks far apart: check --scan-units and the landmark order"
            if row["landmark_rms_mm"] > LANDMARK_WARN_MM
            else ""
        )
        result.add({"subject": subject, "expression": expr, **row}, dist)
    return result


def check_scan_args(scans: Path | None, units: str) -> None:
    """Fail early (before the long parts of an evaluation) on a bad folder or unit."""
    if units not in SCAN_UNITS:
        raise ScanError(f"scan units must be one of {', '.join(SCAN_UNITS)}; got {units!r}")
    if scans is not None and not Path(scans).is_dir():
        raise ScanError(f"{scans} is not a folder of SUBJECT/EXPRESSION.obj scans")


def evaluate_meshes(
    ds: Dataset,
    model: FaceModel,
    synthetic: bool = True,
    scans: Path | None = None,
    scan_units: str = "mm",
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """The mesh part of ``vn3d eval``: a JSON-able dict; writes the heat map and the
    per-expression bars into the dataset folder (when there is something to draw)."""
    check_scan_args(scans, scan_units)
    sets: dict[str, MeshSet] = {}
    if synthetic:
        sets["synthetic"] = evaluate_synthetic(ds, model, seed, progress=progress)
    if scans is not None:
        sets["scans"] = evaluate_scans(ds, model, Path(scans), scan_units, progress)
    out = {
        "metric": (
            "rigid alignment on 7 landmarks (eye corners, nose tip, mouth corners), "
            "then point-to-triangle distance from each ground-truth point within "
            f"{FACE_RADIUS_MM:.0f} mm of the nose tip to the reconstruction's skin; "
            "median / mean / std of all distances pooled, mm"
        ),
        "face_radius_mm": FACE_RADIUS_MM,
        "synthetic": sets["synthetic"].to_json(ds.expressions) if "synthetic" in sets else None,
        "scans": sets["scans"].to_json(ds.expressions) if "scans" in sets else None,
        "heatmap": None,
        "bars": None,
    }
    if out["synthetic"] is not None:
        out["synthetic"]["seed"] = seed
    if out["scans"] is not None:
        out["scans"]["units"] = scan_units
    syn = sets.get("synthetic")
    if syn is not None and syn.per_vertex_mm is not None:
        plot_heatmap(model, syn.per_vertex_mm, ds.root / HEATMAP_FILE, len(syn.rows))
        out["heatmap"] = HEATMAP_FILE
    per_expr = {
        k: out[k]["per_expression"]
        for k in ("synthetic", "scans")
        if out[k] and out[k]["per_expression"]
    }
    if per_expr:
        plot_bars(per_expr, ds.expressions, ds.root / BARS_FILE)
        out["bars"] = BARS_FILE
    return out


# --- report -------------------------------------------------------------------------


def report_lines(mesh: dict) -> list[str]:
    """The Markdown section of eval.md for :func:`evaluate_meshes`' result."""
    lines = [
        "## Mesh accuracy (layout of the paper's Table 3)",
        "",
        f"NoW-style: {mesh['metric']}. Synthetic ground truth: each subject's known "
        "parameters rendered with its texture (random yaw ±20°, pitch ±10°) and "
        "reconstructed from that render the way the dataset was built (ICT: vn3d's photo "
        "fit; FLAME: DECA and MICA); exact, but the "
        "render's camera matches the fit's assumptions. The paper's rows are measured on "
        "NoW's real scans and are not comparable with these, so none are copied here.",
        "",
        "| Method | median (mm) ↓ | mean (mm) ↓ | std (mm) ↓ |",
        "|---|---|---|---|",
    ]
    names = {"synthetic": "vn3d, synthetic ground truth ({n} meshes)", "scans": "vn3d, scans ({n})"}
    sources = [k for k in ("synthetic", "scans") if mesh.get(k)]
    for k in sources:
        s = mesh[k]["summary"] or {}
        lines.append(
            f"| {names[k].format(n=mesh[k]['meshes'])} | "
            + " | ".join(fmt(s.get(x), 2) for x in STATS)
            + " |"
        )
    if not sources:
        lines.append("| (no mesh evaluation run) | n/a | n/a | n/a |")
    if sources:
        lines += [
            "",
            "### Mesh error per expression (median / mean / std, mm)",
            "",
            "| expression | " + " | ".join(sources) + " |",
            "|---|" + "---|" * len(sources),
        ]
        expressions = list(dict.fromkeys(e for k in sources for e in mesh[k]["per_expression"]))
        for e in expressions:
            cells = []
            for k in sources:
                m = mesh[k]["per_expression"].get(e)
                cells.append(" / ".join(fmt(m[x], 2) for x in STATS) if m else "–")
            lines.append(f"| {e} | " + " | ".join(cells) + " |")
    for k in sources:
        bad = [r for r in mesh[k]["rows"] if r.get("check")]
        for r in bad:
            lines.append(
                f"\n{k}: {r['subject']}/{r['expression']}: {r['check']} "
                f"(landmark RMS {r['landmark_rms_mm']:.1f} mm)"
            )
        if mesh[k]["skipped"]:
            lines += ["", f"Skipped ({k}):", ""]
            lines += [f"- {s['item']}: {s['reason']}" for s in mesh[k]["skipped"]]
    if mesh.get("heatmap"):
        lines += [
            "",
            "Mean error per vertex over the synthetic meshes, on the neutral head:",
            "",
            f"![mesh error heat map]({mesh['heatmap']})",
        ]
    if mesh.get("bars"):
        lines += ["", f"![mesh error per expression]({mesh['bars']})"]
    return [*lines, ""]


# --- plots --------------------------------------------------------------------------


def heatmap_texture(model: FaceModel, vertex_rgb: np.ndarray, size: int = 512) -> np.ndarray:
    """A UV texture (size, k*size, 3) uint8 painting per-vertex sRGB colours (V, 3) in [0, 1]
    over the textured triangles (barycentric blend), gutters filled from their neighbours."""
    from avatars.texture_unwrap import uv_layout

    layout = uv_layout(model.topology, rest_vertices(model), size)
    tri = model.topology.faces[layout.triangle]  # (T, 3)
    rgb = (vertex_rgb[tri] * layout.bary[:, :, None]).sum(1)
    tex = np.zeros((size * layout.tiles * size, 3), np.float32)
    covered = np.zeros(size * layout.tiles * size, np.uint8)
    tex[layout.texel], covered[layout.texel] = rgb, 1
    tex = (tex.reshape(size, layout.tiles * size, 3) * 255).astype(np.uint8)
    covered = covered.reshape(size, layout.tiles * size)
    kernel = np.ones((3, 3), np.uint8)
    for _ in range(6):  # grow colours into the gutters so filtering does not bleed black
        grown = cv2.dilate(tex, kernel)
        tex = np.where(covered[..., None] > 0, tex, grown)
        covered = cv2.dilate(covered, kernel)
    return tex


def plot_heatmap(
    model: FaceModel, per_vertex_mm: np.ndarray, path: Path, n_meshes: int, cmap_name: str = "turbo"
) -> None:
    """Mean error per region vertex on the neutral head: front and 3/4 views, colour bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    from engines.render.materials import Material
    from engines.render.renderer import MeshRenderer, RenderConfig

    region = face_region(model)
    vmax = max(0.5, math.ceil(float(np.percentile(per_vertex_mm, 98)) * 2) / 2)
    norm, cmap = Normalize(0.0, vmax), plt.get_cmap(cmap_name)
    rgb = np.full((model.n_vertices, 3), 0.80)
    rgb[region.vertex_ids] = cmap(norm(per_vertex_mm))[:, :3]
    flat = Material((0.8, 0.8, 0.8), specular=0.0, textured=True)
    hidden = Material((0.0, 0.0, 0.0), alpha=0.0)  # lash cards would hide the lids' colour
    materials = {"M_Face": flat, "M_BackHead": flat, "M_EyeLashes": hidden}
    neutral = rest_vertices(model)
    cm = 0.01 / model.units_in_metres
    centre = neutral[region.vertex_ids].mean(0)
    camera = PerspectiveCamera(
        fov_y_deg=20.0,
        eye=(centre[0], centre[1], centre[2] + 75 * cm),
        target=tuple(centre),
        near=20 * cm,
        far=300 * cm,
    )
    side = 480
    with MeshRenderer(
        model.topology,
        RenderConfig(side, side, background=(1.0, 1.0, 1.0), samples=4),
        texture=heatmap_texture(model, rgb),
        materials=materials,
    ) as r:
        views = [
            r.render(turn(neutral, yaw, 0.0, centre).astype(np.float32), camera)
            for yaw in (0.0, -40.0)
        ]
    fig = plt.figure(figsize=(8.6, 4.4))
    for k, (img, title) in enumerate(zip(views, ("front", "3/4"), strict=True)):
        ax = fig.add_axes([0.01 + 0.43 * k, 0.02, 0.42, 0.86])
        ax.imshow(img)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    cax = fig.add_axes([0.89, 0.12, 0.025, 0.68])
    fig.colorbar(ScalarMappable(norm, cmap), cax=cax, label="mean scan-to-mesh error (mm)")
    fig.suptitle(
        f"Mesh error per vertex, mean over {n_meshes} synthetic meshes "
        f"(face within {FACE_RADIUS_MM:.0f} mm of the nose tip)",
        fontsize=10,
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_bars(per_expr: dict[str, dict], expressions: tuple[str, ...], path: Path) -> None:
    """Per expression and source: mean (bar, std as whisker) and median (marker), mm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [e for e in expressions if any(e in v for v in per_expr.values())]
    x = np.arange(len(names))
    width = 0.8 / len(per_expr)
    colours = {"synthetic": "#4a7bd0", "scans": "#d07a4a"}
    fig, ax = plt.subplots(figsize=(8, 3.4))
    for k, (source, table) in enumerate(per_expr.items()):
        have = [i for i, e in enumerate(names) if table.get(e)]  # no empty bars
        pos = x[have] - 0.4 + width * (k + 0.5)
        rows = [table[names[i]] for i in have]
        ax.bar(
            pos,
            [r["mean_mm"] for r in rows],
            width * 0.9,
            yerr=[r["std_mm"] for r in rows],
            capsize=3,
            color=colours.get(source, "grey"),
            label=f"{source}: mean ± std",
        )
        ax.plot(
            pos,
            [r["median_mm"] for r in rows],
            "D",
            color="black",
            markersize=4,
            label="median" if k == len(per_expr) - 1 else None,
        )
    ax.set_xticks(x, names)
    ax.set_ylabel("scan-to-mesh error (mm)")
    ax.set_ylim(bottom=0)
    ax.set_title("Mesh error per expression", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
