"""An avatar as one GLB for standard viewers (three.js, Blender, ...): metres, y up, one
node and material per part, named for what it is.

What the product's renderer does in its shader is baked into textures here, so a plain
PBR viewer shows the same head: the eyes get an iris texture (pupil, iris in the colour
measured from the photo, darker rim) and an eyeball texture that is clear over the iris
(the cornea) — both mapped by the direction from the eyeball's centre, as the shader
does — and the strand hair becomes cards with a texture of fibres whose alpha cuts them
into hairs, over a hair-base colour painted on the scalp where the strands grow. Normals
come from the whole head, so the parts meet without shading seams.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import trimesh
from PIL import Image
from scipy.spatial import cKDTree

from avatars.builder import Avatar
from avatars.hair.export import card_texture, strands_to_cards
from avatars.hair.scalp import SCALP_CENTRE
from avatars.texture_unwrap import uv_layout
from engines.face.model import FaceModel
from engines.geometry.normals import vertex_normals
from engines.render.materials import KIND_IRIS, KIND_SCLERA, Material, material_for
from engines.render.renderer import RenderConfig, expand_render_vertices, hidden_eye_backs

NODE_NAMES = {
    "M_Face": "skin_face", "M_BackHead": "skin_head", "M_EyeLashes": "eyelashes",
    "M_Teeth": "teeth", "M_GumsTongue": "gums_tongue", "M_IrisLeft": "iris_left",
    "M_IrisRight": "iris_right", "M_ScleraLeft": "eyeball_left",
    "M_ScleraRight": "eyeball_right",
}
EYE_TEXTURE = 256  # side of the baked iris and eyeball textures
HAIR_ALPHA_CUTOFF = 0.35
HAIR_BASE_REACH_CM = (0.3, 0.9)  # the hair base is full within, gone beyond (from a root)
HAIR_BASE_SHADE = 0.8


def eye_grid(size: int) -> np.ndarray:
    """(size, size, 3) unit directions from the eyeball's centre for an eye texture whose
    u, v are 0.5 + 0.5 * (x, y) of the direction (row 0 at v = 1); z >= 0."""
    c = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    x, y = np.meshgrid(c, -c)
    z = np.sqrt(np.clip(1.0 - x**2 - y**2, 0.0, None))
    return np.stack([x, y, z], -1)


def iris_image(rgb: tuple[float, float, float], sclera: tuple[float, float, float],
               size: int = EYE_TEXTURE, config: RenderConfig | None = None) -> np.ndarray:
    """(size, size, 3) uint8 sRGB: the renderer's procedural iris (its fragment shader,
    lighting aside) — a pupil, the iris in ``rgb`` with streaks and a darker rim, the
    sclera colour beyond it."""
    cfg = config or RenderConfig()
    iris_cos, pupil_cos = (math.cos(math.radians(a)) for a in (cfg.iris_angle_deg,
                                                                 cfg.pupil_angle_deg))
    d = eye_grid(size)
    t = np.clip((d[..., 2] - iris_cos) / (1.0 - iris_cos), 0.0, 1.0)[..., None]
    angle = np.arctan2(d[..., 1], d[..., 0])[..., None]
    streak = 0.85 + 0.15 * np.sin(angle * 23.0) * np.sin(angle * 7.0 + 1.3)
    ramp = np.clip(t / 0.35, 0.0, 1.0)
    ramp = ramp * ramp * (3 - 2 * ramp)  # GLSL smoothstep(0, 0.35, t)
    iris = np.asarray(rgb) ** 2.2 * streak * (0.45 + 0.8 * ramp)
    p = np.clip((d[..., 2:] - pupil_cos + 0.004) / 0.008, 0.0, 1.0)
    iris = iris + (p * p * (3 - 2 * p)) * (0.01 - iris)
    linear = np.where(d[..., 2:] < iris_cos, np.asarray(sclera) ** 2.2, iris)
    return (np.clip(linear, 0.0, 1.0) ** (1 / 2.2) * 255).round().astype(np.uint8)


def eyeball_image(sclera: tuple[float, float, float], size: int = EYE_TEXTURE,
                  config: RenderConfig | None = None) -> np.ndarray:
    """(size, size, 4) uint8 sRGBA: the sclera, transparent over the iris (the cornea)."""
    cfg = config or RenderConfig()
    d = eye_grid(size)
    clear = d[..., 2] > math.cos(math.radians(cfg.iris_angle_deg))
    out = np.empty((size, size, 4), np.uint8)
    out[..., :3] = (np.asarray(sclera) * 255).round().astype(np.uint8)
    out[..., 3] = np.where(clear, 0, 255)
    return out


def part_material(name: str, look: Material, avatar: Avatar, skin: object) -> tuple[object, bool]:
    """(glTF material, uses eye UVs) for one of the head's materials; ``skin`` is the one
    textured material every skin part shares (one copy of the texture in the file)."""
    pbr = trimesh.visual.material.PBRMaterial
    sclera = material_for("M_ScleraLeft").colour
    if look.kind == KIND_IRIS:
        rgb = avatar.iris_rgb or look.colour
        image = Image.fromarray(iris_image(rgb, sclera))
        return pbr(name=name, baseColorTexture=image, roughnessFactor=0.4,
                   metallicFactor=0.0), True
    if look.kind == KIND_SCLERA:
        image = Image.fromarray(eyeball_image(look.colour), "RGBA")
        return pbr(name=name, baseColorTexture=image, roughnessFactor=0.15, metallicFactor=0.0,
                   alphaMode="MASK", alphaCutoff=0.5), True
    if look.textured:
        return skin, False
    rgba = [*(c**2.2 for c in look.colour), look.alpha]  # glTF factors are linear
    see_through = look.alpha < 1  # lash cards: blended, seen from both sides
    return pbr(name=name, baseColorFactor=rgba, roughnessFactor=0.5, metallicFactor=0.0,
               alphaMode="BLEND" if see_through else "OPAQUE", doubleSided=see_through), False


def hair_base_texture(avatar: Avatar, head: np.ndarray, model: FaceModel) -> np.ndarray:
    """The avatar's texture with a hair-base colour (the hair's, a little darker) on the
    scalp where its strands grow, fading out over ``HAIR_BASE_REACH_CM`` from the nearest
    root: cards leave gaps between their fibres, and through them a viewer shows this
    rather than a bald scalp (the product draws its strands densely enough not to)."""
    roots = avatar.hair.roots[avatar.hair.active]  # (K, 3) cm on this head
    distance, _ = cKDTree(roots).query(head)  # (V,)
    near, far = HAIR_BASE_REACH_CM
    weight = np.clip((far - distance) / (far - near), 0.0, 1.0)  # (V,)
    layout = uv_layout(model.topology, model.neutral.numpy(), avatar.texture.shape[0])
    texel_weight = (weight[model.topology.faces[layout.triangle]] * layout.bary).sum(1)  # (T,)
    base = np.asarray(avatar.hair_rgb, np.float32) * HAIR_BASE_SHADE * 255.0
    out = avatar.texture.reshape(-1, 3).astype(np.float32)  # (S * k*S, 3)
    out[layout.texel] += texel_weight[:, None] * (base - out[layout.texel])
    return out.reshape(avatar.texture.shape).round().astype(np.uint8)


def hair_node(avatar: Avatar) -> trimesh.Trimesh:
    """The hair as textured cards (metres)."""
    vertices, faces, uvs = strands_to_cards(avatar.hair)
    material = trimesh.visual.material.PBRMaterial(
        name="hair", baseColorTexture=Image.fromarray(card_texture(avatar.hair_rgb), "RGBA"),
        roughnessFactor=0.6, metallicFactor=0.0, doubleSided=True, alphaMode="MASK",
        alphaCutoff=HAIR_ALPHA_CUTOFF,
    )
    uvs = uvs * [1.0, -1.0] + [0.0, 1.0]  # texture row 0 (the root) at v = 1
    out = vertices - SCALP_CENTRE  # cards lit as the hair's outer surface
    normals = out / np.linalg.norm(out, axis=1, keepdims=True)
    return trimesh.Trimesh(vertices * 0.01, faces, vertex_normals=normals, process=False,
                           visual=trimesh.visual.TextureVisuals(uv=uvs, material=material))


def avatar_glb(avatar: Avatar, head: np.ndarray, model: FaceModel) -> bytes:
    """One GLB (metres, y up) of ``avatar`` with its neutral head vertices (V, 3) in the
    model's units (ICT: cm; FLAME: m)."""
    t = model.topology
    tiles = avatar.texture.shape[1] // avatar.texture.shape[0]
    vids, uv_ids, tris = expand_render_vertices(t)
    uv = t.uvs[uv_ids] / [tiles, 1.0]  # (R, 2)
    eyes = t.eye_directions[vids] if t.eye_directions is not None else np.zeros((len(vids), 3))
    eye_uv = 0.5 + 0.5 * eyes[:, :2]  # (R, 2)
    normals = vertex_normals(torch.as_tensor(head, dtype=torch.float32),
                             torch.as_tensor(t.faces, dtype=torch.long)).numpy()[vids]
    metres = head[vids] * model.units_in_metres  # (R, 3)
    hidden = hidden_eye_backs(t, [material_for(n) for n in t.material_names])
    texture = avatar.texture if avatar.hair is None else hair_base_texture(avatar, head, model)
    skin = trimesh.visual.material.PBRMaterial(
        name="skin", baseColorTexture=Image.fromarray(texture), roughnessFactor=0.7,
        metallicFactor=0.0)
    scene = trimesh.Scene()
    for m, name in enumerate(t.material_names):
        look = material_for(name)
        sel = tris[(t.face_material == m) & ~hidden]
        if look.alpha <= 0.0 or not len(sel):
            continue
        used, local = np.unique(sel, return_inverse=True)
        part = NODE_NAMES.get(name, name)
        material, on_eye = part_material(part, look, avatar, skin)
        visual = trimesh.visual.TextureVisuals(uv=(eye_uv if on_eye else uv)[used],
                                               material=material)
        mesh = trimesh.Trimesh(metres[used], local.reshape(-1, 3), vertex_normals=normals[used],
                               visual=visual, process=False)
        scene.add_geometry(mesh, node_name=part, geom_name=part)
    if avatar.hair is not None:
        scene.add_geometry(hair_node(avatar), node_name="hair", geom_name="hair")
    return scene.export(file_type="glb")
