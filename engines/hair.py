"""Strand hair for the avatars: a procedural hairstyle database, its alignment to a head,
and the hair colour of a photo.

Format (HairNet's, as in the thesis): a hairstyle is a 32x32 grid of strands on a 2D scalp
map with 100 points each: ``positions`` (32, 32, 100, 3) float32 in the ICT neutral head's
frame (cm, y up, the face looks along +z) and one extra channel per point, ``extra``
(32, 32, 100, 1): the discrete curvature in 1/cm. A cell without hair holds a zero-length
strand (all its points at the root).

Scalp map: row i runs from the nape (0) to the forehead (31), column j from the subject's
right (0) to left (31). The square maps onto a disk (Shirley-Chiu's concentric map, equal
area); the disk onto directions from ``SCALP_CENTRE`` with the crown at the disk centre and
the hairline ``HAIRLINE`` on its rim (equal-area warps in both angles, so roots are evenly
spread); each direction onto the first crossing of the neutral head's skin along that ray.

Styles are grown there, all 1024 strands at once, one segment per step: each segment turns
towards a blend of the style's comb direction (slid along the skin), an outward lift that
fades from the root and gravity that grows along the strand, at a rate set by the style's
stiffness; a segment that ends inside the head (or closer than the strand's settle height)
is pushed out along the skin normal. Then haircuts (cut planes, a fringe line), curls or
waves, and a last push out of the head.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.spatial import cKDTree

from engines.assets import asset_path
from engines.disk_cache import cache_root, load_arrays, save_arrays
from engines.face_model import MeshTopology
from engines.ict_model import triangulate
from engines.renderer import vertex_normals

GRID = 32  # strands per side of the scalp map
POINTS = 100  # points per strand
SKIN_MATERIALS = ("M_Face", "M_BackHead")
SCALP_CENTRE = np.array([0.0, 4.0, 0.0])  # cm: roots are cast from here (inside the skull)
# hairline: (azimuth about +y from the face's front, elevation from SCALP_CENTRE), degrees;
# +azimuth towards the subject's left; mirrored for the right. It dips for the sideburns,
# climbs over the ear and falls behind it to the nape.
HAIRLINE = ((0, 38), (30, 33), (55, 22), (72, -12), (84, -14), (95, 12), (108, -20),
            (125, -36), (150, -46), (180, -54))  # fmt: skip
ROOT_OFFSET = 0.05  # cm: roots and strands keep at least this far out of the skin
DOWN = np.array([0.0, -1.0, 0.0])


@dataclass(frozen=True)
class Hairstyle:
    """One hairstyle in the scalp-grid format (see the module docstring)."""

    name: str
    positions: np.ndarray  # (32, 32, 100, 3) float32, cm
    extra: np.ndarray  # (32, 32, 100, 1) float32, curvature in 1/cm

    @property
    def roots(self) -> np.ndarray:  # (32, 32, 3)
        return self.positions[:, :, 0]

    @property
    def lengths(self) -> np.ndarray:  # (32, 32) cm along each strand
        return np.linalg.norm(np.diff(self.positions, axis=2), axis=3).sum(2)

    @property
    def active(self) -> np.ndarray:  # (32, 32) bool: cells that grow hair
        return self.lengths > 1e-3


# ---------------------------------------------------------------------------------------
# the head's skin as a signed distance


def skin_faces(topology: MeshTopology) -> np.ndarray:
    """The skin triangles (F, 3) of an ICT topology: face and back of the head."""
    return topology.faces[topology.face_ids(SKIN_MATERIALS)]


class HeadSurface:
    """Signed distance to a head's skin from its nearest vertex's tangent plane.

    Negative inside. Exact enough near a smooth skin (the vertex spacing is a few mm, the
    plane's error under 0.1 mm). Unless ``exact``, points over ``NEAR`` cm from every
    vertex are taken to be outside at that distance, which makes far points cheap: hair
    is grown and mended in steps from outside, so it is never that deep inside.
    """

    NEAR = 3.0  # cm

    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        v = np.asarray(vertices, np.float32).reshape(-1, 3)  # (V, 3)
        f = np.asarray(faces, np.int64)  # (F, 3)
        used = np.unique(f)
        normals = vertex_normals(torch.from_numpy(v), torch.from_numpy(f)).numpy()
        self.vertices = v[used].astype(np.float64)  # (U, 3)
        self.normals = normals[used].astype(np.float64)  # (U, 3)
        self.tree = cKDTree(self.vertices)

    def query(self, points: np.ndarray, exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Signed distances (N,) and outward unit normals (N, 3; zero far away) for points
        (N, 3)."""
        workers = -1 if len(points) > 20000 else 1
        bound = np.inf if exact else self.NEAR
        _, idx = self.tree.query(points, distance_upper_bound=bound, workers=workers)
        far = idx == len(self.vertices)
        idx[far] = 0
        n = np.where(far[:, None], 0.0, self.normals[idx])
        sd = np.einsum("nc,nc->n", points - self.vertices[idx], n)
        return np.where(far, self.NEAR, sd), n

    def push_out(self, points: np.ndarray, offset: float | np.ndarray) -> np.ndarray:
        """Points (N, 3) moved along the normal to at least ``offset`` outside the skin."""
        sd, n = self.query(points)
        return points + np.maximum(offset - sd, 0.0)[:, None] * n


def points_inside_head(
    points: np.ndarray, head_vertices: np.ndarray, faces: np.ndarray
) -> np.ndarray:
    """Which points (N, 3) lie inside the skin given by head_vertices (V, 3) and faces
    (F, 3) (pass :func:`skin_faces` for an ICT head): (N,) bool."""
    sd, _ = HeadSurface(head_vertices, faces).query(np.asarray(points, np.float64), exact=True)
    return sd < 0.0


@cache
def neutral_head() -> tuple[np.ndarray, np.ndarray]:
    """The ICT neutral head: vertices (V, 3) float32 and skin triangles (F, 3)."""
    with np.load(asset_path("ict_facekit")) as data:
        tris, src = triangulate(data["faces"])
        material = data["face_material"][src]
        names = [str(n) for n in data["material_names"]]
        vertices = data["neutral"].astype(np.float32)
    ids = [names.index(m) for m in SKIN_MATERIALS]
    return vertices, tris[np.isin(material, ids)]


@cache
def neutral_surface() -> HeadSurface:
    return HeadSurface(*neutral_head())


# ---------------------------------------------------------------------------------------
# the scalp map


def concentric_disk(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shirley-Chiu equal-area map of the square [-1, 1]^2 onto the unit disk.

    Returns the radius and the angle from +b towards +a (radians), both like ``a``.
    """
    use_a = np.abs(a) > np.abs(b)
    safe_a = np.where(a == 0, 1.0, a)
    safe_b = np.where(b == 0, 1.0, b)
    r = np.where(use_a, a, b)
    phi = np.where(use_a, np.pi / 4 * b / safe_a, np.pi / 2 - np.pi / 4 * a / safe_b)
    x, y = r * np.cos(phi), r * np.sin(phi)
    return np.hypot(x, y), np.arctan2(x, y)


def hairline_elevation(azimuth: np.ndarray) -> np.ndarray:
    """The hairline's elevation (radians) at azimuths (radians) about SCALP_CENTRE."""
    az, el = np.radians(np.array(HAIRLINE, float)).T
    return np.interp(np.abs(azimuth), az, el)


@dataclass(frozen=True)
class Scalp:
    """Roots of the 32x32 scalp grid on the ICT neutral head."""

    roots: np.ndarray  # (32, 32, 3) cm, ROOT_OFFSET out of the skin
    normals: np.ndarray  # (32, 32, 3) skin normal at each root
    disk: np.ndarray  # (32, 32, 2) the map's point on the unit disk: (left, front)
    azimuth: np.ndarray  # (32, 32) radians about +y, 0 front, + subject's left


@cache
def scalp() -> Scalp:
    """The scalp grid: equal-area warps of the disk, then rays cast onto the skin."""
    c = (np.arange(GRID) + 0.5) / GRID * 2.0 - 1.0
    b, a = np.meshgrid(c, c, indexing="ij")  # rows: nape -> forehead; columns: right -> left
    rho, theta = concentric_disk(a, b)
    # azimuth: uniform disk angle -> head azimuth with density ~ the scalp's area there
    grid_az = np.linspace(-np.pi, np.pi, 721)
    density = 1.0 - np.sin(hairline_elevation(grid_az))
    cdf = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2)])
    azimuth = np.interp((theta + np.pi) / (2 * np.pi), cdf / cdf[-1], grid_az)
    # elevation: equal area of the cap between the crown and the hairline
    sin_el = 1.0 - rho**2 * (1.0 - np.sin(hairline_elevation(azimuth)))
    cos_el = np.sqrt(np.clip(1.0 - sin_el**2, 0.0, 1.0))
    dirs = np.stack([cos_el * np.sin(azimuth), sin_el, cos_el * np.cos(azimuth)], -1)
    roots, normals = cast_to_skin(dirs.reshape(-1, 3), neutral_surface())
    disk = np.stack([rho * np.sin(theta), rho * np.cos(theta)], -1)
    return Scalp(roots.reshape(GRID, GRID, 3), normals.reshape(GRID, GRID, 3), disk, azimuth)


def cast_to_skin(
    dirs: np.ndarray, surface: HeadSurface, step: float = 0.25, start: float = 5.0
) -> tuple[np.ndarray, np.ndarray]:
    """First skin crossings of rays from SCALP_CENTRE along dirs (N, 3): roots (N, 3)
    ROOT_OFFSET out of the skin and their normals (N, 3). The skull is over ``start``
    (cm) and under 16 cm away from the centre in every direction."""
    t = np.arange(start, 16.0, step)  # (T,)
    pts = SCALP_CENTRE + dirs[:, None] * t[None, :, None]  # (N, T, 3)
    sd, _ = surface.query(pts.reshape(-1, 3), exact=True)
    sd = sd.reshape(len(dirs), len(t))
    first = np.maximum(np.argmax(sd >= 0.0, axis=1), 1)  # (N,) first sample outside
    lo, hi = sd[np.arange(len(dirs)), first - 1], sd[np.arange(len(dirs)), first]
    hit = t[first] - step * hi / np.maximum(hi - lo, 1e-9)
    roots = SCALP_CENTRE + dirs * hit[:, None]
    _, normals = surface.query(roots)
    return roots + ROOT_OFFSET * normals, normals


# ---------------------------------------------------------------------------------------
# growing styles

CROWN = np.array([0.0, 12.5, -4.5])  # cm: the whorl short hair is combed away from


@dataclass(frozen=True)
class StyleSpec:
    """How a style grows. Lengths in cm, directions in the head's frame; the weights of
    comb, lift and gravity are relative to each other (each about 0..3)."""

    length: float
    length_jitter: float = 0.1  # relative, uniform per strand
    taper: float = 1.0  # length factor at the nape and the back (1 on the top, in front)
    comb: tuple[float, float, float] = (0.0, 0.0, 0.0)  # comb direction everywhere
    crown: float = 0.0  # comb away from the crown whorl
    part_x: float | None = None  # comb sideways away from a parting at this x
    part: float = 1.0
    fringe_y: float | None = None  # front strands comb forwards and end above this y
    cut_y: float = -18.0  # every strand ends above this height
    lift: float = 0.5  # outward at the root (volume)
    lift_length: float = 1.0  # how far along the strand the lift fades
    gravity: float = 1.0
    gravity_length: float = 1.5  # how far along the strand gravity takes to be felt
    bend_length: float = 1.5  # stiffness: a strand turns over about this length
    volume: float = 0.3  # strands settle up to this far above the skin
    curl_radius: float = 0.0
    curl_period: float = 3.0
    curl_roundness: float = 1.0  # 1 helical curls, 0 flat waves
    gather: tuple[float, float, float] | None = None  # a ponytail's tie or a bun's centre
    bun_radius: float = 0.0  # > 0: gathered strands wind round a bun (else a ponytail)
    recede: float = 0.0  # how far the temples recede (disk radius)
    bald_crown: float = 0.0  # radius of a bald patch round the crown (disk radius)
    noise: float = 0.15  # random comb deviation per strand


STYLES: dict[str, StyleSpec] = {
    "buzz": StyleSpec(
        0.6, crown=1.0, lift=0.4, gravity=0.2, bend_length=0.6, volume=0.0, noise=0.3
    ),
    "short_crop": StyleSpec(4.0, crown=1.0, comb=(0, 0, 0.4), lift=0.8, gravity=0.4, volume=0.5),
    "side_part": StyleSpec(
        8.0,
        part_x=3.0,
        comb=(0, 0.2, -0.6),
        lift=0.4,
        gravity=1.0,
        volume=0.4,
        taper=0.35,
        cut_y=-6.0,
    ),
    "middle_part_fringe": StyleSpec(
        16.0,
        part_x=0.0,
        comb=(0, 0.3, -0.6),
        fringe_y=6.5,
        cut_y=-5.0,
        lift=0.6,
        gravity=1.2,
        volume=0.6,
    ),
    "bob": StyleSpec(
        22.0,
        part_x=1.5,
        comb=(0, 0.3, -0.6),
        cut_y=-7.0,
        lift=0.7,
        gravity=1.2,
        volume=1.0,
        curl_radius=0.3,
        curl_period=8.0,
        curl_roundness=0.0,
    ),
    "long_straight": StyleSpec(
        34.0, part_x=0.0, comb=(0, 0.3, -0.6), cut_y=-13.0, lift=0.6, gravity=1.5, volume=0.8
    ),
    "long_wavy": StyleSpec(
        36.0,
        part_x=-2.5,
        comb=(0, 0.3, -0.6),
        cut_y=-13.0,
        lift=0.8,
        gravity=1.3,
        volume=1.0,
        curl_radius=1.0,
        curl_period=8.0,
        curl_roundness=0.3,
    ),
    "curly_afro": StyleSpec(
        7.0,
        crown=0.3,
        lift=3.0,
        lift_length=8.0,
        gravity=0.2,
        volume=1.0,
        curl_radius=0.6,
        curl_period=1.6,
        noise=0.4,
    ),
    "ponytail": StyleSpec(
        42.0, gather=(0.0, 6.5, -9.8), lift=0.2, gravity=0.0, volume=0.2, cut_y=-12.0
    ),
    "top_knot": StyleSpec(
        32.0, gather=(0.0, 15.8, -3.5), bun_radius=2.6, lift=0.2, gravity=0.0, volume=0.2
    ),
    "slicked_back": StyleSpec(
        10.0, comb=(0, 0.3, -1.2), lift=0.1, gravity=0.6, volume=0.2, taper=0.5, cut_y=-4.0
    ),
    "receding": StyleSpec(
        2.5, crown=1.0, lift=0.5, gravity=0.4, volume=0.3, recede=0.45, bald_crown=0.3
    ),
    "balding": StyleSpec(
        1.8, comb=(0, -0.5, -0.2), lift=0.2, gravity=0.8, volume=0.2, recede=0.8, bald_crown=0.62
    ),
}


def list_styles() -> list[str]:
    """Names of the hairstyles in the database."""
    return list(STYLES)


def load_style(name: str) -> Hairstyle:
    """A named hairstyle, grown on first use and then cached (treat it as read-only).
    Unknown names raise ValueError listing the valid ones."""
    return _cached_style(name)


def grow_style(name: str) -> Hairstyle:
    """Grow a named hairstyle afresh: deterministic (seeded by its name)."""
    if name not in STYLES:
        raise ValueError(f"unknown hairstyle {name!r}; valid names: {', '.join(STYLES)}")
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    positions = grow(STYLES[name], scalp(), neutral_surface(), rng)
    return Hairstyle(name, positions, curvature(positions))


STYLE_CACHE_VERSION = "hair-v1"  # bump when growing changes


@cache
def _cached_style(name: str) -> Hairstyle:
    """A grown style from memory, else from the disk cache, else grown and saved."""
    if name not in STYLES:
        raise ValueError(f"unknown hairstyle {name!r}; valid names: {', '.join(STYLES)}")
    path = cache_root() / STYLE_CACHE_VERSION / f"{name}.npz"
    arrays = load_arrays(path)
    if arrays is not None and arrays.get("positions", np.zeros(0)).shape == (GRID, GRID, POINTS, 3):
        return Hairstyle(name, arrays["positions"], arrays["extra"])
    style = grow_style(name)
    save_arrays(path, positions=style.positions, extra=style.extra)
    return style


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def slide(v: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Vectors (N, 3) without their components along unit normals (N, 3)."""
    return v - np.einsum("nc,nc->n", v, normal)[:, None] * normal


def ramp(x: np.ndarray) -> np.ndarray:
    """Smoothstep of x over [0, 1]."""
    t = np.clip(x, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def hair_mask(spec: StyleSpec, sc: Scalp) -> np.ndarray:
    """Which scalp cells grow hair (32, 32) bool: receding temples, a bald crown."""
    rho = np.linalg.norm(sc.disk, axis=-1)
    az = np.abs(sc.azimuth)
    # an M-shaped recession: deepest at the temples, less in the middle
    depth = np.exp(-(((az - 0.8) / 0.35) ** 2)) + 0.6 * np.exp(-((az / 0.45) ** 2))
    keep = rho < 1.0 - spec.recede * depth
    crown = np.linalg.norm(sc.disk - np.array([0.0, -0.1]), axis=-1)
    return keep & (crown >= spec.bald_crown)


def comb_directions(spec: StyleSpec, sc: Scalp, rng: np.random.Generator) -> np.ndarray:
    """Each root's comb direction (N, 3), before it is slid along the skin."""
    roots = sc.roots.reshape(-1, 3)
    top = ramp((roots[:, 2] + 5.0) / 5.0)[:, None]  # (N, 1) 1 in front of the crown
    crown = spec.crown + 0.5 * (1.0 - top)  # behind the crown hair grows away from it
    comb = top * np.asarray(spec.comb, float) + crown * unit(roots - CROWN)
    if spec.part_x is not None:  # a parting runs from the forehead to the crown
        comb[:, 0] += spec.part * top[:, 0] * np.tanh((roots[:, 0] - spec.part_x) / 0.3)
    if spec.fringe_y is not None:
        comb[fringe_roots(sc)] = (0.0, -0.3, 1.5)
    return comb + rng.normal(0.0, spec.noise, comb.shape)


def fringe_roots(sc: Scalp) -> np.ndarray:
    """Front roots that a fringe combs forwards (N,) bool."""
    front = (sc.disk[..., 1] > 0.3) & (np.abs(sc.azimuth) < np.radians(55))
    return front.reshape(-1)


def grow(spec: StyleSpec, sc: Scalp, surface: HeadSurface, rng: np.random.Generator) -> np.ndarray:
    """All strands of a style (32, 32, 100, 3): growth, haircuts, curls (module doc)."""
    roots = sc.roots.reshape(-1, 3)  # (N, 3)
    normals = sc.normals.reshape(-1, 3)
    n = len(roots)
    low = (11.0 - roots[:, 1]) / (11.0 - roots[:, 1].min())  # (N,) 0 top .. 1 nape
    behind = -(roots[:, 2] + 2.0) / 6.0  # (N,) 0 at the crown .. 1 at the back
    taper = 1.0 + (spec.taper - 1.0) * np.clip(np.maximum(low, behind), 0.0, 1.0)
    length = spec.length * taper * (1.0 + spec.length_jitter * rng.uniform(-1.0, 1.0, n))
    seg = (length / (POINTS - 1))[:, None]  # (N, 1)
    comb = comb_directions(spec, sc, rng)  # (N, 3)
    settle = spec.volume * rng.uniform(0.2, 1.0, n)  # (N,)
    kappa = np.clip(seg / spec.bend_length, 0.0, 1.0)  # (N, 1)
    gather = Gather(spec, rng, n) if spec.gather is not None else None

    out = np.empty((n, POINTS, 3))
    out[:, 0] = p = roots
    sd, nrm = np.full(n, ROOT_OFFSET), normals
    d = unit(normals * (spec.lift + 0.2) + comb)  # (N, 3)
    for k in range(1, POINTS):
        s = k * seg  # (N, 1) arc length so far
        near = np.clip(1.0 - sd / 3.0, 0.0, 1.0)[:, None]  # combed along the skin, near it
        if gather is None:
            combed = near * slide(comb, nrm)
        else:  # drawn to the gathering point, straight there away from the skin
            want = gather.direction(p)
            combed = near * slide(want, nrm) + (1.0 - near) * want
        into = np.minimum(nrm[:, 1:2] * DOWN[1], 0.0)  # (N, 1) gravity's push into the skin
        fall = DOWN - near * into * nrm  # slides along the skin near it
        target = (
            combed
            + normals * spec.lift * np.exp(-s / spec.lift_length)
            + fall * spec.gravity * ramp(s / spec.gravity_length)
        )
        d = unit(d + kappa * (unit(target) - d))
        q = p + seg * d
        sd, nrm = surface.query(q)
        lift_off = ROOT_OFFSET + settle * ramp(s[:, 0] / 2.0)  # (N,)
        q = q + np.maximum(lift_off - sd, 0.0)[:, None] * nrm
        d = unit(q - p)
        q = p + seg * d  # keep the segment length
        if gather is not None:
            q = gather.place(q, s[:, 0])
        out[:, k] = p = q

    out = cut(out, spec, sc)
    if spec.curl_radius > 0.0:
        out = curl(out, spec, rng)
    flat = surface.push_out(out[:, 1:].reshape(-1, 3), ROOT_OFFSET)
    out[:, 1:] = flat.reshape(n, POINTS - 1, 3)
    bald = ~hair_mask(spec, sc).reshape(-1)
    out[bald] = roots[bald, None]
    return out.reshape(GRID, GRID, POINTS, 3).astype(np.float32)


class Gather:
    """Strands combed to a point, then tied in a ponytail or wound round a bun."""

    def __init__(self, spec: StyleSpec, rng: np.random.Generator, n: int) -> None:
        self.centre = np.asarray(spec.gather, float)
        self.bun = spec.bun_radius
        self.capture = spec.bun_radius + 0.6 if spec.bun_radius > 0 else 1.5
        self.caught = np.zeros(n, bool)
        self.start = np.zeros(n)  # arc length where each strand was caught
        disk = rng.normal(size=(n, 2))
        self.spread = (
            disk / np.linalg.norm(disk, axis=1, keepdims=True) * np.sqrt(rng.uniform(0, 1, (n, 1)))
        )  # (N, 2) a strand's place across the tail
        self.radius = self.bun * rng.uniform(0.55, 1.0, n)  # (N,) its winding radius
        self.e1 = np.zeros((n, 3))
        self.e2 = unit(rng.normal(size=(n, 3)))

    def direction(self, p: np.ndarray) -> np.ndarray:  # (N, 3) comb towards the centre
        return unit(self.centre - p) * 2.0

    def place(self, q: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Positions (N, 3) of the strands' next points, caught ones tied or wound."""
        new = ~self.caught & (np.linalg.norm(q - self.centre, axis=1) < self.capture)
        self.caught |= new
        self.start[new] = s[new]
        self.e1[new] = unit(q[new] - self.centre)
        e2 = unit(self.e2 - np.einsum("nc,nc->n", self.e2, self.e1)[:, None] * self.e1)
        t = (s - self.start)[:, None]  # (N, 1) arc length since caught
        if self.bun > 0:
            angle = t / self.radius[:, None]
            placed = self.centre + self.radius[:, None] * (
                np.cos(angle) * self.e1 + np.sin(angle) * e2
            )
        else:  # back a little, then down; the tail widens slowly
            axis = self.centre + DOWN * t + np.array([0.0, 0.0, -3.0]) * (1 - np.exp(-t / 3))
            width = 0.7 + 0.06 * t
            placed = axis + width * np.c_[self.spread[:, 0], np.zeros(len(t)), self.spread[:, 1]]
        return np.where(self.caught[:, None], placed, q)


def cut(strands: np.ndarray, spec: StyleSpec, sc: Scalp) -> np.ndarray:
    """Strands (N, P, 3) cut where they first drop below the style's cut heights (never
    shorter than 1 cm), each resampled to P evenly spaced points."""
    n = len(strands)
    floor = np.full(n, spec.cut_y)
    if spec.fringe_y is not None:
        floor[fringe_roots(sc)] = spec.fringe_y
    seg = np.linalg.norm(strands[:, 1] - strands[:, 0], axis=1)  # (N,) even steps
    arc = np.arange(POINTS) * seg[:, None]  # (N, P)
    low = (strands[..., 1] < floor[:, None]) & (arc > 1.0)
    end = np.where(low.any(1), np.argmax(low, axis=1) - 1, POINTS - 1)  # (N,)
    idx = np.linspace(0.0, 1.0, POINTS)[None] * end[:, None]  # (N, P) fractional
    lo = np.floor(idx).astype(int)
    hi = np.minimum(lo + 1, POINTS - 1)
    w = (idx - lo)[..., None]
    rows = np.arange(n)[:, None]
    return strands[rows, lo] * (1 - w) + strands[rows, hi] * w


def curl(strands: np.ndarray, spec: StyleSpec, rng: np.random.Generator) -> np.ndarray:
    """Helical curls or flat waves (N, P, 3) round each strand, growing from the root."""
    n = len(strands)
    tangent = unit(np.gradient(strands, axis=1))  # (N, P, 3)
    out = unit(strands - SCALP_CENTRE)
    b1 = unit(np.cross(tangent, out))
    b1 = np.where(np.linalg.norm(b1, axis=-1, keepdims=True) > 0, b1, (1.0, 0.0, 0.0))
    b2 = np.cross(tangent, b1)
    seg = np.linalg.norm(np.diff(strands, axis=1), axis=2)
    arc = np.concatenate([np.zeros((n, 1)), np.cumsum(seg, 1)], 1)[..., None]  # (N, P, 1)
    period = spec.curl_period * rng.uniform(0.85, 1.15, (n, 1, 1))
    phase = 2 * np.pi * arc / period + rng.uniform(0, 2 * np.pi, (n, 1, 1))
    amp = spec.curl_radius * rng.uniform(0.7, 1.1, (n, 1, 1)) * ramp(arc / period)
    return strands + amp * (np.cos(phase) * b1 + spec.curl_roundness * np.sin(phase) * b2)


def curvature(positions: np.ndarray) -> np.ndarray:
    """Discrete curvature (1/cm) at each point (..., P, 1): turning angle over segment
    length at inner points, 0 at the ends and on zero-length strands."""
    seg = np.diff(positions.astype(np.float64), axis=-2)  # (..., P-1, 3)
    length = np.linalg.norm(seg, axis=-1)
    a, b = seg[..., :-1, :], seg[..., 1:, :]
    cos = np.einsum("...c,...c->...", a, b) / np.maximum(length[..., :-1] * length[..., 1:], 1e-12)
    mean = 0.5 * (length[..., :-1] + length[..., 1:])
    inner = np.where(mean > 1e-6, np.arccos(np.clip(cos, -1.0, 1.0)) / np.maximum(mean, 1e-6), 0)
    pad = np.zeros((*inner.shape[:-1], 1))
    return np.concatenate([pad, inner, pad], -1)[..., None].astype(np.float32)


# ---------------------------------------------------------------------------------------
# alignment to a head

ANCHOR_FRACTION = 0.05  # anchors: the top 5% of points by height
# C, measured on the ICT neutral head the styles grow on, so that aligning to it changes
# nothing: the root anchors' mean sits ALIGN_OFFSET from the skin anchors' mean (the top
# 5% of skin vertices reach down the dense forehead, the top 5% of roots do not), and the
# root anchors span ALIGN_SCALE times the skin anchors' width.
ALIGN_OFFSET = np.array([0.0, 2.05, -2.70])  # cm
ALIGN_SCALE = 0.440


def anchors(points: np.ndarray) -> tuple[np.ndarray, float]:
    """The thesis's anchor: mean (3,) and x extent of the top 5% of points (N, 3) by y."""
    top = points[points[:, 1] >= np.quantile(points[:, 1], 1.0 - ANCHOR_FRACTION)]
    return top.mean(0), float(np.ptp(top[:, 0]))


def anchor_aligned(style: Hairstyle, skin_vertices: np.ndarray) -> np.ndarray:
    """The thesis's anchor alignment alone (no mends): strands (1024, 100, 3) float64 for
    a head's skin vertices (N, 3) (see :func:`align_to_head`)."""
    a_head, w_head = anchors(np.asarray(skin_vertices, np.float64))
    a_hair, w_hair = anchors(style.roots.reshape(-1, 3).astype(np.float64))
    scale = ALIGN_SCALE * w_head / w_hair
    return scale * (style.positions.reshape(-1, POINTS, 3) - a_hair + ALIGN_OFFSET) + a_head


def align_to_head(
    style: Hairstyle,
    head_vertices: np.ndarray | torch.Tensor,
    topology: MeshTopology | np.ndarray,
    offset: float = ROOT_OFFSET,
) -> Hairstyle:
    """A hairstyle moved onto a head: vertices (V, 3) in the ICT frame (a fitted person's
    neutral head, ``model.prepare_identity(shape)[0]``) with an ICT topology (its skin is
    used) or the skin's triangles (F, 3).

    The thesis's alignment first: anchors A (mean) and W (x extent) of the top 5% by height
    of the head's skin vertices and of the strand roots; then every point
    ``p -> s (p - A_hair + C_t) + A_head`` with scale ``s = C_s W_head / W_hair``, where
    C_t = ALIGN_OFFSET and C_s = ALIGN_SCALE are measured on the ICT neutral head (the
    identity there; a multiplicative C_s, unlike an additive one, also recovers a head's
    uniform scale exactly). Then the mends: each root is moved along the skin normal to
    ``offset`` cm out of the skin, its strand with it, and the points left inside the head
    (or closer than ``offset``) are pushed out along the normal.
    """
    faces = skin_faces(topology) if isinstance(topology, MeshTopology) else topology
    vertices = np.asarray(head_vertices, np.float64).reshape(-1, 3)
    surface = HeadSurface(vertices, faces)
    strands = anchor_aligned(style, surface.vertices)

    sd, normal = surface.query(strands[:, 0])
    strands += ((offset - sd)[:, None] * normal)[:, None]  # roots onto the skin
    for _ in range(2):  # a push can land a point near another vertex's plane: twice
        flat = surface.push_out(strands[:, 1:].reshape(-1, 3), offset)
        strands[:, 1:] = flat.reshape(len(strands), POINTS - 1, 3)
    positions = strands.reshape(style.positions.shape).astype(np.float32)
    return replace(style, positions=positions, extra=curvature(positions))


# ---------------------------------------------------------------------------------------
# export


def strands_to_obj_lines(style: Hairstyle, path: str | Path) -> int:
    """Write the style's grown strands as OBJ polylines ('v' and 'l' records); returns the
    number of vertices written (100 per strand with hair)."""
    strands = style.positions[style.active]  # (S, P, 3)
    ids = np.arange(strands.size // 3).reshape(len(strands), -1) + 1
    with open(path, "w") as f:
        f.write(f"# hairstyle {style.name}: {len(strands)} strands, cm\no {style.name}\n")
        np.savetxt(f, strands.reshape(-1, 3), fmt="v %.4f %.4f %.4f")
        np.savetxt(f, ids, fmt="l" + " %d" * ids.shape[1])
    return int(strands.size // 3)


def strands_to_ribbons(
    style: Hairstyle, width_cm: float = 0.05, subsample: int = 1, point_step: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Thin ribbons for a mesh file: vertices (N, 3) float32 and triangles (M, 3) int32.

    Every ``subsample``-th strand with hair, every ``point_step``-th point (and the tip);
    each point becomes two vertices ``width_cm`` apart across the strand, facing away from
    the head. All 1024 strands at the default steps: about 100k triangles (~2.5 MB).
    """
    strands = style.positions[style.active][::subsample].astype(np.float64)  # (S, P, 3)
    keep = np.unique(np.r_[np.arange(0, POINTS, point_step), POINTS - 1])
    strands = strands[:, keep]
    s, q = strands.shape[:2]
    tangent = unit(np.gradient(strands, axis=1))
    across = unit(np.cross(tangent, strands - SCALP_CENTRE))  # (S, Q, 3)
    half = 0.5 * width_cm * across
    vertices = np.stack([strands - half, strands + half], 2).reshape(-1, 3)  # (S*Q*2, 3)
    a = (np.arange(s)[:, None] * q + np.arange(q - 1)[None]) * 2  # (S, Q-1) left of a point
    faces = np.concatenate(
        [np.stack([a, a + 1, a + 3], -1), np.stack([a, a + 3, a + 2], -1)], 1
    ).reshape(-1, 3)
    return vertices.astype(np.float32), faces.astype(np.int32)


# ---------------------------------------------------------------------------------------
# hair colour and style from a photo

# MediaPipe face-mesh landmarks round the face oval, in order
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
             400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21,
             54, 103, 67, 109]  # fmt: skip
BROWS = [70, 63, 105, 66, 107, 336, 296, 334, 293, 300]  # their upper edges
SKIN_DELTA_E = 16.0  # Lab distance under which a pixel counts as the face's skin
MIN_HAIR_AREA = 0.08  # hair masks smaller than this fraction of the face oval: no hair
WORK_SIDE = 320  # grab-cut runs on the photo scaled to this long side at most


def hair_colour(
    image_rgb: np.ndarray, landmarks_px: np.ndarray
) -> tuple[tuple[float, float, float] | None, np.ndarray]:
    """The hair colour (sRGB in [0, 1], for ``MeshRenderer.set_hair``) and hair mask
    (H, W) bool of a photo (H, W, 3) uint8 with its face-mesh landmarks (478, 2) in pixels.

    No learned model: GrabCut on a mask laid out from the face oval (``FACE_OVAL``), on
    the photo scaled to ``WORK_SIDE`` px. Skin is the median colour of the oval from the
    brows down; that part is painted in it (its dark eyes and brows would pass for hair)
    and is sure background, as is the image's 5% border away from the head. Probable
    hair: the pixels not skin-coloured (Lab distance over ``SKIN_DELTA_E``, twice that on
    the often shaded forehead) in an ellipse round the head (the oval widened 1.5 times,
    from 0.6 face heights over its top to 0.35 under its chin, less the neck) outside the
    oval. Everything else: probable background. The hair is GrabCut's foreground (5
    iterations) in that ellipse, less the lower oval, skin-coloured pixels (a bald scalp,
    ears) and specks. The colour is the mask's median; a mask under ``MIN_HAIR_AREA`` of
    the oval's area means no hair: colour None.
    """
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8; got {image_rgb.shape} {image_rgb.dtype}")
    h, w = image_rgb.shape[:2]
    k = min(1.0, WORK_SIDE / max(h, w))
    small = cv2.resize(image_rgb, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)
    lm = np.asarray(landmarks_px, float) * k  # (478, 2)
    oval = np.round(lm[FACE_OVAL]).astype(np.int32)  # (36, 2)
    face, lower, head = head_regions(small.shape[:2], oval, lm[BROWS, 1].min())
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    skin_delta = np.linalg.norm(lab - np.median(lab[lower], axis=0), axis=2)  # (h, w)
    skin_like = skin_delta < np.where(face, 2.0, 1.0) * SKIN_DELTA_E  # foreheads: shaded

    small[lower] = np.median(small[lower], axis=0)  # eyes and brows would pass for hair
    mask = np.full(face.shape, cv2.GC_PR_BGD, np.uint8)
    mask[head & ~face & ~skin_like] = cv2.GC_PR_FGD
    mask[lower] = cv2.GC_BGD
    border = np.ones(face.shape, bool)
    m = max(1, round(0.05 * min(face.shape)))
    border[m:-m, m:-m] = False
    mask[border & ~head] = cv2.GC_BGD
    if not (mask == cv2.GC_PR_FGD).any():
        return None, np.zeros((h, w), bool)
    cv2.setRNGSeed(0)  # GrabCut's k-means starts from OpenCV's RNG: the same each call
    bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.grabCut(small, mask, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
    hair = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)) & head & ~lower & ~skin_like
    hair = cv2.morphologyEx(hair.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    full = cv2.resize(hair, (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    if hair.sum() < MIN_HAIR_AREA * face.sum():
        return None, full
    rgb = np.median(image_rgb[full], axis=0) / 255.0
    return (float(rgb[0]), float(rgb[1]), float(rgb[2])), full


def head_regions(
    shape: tuple[int, int], oval: np.ndarray, brow_y: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks (H, W) bool from the face oval's polygon (K, 2) px and the brows' top edge
    (px): the oval, its part from the brows down, and the ellipse round the head where
    hair may be (see hair_colour)."""
    face = cv2.fillPoly(np.zeros(shape, np.uint8), [oval], 1).astype(bool)
    (x0, y0), (x1, y1) = oval.min(0), oval.max(0)
    fw, fh = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2.0, y0 - 0.6 * fh + 1.95 * fh / 2.0
    axes = (round(0.75 * fw), round(1.95 * fh / 2.0))
    head = cv2.ellipse(np.zeros(shape, np.uint8), (round(cx), round(cy)), axes, 0, 0, 360, 1, -1)
    ys, xs = np.arange(shape[0])[:, None], np.arange(shape[1])[None]
    neck = (ys > y1 - 0.1 * fh) & (np.abs(xs - cx) < 0.45 * fw)
    return face, face & (ys > brow_y - 0.02 * fh), head.astype(bool) & ~neck


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (H, W) bool masks (1 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def choose_style(hair_mask: np.ndarray, render_silhouettes: dict[str, np.ndarray]) -> str:
    """The style whose rendered hair silhouette (H, W) bool best overlaps (IoU) the photo's
    hair mask (H, W); ties go to the smaller silhouette (less hair)."""
    if not render_silhouettes:
        raise ValueError("no silhouettes to choose from")
    return max(
        render_silhouettes,
        key=lambda n: (mask_iou(hair_mask, render_silhouettes[n]), -render_silhouettes[n].sum()),
    )
