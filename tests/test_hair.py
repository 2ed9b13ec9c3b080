"""Strand hair: the style database, alignment to heads, photo colour, drawing, export."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from avatars.hair import align, export, photo, scalp, styles
from engines.face.ict import ICTFaceModel
from engines.render.camera import Camera, PerspectiveCamera
from engines.render.hair import head_transform
from engines.render.renderer import MeshRenderer, RenderConfig

SIZE = 160
ALIGN_STYLES = ("long_straight", "curly_afro", "ponytail", "side_part")


@pytest.fixture(scope="module")
def identities(ict: ICTFaceModel) -> dict[str, np.ndarray]:
    """Neutral heads (V, 3): the mean and a clearly different person."""
    torch.manual_seed(7)
    shape = (torch.randn(1, 100) * 1.0).clamp(-2.5, 2.5)
    with torch.no_grad():
        return {
            "mean": ict.prepare_identity(torch.zeros(1, 100))[0].numpy(),
            "random": ict.prepare_identity(shape)[0].numpy(),
        }


@pytest.fixture(scope="module")
def renderer(ict: ICTFaceModel):
    with MeshRenderer(ict.topology, RenderConfig(width=SIZE, height=SIZE)) as r:
        yield r


def test_database_has_forty_grown_styles() -> None:
    names = styles.list_styles()
    assert len(names) >= 40 and len(set(names)) == len(names)
    for name in names:
        style = styles.load_style(name)
        assert style.name == name
        assert style.positions.shape == (32, 32, 100, 3) and style.positions.dtype == np.float32
        assert style.extra.shape == (32, 32, 100, 1) and style.extra.dtype == np.float32
        assert np.isfinite(style.positions).all() and np.isfinite(style.extra).all()
        assert style.active.sum() > 300, name  # even the balding style keeps its sides
        assert 0.3 < style.lengths.max() < 60.0, name
    lengths = {n: np.median(styles.load_style(n).lengths) for n in ("buzz", "long_straight")}
    assert lengths["long_straight"] > 10 * lengths["buzz"]


def test_unknown_style_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match=r"buzz.*long_straight"):
        styles.load_style("mohawk")


def test_growth_is_deterministic() -> None:
    again = styles.grow_style("long_wavy")
    cached = styles.load_style("long_wavy")
    assert again is not cached
    np.testing.assert_array_equal(again.positions, cached.positions)
    assert not np.array_equal(cached.positions, styles.load_style("long_straight").positions)


def test_grown_roots_sit_on_the_neutral_scalp() -> None:
    vertices, faces = scalp.neutral_head()
    roots = styles.load_style("buzz").roots.reshape(-1, 3).astype(np.float64)
    sd, _ = scalp.HeadSurface(vertices, faces).query(roots, exact=True)
    np.testing.assert_allclose(sd, scalp.ROOT_OFFSET, atol=0.02)
    assert roots[:, 1].min() > -8.0 and roots[:, 1].max() > 13.0  # nape to crown


@pytest.mark.parametrize("who", ["mean", "random"])
def test_alignment_keeps_hair_out_of_the_head(ict, identities, who) -> None:
    head = identities[who]
    faces = scalp.skin_faces(ict.topology)
    surface = scalp.HeadSurface(head, faces)
    for name in ALIGN_STYLES:
        style = align.align_to_head(styles.load_style(name), head, ict.topology)
        assert style.positions.shape == (32, 32, 100, 3)
        roots = style.roots.reshape(-1, 3)
        assert not scalp.points_inside_head(roots, head, faces).any(), name
        inside = scalp.points_inside_head(style.positions.reshape(-1, 3), head, faces)
        assert inside.mean() <= 0.005, (name, inside.mean())
        sd, _ = surface.query(roots.astype(np.float64), exact=True)
        assert np.abs(sd).max() < 1.0, name  # on the scalp, not floating


def test_one_query_push_equals_pushing_every_point_twice(ict, identities) -> None:
    """The push that queries again only the points it moved gives what pushing every point
    twice (HeadSurface.push_out) would, and signed distances equal to an exact query of
    the points it returns."""
    head = identities["random"]
    surface = scalp.HeadSurface(head, scalp.skin_faces(ict.topology))
    for name in ("long_wavy", "afro_large"):
        strands = align.anchor_aligned(styles.load_style(name), surface.vertices)
        strands[:, 1:] -= 0.3 * np.array([0.0, 0.0, 1.0])  # into the face: points to push
        twice = strands.copy()
        for _ in range(2):
            flat = surface.push_out(twice[:, 1:].reshape(-1, 3), 0.05)
            twice[:, 1:] = flat.reshape(len(twice), -1, 3)
        sd = align.push_out_strands(strands, surface, 0.05)
        moved = np.abs(strands - twice).max()
        assert moved == 0.0, (name, moved)
        exact, _ = surface.query(strands[:, 1:].reshape(-1, 3), exact=True)
        np.testing.assert_array_equal(sd[:, 1:].ravel(), exact)
        assert (sd[:, 1:][np.abs(sd[:, 1:]) < 1.0] >= 0.05 - 1e-9).mean() > 0.99, name


def test_every_style_stays_out_of_five_heads(ict) -> None:
    """Each style of the database, aligned to five people (the mean head and four random
    identities, β ~ N(0, 1) clipped at ±2.5), keeps its roots outside the skin and nearly
    all of its strands out of the head and shoulders. (Before the roots were placed again
    by the exact distance and strands ended where they enter the body, two of these five
    had roots 0.2-1 mm inside by the ears and long hair up to 4.8 cm into the shoulders.)"""
    faces = scalp.skin_faces(ict.topology)
    gen = torch.Generator().manual_seed(11)
    shapes = torch.cat([torch.zeros(1, 100), torch.randn(4, 100, generator=gen).clamp(-2.5, 2.5)])
    with torch.no_grad():
        heads = ict.prepare_identity(shapes).numpy()  # (5, V, 3)
    worst = {}
    for head in heads:
        surface = scalp.HeadSurface(head, faces)
        for name in styles.list_styles():
            style = align.align_to_head(styles.load_style(name), head, ict.topology)
            sd, _ = surface.query(style.positions.reshape(-1, 3).astype(np.float64), exact=True)
            sd = sd.reshape(32 * 32, -1)
            assert (sd[:, 0] >= 0).all(), name  # every root outside the skin
            worst[name] = max(worst.get(name, 0.0), float((sd < 0).mean()))
    assert max(worst.values()) <= 0.005, sorted(worst.items(), key=lambda kv: -kv[1])[:3]


def test_a_changed_spec_is_grown_again(monkeypatch, tmp_path) -> None:
    """The disk cache is keyed by the style's spec: editing a style never serves the old
    strands."""
    from dataclasses import replace

    monkeypatch.setattr(styles, "cache_root", lambda: tmp_path)
    styles._cached_style.cache_clear()
    try:
        first = styles.load_style("buzz")
        longer = dict(styles.STYLES, buzz=replace(styles.STYLES["buzz"], length=3.0))
        monkeypatch.setattr(styles, "STYLES", longer)
        styles._cached_style.cache_clear()
        second = styles.load_style("buzz")
        assert np.median(second.lengths) > 2 * np.median(first.lengths)
        assert len(list(tmp_path.rglob("buzz-*.npz"))) == 2
    finally:
        styles._cached_style.cache_clear()


def test_unmended_alignment_would_leave_hair_inside(identities, ict) -> None:
    """The similarity alone misses the random head's shape; the mends are needed."""
    head, faces = identities["random"], scalp.skin_faces(ict.topology)
    style = styles.load_style("long_straight")
    a_head, w_head = align.anchors(scalp.HeadSurface(head, faces).vertices)
    a_hair, w_hair = align.anchors(style.roots.reshape(-1, 3).astype(np.float64))
    s = align.ALIGN_SCALE * w_head / w_hair
    moved = s * (style.positions.reshape(-1, 3) - a_hair + align.ALIGN_OFFSET) + a_head
    assert scalp.points_inside_head(moved, head, faces).mean() > 0.005


def test_alignment_on_the_neutral_head_changes_nothing(identities, ict) -> None:
    style = styles.load_style("side_part")
    aligned = align.align_to_head(style, identities["mean"], ict.topology)
    assert np.abs(aligned.positions - style.positions).max() < 0.05  # the C constants


def test_alignment_recovers_a_scaled_and_moved_head(identities, ict) -> None:
    scale, shift = 1.12, np.array([1.5, -2.0, 0.7])
    head = identities["mean"] * scale + shift
    style = styles.load_style("short_crop")
    aligned = align.align_to_head(style, head, ict.topology)
    expected = style.positions * scale + shift
    err = np.linalg.norm(aligned.positions - expected, axis=-1)
    assert err[:, :, 0].max() < 0.1  # roots
    assert np.median(err) < 0.1


def synthetic_portrait(hair_rgb: tuple[int, int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """A skin-coloured face oval, optionally a hair blob round its top, and landmarks."""
    img = np.empty((240, 240, 3), np.uint8)
    img[:] = (95, 140, 200)
    img[:, :, 0] = np.linspace(80, 120, 240).astype(np.uint8)[None]
    if hair_rgb is not None:
        cv2.ellipse(img, (120, 100), (62, 62), 0, 0, 360, hair_rgb, -1)
    cv2.ellipse(img, (120, 135), (44, 58), 0, 0, 360, (222, 172, 140), -1)
    landmarks = np.tile([120.0, 150.0], (478, 1))
    angle = np.linspace(-np.pi / 2, 1.5 * np.pi, len(photo.FACE_OVAL), endpoint=False)
    landmarks[photo.FACE_OVAL] = np.c_[120 + 44 * np.cos(angle), 135 + 58 * np.sin(angle)]
    landmarks[photo.BROWS] = (120.0, 118.0)
    return img, landmarks


@pytest.mark.parametrize("rgb", [(70, 40, 25), (200, 170, 90)])
def test_hair_colour_of_a_synthetic_portrait(rgb) -> None:
    img, landmarks = synthetic_portrait(rgb)
    colour, mask = hair_colour_checked(img, landmarks)
    assert colour is not None
    np.testing.assert_allclose(np.array(colour) * 255, rgb, atol=12)
    assert mask[60, 120] and not mask[150, 120] and not mask[5, 5]  # hair, face, background


def test_no_hair_colour_for_a_bald_portrait() -> None:
    img, landmarks = synthetic_portrait(None)
    colour, mask = hair_colour_checked(img, landmarks)
    assert colour is None and mask.mean() < 0.01


@pytest.mark.parametrize("crown", [False, True])
def test_hair_at_the_temples_only_is_a_bald_crown(crown) -> None:
    """Dark patches beside the temples (hair or shadow at the sides of a bald head) pass the
    mask's area threshold; without hair over the forehead they are no hair."""
    img, landmarks = synthetic_portrait(None)
    for x in (68, 172):
        cv2.ellipse(img, (x, 110), (10, 22), 0, 0, 360, (60, 45, 35), -1)
    if crown:
        cv2.ellipse(img, (120, 68), (34, 12), 0, 0, 360, (60, 45, 35), -1)
    colour, mask = hair_colour_checked(img, landmarks)
    assert mask[110, 68] and mask[110, 172]  # the patches are in the mask either way
    assert mask.sum() > photo.MIN_HAIR_AREA * np.pi * 44 * 58
    assert (colour is not None) == crown, colour


def hair_colour_checked(img: np.ndarray, landmarks: np.ndarray):
    colour, mask = photo.hair_colour(img, landmarks)
    assert mask.shape == img.shape[:2] and mask.dtype == bool
    return colour, mask


def hair_silhouettes(
    renderer: MeshRenderer,
    head_vertices: np.ndarray,
    strands_by_name: dict[str, np.ndarray],
    camera: Camera,
    hair_transform: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Where each style's hair shows (H, W) bool over a head (V, 3): the pixels its render
    changes. The renderer is left without hair."""
    renderer.set_hair(None)
    bare = renderer.render(head_vertices, camera)
    masks = {}
    for name, strands in strands_by_name.items():
        renderer.set_hair(strands)
        masks[name] = (renderer.render(head_vertices, camera, hair_transform) != bare).any(-1)
    renderer.set_hair(None)
    return masks


def test_choose_style_by_silhouette_overlap(renderer, identities) -> None:
    head, camera = identities["mean"], PerspectiveCamera.portrait()
    names = ("buzz", "long_straight", "curly_afro")
    masks = hair_silhouettes(
        renderer, head, {n: styles.load_style(n).positions for n in names}, camera
    )
    assert renderer.hair is None
    assert masks["curly_afro"].sum() > masks["buzz"].sum() > 0
    seen = masks["long_straight"].copy()
    seen[:10] = False  # a photo's mask is never exact
    assert photo.choose_style(seen, masks) == "long_straight"
    assert photo.choose_style(np.zeros_like(seen), masks) == "buzz"  # least hair


def test_rendered_hair_covers_the_scalp_not_the_face(renderer, identities) -> None:
    head, camera = identities["mean"], PerspectiveCamera.portrait()
    bare = renderer.render(head, camera)
    renderer.set_hair(styles.load_style("short_crop").positions, (0.1, 0.07, 0.05))
    try:
        haired = renderer.render(head, camera)
    finally:
        renderer.set_hair(None)
    (top_x, top_y), (nose_x, nose_y) = np.round(
        camera.project(np.array([[0.0, 13.5, 3.0], [0.0, 1.0, 11.0]]), SIZE, SIZE)
    ).astype(int)
    changed = (haired != bare).any(-1)
    assert changed[top_y - 3 : top_y + 3, top_x - 3 : top_x + 3].all()  # above the forehead
    assert not changed[nose_y - 8 : nose_y + 8, nose_x - 8 : nose_x + 8].any()  # face centre
    assert haired[top_y, top_x].mean() < bare[top_y, top_x].mean() - 40  # dark hair on skin
    np.testing.assert_array_equal(renderer.render(head, camera), bare)  # hair removed


def test_hair_follows_the_head_transform(renderer, ict, identities) -> None:
    """Drawing through head_transform equals drawing strands moved like the ICT skinning."""
    rotation = np.array([0.2, 0.6, 0.1])
    s, e, p = ict.zero_params(1)
    p[0, :3] = torch.from_numpy(rotation).float()
    with torch.no_grad():
        posed = ict(s, e, p)[0].numpy()
    top = np.argmax(identities["mean"][:, 1])  # a vertex on the rigid part of the head
    m = head_transform(rotation)
    np.testing.assert_allclose(
        m[:3, :3] @ identities["mean"][top] + m[:3, 3], posed[top], atol=1e-3
    )

    strands = styles.load_style("bob").positions
    moved = strands @ m[:3, :3].T.astype(np.float32) + m[:3, 3].astype(np.float32)
    camera = PerspectiveCamera.portrait()
    by_transform = hair_silhouettes(renderer, posed, {"bob": strands}, camera, m)["bob"]
    by_points = hair_silhouettes(renderer, posed, {"bob": moved}, camera)["bob"]
    unmoved = hair_silhouettes(renderer, posed, {"bob": strands}, camera)["bob"]
    assert photo.mask_iou(by_transform, by_points) > 0.95
    assert photo.mask_iou(unmoved, by_points) < 0.8


def test_obj_polylines_round_trip(tmp_path) -> None:
    style = styles.load_style("balding")
    path = tmp_path / "balding.obj"
    written = export.strands_to_obj_lines(style, str(path))
    lines = path.read_text().splitlines()
    v = np.array([[float(x) for x in ln.split()[1:]] for ln in lines if ln.startswith("v ")])
    polylines = [[int(i) for i in ln.split()[1:]] for ln in lines if ln.startswith("l ")]
    active = int(style.active.sum())
    assert written == len(v) == active * 100 < 32 * 32 * 100
    assert len(polylines) == active and all(len(pl) == 100 for pl in polylines)
    assert min(map(min, polylines)) == 1 and max(map(max, polylines)) == len(v)
    np.testing.assert_allclose(v, style.positions[style.active].reshape(-1, 3), atol=1e-3)


def test_ribbons_are_a_valid_thin_mesh() -> None:
    style = styles.load_style("long_wavy")
    vertices, faces = export.strands_to_ribbons(style, width_cm=0.05, subsample=2, point_step=4)
    n_strands = len(style.positions[style.active][::2])
    points = len(range(0, 100, 4)) + 1  # and the tip
    assert vertices.shape == (n_strands * points * 2, 3) and faces.shape[1] == 3
    assert len(faces) == n_strands * (points - 1) * 2
    assert faces.min() == 0 and faces.max() == len(vertices) - 1
    assert (np.sort(faces, 1)[:, :-1] != np.sort(faces, 1)[:, 1:]).all()  # no degenerate
    width = np.linalg.norm(vertices[1::2] - vertices[::2], axis=1)
    np.testing.assert_allclose(width, 0.05, rtol=1e-3)
    assert len(export.strands_to_ribbons(style)[1]) < 150_000  # a GLB well under 15 MB


def test_points_inside_head(identities, ict) -> None:
    head, faces = identities["mean"], scalp.skin_faces(ict.topology)
    pts = np.array([[0.0, 4.0, 0.0], [0.0, 30.0, 0.0], [0.0, 15.0, 0.0], [0.0, 14.0, 0.0]])
    np.testing.assert_array_equal(
        scalp.points_inside_head(pts, head, faces), [True, False, False, True]
    )


def test_tucked_hair_goes_behind_the_ears() -> None:
    """At the ears' height, beside the head, tucked hair keeps behind the ear; the same
    length loose falls in front of it."""

    def in_front_of_ears(name: str) -> int:
        p = styles.load_style(name).positions.reshape(-1, 3)
        x, y, z = p.T
        beside = (np.abs(x) > styles.EAR[0] - 1.0) & (np.abs(y - styles.EAR[1]) < 2.0)
        return int((beside & (z > styles.EAR[2])).sum())

    assert in_front_of_ears("medium_straight") > 200
    assert in_front_of_ears("tucked_behind_ears") < 0.1 * in_front_of_ears("medium_straight")


def test_braids_are_tight_clumps_with_partings() -> None:
    """Box braids: every 4 x 4 clump of roots is one rope (its strands within about a
    braid's width of their mean path, where loose hair of the same cut spreads wide) with
    bare partings between clumps; cornrows lie on the skin."""
    from avatars.hair.scalp import neutral_surface

    def spread(name: str) -> float:
        p = styles.load_style(name).positions  # (32, 32, 100, 3)
        blocks = p[:28, :28].reshape(7, 4, 7, 4, 100, 3)[:, :3, :, :3]  # the grown 3 x 3
        mean = blocks.mean(axis=(1, 3), keepdims=True)
        return float(np.median(np.linalg.norm(blocks - mean, axis=-1)[..., 40:]))

    spec = styles.STYLES["box_braids"]
    assert spread("box_braids") < 2.5 * spec.plait_radius < spread("locs_long")
    braids = styles.load_style("box_braids")
    assert not braids.active[3::4, :].any() and not braids.active[:, 3::4].any()  # partings
    rows = styles.load_style("cornrows")
    assert not rows.active[:, 2::3].any() and rows.active.sum() > 300
    sd, _ = neutral_surface().query(rows.positions[rows.active].reshape(-1, 3))
    crop, _ = neutral_surface().query(
        styles.load_style("short_crop").positions[rows.active].reshape(-1, 3))
    assert np.percentile(sd, 95) < 0.6 < np.percentile(crop, 95)  # flat on the skin, in cm
