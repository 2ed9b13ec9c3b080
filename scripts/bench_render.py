"""Render benchmark: frames per second of the ICT head at 256, 512 and 1024 px.

Measures, per size and anti-aliasing setting, rendering alone (precomputed vertices:
normals, upload, draw, readback), single frames (model + render + readback one at a time)
and batches (one batched model call, then every frame rendered with the
same GL objects). With ``--hair``, also the 512 px render of the same frames with each
named hairstyle (aligned to the default head, moved with its pose) beside none. With
``--gil``, how late a thread that sleeps 1 ms at a time (an event loop) wakes while 512 px
frames render, with the draw and readback through moderngl (which holds the GIL) and
through :mod:`engines.render.gl_calls` (which frees it). With ``--lighting``, the 512 px
render's wall and CPU time with the skin lit per pixel and per vertex. Prints tables and
writes JSON.
Never a pass/fail gate.

    python scripts/bench_render.py [--frames 60] [--batch 8] [--sizes 256,512,1024]
        [--hair long_wavy,side_part,curly_afro] [--gil none,long_wavy]
        [--lighting none,long_wavy]
        [--out out/bench_render.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import threading
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from avatars.restyle import styled_hair
from engines.face.ict import ICTFaceModel
from engines.render import hair as hair_module
from engines.render import renderer as renderer_module
from engines.render.hair import head_transform
from engines.render.renderer import MeshRenderer, RenderConfig
from engines.render.skin_texture import plain_skin_texture


def animated_params(model: ICTFaceModel, n: int) -> tuple[torch.Tensor, ...]:
    """n frames of a changing expression and head pose, so no frame is a cache hit."""
    g = torch.Generator().manual_seed(0)
    shape = torch.zeros(n, model.n_shape)
    psi = 0.5 * torch.rand(n, model.n_expression, generator=g)
    pose = torch.zeros(n, model.n_pose)
    t = torch.arange(n, dtype=torch.float32)
    pose[:, 1] = 0.35 * torch.sin(t / 7)
    pose[:, 0] = 0.12 * torch.sin(t / 5)
    return shape, psi, pose


def bench_single(model, renderer, params, frames: int) -> list[float]:
    shape, psi, pose = params
    times = []
    for i in range(frames):
        t0 = time.perf_counter()
        v = model(shape[i : i + 1], psi[i : i + 1], pose[i : i + 1])[0]
        renderer.render(v)
        times.append(time.perf_counter() - t0)
    return times


def bench_render_only(renderer, vertices: torch.Tensor) -> list[float]:
    """Render + readback of precomputed vertices (B, V, 3), one frame at a time."""
    times = []
    for v in vertices:
        t0 = time.perf_counter()
        renderer.render(v)
        times.append(time.perf_counter() - t0)
    return times


def bench_batch(model, renderer, params, frames: int, batch: int) -> float:
    shape, psi, pose = params
    t0 = time.perf_counter()
    for start in range(0, frames, batch):
        sl = slice(start, min(start + batch, frames))
        renderer.render_batch(model(shape[sl], psi[sl], pose[sl]))
    return time.perf_counter() - t0


def set_style(renderer: MeshRenderer, style: str, model: ICTFaceModel, params) -> None:
    """Give the renderer a hairstyle aligned to the benchmark's head, or none."""
    renderer.set_hair(None if style == "none" else styled_hair(
        style, params[0][0].numpy(), model).positions)


def timed_frames(renderer: MeshRenderer, vertices: torch.Tensor, moves: list[np.ndarray]
                 ) -> tuple[list[float], float]:
    """Each frame's render seconds (after 5 warm-up frames), and the process's CPU
    seconds per frame (llvmpipe's rasteriser threads included)."""
    for v, m in list(zip(vertices, moves, strict=True))[:5]:
        renderer.render(v, hair_transform=m)
    times, cpu0 = [], time.process_time()
    for v, m in zip(vertices, moves, strict=True):
        t0 = time.perf_counter()
        renderer.render(v, hair_transform=m)
        times.append(time.perf_counter() - t0)
    return times, (time.process_time() - cpu0) / len(times)


def bench_hair(model: ICTFaceModel, params, styles: list[str], size: int) -> dict[str, float]:
    """Median render-only ms at ``size`` (no MSAA) with no hair and with each style."""
    vertices = model(*params)
    moves = [head_transform(p[:3].numpy()) for p in params[2]]
    out = {}
    with MeshRenderer(model.topology, RenderConfig(size, size)) as r:
        for style in ["none", *styles]:
            set_style(r, style, model, params)
            times, _ = timed_frames(r, vertices, moves)
            out[style] = round(1000 * statistics.median(times), 2)
            print(f"  {size}px hair={style}: {out[style]} ms", flush=True)
    return out


def bench_lighting(model: ICTFaceModel, params, styles: list[str]) -> list[dict]:
    """512 px render-only cost with the skin lit per pixel and per vertex, the procedural
    skin texture on, with no hair and each style: wall median and CPU ms per frame (the
    process's CPU time, llvmpipe's rasteriser threads included: what several sessions on
    one machine share)."""
    vertices = model(*params)
    moves = [head_transform(p[:3].numpy()) for p in params[2]]
    texture = plain_skin_texture(model)
    rows = []
    for lighting in ("pixel", "vertex"):
        cfg = RenderConfig(512, 512, vertex_lighting=lighting == "vertex")
        with MeshRenderer(model.topology, cfg, texture=texture) as r:
            for style in ["none", *styles]:
                set_style(r, style, model, params)
                times, cpu = timed_frames(r, vertices, moves)
                rows.append({"lighting": lighting, "hair": style,
                             "wall_median_ms": round(1000 * statistics.median(times), 2),
                             "cpu_ms": round(1000 * cpu, 2)})
                print(f"  lighting={lighting} hair={style}: {rows[-1]}", flush=True)
    return rows


def loop_lateness(render_once, frames: int) -> dict[str, float]:
    """Render ``frames`` times while another thread sleeps 1 ms at a time, as an event
    loop waiting on sockets does, and measure how late it wakes (the GIL held by the
    render keeps it waiting): render median ms, the waker's mean / p99 / max lateness ms,
    and the share of the time it was more than 2 ms late."""
    late: list[float] = []
    stop = threading.Event()

    def waker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            late.append(now - last - 0.001)
            last = now

    thread = threading.Thread(target=waker)
    thread.start()
    times = []
    for i in range(frames):
        t0 = time.perf_counter()
        render_once(i)
        times.append(time.perf_counter() - t0)
    stop.set()
    thread.join()
    ms = np.array(late) * 1000
    return {
        "render_ms": round(1000 * statistics.median(times), 2),
        "late_mean_ms": round(float(ms.mean()), 2),
        "late_p99_ms": round(float(np.percentile(ms, 99)), 2),
        "late_max_ms": round(float(ms.max()), 2),
        "late_share": round(float(ms[ms > 2].sum() / 1000 / sum(times)), 3),
    }


def moderngl_calls() -> contextlib.AbstractContextManager:
    """The draw and the readback through moderngl's own calls (which hold the GIL), as
    the renderer made them before :mod:`engines.render.gl_calls`: the baseline."""

    def draw(vao, mode):
        vao.render(mode)

    def read(fbo, out):
        comps = out.shape[2]
        out[:] = np.frombuffer(fbo.read(components=comps, alignment=1), np.uint8).reshape(
            out.shape)
        return out

    stack = contextlib.ExitStack()
    for module in (renderer_module, hair_module):
        stack.enter_context(mock.patch.object(module, "draw_elements", draw))
    stack.enter_context(mock.patch.object(renderer_module, "read_pixels", read))
    return stack


def bench_gil(model: ICTFaceModel, params, styles: list[str], frames: int) -> list[dict]:
    """Render-while-the-loop-waits rows for each style x (moderngl's calls, ctypes')."""
    vertices = model(*params)
    moves = [head_transform(p[:3].numpy()) for p in params[2]]
    rows = []
    with MeshRenderer(model.topology, RenderConfig(512, 512)) as r:
        for style in styles:
            strands = None if style == "none" else styled_hair(
                style, params[0][0].numpy(), model).positions
            r.set_hair(strands)
            for name, calls in (("moderngl", moderngl_calls), ("ctypes", contextlib.nullcontext)):
                with calls():
                    for i in range(3):  # warm-up
                        r.render(vertices[i], hair_transform=moves[i])
                    row = loop_lateness(
                        lambda i: r.render(vertices[i], hair_transform=moves[i]), frames)
                rows.append({"hair": style, "gl_calls": name, **row})
                print(f"  gil hair={style} {name}: {row}", flush=True)
    return rows


def print_gil(rows: list[dict]) -> None:
    """The event-loop lateness table (nothing without rows)."""
    if not rows:
        return
    keys = ["hair", "gl_calls", "render_ms", "late_mean_ms", "late_p99_ms", "late_max_ms",
            "late_share"]
    print("\nA thread sleeping 1 ms at a time while 512 px frames render (how late it "
          "wakes: the GIL the render holds)\n| " + " | ".join(keys) + " |\n|"
          + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")


def print_hair(hair: dict[str, float]) -> None:
    if hair:
        print("\n| 512 px, no MSAA | render ms (median) | hair's share ms |\n|---|---|---|")
        for style, ms in hair.items():
            print(f"| {style} | {ms} | {round(ms - hair['none'], 2)} |")


def print_lighting(rows: list[dict]) -> None:
    if rows:
        print("\n| lighting | hair | render ms (median) | CPU ms per frame |\n|---|---|---|---|")
        for row in rows:
            print(f"| {row['lighting']} | {row['hair']} | {row['wall_median_ms']} | "
                  f"{row['cpu_ms']} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--sizes", default="256,512,1024")
    ap.add_argument("--hair", default="", help="comma-separated hairstyles to time at 512 px")
    ap.add_argument("--gil", default="",
                    help="comma-separated hairstyles (or none) for the event-loop lateness rows")
    ap.add_argument("--lighting", default="",
                    help="comma-separated hairstyles (or none) for the per-pixel vs per-vertex "
                    "lighting rows")
    ap.add_argument("--out", default="out/bench_render.json")
    args = ap.parse_args()

    model = ICTFaceModel()
    params = animated_params(model, args.frames)
    rows = []
    gl_renderer = None
    with torch.no_grad():
        hair = bench_hair(model, params, args.hair.split(","), 512) if args.hair else {}
        gil = bench_gil(model, params, args.gil.split(","), args.frames) if args.gil else []
        lighting = (bench_lighting(model, params, [s for s in args.lighting.split(",")
                                                   if s != "none"])
                    if args.lighting else [])
        for size in (int(s) for s in args.sizes.split(",") if s):
            for samples in (0, 4):
                cfg = RenderConfig(width=size, height=size, samples=samples)
                with MeshRenderer(model.topology, cfg) as r:
                    with r.ctx:
                        gl_renderer = r.ctx.info["GL_RENDERER"]
                    bench_single(model, r, params, 5)  # warm-up (shader compile, caches)
                    single = bench_single(model, r, params, args.frames)
                    render_only = bench_render_only(r, model(*params))
                    batch_s = bench_batch(model, r, params, args.frames, args.batch)
                med = statistics.median(single)
                rows.append(
                    {
                        "size": size,
                        "msaa": samples,
                        "render_only_fps": round(1 / statistics.median(render_only), 1),
                        "single_fps": round(1 / med, 1),
                        "single_median_ms": round(1000 * med, 2),
                        "single_p95_ms": round(1000 * sorted(single)[int(0.95 * len(single))], 2),
                        f"batch{args.batch}_fps": round(args.frames / batch_s, 1),
                    }
                )
                print(f"  {size}px msaa={samples}: {rows[-1]['single_fps']} fps", flush=True)

    header = [
        "size",
        "msaa",
        "render_only_fps",
        "single_fps",
        "single_median_ms",
        "single_p95_ms",
        f"batch{args.batch}_fps",
    ]
    print(
        f"\nICT head ({model.n_vertices} vertices, {model.topology.n_faces} triangles) "
        f"on {gl_renderer}, {torch.get_num_threads()} torch threads"
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(row[h]) for h in header) + " |")
    print_hair(hair)
    print_gil(gil)
    print_lighting(lighting)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "gl_renderer": gl_renderer,
        "machine": platform.machine(),
        "cpu_count": __import__("os").cpu_count(),
        "frames": args.frames,
    }
    out.write_text(json.dumps({"meta": meta, "rows": rows, "hair_512_ms": hair, "gil": gil,
                               "lighting": lighting},
                              indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
