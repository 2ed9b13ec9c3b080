"""Per-material looks for the renderer: colour, gloss, transparency and shader kind."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Material:
    """How one material renders. Colours are sRGB in [0, 1]."""

    colour: tuple[float, float, float]
    alpha: float = 1.0  # 0 hides the material, (0, 1) blends it after the opaque pass
    specular: float = 0.08
    shininess: float = 24.0
    textured: bool = False  # sample the model's UV texture when one is given
    kind: int = 0  # 0 plain, 1 iris (procedural pupil/iris), 2 sclera (clear cornea)


KIND_PLAIN, KIND_IRIS, KIND_SCLERA = 0, 1, 2

# the studio lights in view space, shared by the head's and the hair's shaders
LIGHTS_GLSL = """
const vec3 KEY_DIR = normalize(vec3(-0.45, 0.55, 0.70));
const vec3 FILL_DIR = normalize(vec3(0.60, 0.10, 0.60));
const vec3 RIM_DIR = normalize(vec3(0.20, 0.60, -0.80));
const vec3 KEY_RGB = vec3(1.00, 0.97, 0.92) * 0.95;
const vec3 FILL_RGB = vec3(0.80, 0.86, 1.00) * 0.35;
const vec3 RIM_RGB = vec3(1.0) * 0.25;
const vec3 SKY = vec3(0.32, 0.34, 0.38);
const vec3 GROUND = vec3(0.18, 0.15, 0.13);
"""

SKIN = Material((0.84, 0.64, 0.54), specular=0.10, shininess=20.0, textured=True)

# ICT-FaceKit material names. The eye helper shells are transparent films in the original
# model; drawn opaque they hide the eyes, so they are left out.
ICT_MATERIALS: dict[str, Material] = {
    "M_Face": SKIN,
    "M_BackHead": SKIN,
    # lash cards reach past the lid line: stronger than this, every avatar wears eyeliner
    "M_EyeLashes": Material((0.06, 0.045, 0.04), alpha=0.15, specular=0.0),
    # the cards under the eyes (engines/face/ict.py): a smudge under open eyes, a dark
    # band under shut ones
    "M_EyeLashesLower": Material((0.0, 0.0, 0.0), alpha=0.0),
    "M_Teeth": Material((0.82, 0.79, 0.72), specular=0.25, shininess=40.0),
    "M_GumsTongue": Material((0.50, 0.22, 0.24), specular=0.2, shininess=30.0),
    "M_IrisLeft": Material((0.33, 0.22, 0.13), specular=0.0, kind=KIND_IRIS),
    "M_IrisRight": Material((0.33, 0.22, 0.13), specular=0.0, kind=KIND_IRIS),
    "M_ScleraLeft": Material((0.93, 0.91, 0.88), specular=0.6, shininess=80.0, kind=KIND_SCLERA),
    "M_ScleraRight": Material((0.93, 0.91, 0.88), specular=0.6, shininess=80.0, kind=KIND_SCLERA),
    "M_EyeOcclusion": Material((0.0, 0.0, 0.0), alpha=0.0),
    "M_EyeBlend": Material((0.0, 0.0, 0.0), alpha=0.0),
    "M_LacrimalFluid": Material((0.0, 0.0, 0.0), alpha=0.0),
}


def material_for(name: str) -> Material:
    """The look of a material name; unknown names (e.g. FLAME's 'skin') render as skin."""
    return ICT_MATERIALS.get(name, SKIN)
