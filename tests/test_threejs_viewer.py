"""An exported avatar GLB in three.js (the viewer most web apps use) against the product.

Five London Set avatars (with hair) are exported with :func:`avatars.glb.avatar_glb`,
rendered by ``client_web/viewer/`` (three.js GLTFLoader in headless Chromium, see
``threejs_view.py``) and by the product's renderer (a :class:`Retargeter`, neutral face)
from the same portrait camera. A blue disc painted into the avatar's texture on the left
cheek must land on the same pixel in both, which catches a mirrored, flipped, shifted or
scaled camera and flipped texture coordinates. In three.js the irises must show (not a
white eyeball), the hair must cover what the product's hair covers, and the face must
agree with the product's (SSIM, dlib identity distance). A contact sheet (photo | product
| three.js) is saved to out/threejs_contact_sheet.png for looking at.

Runs inside a private network namespace (the browser and its server use loopback only):

    unshare --net sh -c 'ip link set lo up && .venv/bin/pytest -q -m netns \
        tests/test_threejs_viewer.py'

three.js is installed by ``make viewer`` (part of ``make test-system``); without it these
tests skip.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from threejs_view import ThreeJsViewer, viewer_missing

from avatars.builder import AvatarBuilder, AvatarConfig, decode_photo
from avatars.glb import avatar_glb
from engines.files.assets import asset_root, sha256_bytes
from engines.render.camera import PerspectiveCamera
from engines.render.renderer import RenderConfig
from engines.retarget.retargeter import Retargeter

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[1]
PHOTOS = ("london_001_neutral", "london_018_neutral", "london_025_neutral",
          "london_107_smiling", "london_140_neutral")
SIZE = 512
MARKER_AT_CM = (5.0, -1.0)  # x, y on the front of the face: the subject's left cheek
MARKER_RADIUS_TEXELS = 10
MARKER_RGB = (20, 60, 255)


@dataclasses.dataclass
class Renders:
    product: np.ndarray  # (SIZE, SIZE, 3) uint8
    three: np.ndarray
    camera: PerspectiveCamera
    background: np.ndarray  # (3,) uint8 sRGB
    marker_px: np.ndarray  # (2,) where the product camera projects the marker's vertex
    nose_px: np.ndarray  # (2,) the same for the nose tip
    irises_px: np.ndarray  # (2, 2) the same for the irises' centres
    iris_radius_px: float
    product_bald: np.ndarray  # both renders again, of the avatar without its hair
    three_bald: np.ndarray
    photo: np.ndarray  # (H, W, 3) the portrait


SHEET: dict[str, np.ndarray] = {}  # photo -> its contact sheet row


@pytest.fixture(scope="module")
def viewer():
    reason = viewer_missing()
    if reason:
        pytest.skip(reason)
    with ThreeJsViewer() as v:
        yield v


def frontmost_face_vertex(ict, head: np.ndarray, x: float, y: float) -> int:
    """The skin vertex nearest the camera among those within 5 mm of (x, y) (cm)."""
    t = ict.topology
    skin = np.unique(t.faces[t.face_material == t.material_names.index("M_Face")])
    near = skin[np.linalg.norm(head[skin, :2] - [x, y], axis=1) < 0.5]
    return int(near[np.argmax(head[near, 2])])


def paint_marker(ict, texture: np.ndarray, vertex: int) -> np.ndarray:
    """The texture with a disc of MARKER_RGB around the vertex's texel."""
    t = ict.topology
    corner = np.argwhere(t.faces == vertex)[0]
    u, v = t.uvs[t.face_uvs[corner[0], corner[1]]]
    h = texture.shape[0]  # tiles of h x h side by side; tile k holds u in [k, k + 1)
    centre = (round(u * h), round((1.0 - v) * h))
    out = texture.copy()
    cv2.circle(out, centre, MARKER_RADIUS_TEXELS, MARKER_RGB, -1)
    return out


def iris_centres(ict, head: np.ndarray) -> tuple[np.ndarray, float]:
    """(2, 3) the front of each iris (cm) and the irises' radius (cm)."""
    t = ict.topology
    centres, radii = [], []
    for name in ("M_IrisLeft", "M_IrisRight"):
        ids = np.unique(t.faces[t.face_material == t.material_names.index(name)])
        front = ids[t.eye_directions[ids, 2] > 0.5]
        centres.append(head[front].mean(0))
        radii.append(np.linalg.norm(head[front, :2] - head[front, :2].mean(0), axis=1).max())
    return np.array(centres), float(np.mean(radii))


@pytest.fixture(scope="module", params=PHOTOS)
def renders(request, viewer, ict) -> Renders:
    name = request.param
    data = (asset_root() / "faces" / "london_set" / f"{name}.jpg").read_bytes()
    photo = decode_photo(data)
    builder = AvatarBuilder(ict, AvatarConfig(texture_size=512))
    try:
        avatar = builder.build(photo, name, sha256_bytes(data))
    finally:
        builder.close()
    assert avatar.hair is not None and avatar.iris_rgb is not None
    with torch.no_grad():
        head = ict.prepare_identity(torch.from_numpy(avatar.shape[None].copy()))[0].numpy()
    marker = frontmost_face_vertex(ict, head, *MARKER_AT_CM)
    avatar = dataclasses.replace(avatar, texture=paint_marker(ict, avatar.texture, marker))
    bald = dataclasses.replace(avatar, hair=None)
    nose = int(np.argmax(head[:, 2]))

    config = RenderConfig(SIZE, SIZE)
    images = []
    for one in (avatar, bald):
        with Retargeter(ict, one.target(), config) as rt:
            camera = rt.camera
            images.append(rt.render_parameters(np.zeros(ict.n_expression), np.zeros(3)).image)
        images.append(viewer.render(
            avatar_glb(one, head, ict), camera, SIZE, config.background, ict.units_in_metres
        ))
    product, three, product_bald, three_bald = images
    irises, radius = iris_centres(ict, head)
    px = camera.project(np.r_[head[[marker, nose]], irises], SIZE, SIZE)
    edge = camera.project(irises[:1] + np.array([radius, 0.0, 0.0]), SIZE, SIZE)
    return Renders(product, three, camera, product[0, 0].copy(), px[0], px[1], px[2:],
                   float(np.linalg.norm(edge[0] - px[2])), product_bald, three_bald, photo)


@pytest.fixture(scope="module", autouse=True)
def contact_sheet():
    """out/threejs_contact_sheet.png: photo | product | three.js, a row per avatar."""
    yield
    if SHEET:
        (REPO / "out").mkdir(exist_ok=True)
        rows = [SHEET[name] for name in PHOTOS if name in SHEET]
        Image.fromarray(np.concatenate(rows, 0)).save(REPO / "out" / "threejs_contact_sheet.png")


def test_contact_sheet_row(renders: Renders, request) -> None:
    h, w = renders.photo.shape[:2]
    side = min(h, w)
    square = renders.photo[(h - side) // 2:(h + side) // 2, (w - side) // 2:(w + side) // 2]
    photo = cv2.resize(square, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    SHEET[request.node.callspec.params["renders"]] = np.concatenate(
        [photo, renders.product, renders.three], 1)


def foreground(img: np.ndarray, background: np.ndarray) -> np.ndarray:
    return np.abs(img.astype(int) - background).sum(2) > 12


def marker_mask(img: np.ndarray) -> np.ndarray:
    rgb = img.astype(int)
    return (rgb[..., 2] - rgb[..., 0] > 60) & (rgb[..., 2] - rgb[..., 1] > 40)


def test_the_viewer_has_webgl2(viewer) -> None:
    print(f"WebGL2 renderer: {viewer.webgl}")
    assert isinstance(viewer.webgl, str) and viewer.webgl


def test_both_renders_show_the_background_in_the_corners(renders: Renders) -> None:
    bg = np.round(255 * np.asarray(RenderConfig().background)).astype(int)
    for img in (renders.product, renders.three):
        corners = img[[0, 0, -1, -1], [0, -1, 0, -1]].astype(int)
        assert np.abs(corners - bg).max() <= 1, corners


def test_silhouettes_agree(renders: Renders) -> None:
    a = foreground(renders.product, renders.background)
    b = foreground(renders.three, renders.background)
    iou = (a & b).sum() / (a | b).sum()
    print(
        f"silhouette IoU {iou:.3f} (product {a.mean():.3f}, three.js {b.mean():.3f} of the frame)"
    )
    assert 0.2 < a.mean() < 0.6  # a head and shoulders, not an empty or a filled frame
    assert iou > 0.9
    # same extent: left, right and bottom edges within a few pixels (the top is hair)
    ys_a, xs_a = np.nonzero(a)
    ys_b, xs_b = np.nonzero(b)
    assert abs(xs_a.min() - xs_b.min()) <= 3 and abs(xs_a.max() - xs_b.max()) <= 3
    assert abs(ys_a.max() - ys_b.max()) <= 3


def test_a_texture_marker_lands_on_the_same_pixel(renders: Renders) -> None:
    centres = []
    for img in (renders.product, renders.three):
        ys, xs = np.nonzero(marker_mask(img))
        assert len(xs) > 20, "the blue marker is not visible"
        centres.append(np.array([xs.mean() + 0.5, ys.mean() + 0.5]))
    print(
        f"marker at {renders.marker_px.round(1)} (projected), product "
        f"{centres[0].round(1)}, three.js {centres[1].round(1)}"
    )
    assert np.linalg.norm(centres[0] - renders.marker_px) < 4.0
    assert np.linalg.norm(centres[1] - centres[0]) < 2.0
    assert centres[0][0] > SIZE / 2  # the subject's left cheek is on the image's right


def test_face_colour_is_close(renders: Renders) -> None:
    x, y = renders.nose_px.astype(int)
    box = (slice(y - 20, y + 40), slice(x - 45, x + 45))  # nose, cheeks, upper lip
    means = []
    for img in (renders.product, renders.three):
        patch = img[box]
        keep = ~marker_mask(patch)
        assert keep.mean() > 0.8
        means.append(patch[keep].astype(float).mean(0))
    diff = means[1] - means[0]
    print(
        f"face mean colour: product {means[0].round(1)}, three.js {means[1].round(1)}, "
        f"diff {diff.round(1)}"
    )
    assert np.abs(diff).max() < 20.0
    for m in means:  # skin: red over green over blue
        assert m[0] > m[1] > m[2]


def disc(img: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """The pixels (N, 3) within ``radius`` of ``centre`` (x, y)."""
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    return img[np.hypot(xx + 0.5 - centre[0], yy + 0.5 - centre[1]) < radius].astype(float)


def test_the_irises_show_in_three_js(renders: Renders) -> None:
    """Not a white eyeball: over each iris three.js shows what the product shows (the
    sclera's export covered the iris, so the eyes were solid white)."""
    r = renders.iris_radius_px
    assert r > 3.0, "the irises are too small in this render to tell"
    for centre in renders.irises_px:
        product, three = (disc(img, centre, 0.8 * r) for img in (renders.product,
                                                                  renders.three))
        ring = disc(renders.product, centre, 2.2 * r)  # iris and the white around it
        white = np.percentile(ring.mean(1), 95)
        print(f"iris at {centre.round(1)}: product {product.mean(0).round(1)}, three.js "
              f"{three.mean(0).round(1)}, eye white {white:.0f}")
        assert three.mean() < 0.7 * white  # darker than the white of the eye
        assert np.abs(three.mean(0) - product.mean(0)).max() < 30.0


def hair_mask(with_hair: np.ndarray, bald: np.ndarray) -> np.ndarray:
    return np.abs(with_hair.astype(int) - bald.astype(int)).sum(2) > 40


def test_the_hair_covers_what_the_products_hair_covers(renders: Renders) -> None:
    product = hair_mask(renders.product, renders.product_bald)
    three = hair_mask(renders.three, renders.three_bald)
    iou = (product & three).sum() / (product | three).sum()
    ratio = three.sum() / product.sum()
    print(f"hair: product {product.mean():.3f} of the frame, three.js {three.mean():.3f}, "
          f"IoU {iou:.2f}")
    assert product.mean() > 0.03  # the avatar has hair worth comparing
    assert iou > 0.6 and 0.7 < ratio < 1.4


def test_the_face_agrees_with_the_products(renders: Renders, ict) -> None:
    """SSIM over the face, and dlib's identity distance between the two renders (the
    same person, well under the same-person threshold)."""
    from engines.evaluation.image_metrics import FaceIdentity, face_region_mask, ssim
    from engines.tracking.tracker import FaceTracker, TrackerConfig

    with FaceTracker(ict.expression_names, TrackerConfig(video=False, smoothing=None)) as ft:
        found = ft.process(renders.product, 0.0).landmarks
    assert found is not None, "MediaPipe finds no face in the product render"
    face = face_region_mask(found[:, :2] * SIZE, renders.product.shape)
    face &= ~marker_mask(renders.product) & ~marker_mask(renders.three)
    score = ssim(renders.product, renders.three, face)
    identity = FaceIdentity()
    distance = identity.distance(renders.product, renders.three)
    print(f"face SSIM {score:.3f}, dlib distance {distance} "
          f"(same person under {identity.threshold})")
    assert score > 0.7
    assert distance is not None and distance < 0.5 * identity.threshold


def test_a_broken_glb_is_reported(viewer) -> None:
    with pytest.raises(RuntimeError, match=r"three\.js viewer"):
        viewer.render(b"glTF not really", PerspectiveCamera.portrait(), 64, (0.0, 0.0, 0.0))
