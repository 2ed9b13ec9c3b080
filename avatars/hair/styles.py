"""The hairstyle database: 46 procedural styles grown on the scalp, cached on disk (keyed
by each style's spec, so an edited style is grown again). Short cuts (buzz, crew, quiff,
side parts, pixie, short curls and afro), medium and long (straight, wavy, curly, with and
without a fringe, side or middle parting, tucked behind the ears), tied (ponytails high
and low, buns, and a short ponytail and bun of medium-length hair), textured (afros,
twists, locs, box braids, cornrows) and receding or balding;
``scripts/hairstyle_sheet.py`` draws them all.

Styles are grown all 1024 strands at once, one segment per step: each segment turns
towards a blend of the style's comb direction (slid along the skin), an outward lift that
fades from the root and gravity that grows along the strand, at a rate set by the style's
stiffness; a segment that ends inside the head (or closer than the strand's settle height)
is pushed out along the skin normal. Then haircuts (cut planes, a fringe line), tucking
behind the ears, curls or waves, plaits (clumps of roots drawn into three crossing
sub-bundles, with bare partings between them; lying on the skin for cornrows), and a last
push out of the head.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cache

import numpy as np

from avatars.hair.scalp import (
    DOWN,
    ROOT_OFFSET,
    SCALP_CENTRE,
    HeadSurface,
    Scalp,
    neutral_surface,
    scalp,
)
from avatars.hair.strands import GRID, POINTS, Hairstyle, curvature, unit
from engines.files.disk_cache import cache_root, load_arrays, save_arrays

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
    tuck: bool = False  # the side strands go behind the ears
    # plaits: the root grid's cells of clump = (rows, columns) strands become one braid,
    # its three sub-bundles crossing every plait_period cm, plait_radius wide; with
    # flat_rows the braids lie on the scalp (cornrows) until they leave it
    clump: tuple[int, int] | None = None
    plait_radius: float = 0.25
    plait_period: float = 1.6
    flat_rows: bool = False


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
    # -- short cuts ---------------------------------------------------------------------
    "crew_cut": StyleSpec(
        2.8, crown=0.6, comb=(0, 0.4, 0.3), lift=1.0, gravity=0.3, volume=0.3, taper=0.35
    ),
    "buzz_fade": StyleSpec(
        0.9, crown=1.0, lift=0.4, gravity=0.2, bend_length=0.6, volume=0.0, noise=0.3, taper=0.3
    ),
    "quiff": StyleSpec(
        6.0, comb=(0, 1.0, -0.5), lift=0.9, lift_length=2.0, gravity=0.3, volume=0.4,
        taper=0.2, cut_y=1.0,
    ),
    "caesar": StyleSpec(
        3.5, crown=1.0, comb=(0, -0.2, 0.8), fringe_y=9.0, lift=0.5, gravity=0.5, volume=0.3
    ),
    "spiky": StyleSpec(
        3.5, crown=0.3, lift=1.6, lift_length=2.5, gravity=0.1, volume=0.2, noise=0.5, taper=0.4
    ),
    "side_part_left": StyleSpec(
        8.0, part_x=-3.0, comb=(0, 0.2, -0.6), lift=0.4, gravity=1.0, volume=0.4, taper=0.35,
        cut_y=-6.0,
    ),
    "pixie": StyleSpec(
        6.0, part_x=2.5, comb=(0, 0.2, -0.3), fringe_y=8.0, taper=0.5, lift=0.6, gravity=0.8,
        volume=0.5, cut_y=-4.0,
    ),
    "short_curly": StyleSpec(
        4.5, crown=0.5, lift=1.2, gravity=0.3, volume=0.6, curl_radius=0.35, curl_period=1.2,
        noise=0.3,
    ),
    "short_afro": StyleSpec(
        3.5, crown=0.3, lift=2.5, lift_length=5.0, gravity=0.1, volume=0.8, curl_radius=0.35,
        curl_period=1.0, noise=0.4,
    ),
    # -- medium ---------------------------------------------------------------------------
    "medium_straight": StyleSpec(
        14.0, part_x=0.0, comb=(0, 0.3, -0.6), cut_y=-4.0, lift=0.6, gravity=1.2, volume=0.6
    ),
    "medium_side_part": StyleSpec(
        14.0, part_x=3.0, comb=(0, 0.3, -0.6), cut_y=-4.0, lift=0.6, gravity=1.2, volume=0.6
    ),
    "medium_wavy": StyleSpec(
        15.0, part_x=-1.5, comb=(0, 0.3, -0.6), cut_y=-5.0, lift=0.8, gravity=1.1, volume=0.9,
        curl_radius=0.7, curl_period=6.0, curl_roundness=0.3,
    ),
    "medium_curly": StyleSpec(
        13.0, crown=0.3, comb=(0, 0.2, -0.3), cut_y=-5.0, lift=1.2, lift_length=3.0,
        gravity=0.8, volume=1.0, curl_radius=0.6, curl_period=2.5, noise=0.3,
    ),
    "shag": StyleSpec(
        16.0, part_x=0.0, comb=(0, 0.3, -0.6), fringe_y=7.0, taper=0.7, cut_y=-6.0, lift=0.8,
        gravity=1.1, volume=0.9, curl_radius=0.5, curl_period=5.0, curl_roundness=0.3,
        noise=0.3,
    ),
    "bob_fringe": StyleSpec(
        22.0, part_x=0.0, comb=(0, 0.3, -0.6), fringe_y=6.5, cut_y=-7.0, lift=0.7, gravity=1.2,
        volume=1.0,
    ),
    "lob": StyleSpec(
        26.0, part_x=0.0, comb=(0, 0.3, -0.6), cut_y=-10.0, lift=0.7, gravity=1.3, volume=0.8
    ),
    # -- long -----------------------------------------------------------------------------
    "long_curly": StyleSpec(
        26.0, part_x=0.0, comb=(0, 0.3, -0.6), cut_y=-14.0, lift=1.0, gravity=1.0, volume=1.2,
        curl_radius=0.7, curl_period=3.2,
    ),
    "long_fringe": StyleSpec(
        34.0, part_x=0.0, comb=(0, 0.3, -0.6), fringe_y=6.5, cut_y=-13.0, lift=0.6,
        gravity=1.5, volume=0.8,
    ),
    "long_side_part": StyleSpec(
        34.0, part_x=-2.5, comb=(0, 0.3, -0.9), cut_y=-13.0, lift=0.6, gravity=1.5, volume=0.8
    ),
    # -- tied -----------------------------------------------------------------------------
    "low_ponytail": StyleSpec(
        40.0, gather=(0.0, 1.5, -10.5), lift=0.2, gravity=0.0, volume=0.2, cut_y=-14.0
    ),
    "high_ponytail": StyleSpec(
        42.0, gather=(0.0, 12.0, -8.0), lift=0.2, gravity=0.0, volume=0.2, cut_y=-10.0
    ),
    "low_bun": StyleSpec(
        30.0, gather=(0.0, 3.0, -10.6), bun_radius=2.4, lift=0.2, gravity=0.0, volume=0.2
    ),
    "short_ponytail": StyleSpec(
        24.0, gather=(0.0, 2.5, -10.4), lift=0.2, gravity=0.0, volume=0.2, cut_y=-6.0
    ),
    "medium_bun": StyleSpec(
        24.0, gather=(0.0, 4.0, -10.4), bun_radius=2.0, lift=0.2, gravity=0.0, volume=0.2
    ),
    "messy_bun": StyleSpec(
        32.0, gather=(0.0, 15.8, -3.5), bun_radius=2.8, lift=0.3, gravity=0.0, volume=0.3,
        noise=0.4,
    ),
    # -- textured -------------------------------------------------------------------------
    "afro_large": StyleSpec(
        10.0, crown=0.3, lift=3.0, lift_length=9.0, gravity=0.15, volume=1.2,
        curl_radius=0.7, curl_period=1.6, noise=0.45,
    ),
    "twists": StyleSpec(
        12.0, part_x=0.0, comb=(0, 0.3, -0.6), lift=1.0, gravity=1.0, volume=0.6,
        curl_radius=0.2, curl_period=0.6, noise=0.3, cut_y=-6.0,
    ),
    "locs_long": StyleSpec(
        30.0, part_x=0.0, comb=(0, 0.3, -0.6), lift=0.8, gravity=1.3, volume=0.7,
        curl_radius=0.22, curl_period=0.6, cut_y=-15.0,
    ),
    "box_braids": StyleSpec(
        36.0, part_x=0.0, comb=(0, 0.3, -0.6), lift=0.7, gravity=1.4, volume=0.8, cut_y=-16.0,
        clump=(4, 4), plait_radius=0.4, plait_period=1.6, noise=0.1,
    ),
    "cornrows": StyleSpec(
        16.0, comb=(0, 0.0, -1.5), lift=0.0, gravity=0.2, volume=0.0, cut_y=2.5,
        clump=(32, 3), plait_radius=0.12, plait_period=0.8, flat_rows=True, noise=0.05,
    ),
    "tucked_behind_ears": StyleSpec(
        22.0, part_x=1.0, comb=(0, 0.3, -0.6), cut_y=-9.0, lift=0.5, gravity=1.3, volume=0.6,
        tuck=True,
    ),
    # -- receding -------------------------------------------------------------------------
    "receding_swept_back": StyleSpec(
        6.0, comb=(0, 0.3, -1.0), lift=0.3, gravity=0.6, volume=0.3, taper=0.5, recede=0.45
    ),
    "thinning_crown": StyleSpec(
        3.0, crown=1.0, lift=0.5, gravity=0.4, volume=0.3, bald_crown=0.45
    ),
}


@dataclass(frozen=True)
class HairTraits:
    """What a person would say of a hairstyle, or of the hair in a photo: its length class
    ("short": above the ears and collar, "medium": to the jaw or shoulders, "long": below
    the shoulders), whether it is tied (a ponytail, a bun), whether a fringe covers the
    forehead and whether the hairline recedes or the crown thins (a photo's measures do
    not tell that yet, so they say no: the choice never balds anyone by itself; the
    styles stay there to try on)."""

    length: str
    tied: bool = False
    fringe: bool = False
    receding: bool = False

    def agreement(self, other: HairTraits) -> int:
        """How far two sets of traits agree: 2 for the length class, 2 for tied or loose,
        1 for the fringe, 1 for a receding hairline (0..6)."""
        return (
            2 * (self.length == other.length)
            + 2 * (self.tied == other.tied)
            + (self.fringe == other.fringe)
            + (self.receding == other.receding)
        )


# each style's traits, as they look grown on the neutral head (front and side views)
STYLE_TRAITS: dict[str, HairTraits] = {
    "buzz": HairTraits("short"),
    "short_crop": HairTraits("short"),
    "side_part": HairTraits("short"),
    "middle_part_fringe": HairTraits("medium", fringe=True),
    "bob": HairTraits("medium"),
    "long_straight": HairTraits("long"),
    "long_wavy": HairTraits("long"),
    "curly_afro": HairTraits("short"),
    "ponytail": HairTraits("long", tied=True),
    "top_knot": HairTraits("long", tied=True),
    "slicked_back": HairTraits("short"),
    "receding": HairTraits("short", receding=True),
    "balding": HairTraits("short", receding=True),
    "crew_cut": HairTraits("short"),
    "buzz_fade": HairTraits("short"),
    "quiff": HairTraits("short"),
    "caesar": HairTraits("short", fringe=True),
    "spiky": HairTraits("short"),
    "side_part_left": HairTraits("short"),
    "pixie": HairTraits("short", fringe=True),
    "short_curly": HairTraits("short"),
    "short_afro": HairTraits("short"),
    "medium_straight": HairTraits("medium"),
    "medium_side_part": HairTraits("medium"),
    "medium_wavy": HairTraits("medium"),
    "medium_curly": HairTraits("medium"),
    "shag": HairTraits("medium", fringe=True),
    "bob_fringe": HairTraits("medium", fringe=True),
    "lob": HairTraits("medium"),
    "long_curly": HairTraits("long"),
    "long_fringe": HairTraits("long", fringe=True),
    "long_side_part": HairTraits("long"),
    "low_ponytail": HairTraits("long", tied=True),
    "high_ponytail": HairTraits("long", tied=True),
    "low_bun": HairTraits("long", tied=True),
    "messy_bun": HairTraits("long", tied=True),
    "short_ponytail": HairTraits("medium", tied=True),
    "medium_bun": HairTraits("medium", tied=True),
    "afro_large": HairTraits("medium"),
    "twists": HairTraits("medium"),
    "locs_long": HairTraits("long"),
    "box_braids": HairTraits("long"),
    "cornrows": HairTraits("short"),
    "tucked_behind_ears": HairTraits("medium"),
    "receding_swept_back": HairTraits("short", receding=True),
    "thinning_crown": HairTraits("short", receding=True),
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


STYLE_CACHE_VERSION = "hair-v1"  # bump when growing changes (a spec's own change is seen)


def style_key(name: str) -> str:
    """``NAME-CRC`` of the style's spec: files made from a style are named by it, so a
    changed spec makes them again."""
    if name not in STYLES:
        raise ValueError(f"unknown hairstyle {name!r}; valid names: {', '.join(STYLES)}")
    return f"{name}-{zlib.crc32(repr(STYLES[name]).encode()):08x}"


@cache
def _cached_style(name: str) -> Hairstyle:
    """A grown style from memory, else from the disk cache, else grown and saved."""
    path = cache_root() / STYLE_CACHE_VERSION / f"{style_key(name)}.npz"
    arrays = load_arrays(path)
    if arrays is not None and arrays.get("positions", np.zeros(0)).shape == (GRID, GRID, POINTS, 3):
        return Hairstyle(name, arrays["positions"], arrays["extra"])
    style = grow_style(name)
    save_arrays(path, positions=style.positions, extra=style.extra)
    return style


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
    if spec.tuck:
        out = tuck(out)
    if spec.curl_radius > 0.0:
        out = curl(out, spec, rng)
    if spec.clump is not None:
        out = plait(out, spec, surface, rng)
    flat = surface.push_out(out[:, 1:].reshape(-1, 3), ROOT_OFFSET)
    out[:, 1:] = flat.reshape(n, POINTS - 1, 3)
    bald = ~hair_mask(spec, sc).reshape(-1)
    if spec.clump is not None:  # partings between the braids: the skin shows there
        bald |= partings(spec.clump).reshape(-1)
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


EAR = np.array([8.0, 1.5, -0.5])  # cm: the right ear's middle (x mirrored for the left)
EAR_BACK_Z = -3.0  # tucked hair passes behind this


def tuck(strands: np.ndarray) -> np.ndarray:
    """Side strands (N, P, 3) that pass in front of an ear go behind it: from where a
    strand comes within reach of the ear, its points are pushed back past ``EAR_BACK_Z``
    (smoothly, over 3 cm of height), and stay behind for the rest of its length."""
    out = strands.copy()
    x, y, z = (strands[..., i] for i in range(3))
    near = (np.abs(x) > 4.0) & (np.abs(y - EAR[1]) < 4.0) & (z > EAR_BACK_Z - 1.0)
    past = np.maximum.accumulate(near, axis=1)  # (N, P) from the first point near an ear
    weight = past * ramp((EAR[1] + 4.0 - y) / 3.0)  # full from the ear's top down
    back = np.minimum(z, EAR_BACK_Z - 0.5 * np.abs(y - EAR[1]) / 4.0)
    out[..., 2] = z + weight * (back - z)
    out[..., 0] = x + weight * np.sign(x) * np.maximum(EAR[0] + 0.8 - np.abs(x), 0.0)
    return out


def partings(clump: tuple[int, int]) -> np.ndarray:
    """(32, 32) bool: the root-grid lines between clumps (the last row and column of each;
    a clump of every row parts by columns only), which grow nothing, so the scalp cap
    leaves the skin bare along them."""
    rows, cols = clump
    i, j = np.meshgrid(np.arange(GRID), np.arange(GRID), indexing="ij")
    line = j % cols == cols - 1
    if rows < GRID:
        line |= i % rows == rows - 1
    return line


def plait(strands: np.ndarray, spec: StyleSpec, surface: HeadSurface,
          rng: np.random.Generator) -> np.ndarray:
    """Strands (N, P, 3) gathered into braids: each clump of the root grid (``spec.clump``)
    is drawn onto its mean path within 6 mm of the root (the scalp shows between them), in
    three sub-bundles that cross like a plait (a figure of eight round the path). Cornrows
    (``flat_rows``) lie on the skin, a braid's radius out."""
    rows, cols = spec.clump
    ids = np.arange(GRID * GRID).reshape(GRID, GRID)  # rows run back to front
    clump = (ids // GRID // rows) * (GRID // cols + 1) + (ids % GRID) // cols  # (32, 32)
    clump = clump.reshape(-1)
    n = len(strands)
    centre = np.zeros_like(strands)
    for c in np.unique(clump):
        sel = clump == c
        if spec.flat_rows:  # a row: each strand's own path (partings keep rows apart)
            centre[sel] = strands[sel]
        else:  # a braid: the clump's mean path
            centre[sel] = strands[sel].mean(0)
    if spec.flat_rows:  # the rows lie on the skin, a braid's radius out
        flat = centre.reshape(-1, 3)
        sd, nrm = surface.query(flat)
        centre = (flat - (sd - ROOT_OFFSET - spec.plait_radius)[:, None] * nrm).reshape(
            centre.shape)
    seg = np.linalg.norm(np.diff(centre, axis=1), axis=2)
    arc = np.concatenate([np.zeros((n, 1)), np.cumsum(seg, 1)], 1)  # (N, P)
    tangent = unit(np.gradient(centre, axis=1))
    b1 = unit(np.cross(tangent, unit(centre - SCALP_CENTRE)))
    b1 = np.where(np.linalg.norm(b1, axis=-1, keepdims=True) > 0, b1, (1.0, 0.0, 0.0))
    b2 = np.cross(tangent, b1)
    bundle = (np.arange(n) % 3)[:, None]  # (N, 1) which of the three sub-bundles
    phase = 2 * np.pi * arc / spec.plait_period + 2 * np.pi * bundle / 3
    r = spec.plait_radius
    if spec.flat_rows:  # flat on the scalp: the plait's figure of eight stays in its plane
        offset = r * (np.cos(phase)[..., None] * b1 + 0.3 * np.sin(2 * phase)[..., None] * b2)
    else:
        offset = r * (np.cos(phase)[..., None] * b1 + 0.5 * np.sin(2 * phase)[..., None] * b2)
    braided = centre + offset + 0.04 * rng.normal(size=strands.shape)  # loose hairs
    pull = ramp(arc / 0.6)[..., None]  # (N, P, 1) root where it grows, braided from 6 mm
    return strands + pull * (braided - strands)


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
