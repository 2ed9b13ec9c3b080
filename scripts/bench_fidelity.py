"""Does the avatar's face follow the speaker's? Mouth and eye opening on real talking heads.

Each GRID clip goes through the live pipeline (tracker in VIDEO mode with its One-Euro
filter, the reader under test, the default ICT head at 512², the tracked head rotation);
MediaPipe then reads the source frame and the rendered avatar alike (IMAGE mode, no
filter: so the source's measure does not depend on the reader or on how the live tracker
follows the face; until 2026-11-28 the source was measured on the live tracker's own
landmarks), and the same two ratios are taken on both:

- mouth opening: inner-lip distance (points 13-14) over the eye-corner span (33-263);
- eye opening: mean lid distance of both eyes (159-145, 386-374) over the same span.

Per reader, over every frame where both faces were found: Pearson r of avatar vs source,
the avatar's range (5th-95th percentile) over the source's (1.0 = the avatar moves as much
as the speaker), and jitter (mean |frame-to-frame change|) of both. No neutral calibration:
GRID speakers are not at rest at the start of a clip (id2_vcd_swwp2s opens with its mouth
at its own 95th percentile), so a calibration on the first frames would measure that, not
the reader. The trivial baseline is measured the same way: the neutral avatar (ψ = 0, the
tracked head rotation), whose r and range show what a reader that does nothing scores
(its mouth ratio still moves a little with the head's rotation).

The price of following closely is jitter, so beside them: ψ jitter (mean |frame-to-frame
change| of the filtered weights) on the clips, where it is mostly real motion, and on a
still face: each London Set neutral photo as a 2 s video, shifted by up to a pixel and
given camera noise (σ 1.5 levels) every frame, the first second ignored; split into the
lids and the jaw (filtered with less lag) and the other shapes.

    python scripts/bench_fidelity.py [--readers mediapipe,encoder] [--clips N]
        [--fast-beta 15] [--max-faces 4] [--out out/bench_fidelity.json]
        [--frames out/fidelity_frames.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import av
import cv2
import numpy as np
from tqdm import tqdm

from engines.face.ict import ICTFaceModel
from engines.files.assets import asset_root
from engines.render.renderer import RenderConfig
from engines.retarget.retargeter import Retargeter
from engines.tracking.filters import OneEuroConfig, fast_elements
from engines.tracking.tracker import READERS, FaceTracker, TrackerConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tracking import pearson

MOUTH = (13, 14)
EYES = ((159, 145), (386, 374))
CORNERS = (33, 263)


def openings(landmarks: np.ndarray, width: int, height: int) -> tuple[float, float]:
    """(mouth, eye) opening of one face: MediaPipe's (478, 3) normalised landmarks."""
    px = np.asarray(landmarks, np.float64)[:, :2] * (width, height)
    span = np.linalg.norm(px[CORNERS[0]] - px[CORNERS[1]])
    mouth = np.linalg.norm(px[MOUTH[0]] - px[MOUTH[1]]) / span
    eye = np.mean([np.linalg.norm(px[a] - px[b]) for a, b in EYES]) / span
    return float(mouth), float(eye)


def spread(x: np.ndarray) -> float:
    return float(np.percentile(x, 95) - np.percentile(x, 5))


def follow_scores(source: np.ndarray, avatar: np.ndarray) -> dict[str, float]:
    """source, avatar (N,) one ratio per frame -> r, range ratio, jitter of both."""
    return {
        "r": round(pearson(source, avatar), 3),
        "range_ratio": round(spread(avatar) / max(spread(source), 1e-9), 3),
        "jitter_source": round(float(np.abs(np.diff(source)).mean()), 4),
        "jitter_avatar": round(float(np.abs(np.diff(avatar)).mean()), 4),
    }


def run_clip(model: ICTFaceModel, clip: Path, variant: str, cfg: TrackerConfig,
             judge: FaceTracker) -> tuple[list[tuple[float, float, float, float]], list]:
    """One clip through one reader ("raw") or the neutral avatar ("neutral"): per frame
    with both faces found, (source mouth, source eye, avatar mouth, avatar eye); and a
    few (source, render) pairs to look at."""
    rows, shots, psi = [], [], []
    with Retargeter(model, render_config=RenderConfig(512, 512), tracker_config=cfg) as rt, \
            av.open(str(clip)) as container:
        rate = float(container.streams.video[0].average_rate or 25)
        for i, frame in enumerate(container.decode(video=0)):
            rgb = frame.to_ndarray(format="rgb24")
            track = rt.track(rgb, i / rate)
            if track.found:
                psi.append(track.expression)
            if variant == "neutral":
                out = rt.render_parameters(np.zeros(model.n_expression), track.rotation)
            else:
                out = rt.finish(track)
            seen = judge.process(out.image, i / rate)
            source = judge.process(rgb, i / rate)  # read as the avatar is, not by the reader
            if not (track.found and seen.found and source.found):
                continue
            src = openings(source.landmarks, rgb.shape[1], rgb.shape[0])
            ava = openings(seen.landmarks, out.image.shape[1], out.image.shape[0])
            rows.append((*src, *ava))
            if i in (20, 40, 60):
                shots.append((rgb, out.image))
    return rows, shots, float(np.abs(np.diff(np.array(psi), axis=0)).mean())


STILL_FRAMES, STILL_NOISE = 50, 1.5


def still_jitter(model: ICTFaceModel, cfg: TrackerConfig) -> dict[str, float]:
    """ψ jitter on a still face (see the module): lids and jaw, the rest."""
    fast = fast_elements(model.expression_names, n_after=0)
    parts = {"lids and jaw": [], "other shapes": []}
    for path in sorted((asset_root() / "faces" / "london_set").glob("london_*_neutral.jpg")):
        image = cv2.imread(str(path))
        rng = np.random.default_rng(int(path.stem.split("_")[1]))
        with FaceTracker(model.expression_names, cfg) as tracker:
            psi = []
            for k in range(STILL_FRAMES):
                shift = np.float32([[1, 0, rng.uniform(-1, 1)], [0, 1, rng.uniform(-1, 1)]])
                frame = cv2.warpAffine(image, shift, image.shape[1::-1],
                                       borderMode=cv2.BORDER_REFLECT)
                frame = np.clip(frame + rng.normal(0, STILL_NOISE, frame.shape), 0, 255)
                psi.append(tracker.process(frame.astype(np.uint8), k / 25, "bgr").expression)
        change = np.abs(np.diff(np.array(psi)[25:], axis=0))  # the first second ignored
        parts["lids and jaw"].append(change[:, fast].mean())
        parts["other shapes"].append(change[:, ~fast].mean())
    return {k: round(float(np.mean(v)), 4) for k, v in parts.items()}


def parse_indices(text: str, n: int) -> list[int]:
    """"0-3,6" -> [0, 1, 2, 3, 6]; empty -> all n."""
    if not text:
        return list(range(n))
    out = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out += range(int(a), int(b or a) + 1)
    return [i for i in out if i < n]


def contact_sheet(shots: list[tuple[str, np.ndarray, np.ndarray]], path: Path) -> None:
    """Source | avatar pairs, one row each, labelled."""
    tiles = []
    for label, src, ava in shots:
        h = 256
        a = cv2.resize(src, (round(src.shape[1] * h / src.shape[0]), h))
        b = cv2.resize(ava[: ava.shape[0] * 3 // 4, ava.shape[1] // 8 : ava.shape[1] * 7 // 8],
                       (h, h))  # the head, not the shoulders
        row = np.concatenate([a, b], axis=1)
        cv2.putText(row, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1)
        tiles.append(row)
    width = max(t.shape[1] for t in tiles)
    tiles = [np.pad(t, ((0, 0), (0, width - t.shape[1]), (0, 0))) for t in tiles]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(tiles), cv2.COLOR_RGB2BGR))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readers", default="mediapipe",
                    help=f"comma-separated, of {', '.join(READERS)}")
    ap.add_argument("--clips", default="", help="clip indices, e.g. 0-3 or 4,5 (default: all)")
    ap.add_argument("--response", default=None, help="the inverse reader's "
                    "mediapipe_response.npz (default: the shipped one)")
    ap.add_argument("--fast-beta", type=float, default=OneEuroConfig.fast_beta,
                    help="the filter's beta for the lids and the jaw (5: as the others, "
                         "the filter before 2026-11-28)")
    ap.add_argument("--fast-play", type=float, default=OneEuroConfig.fast_play,
                    help="the filter's play for the lids and the jaw (0: none)")
    ap.add_argument("--max-faces", type=int, default=TrackerConfig.max_faces,
                    help="faces MediaPipe follows (default 4: its detector reads every "
                         "frame; 1: it follows one face from its landmarks, smoothed)")
    ap.add_argument("--out", default="out/bench_fidelity.json")
    ap.add_argument("--frames", default="out/fidelity_frames.png")
    args = ap.parse_args()
    model = ICTFaceModel()
    clips = sorted((asset_root() / "video" / "grid_corpus").glob("*.mpg"))
    clips = [clips[i] for i in parse_indices(args.clips, len(clips))]
    variants = [("neutral avatar", "mediapipe", "neutral")]
    for reader in args.readers.split(","):
        variants.append((reader, reader, "raw"))
    judge_cfg = TrackerConfig(video=False, smoothing=None)
    results, shots = {}, []
    with FaceTracker(model.expression_names, judge_cfg) as judge:
        for name, reader, variant in variants:
            rows, per_clip, jitter = [], {}, []
            cfg = TrackerConfig(reader=reader, response_path=args.response,
                                smoothing=OneEuroConfig(fast_beta=args.fast_beta,
                                                        fast_play=args.fast_play),
                                max_faces=args.max_faces)
            for clip in tqdm(clips, desc=name, unit="clip"):
                clip_rows, clip_shots, clip_jitter = run_clip(model, clip, variant, cfg, judge)
                rows += clip_rows
                jitter.append(clip_jitter)
                a = np.array(clip_rows)
                per_clip[clip.name] = follow_scores(a[:, 0], a[:, 2])["r"]
                if clip == clips[0]:
                    shots += [(f"{name} {k}", s, r) for k, (s, r) in enumerate(clip_shots)]
            a = np.array(rows)
            results[name] = {"frames": len(a), "mouth": follow_scores(a[:, 0], a[:, 2]),
                             "eye": follow_scores(a[:, 1], a[:, 3]),
                             "mouth_r_per_clip": per_clip,
                             "psi_jitter_clips": round(float(np.mean(jitter)), 4),
                             "psi_jitter_still": None if variant == "neutral"
                             else still_jitter(model, cfg)}
    print(f"\nGRID clips: {len(clips)}, avatar = default ICT head 512², judged by MediaPipe")
    print("| variant | frames | mouth r | mouth range ratio | eye r | eye range ratio | "
          "mouth jitter source / avatar | ψ jitter, clips | ψ jitter, still face: lids and "
          "jaw / other |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, res in results.items():
        m, e, still = res["mouth"], res["eye"], res["psi_jitter_still"] or {}
        print(f"| {name} | {res['frames']} | {m['r']} | {m['range_ratio']} | {e['r']} | "
              f"{e['range_ratio']} | {m['jitter_source']} / {m['jitter_avatar']} | "
              f"{res['psi_jitter_clips']} | {still.get('lids and jaw', '–')} / "
              f"{still.get('other shapes', '–')} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"clips": [c.name for c in clips], "results": results}, indent=2))
    contact_sheet(shots, Path(args.frames))
    print(f"wrote {out} and {args.frames}")


if __name__ == "__main__":
    main()
