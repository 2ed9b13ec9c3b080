"""Offscreen renderer: silhouette against a software rasteriser, rotation, texture, leaks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from engines.face.ict import ICTFaceModel
from engines.face.model import MeshTopology
from engines.render.camera import PerspectiveCamera, WeakPerspectiveCamera
from engines.render.materials import material_for
from engines.render.renderer import MeshRenderer, RenderConfig, expand_render_vertices

SIZE = 256


@pytest.fixture(scope="module")
def renderer(ict: ICTFaceModel):
    cfg = RenderConfig(width=SIZE, height=SIZE, transparent=True)
    with MeshRenderer(ict.topology, cfg) as r:
        yield r


def software_mask(
    vertices: np.ndarray, topology: MeshTopology, camera, width: int, height: int
) -> np.ndarray:
    """Rasterise the drawn (opaque) triangles with OpenCV, 1/16 px precision."""
    px = camera.project(vertices, width, height) - 0.5  # OpenCV: pixel centres at integers
    alpha = np.array([material_for(n).alpha for n in topology.material_names])
    tris = topology.faces[alpha[topology.face_material] >= 1.0]
    pts = np.round(px[tris] * 16).astype(np.int32)  # (T, 3, 2)
    mask = np.zeros((height, width), np.uint8)
    for tri in pts:
        cv2.fillConvexPoly(mask, tri, 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize(
    "camera",
    [PerspectiveCamera.portrait(), WeakPerspectiveCamera.portrait()],
    ids=["persp", "weak"],
)
def test_silhouette_matches_software_raster(ict, renderer, camera) -> None:
    s, _e, p = ict.zero_params(1)
    p[0, :3] = torch.tensor([0.1, 0.5, 0.0])
    v = ict(s, ict.expression_vector({"jawOpen": 0.5}), p)[0]
    img = renderer.render(v, camera)
    assert img.shape == (SIZE, SIZE, 4) and img.dtype == np.uint8
    gl_mask = img[..., 3] > 0
    sw_mask = software_mask(v.numpy(), ict.topology, camera, SIZE, SIZE)
    assert sw_mask.sum() > 0.1 * SIZE * SIZE
    assert iou(gl_mask, sw_mask) > 0.95


def centroid_x(mask: np.ndarray) -> float:
    return float(np.nonzero(mask)[1].mean())


def test_rotated_head_renders_rotated(ict, renderer) -> None:
    s, e, p = ict.zero_params(1)
    front = renderer.render(ict(s, e, p)[0])
    p[0, 1] = 0.6  # yaw to the subject's left = image right for a camera facing the face
    turned = renderer.render(ict(s, e, p)[0])

    # the face's brightest skin (nose and cheeks) moves right; mirror-symmetry breaks
    def face_mask(img: np.ndarray) -> np.ndarray:
        m = img[..., 3] > 0
        m[int(SIZE * 0.62) :] = False  # above the neck
        return m

    assert centroid_x(face_mask(turned)) > centroid_x(face_mask(front)) + 2
    sym = (face_mask(front) != face_mask(front)[:, ::-1]).mean()
    asym = (face_mask(turned) != face_mask(turned)[:, ::-1]).mean()
    assert asym > 5 * sym


@pytest.mark.parametrize("vertex_lighting", [False, True], ids=["pixel", "vertex"])
def test_texture_colour_appears_where_the_uvs_put_it(ict, vertex_lighting) -> None:
    s, e, p = ict.zero_params(1)
    v = ict(s, e, p)[0]
    t = ict.topology
    tip = int(t.landmark_vertex_ids[30])  # nose tip
    # the uv of the nose tip: find a face corner that uses it
    face, corner = np.argwhere(t.faces == tip)[0]
    u, w = t.uvs[t.face_uvs[face, corner]]
    tex = np.full((512, 512, 3), 200, np.uint8)
    row, col = int((1 - w) * 512), int(u * 512)  # image row 0 is v = 1
    tex[max(row - 12, 0) : row + 12, max(col - 12, 0) : col + 12] = (255, 0, 0)
    cam = PerspectiveCamera.portrait()
    cfg = RenderConfig(width=SIZE, height=SIZE, vertex_lighting=vertex_lighting)
    with MeshRenderer(t, cfg, texture=tex) as r:
        img = r.render(v, cam).astype(int)
    x, y = cam.project(v[tip : tip + 1].numpy(), SIZE, SIZE)[0].astype(int)
    patch = img[y - 1 : y + 2, x - 1 : x + 2].reshape(-1, 3).mean(0)
    assert patch[0] > patch[1] + 60 and patch[0] > patch[2] + 60  # red under the nose tip
    far = img[y - 40, x]  # forehead: grey texture
    assert abs(far[0] - far[1]) < 25


def test_weak_perspective_scale_changes_size(ict, renderer) -> None:
    v = ict(*ict.zero_params(1))[0]
    small = renderer.render(v, WeakPerspectiveCamera(scale=1 / 40))[..., 3] > 0
    large = renderer.render(v, WeakPerspectiveCamera(scale=1 / 20))[..., 3] > 0
    assert 3.0 < large.sum() / small.sum() < 5.0  # area goes with scale squared


def test_solid_background_and_rgb_output(ict) -> None:
    cfg = RenderConfig(width=64, height=48, background=(0.0, 1.0, 0.0))
    with MeshRenderer(ict.topology, cfg) as r:
        img = r.render(ict(*ict.zero_params(1))[0])
    assert img.shape == (48, 64, 3)
    assert tuple(img[0, 0]) == (0, 255, 0)
    with MeshRenderer(ict.topology, cfg) as r:  # changed between frames (a live session)
        r.set_background((0.0, 0.0, 1.0))
        img = r.render(ict(*ict.zero_params(1))[0])
        with pytest.raises(ValueError, match="three sRGB values"):
            r.set_background((0.0, 2.0, 0.0))
    assert tuple(img[0, 0]) == (0, 0, 255) and tuple(img[24, 32]) != (0, 0, 255)


def test_render_batch_equals_single_renders(ict, renderer) -> None:
    s, e, p = ict.zero_params(2)
    p[1, 1] = 0.4
    v = ict(s, e, p)
    batch = renderer.render_batch(v)
    assert batch.shape == (2, SIZE, SIZE, 4)
    assert np.array_equal(batch[1], renderer.render(v[1]))
    assert not np.array_equal(batch[0], batch[1])


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20


def test_many_renders_leak_no_gl_objects_or_memory(ict) -> None:
    v = ict(*ict.zero_params(1))[0]
    with MeshRenderer(ict.topology, RenderConfig(width=128, height=128)) as r:
        for _ in range(50):
            r.render(v)
        with r.ctx:
            before = r.ctx.buffer(reserve=4)
        mem_before = rss_mb()
        for i in range(500):
            r.render(v + 0.001 * (i % 3))
        with r.ctx:
            after = r.ctx.buffer(reserve=4)
        mem_after = rss_mb()
        names = (before.glo, after.glo)
        before.release()
        after.release()
    assert names[1] == names[0] + 1  # the 500 frames allocated no GL buffer names
    assert mem_after - mem_before < 25


def test_expand_render_vertices_splits_uv_seams() -> None:
    topo = MeshTopology(
        faces=np.array([[0, 1, 2], [0, 2, 3]], np.int32),
        face_material=np.zeros(2, np.int16),
        material_names=("skin",),
        landmark_vertex_ids=np.zeros(0, np.int64),
        uvs=np.zeros((5, 2), np.float32),
        face_uvs=np.array([[0, 1, 2], [4, 2, 3]], np.int32),  # vertex 0 has two uvs
    )
    vids, uv_ids, tris = expand_render_vertices(topo)
    assert len(vids) == 5 and sorted(vids.tolist()) == [0, 0, 1, 2, 3]
    assert np.array_equal(vids[tris], topo.faces)
    assert np.array_equal(uv_ids[tris], topo.face_uvs)


def test_bad_sizes_and_textures_raise(ict) -> None:
    with pytest.raises(ValueError, match="render size"):
        MeshRenderer(ict.topology, RenderConfig(width=0))
    with (
        MeshRenderer(ict.topology, RenderConfig(width=8, height=8)) as r,
        pytest.raises(ValueError, match="texture"),
    ):
        r.set_texture(np.zeros((4, 4), np.uint8))


def test_udim_tiles_side_by_side_texture_face_and_back_of_head(ict) -> None:
    tex = np.zeros((64, 128, 3), np.uint8)
    tex[:, :64] = (40, 200, 40)  # tile 0: the face
    tex[:, 64:] = (40, 40, 200)  # tile 1: the back of the head
    s, e, p = ict.zero_params(1)
    with MeshRenderer(ict.topology, RenderConfig(width=96, height=96), texture=tex) as r:
        front = r.render(ict(s, e, p)[0]).astype(int)
        p[0, 1] = np.pi
        back = r.render(ict(s, e, p)[0]).astype(int)
    centre = (slice(30, 50), slice(40, 56))
    f, b = front[centre].reshape(-1, 3).mean(0), back[centre].reshape(-1, 3).mean(0)
    assert f[1] > f[2] + 40 and b[2] > b[1] + 40
    with MeshRenderer(ict.topology, RenderConfig(width=96, height=96), texture=tex[:, :64]) as r:
        back_square = r.render(ict(s, e, p)[0]).astype(int)[centre].reshape(-1, 3).mean(0)
    assert abs(back_square[1] - back_square[2]) < 30  # a 1-tile texture leaves tile 1 plain


@pytest.mark.parametrize("vertex_lighting", [False, True], ids=["pixel", "vertex"])
def test_the_iris_takes_the_targets_colour_and_the_pupil_stays_black(ict, vertex_lighting) -> None:
    """A target's measured iris colour reaches the irises (and only them); through the
    pupil the iris shell's back shows black, not the inside of the head."""
    t = ict.topology
    ids = np.unique(t.faces[t.face_material == t.material_names.index("M_IrisLeft")])
    cap = ids[t.eye_directions[ids, 2] > np.cos(np.radians(RenderConfig().iris_angle_deg))]
    points = ict.neutral[cap].numpy()  # (K, 3) the iris
    centre = points.mean(0)
    camera = PerspectiveCamera(fov_y_deg=3.0, eye=(centre[0], centre[1], 80.0),
                               target=tuple(centre))
    px = camera.project(points, 128, 128)  # (K, 2)
    middle = px.mean(0)
    radius = np.linalg.norm(px - middle, axis=1).max()
    yy, xx = np.mgrid[0:128, 0:128]
    r = np.hypot(xx + 0.5 - middle[0], yy + 0.5 - middle[1]) / radius
    images = {}
    with MeshRenderer(t, RenderConfig(128, 128, vertex_lighting=vertex_lighting)) as r3d:
        for name, rgb in (("blue", (0.2, 0.45, 0.8)), ("default", None)):
            r3d.set_iris_colour(rgb)
            images[name] = r3d.render(ict.neutral, camera).astype(float)
    iris = (r > 0.5) & (r < 0.8)
    blue, default = images["blue"][iris].mean(0), images["default"][iris].mean(0)
    assert blue[2] > blue[0] + 30 and default[0] > default[2] + 15  # blue, then brown again
    assert images["blue"][r < 0.15].max() < 60  # the pupil
    outside = r > 1.6  # skin and lids around the eye: unchanged
    assert np.abs(images["blue"][outside] - images["default"][outside]).max() < 2


def test_vertex_lighting_looks_like_lighting_every_pixel(ict) -> None:
    """The live path's per-vertex light (engines.render.shaders) against the exact
    per-pixel light: moving, textured 512² frames of the ICT head differ only in the
    odd silhouette pixel. A head in one flat colour is the control: far off."""
    g = torch.Generator().manual_seed(3)
    frames = 4
    shape, psi, pose = ict.zero_params(frames)
    psi = 0.6 * torch.rand(psi.shape, generator=g)
    pose[:, 0], pose[:, 1] = torch.linspace(-0.2, 0.2, frames), torch.linspace(0.4, -0.4, frames)
    with torch.no_grad():
        verts = ict(shape, psi, pose)
    tex = np.random.default_rng(0).integers(120, 220, (256, 512, 3), dtype=np.uint8)
    tex = cv2.GaussianBlur(tex, (0, 0), 4)  # skin-like: blotches, no pixel noise
    images = {}
    for vertex_lighting in (False, True):
        cfg = RenderConfig(512, 512, vertex_lighting=vertex_lighting)
        with MeshRenderer(ict.topology, cfg, texture=tex) as r:
            images[vertex_lighting] = np.stack([r.render(v) for v in verts]).astype(float)
    exact, vertex = images[False], images[True]
    head = (np.abs(exact - exact[0, 0, 0]).max(-1) > 0).any(0)  # (H, W) every frame's head
    assert head.mean() > 0.2

    def psnr(a: np.ndarray) -> float:
        return float(10 * np.log10(255**2 / ((a - exact)[:, head] ** 2).mean()))

    assert psnr(vertex) > 40.0  # measured 44.4 dB on the head's pixels
    assert (np.abs(vertex - exact).max(-1) > 8).mean() < 0.005
    flat = exact.copy()
    flat[:, head] = exact[:, head].mean((0, 1))  # the head in one colour: no light at all
    assert psnr(flat) < 25.0  # measured 20.4 dB: the measure tells the two apart


def test_egl_device_choice(monkeypatch) -> None:
    """The renderer takes $VN3D_EGL_DEVICE when set, else the first NVIDIA device, else
    device 0 (here: Mesa), and says why (vn3d doctor prints it)."""
    from engines.render import renderer as r

    devices = r.egl_devices()
    assert devices and devices[0][0] == 0
    monkeypatch.setattr(r, "_egl_choice", None)
    monkeypatch.delenv(r.EGL_DEVICE_ENV, raising=False)
    index, why = r.egl_device()
    nvidia = [d[0] for d in devices if "NVIDIA" in d[1].upper()]
    assert index == (nvidia[0] if nvidia else 0)
    assert why.startswith("the first NVIDIA" if nvidia else "no NVIDIA")
    assert why.endswith(f"of {len(devices)}")
    monkeypatch.setattr(r, "_egl_choice", None)
    monkeypatch.setenv(r.EGL_DEVICE_ENV, "0")
    assert r.egl_device() == (0, f"${r.EGL_DEVICE_ENV}")
    monkeypatch.setattr(r, "_egl_choice", None)
    monkeypatch.setenv(r.EGL_DEVICE_ENV, "gpu")
    with pytest.raises(ValueError, match="EGL device index"):
        r.egl_device()
    monkeypatch.setattr(r, "_egl_choice", None)  # the next context chooses again


def test_normals_operator_equals_the_torch_normals_in_render_vertex_order(ict) -> None:
    """The renderer's sparse normals: the same unit normals as ``vertex_normals``, one row
    per split render vertex (seams twice), on a posed, expressive head."""
    from engines.geometry.normals import NormalsOperator, vertex_normals

    s, e, p = ict.zero_params(1)
    e[0, :10], p[0, :3] = 0.7, torch.tensor([0.2, -0.4, 0.1])
    v = ict(s, e, p)[0]  # (V, 3)
    vids, _, _ = expand_render_vertices(ict.topology)
    assert len(vids) > ict.n_vertices  # seams split
    op = NormalsOperator(ict.topology.faces, ict.n_vertices, vids)
    got = op(v.numpy())  # (R, 3)
    want = vertex_normals(v, torch.as_tensor(ict.topology.faces, dtype=torch.long))[vids]
    assert got.shape == (len(vids), 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
