"""A UV texture from one photo through a fitted mesh (DECA's role, without a network).

1. Every texel of the textured materials knows its triangle and barycentric weights
   (:class:`UVLayout`, made once per topology and size), hence its 3D point on the fitted
   mesh in the photo's camera, its normal, and its pixel in the photo.
2. A texel takes the photo's colour when it is visible: it passes a depth test against a
   z-buffer of the mesh splatted at the photo's resolution, and its normal faces the
   camera (weight ramps from ``FRONT_COS`` to ``FULL_COS`` of the normal-to-view angle).
3. Gross shading is removed: a second-order spherical-harmonics shading of the normals
   (9 coefficients per channel) times one albedo is fitted to the visible skin, and the
   texture is divided by that shading (normalised to its median, clamped), so the
   renderer's lights do not light the photo's lighting twice.
   Photo pixels in ``exclude`` (hair, the mouth and eye openings) and the neck below
   ``NECK_FADE`` are not taken, nor pixels within a few of the projected head's outline,
   nor colours far from the face's skin outside its central features (background on the
   ears, jaw line and neck; see :mod:`avatars.texture_blend`).
4. Unseen texels take the colour of their mirror texel (x -> -x on the neutral head)
   when that one was seen; everything lies, by its weight, over a membrane fill on the
   mesh that meets the seen skin's tone at its edge and fades to the median skin.

Eyes, teeth and gums are not textured materials: the renderer's defaults draw them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np
import scipy.sparse as sp
import torch
from scipy.spatial import cKDTree

from avatars.texture_blend import (
    not_skin,
    outside_core,
    silhouette_fade,
    skin_model,
    vertex_fill,
    vertex_graph,
)
from engines.face.model import MeshTopology
from engines.files.disk_cache import cache_root, load_arrays, save_arrays
from engines.geometry.normals import vertex_normals
from engines.render.materials import material_for

FRONT_COS = 0.15  # below this normal-to-view cosine a texel is not taken from the photo
FULL_COS = 0.5  # above it a texel gets full weight
DEPTH_TOLERANCE = 0.6  # model units (cm) behind the z-buffer that still count as visible
NECK_FADE = (-13.0, -10.0)  # rest-mesh heights (cm) over which the photo fades out downwards
# (below the chin the photo shows collars and shadow more often than neck skin)


@dataclass(frozen=True)
class UVLayout:
    """Per texel of a (size, tiles * size) texture: triangle id (-1 outside any) and
    barycentric weights; plus each texel's mirror texel on the neutral head."""

    size: int
    tiles: int
    texel: np.ndarray  # (T,) flat texel indices covered by a textured triangle
    triangle: np.ndarray  # (T,) triangle id
    bary: np.ndarray  # (T, 3)
    mirror: np.ndarray  # (T,) index into ``texel`` of the mirror texel
    rest: np.ndarray  # (T, 3) the texel's point on the neutral head


def uv_layout(topology: MeshTopology, neutral: np.ndarray, size: int) -> UVLayout:
    """Rasterise the textured triangles into UV space (cached per topology and size)."""
    key = (id(topology), size)
    cached = _LAYOUTS.get(key)
    if cached is None or cached[0] is not topology:
        _LAYOUTS[key] = cached = (topology, _disk_cached_layout(topology, neutral, size))
    return cached[1]


LAYOUT_CACHE_VERSION = "uv-layout-v1"  # bump when the layout's making changes


def _disk_cached_layout(topology: MeshTopology, neutral: np.ndarray, size: int) -> UVLayout:
    """The layout from the disk cache (keyed by the mesh's topology and rest shape), else
    made (~2.5 s at 1024 on 2 cores) and saved (~45 MB at 1024)."""
    h = hashlib.sha256()
    for a in (topology.faces, topology.face_uvs, topology.uvs, topology.face_material, neutral):
        h.update(np.ascontiguousarray(a).tobytes())
    path = cache_root() / LAYOUT_CACHE_VERSION / f"{size}-{h.hexdigest()[:16]}.npz"
    a = load_arrays(path)
    if a is not None and {"texel", "triangle", "bary", "mirror", "rest", "tiles"} <= set(a):
        return UVLayout(size, int(a["tiles"]), a["texel"], a["triangle"], a["bary"],
                        a["mirror"], a["rest"])
    lay = _make_uv_layout(topology, neutral, size)
    save_arrays(path, texel=lay.texel, triangle=lay.triangle, bary=lay.bary, mirror=lay.mirror,
                rest=lay.rest, tiles=np.int64(lay.tiles))
    return lay


_LAYOUTS: dict[tuple[int, int], tuple[MeshTopology, UVLayout]] = {}


def _make_uv_layout(topology: MeshTopology, neutral: np.ndarray, size: int) -> UVLayout:
    textured = np.array([material_for(n).textured for n in topology.material_names])
    faces = np.nonzero(textured[topology.face_material])[0]
    uv = topology.uvs[topology.face_uvs[faces]].astype(np.float64)  # (F, 3, 2)
    tiles = int(np.floor(uv[..., 0].min(1)).max()) + 1
    px = np.stack([uv[..., 0] * size, (1.0 - uv[..., 1]) * size], -1)  # (F, 3, 2)
    ids = np.zeros((size, tiles * size, 3), np.uint8)
    for k, tri in enumerate(np.round(px * 16).astype(np.int32)):
        code = k + 1
        cv2.fillConvexPoly(ids, tri, (code & 255, (code >> 8) & 255, code >> 16), 8, 4)
    ids = ids.astype(np.int64)
    code = ids[..., 0] | ids[..., 1] << 8 | ids[..., 2] << 16
    flat = np.nonzero(code.ravel())[0]
    local = code.ravel()[flat] - 1
    ys, xs = np.divmod(flat, tiles * size)
    p = np.stack([xs + 0.5, ys + 0.5], 1)
    a, b, c = px[local, 0], px[local, 1], px[local, 2]
    v0, v1, v2 = b - a, c - a, p - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    den = np.where(np.abs(den) < 1e-12, 1e-12, den)
    w1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
    w2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
    bary = np.clip(np.stack([1 - w1 - w2, w1, w2], 1), 0, 1)
    bary /= bary.sum(1, keepdims=True)
    triangle = faces[local]
    rest = (neutral[topology.faces[triangle]] * bary[:, :, None]).sum(1)  # (T, 3)
    tile = xs // size
    mirror = np.empty(len(flat), np.int64)
    for t in range(tiles):  # mirror texels within the same tile
        sel = np.nonzero(tile == t)[0]
        _, near = cKDTree(rest[sel]).query(rest[sel] * [-1.0, 1.0, 1.0], workers=-1)
        mirror[sel] = sel[near]
    return UVLayout(
        size, tiles, flat.astype(np.int32), triangle.astype(np.int32), bary.astype(np.float32),
        mirror.astype(np.int32), rest.astype(np.float32),
    )


def sample_bilinear(image: np.ndarray, pix: np.ndarray) -> np.ndarray:
    """Colours (N, C) float32 of image (H, W, C) at pixel positions (N, 2) (centres +0.5)."""
    h, w = image.shape[:2]
    x = np.clip(pix[:, 0] - 0.5, 0, w - 1).astype(np.float32)
    y = np.clip(pix[:, 1] - 0.5, 0, h - 1).astype(np.float32)
    x0, y0 = np.minimum(x.astype(np.int64), w - 2), np.minimum(y.astype(np.int64), h - 2)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]

    def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:  # gathered first, then float
        return image[yy, xx].astype(np.float32)

    top = at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx
    bottom = at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy


def sh_basis(n: np.ndarray) -> np.ndarray:  # (N, 3) unit normals -> (N, 9)
    x, y, z = n[:, 0], n[:, 1], n[:, 2]
    one = np.ones_like(x)
    return np.stack([one, x, y, z, x * y, x * z, y * z, x * x - y * y, 3 * z * z - 1], 1)


def splat_depth(pix: np.ndarray, depth: np.ndarray, width: int, height: int) -> np.ndarray:
    """A z-buffer (H, W) of points at pixels (N, 2) with depths (N,) (inf where none)."""
    xi, yi = np.floor(pix[:, 0]).astype(np.int64), np.floor(pix[:, 1]).astype(np.int64)
    ok = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
    zbuf = np.full(height * width, np.inf)
    np.minimum.at(zbuf, yi[ok] * width + xi[ok], depth[ok])
    zbuf = zbuf.reshape(height, width)
    # close pinholes between splatted samples (a 3x3 min keeps silhouettes sharp enough)
    return np.minimum(zbuf, cv2.erode(np.where(np.isinf(zbuf), 1e9, zbuf), np.ones((3, 3))))


@dataclass
class UnwrapResult:
    texture: np.ndarray  # (size, tiles * size, 3) uint8 albedo
    seen: np.ndarray  # (size, tiles * size) float32 weight of the photo in each texel
    skin_rgb: np.ndarray  # (3,) the median skin colour the fill fades to


def unwrap_texture(
    image: np.ndarray,  # (H, W, 3) uint8 RGB photo
    camera_vertices: np.ndarray,  # (V, 3) fitted mesh in the photo's OpenCV camera
    focal_px: float,
    topology: MeshTopology,
    neutral: np.ndarray,  # (V, 3) the model's rest mesh, for the mirror map
    size: int = 1024,
    exclude: np.ndarray | None = None,  # (H, W) bool photo pixels not to take (e.g. hair)
) -> UnwrapResult:
    """Unwrap ``image`` into the model's UV space (see the module docstring)."""
    lay = uv_layout(topology, neutral, size)
    pix, weight, nrm = photo_weights(image.shape[:2], camera_vertices, focal_px, topology,
                                     lay, exclude)
    albedo = remove_shading(sample_bilinear(image, pix), nrm, weight)
    good = weight > 0.5
    skin = np.median(albedo[good], axis=0) if good.sum() > 100 else np.array([200, 160, 140.0])
    taken = np.nonzero(weight > 0)[0]
    model = skin_model(albedo[taken], weight[taken], lay.rest[taken])
    weight[taken] *= 1 - outside_core(lay.rest[taken]) * not_skin(albedo[taken], model)

    # photo, else the mirror texel's photo, over a membrane fill from their boundary
    wm = weight[lay.mirror]
    seen = 1 - (1 - weight) * (1 - wm)  # (T,)
    on = np.nonzero(seen > 0)[0]
    w_on, wm_on = weight[on, None], (1 - weight[on]) * wm[on]  # (N, 1), (N,)
    data = (w_on * albedo[on] + wm_on[:, None] * albedo[lay.mirror[on]]) / seen[on, None]
    seen_rgb = np.zeros((len(seen), 3), np.float32)  # (T, 3)
    seen_rgb[on] = data
    anchor = np.zeros(len(seen), np.float32)  # (T,) skin-like seen colours anchor the fill
    anchor[on] = seen[on] * (1 - not_skin(data, model))
    corners = topology.faces[lay.triangle]  # (T, 3)
    f = vertex_fill(vertex_laplacian(topology, neutral), corners, lay.bary, seen_rgb, anchor,
                    skin).astype(np.float32)  # (V, 3)
    out = np.einsum("tkc,tk->tc", f[corners], lay.bary)  # (T, 3)
    out[on] += seen[on, None] * (data - out[on])
    tex = np.empty((size * lay.tiles * size, 3), np.float32)
    tex[:] = skin
    tex[lay.texel] = out
    seen_map = np.zeros(size * lay.tiles * size, np.float32)
    seen_map[lay.texel] = seen
    return UnwrapResult(
        np.clip(tex, 0, 255).astype(np.uint8).reshape(size, lay.tiles * size, 3),
        seen_map.reshape(size, lay.tiles * size), skin.astype(np.float32),
    )


def photo_weights(
    shape: tuple[int, int],  # the photo's (H, W)
    camera_vertices: np.ndarray,  # (V, 3)
    focal_px: float,
    topology: MeshTopology,
    lay: UVLayout,
    exclude: np.ndarray | None,  # (H, W) bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per texel: its photo pixel (T, 2), the photo's weight (T,) (visible, facing the
    camera, above the neck, not excluded, away from the head's outline) and its normal
    (T, 3) in the camera's frame."""
    h, w = shape
    camera_vertices = np.asarray(camera_vertices, np.float32)  # float32: ~2M texels below
    tri = topology.faces[lay.triangle]  # (T, 3) each texel's corner vertices
    pts = np.einsum("tkc,tk->tc", camera_vertices[tri], lay.bary)  # (T, 3)
    normals = vertex_normals(
        torch.from_numpy(camera_vertices), torch.as_tensor(topology.faces, dtype=torch.long)
    ).numpy()
    nrm = np.einsum("tkc,tk->tc", normals[tri], lay.bary)
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True) + 1e-12
    z = pts[:, 2]
    pix = focal_px * pts[:, :2] / z[:, None] + [w / 2, h / 2]
    facing = (nrm * -pts).sum(1) / np.linalg.norm(pts, axis=1)  # cos to the camera
    zbuf = splat_depth(pix[facing > 0], z[facing > 0], w, h)
    xi = np.clip(np.floor(pix[:, 0]).astype(np.int64), 0, w - 1)
    yi = np.clip(np.floor(pix[:, 1]).astype(np.int64), 0, h - 1)
    inside = (pix[:, 0] >= 0) & (pix[:, 0] < w) & (pix[:, 1] >= 0) & (pix[:, 1] < h)
    visible = inside & (z <= zbuf[yi, xi] + DEPTH_TOLERANCE)
    if exclude is not None:
        visible &= ~exclude[yi, xi]
    weight = visible * np.clip((facing - FRONT_COS) / (FULL_COS - FRONT_COS), 0, 1)
    lo, hi = NECK_FADE
    weight *= np.clip((lay.rest[:, 1] - lo) / (hi - lo), 0, 1)
    return pix, weight * silhouette_fade(zbuf, pix), nrm


def vertex_laplacian(topology: MeshTopology, neutral: np.ndarray) -> sp.csr_matrix:
    """The textured surface's vertex Laplacian (:func:`vertex_graph`), cached per topology."""
    cached = _GRAPHS.get(id(topology))
    if cached is None or cached[0] is not topology:
        textured = np.array([material_for(n).textured for n in topology.material_names])
        faces = np.nonzero(textured[topology.face_material])[0]
        graph = vertex_graph(topology, np.asarray(neutral, np.float64), faces)
        _GRAPHS[id(topology)] = cached = (topology, graph)
    return cached[1]


_GRAPHS: dict[int, tuple[MeshTopology, sp.csr_matrix]] = {}


def remove_shading(colour: np.ndarray, normals: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Divide colours (N, 3) by a fitted 9-term SH shading of normals (N, 3).

    The fit uses confidently seen texels of middle brightness (skin, not brows, lips or
    specular spots); the shading is normalised to its median and clamped to [0.5, 1.6].
    """
    good = weight > 0.7
    if good.sum() < 200:
        return colour
    lum = colour[good].mean(1)
    lo, hi = np.percentile(lum, [25, 97])
    sel = np.nonzero(good)[0][(lum > lo) & (lum < hi)]
    basis = sh_basis(normals)
    coef, *_ = np.linalg.lstsq(basis[sel], colour[sel], rcond=None)  # (9, 3): all at once
    shading = basis @ coef  # (N, 3)
    shading /= np.median(shading[sel], axis=0)
    out = (colour / np.clip(shading, 0.5, 1.6)).astype(colour.dtype)
    # keep the photo's overall skin brightness
    return out * (np.median(colour[sel], 0) / np.maximum(np.median(out[sel], 0), 1e-6))
