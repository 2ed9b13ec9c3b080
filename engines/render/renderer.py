"""Offscreen mesh renderer on ModernGL (EGL: Mesa llvmpipe on CPUs, NVIDIA on GPUs).

GL objects (program, buffers, framebuffers, texture) are made once in ``__init__``; each
frame only writes positions and normals into the vertex buffer, draws and reads back.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, replace

import moderngl
import numpy as np
import torch

from engines.face.model import MeshTopology
from engines.geometry.normals import NormalsOperator
from engines.render.camera import Camera, PerspectiveCamera
from engines.render.gl_calls import draw_elements, read_pixels
from engines.render.hair import DEFAULT_COLOUR, HairDrawer, HairLook, hair_mesh
from engines.render.hair_shell import ShellDrawer
from engines.render.materials import KIND_IRIS, KIND_PLAIN, KIND_SCLERA, Material, material_for
from engines.render.shaders import (
    FRAGMENT_LIT_SHADER,
    VERTEX_LIT_SHADER,
    VERTEX_SHADER,
    fragment_shader,
)

MAX_MATERIALS = 16
EYE_BACK_Z = -0.2  # eyeball faces whose rest direction has z below this are hidden (> 100°)

@dataclass
class RenderConfig:
    """Output size and look. Defaults render a 512x512 portrait on a grey background."""

    width: int = 512
    height: int = 512
    background: tuple[float, float, float] = (0.42, 0.45, 0.50)  # sRGB
    transparent: bool = False  # True: return (H, W, 4) with alpha 0 off the mesh
    samples: int = 0  # MSAA samples (4 looks smoother at about twice the cost on a CPU)
    # > 0: the hair is drawn again only when the head has turned more than this since it
    # last was (degrees; see engines.render.hair.HairDrawer); 0: every frame
    hair_reuse_deg: float = 0.0
    # True: the hair is drawn as one textured shell baked from its strands (the live
    # path's level of detail, engines.render.hair_shell); False: as strands
    hair_shell: bool = False
    # True: the skin, mouth and lashes are lit per vertex (engines.render.shaders: the
    # same look on the ICT head's small triangles, ~10 % less CPU on llvmpipe); the eyes
    # always per fragment
    vertex_lighting: bool = False
    iris_angle_deg: float = 33.0  # angular radius of the iris on the eyeball
    pupil_angle_deg: float = 12.0


def load_triton_first() -> None:
    """Import triton (when installed) before EGL loads Mesa.

    torch imports triton lazily (its optimisers reach torch._dynamo); triton bundles its own
    LLVM, and loading it after llvmpipe has loaded Mesa's LLVM crashes the process with a
    segmentation fault. The other order is fine.
    """
    with contextlib.suppress(ImportError):
        import triton  # noqa: F401


EGL_DEVICE_ENV = "VN3D_EGL_DEVICE"  # an EGL device index, to override the choice
_egl_choice: tuple[int, str] | None = None  # (device index, why), chosen once per process
_egl_lock = threading.Lock()


def egl_devices(limit: int = 8) -> list[tuple[int, str, str]]:
    """(index, GL vendor, GL renderer) of each EGL device a context opens on
    (EGL_EXT_platform_device, through glcontext's ``device_index``)."""
    load_triton_first()
    found = []
    for index in range(limit):
        try:
            ctx = moderngl.create_standalone_context(backend="egl", require=330,
                                                     device_index=index)  # fmt: skip
        except Exception:  # past the last device, or one without OpenGL 3.3
            if index > 0:
                break
            continue
        found.append((index, ctx.info["GL_VENDOR"], ctx.info["GL_RENDERER"]))
        ctx.release()
    return found


def egl_device() -> tuple[int, str]:
    """The EGL device the renderer uses and why: ``$VN3D_EGL_DEVICE`` if set, else the
    first NVIDIA device (a GPU renders a 512² frame in well under a millisecond), else
    device 0 (Mesa: llvmpipe on the CPU, or the machine's own GPU driver)."""
    global _egl_choice
    with _egl_lock:
        if _egl_choice is None:
            env = os.environ.get(EGL_DEVICE_ENV)
            if env:
                if not env.isdigit():
                    raise ValueError(f"${EGL_DEVICE_ENV} must be an EGL device index, not {env!r}")
                _egl_choice = (int(env), f"${EGL_DEVICE_ENV}")
            else:
                devices = egl_devices()
                nvidia = [d for d in devices if "NVIDIA" in d[1].upper()]
                pick = nvidia[0][0] if nvidia else (devices[0][0] if devices else 0)
                why = "the first NVIDIA one" if nvidia else "no NVIDIA EGL device"
                _egl_choice = (pick, f"{why} of {len(devices)}")
        return _egl_choice


def create_context() -> moderngl.Context:
    """A standalone headless OpenGL 3.3 context through EGL, on :func:`egl_device`."""
    load_triton_first()
    index, _ = egl_device()
    try:
        return moderngl.create_standalone_context(backend="egl", require=330,
                                                  device_index=index)  # fmt: skip
    except Exception as exc:  # moderngl raises plain Exception subclasses
        raise RuntimeError(
            "could not create a headless OpenGL context through EGL "
            f"({exc}). On Debian/Ubuntu install: apt-get install libegl1 libgl1 "
            "libegl-mesa0 libgl1-mesa-dri"
        ) from exc


def expand_render_vertices(topology: MeshTopology) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split model vertices where UVs or materials differ (seams).

    Returns per render vertex the model vertex id (R,), its uv (R, 2) and material (R,),
    and the triangles (F, 3) re-indexed into render vertices (as the third element's
    companion in :class:`MeshRenderer`). Here: (vertex_ids, uv_ids, triangles).
    """
    f = topology.faces
    uv_ids = topology.face_uvs if topology.face_uvs is not None else np.zeros_like(f)
    mat = np.repeat(topology.face_material.astype(np.int64)[:, None], 3, axis=1)
    keys = np.stack([f.ravel(), uv_ids.ravel(), mat.ravel()], 1)  # (F*3, 3)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    return unique[:, 0], unique[:, 1], inverse.reshape(-1, 3).astype(np.int32)


def hidden_eye_backs(topology: MeshTopology, looks: list[Material]) -> np.ndarray:
    """(F,) bool: the backs of the eyeballs, which sit inside the head whatever the gaze
    and are never drawn. The iris shells are kept whole: their backs are what the pupil
    shows (black), where a hidden back let the inside of the head show through."""
    if topology.eye_directions is None:
        return np.zeros(len(topology.faces), bool)
    eye_z = topology.eye_directions[topology.faces][..., 2]  # (F, 3)
    is_eye = np.abs(topology.eye_directions[topology.faces]).sum((1, 2)) > 0
    iris = np.array([look.kind == KIND_IRIS for look in looks])[topology.face_material]
    return is_eye & ~iris & (eye_z.max(1) < EYE_BACK_Z)


class MeshRenderer:
    """Renders one topology (e.g. the ICT head) from per-frame vertex positions."""

    def __init__(
        self,
        topology: MeshTopology,
        config: RenderConfig | None = None,
        texture: np.ndarray | None = None,
        materials: dict[str, Material] | None = None,
        ctx: moderngl.Context | None = None,
    ) -> None:
        self.config = cfg = config or RenderConfig()
        if cfg.width < 1 or cfg.height < 1 or cfg.width > 8192 or cfg.height > 8192:
            raise ValueError(f"render size must be 1..8192 px; got {cfg.width}x{cfg.height}")
        if len(topology.material_names) > MAX_MATERIALS:
            raise ValueError(f"at most {MAX_MATERIALS} materials are supported")
        self.topology = topology
        self._own_ctx = ctx is None
        self.ctx = ctx or create_context()
        vids, uv_ids, tris = expand_render_vertices(topology)
        self._vertex_ids = np.ascontiguousarray(vids, np.int64)  # (R,) model vertex per render one
        n_model = int(topology.faces.max()) + 1
        self._normals = NormalsOperator(topology.faces, n_model, vids)  # (V, 3) -> (R, 3)
        n_render = len(vids)
        uvs = topology.uvs[uv_ids] if topology.uvs is not None else np.zeros((n_render, 2))
        mat_of_vertex = np.zeros(n_render, np.float32)
        mat_of_vertex[tris.ravel()] = np.repeat(topology.face_material, 3)
        eye = (
            topology.eye_directions[vids]
            if topology.eye_directions is not None
            else np.zeros((n_render, 3))
        )
        static = np.c_[uvs, mat_of_vertex, eye].astype(np.float32)  # (R, 6)

        looks = [(materials or {}).get(n) or material_for(n) for n in topology.material_names]
        face_alpha = np.array([looks[m].alpha for m in topology.face_material])
        face_alpha[hidden_eye_backs(topology, looks)] = 0.0
        plain = np.array([looks[m].kind == KIND_PLAIN for m in topology.face_material])
        opaque = face_alpha >= 1.0
        parts = {  # drawn in this order; the eyes' cornea discards, so they come last
            "surface": tris[opaque & plain],
            "eyes": tris[opaque & ~plain],
            "blended": tris[(face_alpha > 0.0) & (face_alpha < 1.0)],
        }

        with self.ctx:
            self._create_objects(static, parts, looks)
            self.texture = None
            self._set_texture(texture)
        self.hair: HairDrawer | ShellDrawer | None = None

    def _create_objects(
        self, static: np.ndarray, parts: dict[str, np.ndarray], looks: list[Material]
    ) -> None:
        cfg, ctx = self.config, self.ctx
        n_render = len(static)
        self.prog_eyes = ctx.program(vertex_shader=VERTEX_SHADER,
                                     fragment_shader=fragment_shader(True))
        self.prog_surface = (
            ctx.program(vertex_shader=VERTEX_LIT_SHADER, fragment_shader=FRAGMENT_LIT_SHADER)
            if cfg.vertex_lighting
            else ctx.program(vertex_shader=VERTEX_SHADER, fragment_shader=fragment_shader(False))
        )
        colours = np.zeros((MAX_MATERIALS, 4), np.float32)
        params = np.zeros((MAX_MATERIALS, 4), np.float32)
        for i, m in enumerate(looks):
            colours[i] = [*(np.asarray(m.colour) ** 2.2), m.alpha]
            params[i] = [m.specular, m.shininess, float(m.textured), float(m.kind)]
        self._colours = colours  # (16, 4) linear rgb, alpha per material
        self._uniform("u_colour", colours.tobytes())
        self._uniform("u_params", params.tobytes())
        self._iris_rows = [i for i, m in enumerate(looks) if m.kind == KIND_IRIS]
        self._iris_default = colours[self._iris_rows].copy()  # (k, 4)
        self.prog_eyes["u_iris_cos"].value = float(np.cos(np.radians(cfg.iris_angle_deg)))
        self.prog_eyes["u_pupil_cos"].value = float(np.cos(np.radians(cfg.pupil_angle_deg)))
        assert KIND_IRIS == 1 and KIND_SCLERA == 2  # the shader's numbering

        self._dynamic = np.zeros((n_render, 6), np.float32)
        self.vbo_dynamic = ctx.buffer(reserve=self._dynamic.nbytes, dynamic=True)
        self.vbo_static = ctx.buffer(static.tobytes())
        layout = [
            (self.vbo_dynamic, "3f 3f", "in_pos", "in_normal"),
            (self.vbo_static, "2f 1f 3f", "in_uv", "in_mat", "in_eye"),
        ]
        self._ibos, self._vaos = {}, {}  # per part that has triangles
        for name, part in parts.items():
            if len(part):
                prog = self.prog_eyes if name == "eyes" else self.prog_surface
                self._ibos[name] = ibo = ctx.buffer(part.astype(np.int32).tobytes())
                self._vaos[name] = ctx.vertex_array(prog, layout, ibo, skip_errors=True)

        size = (cfg.width, cfg.height)
        self._pixels = np.zeros((cfg.height, cfg.width, 4 if cfg.transparent else 3), np.uint8)
        self.fbo_resolve = ctx.simple_framebuffer(size, components=4)
        if cfg.samples > 0:
            self.fbo = ctx.simple_framebuffer(size, components=4, samples=cfg.samples)
        else:
            self.fbo = self.fbo_resolve

    def _uniform(self, name: str, value: object) -> None:
        """Set a uniform on each head program that has it (bytes are written whole)."""
        for prog in (self.prog_eyes, self.prog_surface):
            if (uniform := prog.get(name, None)) is None:
                continue
            if isinstance(value, bytes):
                uniform.write(value)
            else:
                uniform.value = value

    def set_texture(self, texture: np.ndarray | None) -> None:
        """Use an (H, W, 3) uint8 sRGB UV texture for textured materials, or none.

        UDIM tiles lie side by side: a W = k * H texture covers u in [0, k) (ICT: tile 0
        is the face, tile 1 the back of the head); materials beyond it keep their colour.
        """
        with self.ctx:
            self._set_texture(texture)

    def _set_texture(self, texture: np.ndarray | None) -> None:
        if self.texture is not None:
            self.texture.release()
            self.texture = None
        self._uniform("u_has_texture", texture is not None)
        if texture is None:
            return
        tex = np.ascontiguousarray(texture[..., :3], dtype=np.uint8)
        if tex.ndim != 3 or tex.shape[1] % tex.shape[0]:
            raise ValueError(
                f"texture must be (H, k*H, 3) uint8 (k UDIM tiles); got {texture.shape}"
            )
        self._uniform("u_tiles", float(tex.shape[1] // tex.shape[0]))
        self.texture = self.ctx.texture((tex.shape[1], tex.shape[0]), 3, tex.tobytes())
        self.texture.build_mipmaps()
        self.texture.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
        self.texture.repeat_x = False  # tiles must not bleed into each other
        self.texture.repeat_y = False
        self.texture.use(0)
        self._uniform("u_texture", 0)

    def set_background(self, rgb: tuple[float, float, float]) -> None:
        """Render on another solid sRGB colour in [0, 1] from the next frame (e.g. chroma
        green, for a video mixer to key the head out)."""
        if len(rgb) != 3 or not all(0.0 <= float(c) <= 1.0 for c in rgb):
            raise ValueError(f"a background is three sRGB values in [0, 1]; got {rgb!r}")
        self.config = replace(self.config, background=tuple(float(c) for c in rgb))

    def set_iris_colour(self, rgb: tuple[float, float, float] | None) -> None:
        """The irises in an sRGB colour in [0, 1] (e.g. measured from the photo), or the
        material's own (None)."""
        if rgb is None:
            self._colours[self._iris_rows] = self._iris_default
        else:
            self._colours[self._iris_rows, :3] = np.asarray(rgb, np.float32) ** 2.2
        with self.ctx:
            self._uniform("u_colour", self._colours.tobytes())

    def set_hair(
        self,
        strands: np.ndarray | None,
        colour: tuple[float, float, float] = DEFAULT_COLOUR,
        look: HairLook | None = None,
    ) -> None:
        """Draw hair from guide strands (32, 32, P, 3) in the head's frame (see
        :mod:`avatars.hair.styles`) in an sRGB colour, or no hair (None)."""
        with self.ctx:
            if strands is None:
                if self.hair is not None:
                    self.hair.release()
                self.hair = None
                return
            if self.hair is None:
                cfg = self.config
                reuse = cfg.hair_reuse_deg if cfg.samples == 0 else 0.0  # MSAA: drawn directly
                self.hair = (ShellDrawer(self.ctx) if cfg.hair_shell
                             else HairDrawer(self.ctx, (cfg.width, cfg.height), reuse))
            self.hair.set(hair_mesh(np.asarray(strands), look or HairLook()), colour)

    def render(
        self,
        vertices: torch.Tensor | np.ndarray,
        camera: Camera | None = None,
        hair_transform: np.ndarray | None = None,
    ) -> np.ndarray:
        """One frame from vertices (V, 3): (H, W, 3) uint8, or (H, W, 4) when transparent.

        Hair (:meth:`set_hair`) is moved by ``hair_transform`` (4, 4), e.g. the head's
        rigid rotation from :func:`engines.render.hair.head_transform`; None: unmoved.
        """
        with self.ctx:  # make this renderer's context current (several may exist)
            return self._render(vertices, camera, hair_transform)

    def _render(
        self,
        vertices: torch.Tensor | np.ndarray,
        camera: Camera | None,
        hair_transform: np.ndarray | None,
    ) -> np.ndarray:
        cfg = self.config
        cam = camera or PerspectiveCamera.portrait()
        v = torch.as_tensor(vertices, dtype=torch.float32).reshape(-1, 3).numpy()  # (V, 3)
        self._dynamic[:, :3] = v.take(self._vertex_ids, axis=0)
        self._dynamic[:, 3:] = self._normals(v)
        self.vbo_dynamic.write(self._dynamic)

        view, proj = cam.view(), cam.projection(cfg.width / cfg.height)
        self._uniform("u_view", view.T.astype(np.float32).tobytes())
        self._uniform("u_proj", proj.T.astype(np.float32).tobytes())
        ortho = not isinstance(cam, PerspectiveCamera)
        self._uniform("u_ortho", ortho)
        if self.texture is not None:
            self.texture.use(0)

        ctx = self.ctx
        self.fbo.use()
        alpha = 0.0 if cfg.transparent else 1.0
        self.fbo.clear(*cfg.background, alpha)
        ctx.enable(moderngl.DEPTH_TEST)
        ctx.enable(moderngl.CULL_FACE)  # closed, outward-wound (CCW) surfaces
        ctx.disable(moderngl.BLEND)
        for part in ("surface", "eyes"):
            if part in self._vaos:
                draw_elements(self._vaos[part], moderngl.TRIANGLES)  # the GIL free meanwhile
        if self.hair is not None:
            self.hair.draw(view, proj, hair_transform, ortho, self.fbo)
        ctx.disable(moderngl.CULL_FACE)  # lash cards are seen from both sides
        if "blended" in self._vaos:
            ctx.enable(moderngl.BLEND)
            ctx.blend_func = (
                moderngl.SRC_ALPHA,
                moderngl.ONE_MINUS_SRC_ALPHA,
                moderngl.ONE,
                moderngl.ONE,
            )
            ctx.depth_mask = False
            draw_elements(self._vaos["blended"], moderngl.TRIANGLES)
            ctx.depth_mask = True
            ctx.disable(moderngl.BLEND)
        if self.fbo is not self.fbo_resolve:
            ctx.copy_framebuffer(self.fbo_resolve, self.fbo)
        read_pixels(self.fbo_resolve, self._pixels)  # waits for llvmpipe, the GIL free
        return self._pixels[::-1].copy()  # GL's first row is the bottom one

    def render_batch(
        self, vertices: torch.Tensor | np.ndarray, camera: Camera | None = None
    ) -> np.ndarray:
        """Frames for vertices (B, V, 3): (B, H, W, C) uint8, reusing every GL object."""
        return np.stack([self.render(v, camera) for v in vertices])

    def close(self) -> None:
        """Release every GL object (and the context when this renderer made it)."""
        with self.ctx:
            self._release_objects()
        if self._own_ctx:
            self.ctx.release()

    def _release_objects(self) -> None:
        if self.hair is not None:
            self.hair.release()
            self.hair = None
        for obj in (
            *self._vaos.values(),
            *self._ibos.values(),
            self.vbo_dynamic,
            self.vbo_static,
            self.texture,
            self.prog_eyes,
            self.prog_surface,
            self.fbo,
            self.fbo_resolve,
        ):
            if obj is not None:
                obj.release()
        self.texture = None

    def __enter__(self) -> MeshRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
