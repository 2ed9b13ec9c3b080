"""How far MediaPipe's mesh landmarks move for each expression of the ICT head, against
how far the skin under them moves, and whether a basis measured that way reads ψ better.

The fit reader (``engines/tracking/landmark_fit.py``) assumes MediaPipe's points move with
the ICT skin (the MediaPipe↔ICT correspondence). This measures what they do: renders of
random identities (skin tints, fields of view 25-50°, yaw ±30°, pitch ±15°), each
expression beside the same head at rest in the same pose, both read by MediaPipe (IMAGE
mode), brought into the model's frame by the same rigid landmarks; the displacement is
regressed on the known ψ (ridge, one column per expression: the "measured basis").
Expressions in equal shares: one or two shapes alone, a basic expression plus random
shapes, FACS emotion records; no GRID ψ, and other seeds and identities than
``scripts/bench_tracking.py``'s. Then, on identities held out of the regression, ψ is
solved from each displacement with either basis (bounded least squares, ψ ∈ [0, 1], a
ridge) — an oracle setting: the person's reading at rest in the very same pose is known —
and scored by the face's displacement error (mm) beside predicting neutral.

    python scripts/measure_landmark_motion.py [--samples 1500] [--cache out/...npz]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import lsq_linear
from tqdm import tqdm

from engines.emotion.facs import facs_records
from engines.face.expressions import BASIC_EXPRESSIONS, expression_weights
from engines.face.ict import ICTFaceModel
from engines.geometry.alignment import rigid_align
from engines.render.camera import PerspectiveCamera
from engines.render.renderer import MeshRenderer, RenderConfig
from engines.render.skin_texture import plain_skin_texture
from engines.tracking.landmark_fit import N_MESH, RIGID_SHARE, ict_landmark_bases, observed_points
from engines.tracking.landmarkers import TfliteLandmarker

SEED = 20261127  # not bench_tracking's (0)
HELD_OUT = 6  # identities kept out of the regression, to solve on


def model_frame(observed: np.ndarray, reference: np.ndarray, rigid: np.ndarray
                ) -> np.ndarray:  # fmt: skip
    """``observed`` (468, 3) brought onto ``reference`` by the similarity that best maps
    its ``rigid`` points (bool (468,)) onto the reference's."""
    scale, rot, trans = rigid_align(reference[rigid], observed[rigid], with_scale=True)
    return ((observed - trans) @ rot) / scale


def learn_basis(displacement: np.ndarray, psi: np.ndarray, ridge: float) -> np.ndarray:
    """argmin_B Σ ||d_i - B ψ_i||² + ridge ||B||²: (N, 468*3) on (N, E) -> (468*3, E)."""
    gram = psi.T @ psi + ridge * np.eye(psi.shape[1])
    return np.linalg.solve(gram, psi.T @ displacement).T


def draw_expression(model: ICTFaceModel, rng: np.random.Generator, k: int,
                    facs: np.ndarray) -> np.ndarray:  # fmt: skip
    """ψ (E,): shapes alone, a basic expression plus shapes, or a FACS record, in turn."""
    psi = np.zeros(model.n_expression, np.float32)
    kind = k % 3
    if kind == 0:
        for j in rng.choice(model.n_expression, size=rng.integers(1, 3), replace=False):
            psi[j] = rng.uniform(0.2, 1.0)
    elif kind == 1:
        name = BASIC_EXPRESSIONS[rng.integers(len(BASIC_EXPRESSIONS))]
        psi = model.expression_vector(expression_weights(name))[0].numpy() * rng.uniform(0.3, 1)
        for j in rng.choice(model.n_expression, size=rng.integers(0, 4), replace=False):
            psi[j] = max(psi[j], rng.uniform(0.2, 1.0))
    else:
        psi = facs[rng.integers(len(facs))].copy()
    return np.clip(psi, 0, 1).astype(np.float32)


def camera(rng: np.random.Generator) -> PerspectiveCamera:
    fov = rng.uniform(25, 50)
    dist = 13.0 / math.tan(math.radians(fov) / 2)
    return PerspectiveCamera(fov_y_deg=fov, eye=(0, 0, dist), target=(0, 0, 0), near=dist / 4)


def read(landmarker: TfliteLandmarker, image: np.ndarray) -> np.ndarray | None:
    faces = landmarker(np.ascontiguousarray(image[..., :3]), 0)
    if not faces:
        return None
    return observed_points(faces[0].landmarks, image.shape[1], image.shape[0])


def collect(model: ICTFaceModel, n: int, n_ids: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    ids = 0.8 * torch.randn(n_ids, model.n_shape, generator=gen)
    tints = rng.uniform([0.45, 0.4, 0.35], [1.1, 1.05, 1.05], size=(n_ids, 3))
    facs = facs_records(model.expression_names, n_subjects=20, per_subject=30,
                        seed=seed).expression.astype(np.float32)  # fmt: skip
    base_tex = plain_skin_texture(model).astype(np.float32)
    out = {k: [] for k in ("expr", "rest", "identity", "psi", "pose")}
    landmarker = TfliteLandmarker(None, video=False, max_faces=1, min_confidence=0.3,
                                  scores=False)  # fmt: skip
    with MeshRenderer(model.topology, RenderConfig(512, 512, samples=4)) as renderer, \
            torch.no_grad():  # fmt: skip
        current = -1
        for k in tqdm(range(n), desc="renders", unit="pair"):
            i = k % n_ids
            if i != current:
                renderer.set_texture(np.clip(base_tex * tints[i], 0, 255).astype(np.uint8))
                current = i
            psi = draw_expression(model, rng, k, facs)
            pose = torch.zeros(1, 6)
            pose[0, 0] = math.radians(rng.uniform(-15, 15))
            pose[0, 1] = math.radians(rng.uniform(-30, 30))
            cam = camera(rng)
            s = ids[i : i + 1]
            expr = read(landmarker, renderer.render(model(s, torch.from_numpy(psi)[None],
                                                          pose)[0], cam))  # fmt: skip
            rest = read(landmarker, renderer.render(
                model(s, torch.zeros(1, model.n_expression), pose)[0], cam))
            if expr is None or rest is None:
                continue
            for key, value in (("expr", expr), ("rest", rest), ("identity", i), ("psi", psi),
                               ("pose", pose[0, :3].numpy())):  # fmt: skip
                out[key].append(value)
    landmarker.close()
    data = {k: np.array(v) for k, v in out.items()}
    data["shapes"] = ids.numpy()
    return data


def displacements(data: dict[str, np.ndarray], basis: np.ndarray, keep: np.ndarray
                  ) -> np.ndarray:  # fmt: skip
    """(N, 468*3) each kept pair's expression minus rest, in the model's frame, aligned on
    the points that ``basis`` moves least."""
    mean, shape_basis, _, _ = ict_landmark_bases()
    moves = np.linalg.norm(basis.reshape(N_MESH, 3, -1), axis=1).max(1)  # (468,)
    rigid = moves <= np.quantile(moves, RIGID_SHARE)
    out = []
    for k in np.flatnonzero(keep):
        reference = mean + (shape_basis @ data["shapes"][data["identity"][k]]).reshape(-1, 3)
        at_rest = model_frame(data["rest"][k], reference, rigid)
        out.append((model_frame(data["expr"][k], at_rest, rigid) - at_rest).reshape(-1))
    return np.array(out)


def fit(data: dict[str, np.ndarray], train: np.ndarray, ridge: float, rounds: int = 2
        ) -> np.ndarray:  # fmt: skip
    """The measured basis, refitted with the rigid points its own motion picks."""
    basis = ict_landmark_bases()[2]
    for _ in range(rounds):
        basis = learn_basis(displacements(data, basis, train), data["psi"][train], ridge)
    return basis


def solve(basis: np.ndarray, disp: np.ndarray, ridge: float) -> np.ndarray:
    """ψ (N, E) in [0, 1] from displacements (N, 468*3): argmin ||Bψ - d||² + ridge ||ψ||²."""
    a = np.vstack([basis, np.sqrt(ridge) * np.eye(basis.shape[1])])
    pad = np.zeros(basis.shape[1])
    return np.array([lsq_linear(a, np.concatenate([d, pad]), bounds=(0, 1)).x for d in disp])


def face_error_mm(model: ICTFaceModel, data: dict, keep: np.ndarray, psi: np.ndarray) -> float:
    """Mean over the kept pairs of the face's mean vertex distance (mm), ψ read vs true."""
    faces = model.topology.faces[model.topology.face_material
                                 == model.topology.material_names.index("M_Face")]
    face = np.unique(faces)
    errs = []
    with torch.no_grad():
        for k, p in zip(np.flatnonzero(keep), psi, strict=True):
            s = torch.from_numpy(data["shapes"][data["identity"][k]][None]).float()
            both = torch.from_numpy(np.stack([p, data["psi"][k]]).astype(np.float32))
            v = model(s.expand(2, -1), both, torch.zeros(2, 6))
            errs.append(float((v[0] - v[1]).norm(dim=1)[face].mean() * 10))
    return float(np.mean(errs))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return 0.0 if np.ptp(a) == 0 or np.ptp(b) == 0 else float(np.corrcoef(a, b)[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1500)
    ap.add_argument("--identities", type=int, default=30)
    ap.add_argument("--ridge", type=float, default=1.0, help="the regression's ridge")
    ap.add_argument("--cache", default="out/landmark_motion_readings.npz")
    ap.add_argument("--out", default="out/landmark_motion.json")
    args = ap.parse_args()
    model = ICTFaceModel()
    cache = Path(args.cache)
    if cache.is_file():
        data = dict(np.load(cache))
        print(f"readings from {cache} ({len(data['psi'])} pairs)")
    else:
        data = collect(model, args.samples, args.identities, SEED)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, **data)
    data["psi"] = data["psi"].astype(np.float64)
    held = data["identity"] >= data["identity"].max() + 1 - HELD_OUT
    measured = fit(data, ~held, args.ridge)
    correspondence = ict_landmark_bases()[2]
    names = model.expression_names
    motion = {n: (round(float(a), 3), round(float(b), 3)) for n, a, b in zip(
        names, *(np.linalg.norm(x.reshape(N_MESH, 3, -1), axis=1).max(0)
                 for x in (measured, correspondence)), strict=True)}  # fmt: skip
    print("| shape | largest point move at ψ = 1, measured cm | correspondence cm |")
    print("|---|---|---|")
    for n, (a, b) in motion.items():
        print(f"| {n} | {a} | {b} |")

    truth = data["psi"][held]
    rows = {"predict neutral": (face_error_mm(model, data, held, np.zeros_like(truth)), {})}
    for label, basis, ridges in (("measured", measured, (0.3, 1.0, 3.0)),
                                 ("correspondence", correspondence, (0.02, 0.1))):  # fmt: skip
        disp = displacements(data, basis, held)
        for ridge in tqdm(ridges, desc=label, unit="ridge"):
            psi = solve(basis, disp, ridge)
            rs = {n: round(pearson(truth[:, i], psi[:, i]), 3) for i, n in enumerate(names)}
            rows[f"{label}, ridge {ridge}"] = (face_error_mm(model, data, held, psi), rs)
    base = rows["predict neutral"][0]
    key = ("jawOpen", "mouthSmile_L", "mouthFunnel", "mouthPucker", "browInnerUp_L",
           "browDown_L", "eyeBlink_L", "eyeWide_L", "cheekPuff_L", "noseSneer_L")
    print(f"\nheld-out identities: {HELD_OUT} ({int(held.sum())} pairs), oracle rest")
    print("| basis | face displacement error mm | ratio to neutral | " + " | ".join(key) + " |")
    print("|---" * (3 + len(key)) + "|")
    for label, (mm, rs) in rows.items():
        print(f"| {label} | {mm:.3f} | {mm / base:.3f} | "
              + " | ".join(str(rs.get(k, 0)) for k in key) + " |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"pairs": len(data["psi"]), "held_out_pairs": int(held.sum()),
                               "motion_cm": motion,
                               "solve": {k: {"face_error_mm": round(v[0], 4), "r": v[1]}
                                         for k, v in rows.items()}}, indent=2))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
