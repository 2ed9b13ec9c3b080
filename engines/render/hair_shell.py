"""Hair as one textured shell: the live paths' level of detail for strand hair.

Tens of thousands of strand lines cost llvmpipe 10-30 ms a 512² frame; one surface over
the hair costs a few, and on llvmpipe a surface's cost follows its triangles more than
its pixels. The shell is a radial height field round the point the strands are lit from
(inside the skull): for each direction, how far out the hair reaches. Its texture is
baked once per style from the drawn strands themselves, in the same direction coordinates
(azimuth round the face's forward axis, angle from it), so each texel holds the outermost
strand there: its brightness (root shade and per-strand variation, as drawn), its
direction (for the highlights) and whether hair is there (alpha; gaps between neighbouring
strands closed and small holes filled, as the strand renderer's scalp cap closes them). A
second pass with the innermost strand winning tells where the hair grows from the scalp:
past that hair's edge the shell slopes into the head, whose surface then cuts the
hairline. Drawn, the shell is lit as the strands are (Kajiya-Kay, per vertex, with the
mean direction of the strands near each vertex) and cut to the texture's alpha.

A direction meets the shell once: hair that folds back over itself (a loop further out
than the hair beside it) is flattened onto its outermost layer, and a tail hanging clear
of the neck is joined to the nape.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import moderngl
import numpy as np
from scipy import ndimage

from engines.render.gl_calls import draw_elements
from engines.render.hair import HAIR_UNIFORMS_GLSL, KAJIYA_KAY_GLSL, HairMesh

BAKE_SIZE = (1024, 512)  # texels around (azimuth, 2π) and from the face's forward axis (π)
GRID = (160, 80)  # shell cells around (at the widest row) and from front to back
R_MAX = 60.0  # cm: beyond any hair's reach from the centre (depth scale of the bake)
GAP_CLOSE = 2  # texels: gaps between neighbouring strands up to twice this are closed
COVER = 0.25  # a vertex is on the hair when this share of its cell's texels shows hair
EDGE = 6  # cells from the hair's edge within which its inside is drawn cut to the alpha
HOLE = 600  # texels: smaller holes in the hair are filled (about 1.5 cm² on the scalp)
GAP_SHADE = 0.6  # brightness of a closed gap: as the strand renderer's scalp cap
RAMP = 5  # cells: how far the shell slopes into the head beyond hair growing from the scalp
SLOPE = 2.5  # cm of radius lost per cell on that slope

BAKE_VERTEX_SHADER = """
#version 330
uniform float u_shift;        // 0 or ±2π: strands drawn again across the azimuth seam
uniform float u_r_max;        // cm: the depth scale
in vec3 in_polar;             // azimuth, angle from forward, radius
in vec3 in_tangent;
in float in_shade;
in float in_cap;              // 1 on the scalp cap
out vec3 v_tangent;
out float v_shade;
out float v_cap;
out float v_r;
void main() {
    float x = (in_polar.x + u_shift) / 3.14159265;
    float y = 1.0 - 2.0 * in_polar.y / 3.14159265;
    float depth_r = in_polar.z - 0.5 * in_cap;  // the cap is the innermost over the roots
    gl_Position = vec4(x, y, 2.0 * (1.0 - depth_r / u_r_max) - 1.0, 1.0);
    v_tangent = in_tangent;
    v_shade = in_shade;
    v_cap = in_cap;
    v_r = in_polar.z;
}
"""

BAKE_FRAGMENT_SHADER = """
#version 330
in vec3 v_tangent;
in float v_shade;
in float v_cap;
in float v_r;
layout(location = 0) out vec4 f_tangent_r;
layout(location = 1) out vec4 f_shade;
void main() {
    f_tangent_r = vec4(v_tangent, v_r);
    f_shade = vec4(v_shade, v_cap, 0.0, 1.0);
}
"""


@dataclass(frozen=True)
class Baked:
    """Per texel of the direction map (H, W), rows from the back pole."""

    tangent: np.ndarray  # (H, W, 3) the outermost strand's direction
    outer: np.ndarray  # (H, W) its radius, cm; 0 where no hair
    shade: np.ndarray  # (H, W) its brightness
    rooted: np.ndarray  # (H, W) bool: the innermost hair there is the scalp cap


@dataclass(frozen=True)
class HairShell:
    """One style's shell: vertices, triangles and the baked (shade, alpha) texture."""

    vertices: np.ndarray  # (N, 8) float32: position, tangent, u, v
    triangles: np.ndarray  # (T, 3) int32, counter-clockwise seen from outside
    two_sided: int  # the last this many are also drawn from inside, cut to the alpha
    inside: np.ndarray  # (S, 3) int32: the rest's inside, coarser, drawn solid
    texture: np.ndarray  # (H, W, 2) uint8: shade / 2, alpha; rows from the back pole
    centre: np.ndarray  # (3,)


def to_polar(points: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """(N, 3) head-frame points → (N, 3) azimuth (0 up, ±π down), angle from the face's
    forward axis (+z), radius."""
    d = np.asarray(points, np.float64) - centre
    r = np.maximum(np.linalg.norm(d, axis=1), 1e-9)
    polar = np.arccos(np.clip(d[:, 2] / r, -1.0, 1.0))
    azimuth = np.arctan2(d[:, 0], d[:, 1])
    return np.stack([azimuth, polar, r], 1)


def from_polar(azimuth: np.ndarray, polar: np.ndarray, r: np.ndarray,
               centre: np.ndarray) -> np.ndarray:
    """The inverse of :func:`to_polar`: (..., 3) points."""
    azimuth, polar = np.broadcast_arrays(azimuth, polar)
    s = np.sin(polar)
    d = np.stack([s * np.sin(azimuth), s * np.cos(azimuth), np.cos(polar)], -1)
    return centre + r[..., None] * d


def unwrapped(polar: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Per primitive (P, k) vertex ids → (P * k, 3) polar rows with each primitive's
    azimuths unwrapped next to its first vertex's (no primitive spans the seam)."""
    rows = polar[ids].copy()  # (P, k, 3)
    first = rows[:, :1, 0]
    rows[:, :, 0] = first + (rows[:, :, 0] - first + np.pi) % (2 * np.pi) - np.pi
    return rows.reshape(-1, 3)


def bake(ctx: moderngl.Context, mesh: HairMesh, size: tuple[int, int] = BAKE_SIZE
         ) -> Baked:
    """Draw the strands and the cap in direction space, the outermost winning, then
    again with the innermost winning."""
    polar = to_polar(mesh.vertices[:, :3], mesh.centre)
    extra = mesh.vertices[:, 3:]  # tangent, t, shade
    cap_shade = 0.6  # the strand shader's cap: matte and darker
    shade = np.where(extra[:, 3] < 0, cap_shade, extra[:, 4] * root_shade(extra[:, 3]))
    rows = {}
    for name, ids in (("lines", mesh.lines), ("cap", mesh.cap)):
        if len(ids):
            flat = ids.reshape(-1)
            rows[name] = np.c_[unwrapped(polar, ids), extra[flat, :3], shade[flat],
                               np.full(len(flat), float(name == "cap"))].astype(np.float32)
    w, h = size
    tangent_r = ctx.texture(size, 4, dtype="f4")
    shade_tex = ctx.texture(size, 4, dtype="f1")
    depth = ctx.depth_renderbuffer(size)
    fbo = ctx.framebuffer([tangent_r, shade_tex], depth)
    prog = ctx.program(vertex_shader=BAKE_VERTEX_SHADER, fragment_shader=BAKE_FRAGMENT_SHADER)
    prog["u_r_max"].value = R_MAX
    made = [tangent_r, shade_tex, depth, fbo, prog]
    reads = []
    try:
        fbo.use()
        ctx.enable(moderngl.DEPTH_TEST)
        ctx.disable(moderngl.CULL_FACE | moderngl.BLEND)
        vaos = []
        for name, data in rows.items():
            vbo = ctx.buffer(data.tobytes())
            vaos.append((ctx.vertex_array(prog, [(vbo, "3f 3f 1f 1f", "in_polar", "in_tangent",
                                                  "in_shade", "in_cap")]), name))
            made += [vbo, vaos[-1][0]]
        for func, clear_depth in (("<", 1.0), (">", 0.0)):  # outermost, then innermost
            ctx.depth_func = func
            fbo.clear(0.0, 0.0, 0.0, 0.0, depth=clear_depth)
            for vao, name in vaos:
                for shift in (0.0, 2 * np.pi, -2 * np.pi):
                    prog["u_shift"].value = shift
                    vao.render(moderngl.LINES if name == "lines" else moderngl.TRIANGLES)
            if func == "<":  # the outermost strand's direction and radius
                reads.append(np.frombuffer(fbo.read(components=4, attachment=0, dtype="f4"),
                                           np.float32).reshape(h, w, 4))
            reads.append(np.frombuffer(fbo.read(components=4, attachment=1, dtype="f1"),
                                       np.uint8).reshape(h, w, 4))  # shade, cap
    finally:
        ctx.depth_func = "<"
        for obj in reversed(made):
            obj.release()
    outer, outer_shade, inner_kind = reads
    return Baked(outer[..., :3], outer[..., 3], outer_shade[..., 0] / 255.0,
                 inner_kind[..., 1] > 127)


def root_shade(t: np.ndarray) -> np.ndarray:
    """The strand shader's darkening towards the root (t = 0 root .. 1 tip)."""
    x = np.clip(t / 0.35, 0.0, 1.0)
    return 0.45 + 0.55 * x * x * (3 - 2 * x)


def closed_alpha(hair: np.ndarray) -> np.ndarray:
    """(H, W) bool: the texels with hair, gaps between neighbouring strands closed and
    holes up to ``HOLE`` texels filled (through them the strands show more hair behind,
    where the shell, seen from outside, would show its far side's inside)."""
    size = 2 * GAP_CLOSE + 1
    padded = np.pad(hair, size, mode="wrap")
    closed = ndimage.binary_closing(padded, np.ones((size, size), bool))
    alpha = closed[size:-size, size:-size] | hair
    holes, n = ndimage.label(~alpha)
    small = np.flatnonzero(np.bincount(holes.ravel(), minlength=n + 1) <= HOLE)
    return alpha | np.isin(holes, small[small > 0])


def grid_samples(h: int, w: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """The texel rows and columns under the vertex grid (rows from the back pole; the
    last column is the first again, across the seam) and the texels per cell."""
    gw, gh = GRID
    ii = np.clip(np.round(np.linspace(0, h - 1, gh + 1)).astype(int), 0, h - 1)
    jj = np.round(np.linspace(0, w, gw + 1)).astype(int) % w
    return ii, jj, (max(h // gh, 1), max(w // gw, 1))


def vertex_radii(baked: Baked, alpha: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Per grid vertex: its radius, whether it is drawn, and whether its triangles are
    drawn from inside too: where the hair hangs free (no scalp under it) and within
    ``EDGE`` cells of its edge (where the gaps between strands show the hair behind).

    A vertex is on the hair where ``COVER`` of the texels round it (a Gaussian of a cell's
    width) show hair, and lies at the hair's furthest reach within its cell. Beyond the
    edge of hair that grows from the scalp there (an afro's front, a fringe's roots) the
    shell slopes ``SLOPE`` cm a cell for ``RAMP`` cells into the head, whose surface then
    cuts the hairline as the strands' roots meet it. None when no vertex is on the hair
    (a few stray strands)."""
    h, w = baked.outer.shape
    ii, jj, cell = grid_samples(h, w)
    has_hair = baked.outer > 0
    at = np.ix_(ii, jj)
    far = ndimage.maximum_filter(np.where(has_hair, baked.outer, 0.0), size=cell, mode="wrap")
    cover = ndimage.gaussian_filter(alpha.astype(np.float32), (cell[0], cell[1]),
                                    mode="wrap")[at]
    hair_v = cover >= COVER  # stray strands alone do not stretch the shell
    if not hair_v.any():
        return None
    scalp = ndimage.maximum_filter(baked.rooted & alpha, size=cell, mode="wrap")[at] & hair_v
    rooted = ndimage.maximum_filter(scalp, size=2 * RAMP + 1, mode=("nearest", "wrap"))
    r = far[at]
    fill = ndimage.distance_transform_edt(r <= 0, return_distances=False, return_indices=True)
    r = ndimage.gaussian_filter(r[tuple(fill)], 0.7, mode=("nearest", "wrap"))

    # every vertex off the hair, by its distance in cells to the nearest one on it
    dist, (ni, nj) = ndimage.distance_transform_edt(~hair_v, return_indices=True)
    ramp = ~hair_v & rooted[ni, nj] & (dist <= RAMP)
    r = np.where(ramp, r[ni, nj] - SLOPE * dist, r)
    edge = ndimage.distance_transform_edt(hair_v) <= EDGE
    return np.maximum(r, 1.0), hair_v | ramp, hair_v & (~scalp | edge)


def texture_alpha(baked: Baked, alpha: np.ndarray) -> np.ndarray:
    """(H, W) bool: where the shell shows hair. The hair's texels, and beyond hair that
    grows from the scalp as far as the shell's slope into the head reaches (the head's
    surface cuts it there)."""
    h, w = alpha.shape
    _, _, cell = grid_samples(h, w)
    reach = (2 * (RAMP + 1) * cell[0] + 1, 2 * (RAMP + 1) * cell[1] + 1)
    rooted = ndimage.maximum_filter(baked.rooted & alpha, size=reach, mode="wrap")
    # a smooth band (not the box a maximum filter makes), so the hairline stays smooth
    sigma = (RAMP * cell[0] / 2, RAMP * cell[1] / 2)
    band = ndimage.gaussian_filter(alpha.astype(np.float32), sigma, mode="wrap") > 0.1
    return alpha | (rooted & band)


def shell_of(ctx: moderngl.Context, mesh: HairMesh) -> HairShell | None:
    """The shell of a style's drawn strands (see the module); None when there is too
    little hair to make one (nothing is drawn)."""
    baked = bake(ctx, mesh)
    h, w = baked.outer.shape
    hair = baked.outer > 0
    alpha = closed_alpha(hair)
    if (radii := vertex_radii(baked, alpha)) is None:
        return None
    r, drawn, hanging = radii
    shown = texture_alpha(baked, alpha)
    shade = np.where(hair, baked.shade, GAP_SHADE)
    nearest = ndimage.distance_transform_edt(~alpha, return_distances=False,
                                             return_indices=True)
    shade = np.where(alpha, shade, shade[tuple(nearest)])  # beyond the edge: the edge's
    ii, jj, cell = grid_samples(h, w)
    # the strands' mean direction near each vertex: as long as they agree (1: combed
    # alike, ~0: curls pointing every way), which the shader's highlights follow
    at = np.ix_(ii, jj)
    total = ndimage.uniform_filter(np.where(hair[..., None], baked.tangent, 0.0),
                                   size=(*cell, 1), mode="wrap")[at]
    count = ndimage.uniform_filter(hair.astype(float), size=cell, mode="wrap")[at]
    mean_t = total / np.maximum(count, 1e-9)[..., None]

    fields = (r, drawn, hanging, mean_t, (ii + 0.5) / h, mesh.centre)
    fine, outside, two_sided = grid_mesh(*fields, step=1)
    coarse, inside, near_edge = grid_mesh(*fields, step=2)
    outside = np.concatenate([outside[~two_sided], outside[two_sided]])  # two-sided last
    inside = inside[~near_edge] + len(fine)
    used, ids = np.unique(np.concatenate([outside, inside]), return_inverse=True)
    vertices = np.concatenate([fine, coarse])[used]  # only the vertices drawn
    ids = ids.reshape(-1, 3)
    outside = outward(ids[: len(outside)], vertices[:, :3], mesh.centre)
    inside = outward(ids[len(outside):], vertices[:, :3], mesh.centre)
    texture = np.stack([np.clip(shade / 2 * 255, 0, 255), shown * 255.0], -1).astype(np.uint8)
    return HairShell(vertices.astype(np.float32), outside.astype(np.int32),
                     int(two_sided.sum()), inside.astype(np.int32), texture,
                     np.asarray(mesh.centre, np.float64))


_cache: OrderedDict[bytes, HairShell] = OrderedDict()
_cache_lock = threading.Lock()
CACHE_SIZE = 16  # styles' shells kept (about 2 MB each)


def cached_shell(ctx: moderngl.Context, mesh: HairMesh) -> HairShell | None:
    """:func:`shell_of`, made once per drawn-strand mesh in this process: a shell is plain
    arrays, so every session and renderer showing the same hair shares it, and switching
    back to a style (or another session picking it) does not bake it again (~0.3 s)."""
    key = hashlib.sha1(b"".join(a.tobytes() for a in (
        mesh.vertices, mesh.lines, mesh.cap, np.asarray(mesh.centre)))).digest()
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    shell = shell_of(ctx, mesh)
    for array in (() if shell is None else
                  (shell.vertices, shell.triangles, shell.inside, shell.texture)):
        array.flags.writeable = False  # shared
    with _cache_lock:
        _cache[key] = shell
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return shell


def grid_mesh(r: np.ndarray, drawn: np.ndarray, two_sided: np.ndarray, tangent: np.ndarray,
              v: np.ndarray, centre: np.ndarray, step: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The shell over every ``step``-th row and column of the vertex fields (R, C) (radius,
    drawn, two-sided, tangent (R, C, 3); v (R,) per row), on :func:`reduced_grid`:
    vertices (N, 8), the triangles (T, 3) whose vertices are all drawn, and which of
    those are two-sided."""
    n_rows, n_cols = r.shape
    keep = np.unique(np.r_[np.arange(0, n_rows, step), n_rows - 1])
    polar = (1.0 - v[keep]) * np.pi
    rows, u, tris = reduced_grid(np.sin(polar), (n_cols - 1) // step)
    rr, cc = keep[rows], np.round(u * (n_cols - 1)).astype(int)
    pos = from_polar((u - 0.5) * 2 * np.pi, polar[rows], r[rr, cc], centre)
    vertices = np.c_[pos, tangent[rr, cc], u, v[rr]]
    tris = tris[drawn[rr, cc][tris].all(1)]
    return vertices, tris, two_sided[rr, cc][tris].all(1)


def reduced_grid(ring: np.ndarray, columns: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A latitude-longitude grid with fewer vertices in the rows near the poles.

    ``ring`` (R,) is each row's circumference relative to the widest (the sine of its
    angle from the pole); a row has ``columns * ring`` cells (at least 3), so the cells
    are about as wide everywhere. Returns per vertex its row and its u in [0, 1] (the
    seam's vertex twice, at 0 and 1), and the triangles (T, 3) stitching each row to the
    next, all wound alike.
    """
    cells = np.maximum(np.ceil(columns * np.clip(ring, 0.0, 1.0)).astype(int), 3)
    starts = np.concatenate([[0], np.cumsum(cells + 1)])
    rows = np.repeat(np.arange(len(cells)), cells + 1)
    u = np.concatenate([np.linspace(0.0, 1.0, n + 1) for n in cells])
    tris = []
    for k in range(len(cells) - 1):
        top, bottom = cells[k], cells[k + 1]
        i = j = 0
        while i < top or j < bottom:  # walk both rows left to right, the nearer first
            a, b = starts[k] + i, starts[k + 1] + j
            if j == bottom or (i < top and (i + 1) / top <= (j + 1) / bottom):
                tris.append((a, a + 1, b))
                i += 1
            else:
                tris.append((a, b + 1, b))
                j += 1
    return rows, u, np.asarray(tris, np.int64)


def outward(tris: np.ndarray, pos: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """The grid's triangles (all wound alike) wound counter-clockwise seen from outside:
    flipped together when most face the centre (a skirt's may face sideways)."""
    p = pos[tris]
    n = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    facing_in = np.einsum("ij,ij->i", n, p.mean(1) - centre) < 0
    return tris[:, ::-1] if facing_in.mean() > 0.5 else tris


# Lit as the strands are (engines.render.hair's vertex shader), with the strands' mean
# direction under the vertex; the texture's shade multiplies the light.
SHELL_VERTEX_SHADER = "#version 330\n" + HAIR_UNIFORMS_GLSL + """
in vec3 in_pos;
in vec3 in_tangent;
in vec2 in_uv;
out vec3 v_diffuse;          // times the base colour
out vec3 v_spec;             // white, added
out vec2 v_uv;
""" + KAJIYA_KAY_GLSL + """
void main() {
    mat4 mv = u_view * u_model;
    vec4 p = mv * vec4(in_pos, 1.0);
    gl_Position = u_proj * p;
    v_uv = in_uv;
    vec3 n = normalize(mat3(mv) * (in_pos - u_centre));
    vec3 view_dir = u_ortho ? vec3(0.0, 0.0, 1.0) : normalize(-p.xyz);
    vec3 light = mix(GROUND, SKY, 0.5 + 0.5 * n.y);
    vec3 spec = vec3(0.0);
    vec3 tinted = vec3(0.0);
    vec3 dirs[3] = vec3[3](KEY_DIR, FILL_DIR, RIM_DIR);
    vec3 rgbs[3] = vec3[3](KEY_RGB, FILL_RGB, RIM_RGB);
    // strands that point every way (curls) light as their mean over all directions:
    // E[sin] = π/4, E[sin^90] ≈ 0.13, E[sin^22] ≈ 0.27 for a random direction
    float agree = clamp(length(in_tangent), 0.0, 1.0);
    vec3 t = agree > 1e-4 ? normalize(mat3(mv) * in_tangent) : n;
    vec3 t1 = normalize(t + 0.15 * n);
    vec3 t2 = normalize(t - 0.25 * n);
    for (int i = 0; i < 3; ++i) {
        float facing = clamp(dot(n, dirs[i]) * 0.6 + 0.4, 0.0, 1.0);
        light += rgbs[i] * mix(0.785, sin_between(t, dirs[i]), agree) * facing;
        vec3 h = normalize(dirs[i] + view_dir);
        spec += rgbs[i] * facing * 0.07 * mix(0.13, pow(sin_between(t1, h), 90.0), agree);
        tinted += rgbs[i] * facing * 0.5 * mix(0.27, pow(sin_between(t2, h), 22.0), agree);
    }
    v_diffuse = u_colour * (light + tinted);
    v_spec = spec;
}
"""

SHELL_FRAGMENT_SHADER = """
#version 330
uniform sampler2D u_texture;  // shade / 2, alpha
in vec3 v_diffuse;
in vec3 v_spec;
in vec2 v_uv;
out vec4 f_colour;
void main() {
    vec2 s = texture(u_texture, v_uv).rg;
    if (s.g < 0.5) discard;
    float shade = 2.0 * s.r;
    f_colour = vec4(pow(clamp((v_diffuse + v_spec) * shade, 0.0, 1.0), vec3(1.0 / 2.2)), 1.0);
}
"""


def mip_levels(texture: np.ndarray) -> list[np.ndarray]:
    """The (H, W, 2) texture's mipmap chain, the shade averaged and the alpha kept where
    any quarter of a texel has hair (averaged alpha, cut at one half, would erase the thin
    hair that a distant or grazing shell shows minified)."""
    levels = [texture]
    cur = texture.astype(np.float32)
    while min(cur.shape[:2]) > 1:
        h, w = cur.shape[0] // 2 * 2, cur.shape[1] // 2 * 2
        blocks = cur[:h, :w].reshape(h // 2, 2, w // 2, 2, 2)
        nxt = np.empty((h // 2, w // 2, 2), np.float32)
        nxt[..., 0] = blocks[..., 0].mean((1, 3))
        nxt[..., 1] = np.where(blocks[..., 1].mean((1, 3)) >= 64, 255, 0)
        levels.append(nxt.round().astype(np.uint8))
        cur = nxt
    return levels


class ShellDrawer:
    """GL objects for drawing one style's shell in an existing context (the same calls
    as :class:`engines.render.hair.HairDrawer`).

    Three draws: the outside, cut to the texture's alpha; the inside of hair hanging free
    and near the hair's edge, cut the same way; the rest of the inside solid (no
    ``discard``, so llvmpipe rejects its hidden fragments early): the hair behind that
    the strand renderer shows through gaps and beside the face.
    """

    def __init__(self, ctx: moderngl.Context) -> None:
        self.ctx = ctx
        self.prog_cut = ctx.program(vertex_shader=SHELL_VERTEX_SHADER,
                                    fragment_shader=SHELL_FRAGMENT_SHADER)
        self.prog_solid = ctx.program(vertex_shader=SHELL_VERTEX_SHADER,
                                      fragment_shader=SHELL_FRAGMENT_SHADER.replace(
                                          "if (s.g < 0.5) discard;", ""))
        self.vbo = self.texture = None
        self._ibos: list[moderngl.Buffer] = []
        self._vaos: list[tuple[moderngl.VertexArray, str]] = []  # and the faces culled
        self.redrawn = 0  # frames drawn (every one: no layer to reuse)

    def _uniform(self, name: str, value: object) -> None:
        for prog in (self.prog_cut, self.prog_solid):
            if (uniform := prog.get(name, None)) is not None:
                if isinstance(value, bytes):
                    uniform.write(value)
                else:
                    uniform.value = value

    def set(self, mesh: HairMesh, colour: tuple[float, float, float]) -> None:
        """Bake and upload a style's shell (replacing the last) and its sRGB colour."""
        self._release_buffers()
        if not len(mesh.lines) and not len(mesh.cap):
            return  # bald: nothing to draw
        if (shell := cached_shell(self.ctx, mesh)) is None:
            return  # a few stray strands: nothing to draw
        ctx = self.ctx
        self.vbo = ctx.buffer(shell.vertices.tobytes())
        layout = [(self.vbo, "3f 3f 2f", "in_pos", "in_tangent", "in_uv")]
        split = len(shell.triangles) - shell.two_sided
        for tris, prog, culled in ((shell.triangles, self.prog_cut, "back"),
                                   (shell.triangles[split:], self.prog_cut, "front"),
                                   (shell.inside, self.prog_solid, "front")):
            if len(tris):
                self._ibos.append(ibo := ctx.buffer(tris.tobytes()))
                self._vaos.append((ctx.vertex_array(prog, layout, ibo), culled))
        levels = mip_levels(shell.texture)
        h, w = shell.texture.shape[:2]
        self.texture = ctx.texture((w, h), 2, levels[0].tobytes())
        self.texture.build_mipmaps(0, len(levels) - 1)  # allocates the chain; then ours
        for i, level in enumerate(levels[1:], 1):
            self.texture.write(level.tobytes(), level=i)
        self.texture.filter = (moderngl.LINEAR_MIPMAP_NEAREST, moderngl.LINEAR)
        self.texture.repeat_x, self.texture.repeat_y = True, False  # the azimuth wraps
        self._uniform("u_colour", tuple(float(c) ** 2.2 for c in colour))
        self._uniform("u_centre", tuple(float(c) for c in shell.centre))

    def draw(
        self, view: np.ndarray, proj: np.ndarray, model: np.ndarray | None, ortho: bool,
        target: moderngl.Framebuffer | None = None,
    ) -> None:
        """Draw into the bound framebuffer with depth testing, after the opaque head."""
        if not self._vaos:
            return
        m = np.eye(4) if model is None else np.asarray(model, float)
        for name, mat in (("u_view", view), ("u_proj", proj), ("u_model", m)):
            self._uniform(name, np.asarray(mat, np.float32).T.tobytes())
        self._uniform("u_ortho", ortho)
        self._uniform("u_texture", 3)
        self.texture.use(3)
        self.ctx.enable(moderngl.DEPTH_TEST)
        self.ctx.enable(moderngl.CULL_FACE)
        for vao, culled in self._vaos:
            self.ctx.cull_face = culled
            draw_elements(vao, moderngl.TRIANGLES)
        self.ctx.cull_face = "back"
        self.redrawn += 1

    def _release_buffers(self) -> None:
        for obj in (*(vao for vao, _ in self._vaos), *self._ibos, self.vbo, self.texture):
            if obj is not None:
                obj.release()
        self.vbo = self.texture = None
        self._ibos, self._vaos = [], []

    def release(self) -> None:
        self._release_buffers()
        self.prog_cut.release()
        self.prog_solid.release()
