"""Strand hair's layer (``RenderConfig.hair_reuse_deg``; the live paths with
``--hair-strands``): drawn into its own colour and depth, laid over the head, drawn again
only when the head has turned enough."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatars.restyle import styled_hair
from engines.render.hair import head_transform, turn_between_deg
from engines.render.renderer import MeshRenderer, RenderConfig


@pytest.fixture(scope="module")
def strands(ict):
    zeros = np.zeros(ict.n_shape, np.float32)
    return {s: styled_hair(s, zeros, ict).positions for s in ("long_wavy", "curly_afro")}


def frames(ict, turns_deg: list[tuple[float, float]]) -> tuple[torch.Tensor, list]:
    """Vertices (n, V, 3) and hair transforms for (yaw, pitch) turns in degrees."""
    pose = torch.zeros(len(turns_deg), ict.n_pose)
    for i, (yaw, pitch) in enumerate(turns_deg):
        pose[i, :2] = torch.tensor([np.radians(pitch), np.radians(yaw)])
    psi = torch.zeros(len(turns_deg), ict.n_expression)
    psi[:, ict.expression_names.index("jawOpen")] = 0.3
    v = ict(torch.zeros(len(turns_deg), ict.n_shape), psi, pose)
    return v, [head_transform(p[:3].numpy()) for p in pose]


@pytest.mark.parametrize("config", [RenderConfig(192, 160), RenderConfig(128, 128,
                                                                           transparent=True)],
                         ids=["rgb", "rgba"])
def test_a_fresh_layer_gives_the_pixels_of_drawing_the_hair_directly(ict, strands, config):
    v, moves = frames(ict, [(0, 0), (8, -4), (-20, 6)])
    out = {}
    for reuse in (0.0, 1e-6):  # 1e-6: the layer, drawn again every frame
        with MeshRenderer(ict.topology, RenderConfig(**{**config.__dict__,
                                                        "hair_reuse_deg": reuse})) as r:
            r.set_hair(strands["long_wavy"])
            out[reuse] = [r.render(v[i], hair_transform=moves[i]) for i in range(3)]
            assert r.hair.redrawn == (3 if reuse else 0)
    for direct, layered in zip(out[0.0], out[1e-6], strict=True):
        assert (np.abs(direct.astype(int) - direct.mean((0, 1))).sum(2) > 60).mean() > 0.05
        np.testing.assert_array_equal(direct, layered)


def test_the_layer_is_drawn_again_only_past_the_threshold(ict, strands):
    v, moves = frames(ict, [(0, 0), (0.2, 0.1), (0.45, 0.1), (1.0, 0.0), (1.0, 0.0)])
    assert turn_between_deg(moves[0], moves[2]) == pytest.approx(np.hypot(0.45, 0.1), 0.05)
    with MeshRenderer(ict.topology, RenderConfig(160, 160, hair_reuse_deg=0.4)) as r:
        r.set_hair(strands["long_wavy"])
        drawn = []
        images = []
        for i in range(5):
            images.append(r.render(v[i], hair_transform=moves[i]))
            drawn.append(r.hair.redrawn)
        assert drawn == [1, 1, 2, 3, 3]  # 0.22° kept; 0.46° and 0.6° past it; none moved
        r.set_hair(strands["curly_afro"])  # another style: drawn again at once
        afro = r.render(v[4], hair_transform=moves[4])
        assert r.hair.redrawn == 4 and np.abs(afro.astype(int) - images[4]).max() > 50
    with MeshRenderer(ict.topology, RenderConfig(160, 160)) as direct:
        direct.set_hair(strands["long_wavy"])
        exact = direct.render(v[1], hair_transform=moves[1])
    reused = images[1]  # the head at 0.22°, its hair from 0°
    diff = np.abs(reused.astype(int) - exact)
    # strands a pixel off (measured: 6.5 % of this small frame's pixels);
    # a head drawn a degree off would move every edge
    assert 0 < (diff.max(2) > 0).mean() < 0.15 and diff.mean() < 4, (
        (diff.max(2) > 0).mean(), diff.mean())


def test_msaa_draws_the_hair_directly(ict, strands):
    v, moves = frames(ict, [(0, 0)])
    with MeshRenderer(ict.topology, RenderConfig(96, 96, samples=4, hair_reuse_deg=0.3)) as r:
        r.set_hair(strands["long_wavy"])
        r.render(v[0], hair_transform=moves[0])
        assert r.hair.redrawn == 0
