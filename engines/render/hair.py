"""Drawing strand hair with ModernGL: lit lines over a coloured scalp cap.

The 32x32 guide strands of a :class:`avatars.hair.styles.Hairstyle` are thickened into a few
thousand drawn strands (``density`` per scalp cell: each takes the shape of the nearby
guides at a random point of its cell, plus a small random drift towards its tip) and drawn
as 1-pixel lines, shaded after Kajiya and Kay: diffuse from the sine between the strand's
tangent and the light, a white primary and a tinted secondary highlight from the tangent's
sine to the half vector, both tangents tilted along the head's outward direction as in
Scheuermann's hair shading, evaluated per vertex (a drawn strand's vertices are a few
millimetres apart). Roots are darker (in the shade of the hair above) and each
strand's brightness varies a little. Under the strands a cap in the hair's colour covers
the scalp cells that grow hair, so the skin never shows through between lines.

The geometry is uploaded once per style; a frame only sets the matrices (the model matrix
moves the hair rigidly with the head) and draws, with the head's depth buffer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import moderngl
import numpy as np

from engines.face.ict import NECK_PIVOT
from engines.render.gl_calls import draw_elements
from engines.render.materials import LIGHTS_GLSL

# Lit per vertex: a strand's light changes little between its vertices, and the fragments
# of the tens of thousands of lines (much of llvmpipe's cost) only interpolate it. The
# light rig is the head's (engines.render.renderer's fragment shader), in view space.
# what the strands' and the shell's (engines.render.hair_shell) vertex shaders share
HAIR_UNIFORMS_GLSL = """
uniform mat4 u_view;
uniform mat4 u_proj;
uniform mat4 u_model;
uniform vec3 u_centre;
uniform vec3 u_colour;       // linear rgb
uniform bool u_ortho;
"""
KAJIYA_KAY_GLSL = LIGHTS_GLSL + """
float sin_between(vec3 t, vec3 d) {
    float c = dot(t, d);
    return sqrt(max(1.0 - c * c, 0.0));
}
"""

VERTEX_SHADER = "#version 330\n" + HAIR_UNIFORMS_GLSL + """
in vec3 in_pos;
in vec3 in_tangent;
in float in_t;               // 0 root .. 1 tip; < 0 on the scalp cap
in float in_shade;
out vec3 v_rgb;              // linear
""" + KAJIYA_KAY_GLSL + """
void main() {
    mat4 mv = u_view * u_model;
    vec4 p = mv * vec4(in_pos, 1.0);
    gl_Position = u_proj * p;
    vec3 n = normalize(mat3(mv) * (in_pos - u_centre));
    vec3 view_dir = u_ortho ? vec3(0.0, 0.0, 1.0) : normalize(-p.xyz);
    vec3 base = u_colour * in_shade;
    vec3 light = mix(GROUND, SKY, 0.5 + 0.5 * n.y);
    vec3 spec = vec3(0.0);
    vec3 dirs[3] = vec3[3](KEY_DIR, FILL_DIR, RIM_DIR);
    vec3 rgbs[3] = vec3[3](KEY_RGB, FILL_RGB, RIM_RGB);
    if (in_t < 0.0) {  // scalp cap: a dull matte surface, darker than the strands
        for (int i = 0; i < 3; ++i) light += rgbs[i] * max(dot(n, dirs[i]), 0.0);
        v_rgb = base * light * 0.6;
        return;
    }
    vec3 t = normalize(mat3(mv) * in_tangent);
    vec3 t1 = normalize(t + 0.15 * n);  // primary highlight: towards the tip
    vec3 t2 = normalize(t - 0.25 * n);  // secondary: towards the root, tinted
    for (int i = 0; i < 3; ++i) {
        float facing = clamp(dot(n, dirs[i]) * 0.6 + 0.4, 0.0, 1.0);  // hair's self-shadow
        light += rgbs[i] * sin_between(t, dirs[i]) * facing;
        vec3 h = normalize(dirs[i] + view_dir);
        spec += rgbs[i] * facing * (
            0.07 * pow(sin_between(t1, h), 90.0) + 0.5 * base * pow(sin_between(t2, h), 22.0));
    }
    float root_shade = mix(0.45, 1.0, smoothstep(0.0, 0.35, in_t));
    v_rgb = (base * light + spec) * root_shade;
}
"""

FRAGMENT_SHADER = """
#version 330
in vec3 v_rgb;
out vec4 f_colour;

void main() {
    f_colour = vec4(pow(clamp(v_rgb, 0.0, 1.0), vec3(1.0 / 2.2)), 1.0);
}
"""


# The hair layer laid over the frame: its colour and depth, per pixel, depth-tested
# against the head drawn before it (a full-screen triangle; no vertex buffer).
LAYER_VERTEX_SHADER = """
#version 330
void main() {
    vec2 p = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2));
    gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0);
}
"""

LAYER_FRAGMENT_SHADER = """
#version 330
uniform sampler2D u_rgb;
uniform sampler2D u_depth;
out vec4 f_colour;

void main() {
    ivec2 p = ivec2(gl_FragCoord.xy);
    vec4 c = texelFetch(u_rgb, p, 0);
    if (c.a == 0.0) discard;  // no hair here
    gl_FragDepth = texelFetch(u_depth, p, 0).r;
    f_colour = c;
}
"""

DEFAULT_COLOUR = (0.23, 0.16, 0.11)  # sRGB: dark brown, when no hair colour is known


@dataclass(frozen=True)
class HairLook:
    """How the guide strands are thickened for drawing."""

    density: int = 3  # drawn strands per scalp cell
    step: int = 4  # draw every step-th point of a strand
    drift: float = 0.15  # cm: a drawn strand's random drift from its guides at the tip
    variation: float = 0.15  # random brightness variation between strands
    cap_lift: float = 0.08  # cm: the cap lies this far over the roots (flat cells sag)
    seed: int = 0


@dataclass(frozen=True)
class HairMesh:
    """Vertex data for one style: strand lines, then cap triangles, in one buffer."""

    vertices: np.ndarray  # (N, 8) float32: position, tangent, t (cap: -1), shade
    lines: np.ndarray  # (L, 2) int32 vertex ids
    cap: np.ndarray  # (C, 3) int32 vertex ids
    centre: np.ndarray  # (3,) the point strands are lit as growing away from


def head_transform(
    rotation: np.ndarray, pivot: tuple[float, float, float] = NECK_PIVOT
) -> np.ndarray:
    """The (4, 4) rigid motion of the ICT head for an axis-angle rotation (3,) about the
    neck pivot: what hair must follow (everything above the neck moves rigidly)."""
    r = np.asarray(rotation, float)
    angle = float(np.linalg.norm(r))
    k = np.zeros((3, 3))
    if angle > 1e-12:
        x, y, z = r / angle
        k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    rot = np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = np.asarray(pivot) - rot @ np.asarray(pivot)
    return m


def hair_mesh(positions: np.ndarray, look: HairLook) -> HairMesh:
    """Drawn strands and the scalp cap for guide strands (G, G, P, 3) on a scalp grid."""
    g = positions.shape[0]
    guides = positions.astype(np.float64)
    roots = guides[:, :, 0]  # (G, G, 3)
    active = np.linalg.norm(np.diff(guides, axis=2), axis=3).sum(2) > 1e-3  # (G, G)
    rng = np.random.default_rng(look.seed)
    strands = thicken(guides[:, :, :: look.step], active, look, rng)  # (S, P', 3)
    s, q = strands.shape[:2]
    tangent = np.gradient(strands, axis=1)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=2, keepdims=True), 1e-9)
    t = np.broadcast_to(np.linspace(0.0, 1.0, q), (s, q))
    shade = np.broadcast_to(1.0 + look.variation * rng.uniform(-1, 1, (s, 1)), (s, q))
    strand_rows = np.concatenate([strands, tangent, t[..., None], shade[..., None]], 2)
    base = np.arange(s)[:, None] * q + np.arange(q - 1)[None]  # (S, P'-1)
    lines = np.stack([base, base + 1], -1).reshape(-1, 2)

    centre = roots.reshape(-1, 3).mean(0) - np.array([0.0, 6.0, 0.0])  # inside the skull
    out = roots - centre
    cap_pos = roots + look.cap_lift * out / np.linalg.norm(out, axis=-1, keepdims=True)
    cap_rows = np.c_[cap_pos.reshape(-1, 3), np.zeros((g * g, 3)), -np.ones(g * g), np.ones(g * g)]
    ids = np.arange(g * g).reshape(g, g) + s * q
    quad = active[:-1, :-1] & active[1:, :-1] & active[:-1, 1:] & active[1:, 1:]
    a, b, c, d = ids[:-1, :-1][quad], ids[1:, :-1][quad], ids[1:, 1:][quad], ids[:-1, 1:][quad]
    cap = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    vertices = np.concatenate([strand_rows.reshape(-1, 8), cap_rows]).astype(np.float32)
    return HairMesh(vertices, lines.astype(np.int32), cap.astype(np.int32), centre)


def thicken(
    guides: np.ndarray, active: np.ndarray, look: HairLook, rng: np.random.Generator
) -> np.ndarray:
    """Drawn strands (S, P, 3): ``density`` per scalp cell at random points of the cell.

    Each takes the guides' shapes (relative to their roots) weighted towards the nearest
    corner, or just the nearest corner's where the corners disagree (a parting: their
    average would stand up from the scalp), at the bilinear root, plus a drift that grows
    to ``look.drift`` at the tip.
    """
    g, _, p, _ = guides.shape
    shapes = guides - guides[:, :, :1]  # (G, G, P, 3)
    ci, cj = np.nonzero(np.ones((g - 1, g - 1), bool))
    ci = np.repeat(ci, look.density)
    cj = np.repeat(cj, look.density)
    u, v = rng.uniform(0, 1, (2, len(ci)))
    corners = [(0, 0), (1, 0), (0, 1), (1, 1)]
    w = np.stack([(1 - u if di == 0 else u) * (1 - v if dj == 0 else v) for di, dj in corners], 1)
    on = np.stack([active[ci + di, cj + dj] for di, dj in corners], 1)  # (S, 4)
    keep = on.any(1)
    ci, cj, w, on = ci[keep], cj[keep], w[keep], on[keep]
    root = sum(w[:, k, None] * guides[ci + di, cj + dj, 0] for k, (di, dj) in enumerate(corners))
    sharp = np.where(on, w**3, 0.0)
    sharp /= sharp.sum(1, keepdims=True)
    corner_shapes = np.stack([shapes[ci + di, cj + dj] for di, dj in corners], 1)  # (S, 4, P, 3)
    blend = np.einsum("sk,skpc->spc", sharp, corner_shapes)
    nearest = corner_shapes[np.arange(len(ci)), np.argmax(sharp, 1)]
    spread = np.linalg.norm(corner_shapes - blend[:, None], axis=3).max(2)  # (S, 4)
    tolerance = 0.5 + 0.1 * np.linalg.norm(blend[:, -1], axis=1)  # cm
    agree = (np.where(on, spread, 0.0).max(1) < tolerance)[:, None, None]
    shape = np.where(agree, blend, nearest)
    drift = rng.normal(0, look.drift, (len(ci), 1, 3)) * np.linspace(0, 1, p)[None, :, None]
    return root[:, None] + shape + drift


def turn_between_deg(a: np.ndarray, b: np.ndarray) -> float:
    """The angle (degrees) of the rotation from one (4, 4) rigid motion's to another's."""
    rel = np.asarray(a, float)[:3, :3].T @ np.asarray(b, float)[:3, :3]
    return float(np.degrees(np.arccos(np.clip((np.trace(rel) - 1) / 2, -1.0, 1.0))))


class HairDrawer:
    """GL objects for drawing one hairstyle in an existing context and framebuffer.

    With ``reuse_deg`` > 0 (and no MSAA) the hair is drawn into a layer of its own (colour
    and depth) and laid over the frame, depth-tested against the head; the layer is drawn
    again only when the head has turned more than ``reuse_deg`` since it was (or the
    camera or the style changed). A fresh layer gives exactly the pixels of drawing the
    hair into the frame; a reused one shows the hair up to ``reuse_deg`` behind the head.
    """

    def __init__(self, ctx: moderngl.Context, size: tuple[int, int] = (0, 0),
                 reuse_deg: float = 0.0) -> None:
        self.ctx = ctx
        self.prog = ctx.program(vertex_shader=VERTEX_SHADER, fragment_shader=FRAGMENT_SHADER)
        self.vbo = self.ibo_lines = self.ibo_cap = None
        self.vao_lines = self.vao_cap = None
        self.reuse_deg = reuse_deg if min(size) > 0 else 0.0
        self.redrawn = 0  # layer draws (the hair's cost), against frames: for benchmarks
        self._layer: tuple | None = None  # (fbo, rgb, depth, program, vao) when reusing
        self._drawn_for: tuple | None = None  # (view, proj, model, ortho) of the layer
        if self.reuse_deg > 0:
            rgb, depth = ctx.texture(size, 4), ctx.depth_texture(size)
            depth.compare_func = ""  # read as values, not compared
            fbo = ctx.framebuffer(color_attachments=[rgb], depth_attachment=depth)
            prog = ctx.program(vertex_shader=LAYER_VERTEX_SHADER,
                               fragment_shader=LAYER_FRAGMENT_SHADER)
            prog["u_rgb"].value, prog["u_depth"].value = 1, 2
            self._layer = (rgb, depth, fbo, prog, ctx.vertex_array(prog, []))

    def set(self, mesh: HairMesh, colour: tuple[float, float, float]) -> None:
        """Upload a style's mesh (replacing the last) and its sRGB colour."""
        self._release_buffers()
        ctx = self.ctx
        self.vbo = ctx.buffer(mesh.vertices.tobytes())
        layout = [(self.vbo, "3f 3f 1f 1f", "in_pos", "in_tangent", "in_t", "in_shade")]
        if len(mesh.lines):  # a bald style has none
            self.ibo_lines = ctx.buffer(mesh.lines.tobytes())
            self.vao_lines = ctx.vertex_array(self.prog, layout, self.ibo_lines)
        if len(mesh.cap):
            self.ibo_cap = ctx.buffer(mesh.cap.tobytes())
            self.vao_cap = ctx.vertex_array(self.prog, layout, self.ibo_cap)
        self.prog["u_colour"].value = tuple(float(c) ** 2.2 for c in colour)
        self.prog["u_centre"].value = tuple(float(c) for c in mesh.centre)
        self._drawn_for = None  # the layer shows the last style

    def draw(
        self, view: np.ndarray, proj: np.ndarray, model: np.ndarray | None, ortho: bool,
        target: moderngl.Framebuffer | None = None,
    ) -> None:
        """Draw into ``target`` (the bound framebuffer) with depth testing, after the
        opaque head: directly, or through the reused layer (see the class)."""
        if self.vbo is None:
            return
        m = np.eye(4) if model is None else np.asarray(model, float)
        if self._layer is None or target is None:
            self._draw_strands(view, proj, m, ortho)
            return
        rgb, depth, fbo, _, vao = self._layer
        last = self._drawn_for
        if (last is None or not (np.array_equal(last[0], view) and np.array_equal(last[1], proj)
                                 and last[3] == ortho)
                or turn_between_deg(last[2], m) > self.reuse_deg):
            fbo.use()
            fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
            self._draw_strands(view, proj, m, ortho)
            self._drawn_for = (np.array(view), np.array(proj), m, ortho)
            self.redrawn += 1
            target.use()
        rgb.use(1)
        depth.use(2)
        self.ctx.enable(moderngl.DEPTH_TEST)
        vao.render(moderngl.TRIANGLES, vertices=3)

    def _draw_strands(self, view: np.ndarray, proj: np.ndarray, model: np.ndarray,
                      ortho: bool) -> None:
        for name, mat in (("u_view", view), ("u_proj", proj), ("u_model", model)):
            self.prog[name].write(np.asarray(mat, np.float32).T.tobytes())
        self.prog["u_ortho"].value = ortho
        self.ctx.enable(moderngl.DEPTH_TEST)
        self.ctx.disable(moderngl.CULL_FACE)
        if self.vao_cap is not None:
            draw_elements(self.vao_cap, moderngl.TRIANGLES)
        if self.vao_lines is not None:
            draw_elements(self.vao_lines, moderngl.LINES)  # the GIL is free meanwhile

    def _release_buffers(self) -> None:
        for obj in (self.vao_lines, self.vao_cap, self.ibo_lines, self.ibo_cap, self.vbo):
            if obj is not None:
                obj.release()
        self.vbo = self.ibo_lines = self.ibo_cap = None
        self.vao_lines = self.vao_cap = None

    def release(self) -> None:
        self._release_buffers()
        self.prog.release()
        for obj in reversed(self._layer or ()):
            obj.release()
        self._layer = None
