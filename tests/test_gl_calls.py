"""The draw and the readback through ctypes (engines.render.gl_calls): the same pixels as
moderngl's own calls, and the interpreter lock free while llvmpipe works. The moderngl
baseline and the lateness probe are scripts/bench_render.py's (``--gil``)."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

from avatars.restyle import styled_hair
from engines.render import gl_calls
from engines.render.hair import head_transform
from engines.render.renderer import MeshRenderer, RenderConfig


@pytest.fixture(scope="module")
def bench() -> dict:
    return runpy.run_path(str(Path(__file__).parents[1] / "scripts" / "bench_render.py"))


@pytest.fixture(scope="module")
def frames(ict):
    g = torch.Generator().manual_seed(3)
    s, _, pose = ict.zero_params(4)
    pose[:, :3] = 0.25 * torch.randn(4, 3, generator=g)
    psi = 0.6 * torch.rand(4, ict.n_expression, generator=g)
    return ict(s, psi, pose), [head_transform(p[:3].numpy()) for p in pose]


@pytest.fixture(scope="module")
def strands(ict):
    return styled_hair("long_wavy", np.zeros(ict.n_shape, np.float32), ict).positions


@pytest.mark.parametrize("config", [RenderConfig(160, 96), RenderConfig(
    96, 128, transparent=True, samples=4)], ids=["rgb", "rgba-msaa"])
def test_same_pixels_as_moderngls_own_calls(ict, frames, strands, config, bench) -> None:
    vertices, moves = frames
    with MeshRenderer(ict.topology, config) as r:
        r.set_hair(strands)
        ours = [r.render(v, hair_transform=m) for v, m in zip(vertices, moves, strict=True)]
        with bench["moderngl_calls"]():
            theirs = [r.render(v, hair_transform=m)
                      for v, m in zip(vertices, moves, strict=True)]
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == (config.height, config.width, 4 if config.transparent else 3)
        assert a.std() > 10  # a head and hair, not a blank frame
        np.testing.assert_array_equal(a, b)


def test_read_pixels_refuses_a_buffer_of_the_wrong_shape(ict) -> None:
    with MeshRenderer(ict.topology, RenderConfig(64, 32)) as r, r.ctx:
        for bad in (np.zeros((64, 32, 3), np.uint8), np.zeros((32, 64, 2), np.uint8),
                    np.zeros((32, 64, 3), np.float32), np.zeros((32, 128, 3), np.uint8)[:, ::2]):
            with pytest.raises(ValueError):
                gl_calls.read_pixels(r.fbo_resolve, bad)


def test_the_gil_is_free_while_llvmpipe_draws_and_reads(ict, frames, strands, bench) -> None:
    """Measured on this renderer (512², hair): with moderngl's calls a thread sleeping 1 ms
    at a time is late for ~80 % of the render time, with ctypes' ~5-10 %. The test asks
    for a clear relative gap only (under half of moderngl's share), not an absolute time."""
    vertices, moves = frames
    with MeshRenderer(ict.topology, RenderConfig(512, 512)) as r:
        r.set_hair(strands)

        def render_once(i: int) -> None:
            r.render(vertices[i % 4], hair_transform=moves[i % 4])

        render_once(0)
        ours = bench["loop_lateness"](render_once, 12)["late_share"]
        with bench["moderngl_calls"]():
            theirs = bench["loop_lateness"](render_once, 12)["late_share"]
    assert theirs > 0.3, f"moderngl's calls should hold the GIL (late share {theirs:.2f})"
    assert ours < 0.5 * theirs, f"late share {ours:.2f} with ctypes vs {theirs:.2f}"
