"""ICT-FaceKit head: neutral, blendshape regions, identity, head rotation, gaze, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engines.face.ict import (
    GAZE_DOWN_DEG,
    GAZE_HORIZONTAL_DEG,
    GAZE_UP_DEG,
    ICTFaceModel,
    eye_rotations,
    neck_weights,
)
from engines.face.lbs import batch_rodrigues
from engines.geometry.triangulate import triangulate


def region_of(ict: ICTFaceModel, name: str, top: int = 200) -> torch.Tensor:
    """Vertices that a single expression moves the most (top, 3) at rest."""
    idx = ict.expression_names.index(name)
    mag = ict.expression_dirs[idx].norm(dim=1)
    return ict.neutral[mag.argsort(descending=True)[:top]]


def test_topology(ict: ICTFaceModel) -> None:
    t = ict.topology
    assert ict.n_vertices == 26719
    assert t.faces.shape[1] == 3 and t.faces.min() >= 0 and t.faces.max() < ict.n_vertices
    assert t.face_uvs.shape == t.faces.shape and t.face_uvs.max() < len(t.uvs)
    assert len(t.face_material) == len(t.faces)
    assert {"M_Face", "M_Teeth", "M_GumsTongue", "M_IrisLeft"} <= set(t.material_names)
    assert t.landmark_vertex_ids.shape == (68,)
    assert len(ict.expression_names) == 53 and "jawOpen" in ict.expression_names
    assert ict.identity_dirs.shape == (100, ict.n_vertices, 3)


def test_triangulate_splits_quads_and_keeps_triangles() -> None:
    quads = np.array([[0, 1, 2, 3], [4, 5, 6, -1]])
    tris, src = triangulate(quads)
    assert tris.tolist() == [[0, 1, 2], [4, 5, 6], [0, 2, 3]]
    assert src.tolist() == [0, 1, 0]


def test_zero_parameters_give_the_neutral_mesh_exactly(ict: ICTFaceModel) -> None:
    v = ict(*ict.zero_params(1))
    assert torch.equal(v[0], ict.neutral)


def test_jaw_open_lowers_the_chin(ict: ICTFaceModel) -> None:
    s, _, p = ict.zero_params(1)
    chin = ict.topology.landmark_vertex_ids[8]  # iBUG 8: chin tip
    v = ict(s, ict.expression_vector({"jawOpen": 1.0}), p)[0]
    assert v[chin, 1] < ict.neutral[chin, 1] - 1.0  # more than 1 cm down
    brow = ict.topology.landmark_vertex_ids[19]
    assert torch.allclose(v[brow], ict.neutral[brow], atol=1e-3)


def test_blink_left_closes_the_left_lid_only(ict: ICTFaceModel) -> None:
    s, _, p = ict.zero_params(1)
    v = ict(s, ict.expression_vector({"eyeBlink_L": 1.0}), p)[0]
    moved = (v - ict.neutral).norm(dim=1)
    left = ict.neutral[:, 0] > 0  # +x is the subject's left
    assert moved[left].max() > 0.5
    assert moved[~left].max() < 0.05  # the artist's shape leaks < 0.5 mm across
    # upper lids in iBUG order: 37, 38 on the subject's right eye, 43, 44 on the left
    lid_l = ict.topology.landmark_vertex_ids[[43, 44]]
    lid_r = ict.topology.landmark_vertex_ids[[37, 38]]
    assert (v[lid_l, 1] < ict.neutral[lid_l, 1] - 0.3).all()
    assert torch.allclose(v[lid_r], ict.neutral[lid_r], atol=1e-3)


@pytest.mark.parametrize(
    ("name", "region"),
    [
        ("mouthSmile_L", lambda p: (p[:, 1] < 0) & (p[:, 0] > 0)),
        ("mouthSmile_R", lambda p: (p[:, 1] < 0) & (p[:, 0] < 0)),
        ("browInnerUp_L", lambda p: p[:, 1] > 3),
        ("jawOpen", lambda p: p[:, 1] < -2),
        ("eyeBlink_R", lambda p: (p[:, 1] > 1) & (p[:, 0] < 0)),
    ],
)
def test_each_shape_moves_its_region(ict: ICTFaceModel, name: str, region) -> None:
    pts = region_of(ict, name)
    assert region(pts).float().mean() > 0.95


def test_every_expression_moves_something(ict: ICTFaceModel) -> None:
    assert (ict.expression_dirs.norm(dim=2).amax(dim=1) > 0.05).all()


def test_identity_changes_the_shape(ict: ICTFaceModel) -> None:
    _, e, p = ict.zero_params(2)
    s = torch.zeros(2, 100)
    s[0, 0], s[1, 1] = 2.0, 2.0
    v = ict(s, e, p)
    assert (v[0] - ict.neutral).norm(dim=1).max() > 1.0
    assert (v[0] - v[1]).norm(dim=1).max() > 1.0


def test_fewer_identity_coefficients_are_zero_padded(ict: ICTFaceModel) -> None:
    _, e, p = ict.zero_params(1)
    full = torch.zeros(1, 100)
    full[0, :2] = torch.tensor([0.5, -1.0])
    assert torch.allclose(ict(torch.tensor([[0.5, -1.0]]), e, p), ict(full, e, p))


def edge_lengths(v: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    return (v[edges[:, 0]] - v[edges[:, 1]]).norm(dim=1)


def test_head_rotation_is_rigid_in_the_head_and_keeps_the_neck_base(ict: ICTFaceModel) -> None:
    s, e, p = ict.zero_params(1)
    p[0, :3] = torch.tensor([0.2, 0.6, 0.1])
    v = ict(s, e, p)[0]
    faces = torch.as_tensor(ict.topology.faces, dtype=torch.long)
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    w = ict.head_weights
    head_edges = edges[(w[edges[:, 0]] == 1) & (w[edges[:, 1]] == 1)]
    assert len(head_edges) > 0.8 * len(edges)
    assert torch.allclose(
        edge_lengths(v, head_edges), edge_lengths(ict.neutral, head_edges), atol=1e-4
    )
    base = w == 0
    assert base.sum() > 100
    assert torch.equal(v[base], ict.neutral[base])
    nose = ict.topology.landmark_vertex_ids[30]
    assert v[nose, 0] > ict.neutral[nose, 0] + 3.0  # yaw turns the nose to the subject's left


def test_neck_weights_are_smooth_and_bounded() -> None:
    y = np.linspace(-25, 20, 200)
    w = neck_weights(np.c_[np.zeros_like(y), y, np.zeros_like(y)])
    assert w.min() == 0 and w.max() == 1
    assert np.all(np.diff(w) >= 0) and np.abs(np.diff(w)).max() < 0.1


def test_gaze_rotates_eyeballs_rigidly_about_their_centres(ict: ICTFaceModel) -> None:
    s, _, p = ict.zero_params(1)
    v = ict(s, ict.expression_vector({"eyeLookOut_L": 1.0}), p)[0]
    ids = ict.left_eye_ids
    centre = ict.eye_centres(ict.neutral[None])[0, 0]
    r0 = (ict.neutral[ids] - centre).norm(dim=1)
    r1 = (v[ids] - centre).norm(dim=1)
    assert torch.allclose(r0, r1, atol=1e-4)
    # the front of the left eye turns outwards (+x), by about GAZE_HORIZONTAL_DEG
    front = ids[(ict.neutral[ids] - centre)[:, 2].argmax()]
    d0 = ict.neutral[front] - centre
    d1 = v[front] - centre
    angle = torch.rad2deg(torch.atan2(d1[0], d1[2]) - torch.atan2(d0[0], d0[2]))
    assert 25 < angle < 35
    assert torch.equal(v[ict.right_eye_ids], ict.neutral[ict.right_eye_ids])


def test_gaze_from_the_pose_vector(ict: ICTFaceModel) -> None:
    s, e, p = ict.zero_params(1)
    p[0, 3] = -0.3  # rotation about +x: both eyes look up
    v = ict(s, e, p)[0]
    for ids, k in ((ict.left_eye_ids, 0), (ict.right_eye_ids, 1)):
        centre = ict.eye_centres(ict.neutral[None])[0, k]
        front = ids[(ict.neutral[ids] - centre)[:, 2].argmax()]
        assert v[front, 1] > ict.neutral[front, 1] + 0.3


def test_eye_rotations_in_closed_form_equal_rotations_about_each_axis(ict: ICTFaceModel) -> None:
    """Each eye: the gaze's rotation after R_y(yaw) R_x(pitch), as three axis-angle
    rotations composed; with the gaze zero too, and the gaze's gradient kept there."""
    g = torch.Generator().manual_seed(1)
    e = torch.rand(4, 53, generator=g)
    gaze = 0.3 * torch.randn(4, 3, generator=g)
    gaze[1] = 0
    left, right = eye_rotations(e, gaze, ict._idx)
    h, up, down = np.radians([GAZE_HORIZONTAL_DEG, GAZE_UP_DEG, GAZE_DOWN_DEG])
    for rot, side, sign in ((left, "L", 1.0), (right, "R", -1.0)):
        w = {k: e[:, ict.expression_names.index(f"eyeLook{k}_{side}")]
             for k in ("In", "Out", "Up", "Down")}
        zeros = torch.zeros(4)
        yaw = batch_rodrigues(torch.stack([zeros, sign * h * (w["Out"] - w["In"]), zeros], 1))
        pitch = batch_rodrigues(torch.stack([-(up * w["Up"] - down * w["Down"]), zeros,
                                             zeros], 1))
        assert torch.allclose(rot, batch_rodrigues(gaze) @ yaw @ pitch, atol=1e-6)
    still = torch.zeros(1, 3, requires_grad=True)
    left, _ = eye_rotations(e[:1], still, ict._idx)
    left[0, 0, 2].backward()
    assert still.grad is not None


def test_batched_equals_per_item(ict: ICTFaceModel) -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.randn(3, 100, generator=g)
    e = torch.rand(3, 53, generator=g)
    p = 0.3 * torch.randn(3, 6, generator=g)
    batched = ict(s, e, p)
    for i in range(3):
        assert torch.allclose(
            batched[i], ict(s[i : i + 1], e[i : i + 1], p[i : i + 1])[0], atol=1e-5
        )


def test_bad_parameter_shapes_raise(ict: ICTFaceModel) -> None:
    s, e, p = ict.zero_params(1)
    with pytest.raises(ValueError, match="pose"):
        ict(s, e, torch.zeros(1, 3))
    with pytest.raises(ValueError, match="expression"):
        ict(s, torch.zeros(1, 60), p)
    with pytest.raises(KeyError, match="jawOpen"):
        ict.expression_vector({"jawOpne": 1.0})


def test_prepared_identity_gives_the_same_mesh(ict: ICTFaceModel) -> None:
    g = torch.Generator().manual_seed(3)
    s, e, p = torch.randn(2, 100, generator=g), torch.rand(2, 53, generator=g), torch.zeros(2, 6)
    p[:, 1] = 0.4
    prepared = ict.prepare_identity(s)
    assert torch.allclose(ict.forward_prepared(prepared, e, p), ict(s, e, p))


def test_the_lash_cards_under_the_eyes_are_split_off_and_not_drawn(ict: ICTFaceModel) -> None:
    """Six cards per eye: the three above stay lashes, the three below (a grey smudge under
    open eyes, a dark band under shut ones) get their own material, which is not drawn."""
    from engines.render.camera import PerspectiveCamera
    from engines.render.materials import ICT_MATERIALS, material_for
    from engines.render.renderer import MeshRenderer, RenderConfig

    t = ict.topology
    upper = t.faces[t.face_material == t.material_names.index("M_EyeLashes")]
    lower = t.faces[t.face_material == t.material_names.index("M_EyeLashesLower")]
    assert len(upper) == len(lower) > 0
    y = ict.neutral[:, 1].numpy()
    assert y[np.unique(lower)].max() < y[np.unique(upper)].mean()  # all under the upper
    assert material_for("M_EyeLashesLower").alpha == 0.0
    cam = PerspectiveCamera(fov_y_deg=20, eye=(0, 3, 60), target=(0, 3, 0))
    drawn_as_lashes = {"M_EyeLashesLower": ICT_MATERIALS["M_EyeLashes"]}
    irises_white = {"M_IrisLeft": ICT_MATERIALS["M_Teeth"], "M_IrisRight": ICT_MATERIALS["M_Teeth"]}
    frames = []
    for materials in (None, drawn_as_lashes, irises_white):
        with MeshRenderer(t, RenderConfig(256, 256), materials=materials) as r:
            frames.append(r.render(ict(*ict.zero_params(1))[0], cam).astype(float))
    differ = np.abs(frames[0] - frames[1]).sum(2) > 6  # (H, W) where the lower cards show
    iris_rows = np.flatnonzero((np.abs(frames[0] - frames[2]).sum(2) > 6).any(1))
    assert differ.sum() > 100  # drawn, they would show ...
    assert np.flatnonzero(differ.any(1)).min() > iris_rows.mean()  # ... under the eyes
    assert frames[1][differ].mean() < frames[0][differ].mean() - 20  # darkening the skin
