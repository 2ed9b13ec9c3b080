"""The live path's hair (``RenderConfig.hair_shell``): one textured shell baked from the
strands, which must show the same hair where the strands do, in their colour, and move
with the head."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from avatars.hair.photo import mask_iou
from avatars.restyle import styled_hair
from engines.render import hair_shell as hs
from engines.render.hair import HairLook, HairMesh, hair_mesh, head_transform
from engines.render.renderer import MeshRenderer, RenderConfig

SIZE = 160
POSES = [(0.0, 0.0), (0.0, 0.5), (0.15, -0.35)]  # (pitch, yaw) radians


@pytest.fixture(scope="module")
def strands(ict):
    zeros = np.zeros(ict.n_shape, np.float32)
    return {s: styled_hair(s, zeros, ict).positions
            for s in ("side_part", "long_wavy", "ponytail", "curly_afro")}


@pytest.fixture(scope="module")
def poses(ict):
    out = []
    for pitch, yaw in POSES:
        pose = torch.zeros(1, ict.n_pose)
        pose[0, 0], pose[0, 1] = pitch, yaw
        v = ict(torch.zeros(1, ict.n_shape), torch.zeros(1, ict.n_expression), pose)[0]
        out.append((v, head_transform(pose[0, :3].numpy())))
    return out


def render(ict, poses, strands, shell: bool, colour=(0.23, 0.16, 0.11)) -> np.ndarray:
    with MeshRenderer(ict.topology, RenderConfig(SIZE, SIZE, hair_shell=shell)) as r:
        if strands is not None:
            r.set_hair(strands, colour)
        return np.stack([r.render(v, hair_transform=m) for v, m in poses])


def hair_mask(frames: np.ndarray, bare: np.ndarray) -> np.ndarray:
    return np.abs(frames.astype(int) - bare.astype(int)).max(-1) > 12



def test_the_reduced_grid_covers_the_sphere_with_fewer_cells() -> None:
    polar = np.linspace(np.pi, 0.0, 49)
    rows, u, tris = hs.reduced_grid(np.sin(polar), 96)
    pos = hs.from_polar((u - 0.5) * 2 * np.pi, polar[rows], np.ones(len(u)), np.zeros(3))
    p = pos[tris]
    n = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    area = np.linalg.norm(n, axis=1).sum() / 2
    assert abs(area - 4 * np.pi) < 0.01 * 4 * np.pi
    proper = np.linalg.norm(n, axis=1) > 1e-9
    facing = np.einsum("ij,ij->i", n, p.mean(1))[proper]
    assert (facing < 0).all() or (facing > 0).all()  # all wound alike
    assert len(tris) < 0.7 * 2 * 96 * 48  # the full grid's count
    # a control: the grid without its middle row's stitching leaves a hole
    kept = tris[rows[tris].min(1) != 24]
    q = pos[kept]
    assert np.linalg.norm(np.cross(q[:, 1] - q[:, 0], q[:, 2] - q[:, 0]), axis=1).sum() / 2 \
        < 0.97 * 4 * np.pi


def test_polar_coordinates_round_trip() -> None:
    points = np.random.default_rng(0).normal(size=(200, 3)) * 10
    centre = np.array([0.0, 1.4, -2.5])
    back = hs.from_polar(*hs.to_polar(points, centre).T, centre)
    np.testing.assert_allclose(back, points, atol=1e-9)


def test_the_shell_shows_the_hair_where_the_strands_do(ict, strands, poses) -> None:
    bare = render(ict, poses, None, shell=False)
    for style in ("side_part", "long_wavy", "ponytail"):
        truth = hair_mask(render(ict, poses, strands[style], shell=False), bare)
        shell_frames = render(ict, poses, strands[style], shell=True)
        shell = hair_mask(shell_frames, bare)
        assert mask_iou(truth, shell) > 0.8, style
        # the background shows through a tenth of the strands' hair at most (measured
        # 4-7 % at this size: strand tips beyond the shell's outline)
        background = np.asarray(RenderConfig().background) * 255
        holes = truth & (np.abs(shell_frames - background).max(-1) < 3)
        assert holes.sum() < 0.10 * truth.sum(), style
    # controls: another style's hair, and the scalp cap alone, cover long hair far worse
    truth = hair_mask(render(ict, poses, strands["long_wavy"], shell=False), bare)
    other = hair_mask(render(ict, poses, strands["side_part"], shell=True), bare)
    assert mask_iou(truth, other) < 0.6
    with MeshRenderer(ict.topology, RenderConfig(SIZE, SIZE)) as r:
        r.set_hair(strands["long_wavy"])
        cap_only = dataclasses.replace(hair_mesh(np.asarray(strands["long_wavy"]), HairLook()),
                                       lines=np.zeros((0, 2), np.int32))
        with r.ctx:
            r.hair.set(cap_only, (0.23, 0.16, 0.11))
        cap = np.stack([r.render(v, hair_transform=m) for v, m in poses])
    assert mask_iou(truth, hair_mask(cap, bare)) < 0.5


def test_the_shell_takes_the_hair_colour_and_lights_it_as_the_strands(ict, strands, poses):
    bare = render(ict, poses, None, shell=False)
    for style in ("long_wavy", "curly_afro"):  # combed alike, and curls every way
        lightness = {}
        for shell in (False, True):
            for name, colour in (("dark", (0.23, 0.16, 0.11)), ("blond", (0.80, 0.66, 0.42))):
                frames = render(ict, poses, strands[style], shell, colour)
                mask = hair_mask(frames, bare)
                lab = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2LAB) for f in frames])
                lightness[shell, name] = lab[..., 0][mask].mean() * 100 / 255
        assert lightness[True, "blond"] > lightness[True, "dark"] + 25
        for name in ("dark", "blond"):
            assert abs(lightness[True, name] - lightness[False, name]) < 5, (style, lightness)


def test_a_style_without_hair_draws_nothing(ict, strands, poses) -> None:
    bare = render(ict, poses[:1], None, shell=True)
    empty = HairMesh(np.zeros((0, 8), np.float32), np.zeros((0, 2), np.int32),
                        np.zeros((0, 3), np.int32), np.zeros(3))
    with MeshRenderer(ict.topology, RenderConfig(SIZE, SIZE, hair_shell=True)) as r:
        r.set_hair(strands["side_part"])
        with r.ctx:
            r.hair.set(empty, (0.2, 0.2, 0.2))
        frame = r.render(*poses[0][:1], hair_transform=poses[0][1])
    np.testing.assert_array_equal(frame, bare[0])


def test_a_few_stray_strands_make_no_shell_and_draw_nothing(ict, strands, poses) -> None:
    """Too little hair for a shell (here one drawn strand of a long style) is not an
    error: the live session keeps running with nothing drawn."""
    mesh = hair_mesh(np.asarray(strands["long_wavy"]), HairLook())
    first = mesh.lines[mesh.lines[:, 1] < 100 // HairLook().step]  # the first strand's
    few = dataclasses.replace(mesh, lines=first, cap=np.zeros((0, 3), np.int32))
    with MeshRenderer(ict.topology, RenderConfig(64, 64)) as r, r.ctx:
        assert hs.shell_of(r.ctx, few) is None
        assert hs.shell_of(r.ctx, mesh) is not None  # the control: the whole style
    bare = render(ict, poses[:1], None, shell=True)
    with MeshRenderer(ict.topology, RenderConfig(SIZE, SIZE, hair_shell=True)) as r:
        r.set_hair(strands["side_part"])
        with r.ctx:
            r.hair.set(few, (0.2, 0.2, 0.2))
        np.testing.assert_array_equal(r.render(poses[0][0], hair_transform=poses[0][1]),
                                      bare[0])


def test_a_shell_is_baked_once_per_style_and_shared_read_only(ict, strands) -> None:
    meshes = {s: hair_mesh(np.asarray(strands[s]), HairLook()) for s in ("side_part", "ponytail")}
    with MeshRenderer(ict.topology, RenderConfig(64, 64)) as r, r.ctx:
        first = hs.cached_shell(r.ctx, meshes["side_part"])
        again = hs.cached_shell(r.ctx, meshes["side_part"])
        other = hs.cached_shell(r.ctx, meshes["ponytail"])
    assert again is first and other is not first
    assert not first.vertices.flags.writeable and not first.texture.flags.writeable
    assert len(first.triangles) > 1000 and 0 < first.two_sided < len(first.triangles)
