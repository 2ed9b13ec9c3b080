"""The head's GLSL programs: the studio light rig applied per fragment or per vertex.

Both programs take the same vertex layout (position and normal per frame; uv, material
and eye direction fixed) and the same uniforms (material colours and gloss, matrices, the
UV texture). Per fragment is exact and what the eyes always use (the iris and the clear
cornea are drawn per pixel, and the cornea discards). Per vertex lights each vertex once
and lets the fragments interpolate its light: on the ICT head a 512² frame's triangles are
a few pixels across, so the frames look the same, and llvmpipe (which shades on the CPU)
saves most of the fragment work. A program whose fragments may ``discard`` loses early
depth rejection in llvmpipe, so the eyes are drawn as their own call after the rest.
"""

from __future__ import annotations

from engines.render.materials import LIGHTS_GLSL

# n, view_dir in view space, unit length; params: specular, shininess, textured, kind
LIGHT_GLSL = LIGHTS_GLSL + """
void light_at(vec3 n, vec3 view_dir, vec4 params, out vec3 light, out vec3 spec) {
    if (dot(n, view_dir) < 0.0) n = -n;
    light = mix(GROUND, SKY, 0.5 + 0.5 * n.y);
    spec = vec3(0.0);
    vec3 dirs[3] = vec3[3](KEY_DIR, FILL_DIR, RIM_DIR);
    vec3 rgbs[3] = vec3[3](KEY_RGB, FILL_RGB, RIM_RGB);
    for (int i = 0; i < 3; ++i) {
        float wrap = 0.25;
        float diff = max((dot(n, dirs[i]) + wrap) / (1.0 + wrap), 0.0);
        light += rgbs[i] * diff;
        vec3 h = normalize(dirs[i] + view_dir);
        float lit = step(0.0, dot(n, dirs[i]));
        spec += rgbs[i] * params.x * pow(max(dot(n, h), 0.0), params.y) * lit;
    }
}
"""

# the base colour of a material: its own, or the UV texture's (UDIM tiles side by side)
BASE_GLSL = """
uniform vec4 u_colour[16];   // linear rgb, alpha
uniform sampler2D u_texture;
uniform bool u_has_texture;
uniform float u_tiles;       // UDIM tiles side by side in the texture (width / height)

vec3 to_linear(vec3 c) { return pow(c, vec3(2.2)); }

vec3 base_colour(int mat, vec4 params, vec2 uv) {
    if (params.z > 0.5 && u_has_texture && uv.x < u_tiles) {
        return to_linear(texture(u_texture, vec2(uv.x / u_tiles, 1.0 - uv.y)).rgb);
    }
    return u_colour[mat].rgb;
}

vec4 to_srgb(vec3 rgb, float alpha) {
    return vec4(pow(clamp(rgb, 0.0, 1.0), vec3(1.0 / 2.2)), alpha);
}
"""

VERTEX_SHADER = """
#version 330
uniform mat4 u_view;
uniform mat4 u_proj;
in vec3 in_pos;
in vec3 in_normal;
in vec2 in_uv;
in float in_mat;
in vec3 in_eye;
out vec3 v_pos;
out vec3 v_normal;
out vec2 v_uv;
flat out int v_mat;
out vec3 v_eye;
void main() {
    vec4 p = u_view * vec4(in_pos, 1.0);
    v_pos = p.xyz;
    v_normal = mat3(u_view) * in_normal;
    v_uv = in_uv;
    v_mat = int(in_mat + 0.5);
    v_eye = in_eye;
    gl_Position = u_proj * p;
}
"""

# the iris and the clear cornea over it, per pixel (eye materials only)
EYE_GLSL = """
uniform float u_iris_cos;    // cos of the iris' angular radius on the eyeball
uniform float u_pupil_cos;

vec3 eye_colour(int kind, vec3 base, vec3 eye) {
    if (kind == 2) {  // sclera: clear over the iris (the cornea)
        if (normalize(eye).z > u_iris_cos) discard;
    }
    if (kind == 1) {  // iris sphere: pupil, iris with a darker rim, white beyond
        vec3 d = normalize(eye);
        if (d.z < 0.0) {  // the back of the iris shell, seen through the pupil hole
            return vec3(0.0);
        } else if (d.z < u_iris_cos) {
            return to_linear(vec3(0.93, 0.91, 0.88));
        }
        float t = (d.z - u_iris_cos) / (1.0 - u_iris_cos);
        float ang = atan(d.y, d.x);
        float streak = 0.85 + 0.15 * sin(ang * 23.0) * sin(ang * 7.0 + 1.3);
        vec3 iris = base * streak * mix(0.45, 1.25, smoothstep(0.0, 0.35, t));
        return mix(iris, vec3(0.01), smoothstep(u_pupil_cos - 0.004, u_pupil_cos + 0.004, d.z));
    }
    return base;
}
"""


def fragment_shader(eyes: bool) -> str:
    """The per-fragment program; ``eyes``: with the iris and cornea (whose ``discard``
    turns llvmpipe's early depth test off for every triangle the program draws)."""
    return """
#version 330
uniform vec4 u_params[16];   // specular, shininess, textured, kind
uniform bool u_ortho;
in vec3 v_pos;
in vec3 v_normal;
in vec2 v_uv;
flat in int v_mat;
in vec3 v_eye;
out vec4 f_colour;
""" + LIGHT_GLSL + BASE_GLSL + (EYE_GLSL if eyes else "") + """
void main() {
    vec4 params = u_params[v_mat];
    vec3 base = base_colour(v_mat, params, v_uv);
""" + ("    base = eye_colour(int(params.w + 0.5), base, v_eye);\n" if eyes else "") + """
    vec3 view_dir = u_ortho ? vec3(0.0, 0.0, 1.0) : normalize(-v_pos);
    vec3 light, spec;
    light_at(normalize(v_normal), view_dir, params, light, spec);
    f_colour = to_srgb(base * light + spec, u_colour[v_mat].a);
}
"""


# per vertex: light and highlight computed here, the texture still sampled per fragment
VERTEX_LIT_SHADER = """
#version 330
uniform mat4 u_view;
uniform mat4 u_proj;
uniform vec4 u_params[16];
uniform bool u_ortho;
in vec3 in_pos;
in vec3 in_normal;
in vec2 in_uv;
in float in_mat;
out vec2 v_uv;
flat out int v_mat;
out vec3 v_light;
out vec3 v_spec;
""" + LIGHT_GLSL + """
void main() {
    vec4 p = u_view * vec4(in_pos, 1.0);
    v_uv = in_uv;
    v_mat = int(in_mat + 0.5);
    vec3 view_dir = u_ortho ? vec3(0.0, 0.0, 1.0) : normalize(-p.xyz);
    light_at(normalize(mat3(u_view) * in_normal), view_dir, u_params[v_mat], v_light, v_spec);
    gl_Position = u_proj * p;
}
"""

FRAGMENT_LIT_SHADER = """
#version 330
uniform vec4 u_params[16];
in vec2 v_uv;
flat in int v_mat;
in vec3 v_light;
in vec3 v_spec;
out vec4 f_colour;
""" + BASE_GLSL + """
void main() {
    vec3 base = base_colour(v_mat, u_params[v_mat], v_uv);
    f_colour = to_srgb(base * v_light + v_spec, u_colour[v_mat].a);
}
"""
