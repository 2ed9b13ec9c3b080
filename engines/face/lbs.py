"""Pure tensor functions for parametric heads, in the manner of smplx's ``lbs.py``.

Every function is batched over a leading ``B`` axis and free of state: the face-model
classes only hold buffers and call these.
"""

from __future__ import annotations

import torch


def blend_shapes(coeffs: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Linear blendshapes: ``sum_k coeffs[b, k] * dirs[k]``.

    coeffs: (B, K); dirs: (K, V, 3)  ->  (B, V, 3)
    """
    return (coeffs @ dirs.reshape(dirs.shape[0], -1)).reshape(-1, *dirs.shape[1:])


def batch_rodrigues(rot_vecs: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Axis-angle to rotation matrices.

    rot_vecs: (N, 3) radians  ->  (N, 3, 3)
    """
    n = rot_vecs.shape[0]
    angle = torch.linalg.norm(rot_vecs + eps, dim=1, keepdim=True)  # (N, 1)
    axis = rot_vecs / angle  # (N, 3)
    cos = torch.cos(angle)[:, :, None]  # (N, 1, 1)
    sin = torch.sin(angle)[:, :, None]
    rx, ry, rz = torch.split(axis, 1, dim=1)  # (N, 1) each
    zeros = torch.zeros((n, 1), dtype=rot_vecs.dtype, device=rot_vecs.device)
    k = torch.cat([zeros, -rz, ry, rz, zeros, -rx, -ry, rx, zeros], dim=1).view(n, 3, 3)
    ident = torch.eye(3, dtype=rot_vecs.dtype, device=rot_vecs.device)[None]
    return ident + sin * k + (1 - cos) * torch.bmm(k, k)


def matrix_to_axis_angle(rot: torch.Tensor) -> torch.Tensor:
    """Rotation matrices to axis-angle, for angles below 180°.

    rot: (N, 3, 3)  ->  (N, 3) radians
    """
    trace = rot[:, 0, 0] + rot[:, 1, 1] + rot[:, 2, 2]
    angle = torch.acos(((trace - 1) / 2).clamp(-1.0, 1.0))  # (N,)
    vee = torch.stack([rot[:, 2, 1] - rot[:, 1, 2], rot[:, 0, 2] - rot[:, 2, 0],
                       rot[:, 1, 0] - rot[:, 0, 1]], 1)  # (N, 3) = 2 sin(angle) axis
    sin = torch.sin(angle)
    factor = torch.where(sin > 1e-6, angle / (2 * sin.clamp(min=1e-6)), 0.5 + angle**2 / 12)
    return vee * factor[:, None]


def transform_mat(rot: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Stack rotations and translations into homogeneous transforms.

    rot: (N, 3, 3); t: (N, 3, 1)  ->  (N, 4, 4)
    """
    top = torch.cat([rot, t], dim=2)  # (N, 3, 4)
    bottom = torch.zeros_like(top[:, :1, :])  # (N, 1, 4)
    bottom[..., 3] = 1.0
    return torch.cat([top, bottom], dim=1)


def vertices2joints(j_regressor: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
    """Joint locations regressed from vertices.

    j_regressor: (J, V); vertices: (B, V, 3)  ->  (B, J, 3)
    """
    return torch.einsum("bvc,jv->bjc", vertices, j_regressor)


def batch_rigid_transform(
    rot_mats: torch.Tensor, joints: torch.Tensor, parents: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Compose a kinematic chain.

    rot_mats: (B, J, 3, 3) local rotations; joints: (B, J, 3) rest joint locations;
    parents: (J,) parent index per joint, -1 (or any value for joint 0) for the root.
    Returns the posed joints (B, J, 3) and the relative transforms (B, J, 4, 4) that
    map a rest-pose point to its posed position for each joint.
    """
    b, j = joints.shape[:2]
    joints = joints.unsqueeze(-1)  # (B, J, 3, 1)
    rel_joints = joints.clone()
    rel_joints[:, 1:] -= joints[:, parents[1:]]
    local = transform_mat(rot_mats.reshape(-1, 3, 3), rel_joints.reshape(-1, 3, 1))
    local = local.reshape(b, j, 4, 4)  # (B, J, 4, 4)
    chain = [local[:, 0]]
    for i in range(1, j):
        chain.append(torch.matmul(chain[int(parents[i])], local[:, i]))
    transforms = torch.stack(chain, dim=1)  # (B, J, 4, 4)
    posed_joints = transforms[:, :, :3, 3]  # (B, J, 3)
    joints_h = torch.cat([joints, torch.zeros_like(joints[:, :, :1])], dim=2)  # (B, J, 4, 1)
    rel = transforms - torch.nn.functional.pad(torch.matmul(transforms, joints_h), [3, 0])
    return posed_joints, rel


def skin_vertices(
    vertices: torch.Tensor, weights: torch.Tensor, transforms: torch.Tensor
) -> torch.Tensor:
    """Linear blend skinning of already-shaped vertices.

    vertices: (B, V, 3); weights: (V, J); transforms: (B, J, 4, 4)  ->  (B, V, 3)
    """
    b = vertices.shape[0]
    t = torch.matmul(weights[None].expand(b, -1, -1), transforms.reshape(b, -1, 16))
    t = t.reshape(b, -1, 4, 4)  # (B, V, 4, 4)
    homo = torch.nn.functional.pad(vertices, [0, 1], value=1.0)  # (B, V, 4)
    return torch.matmul(t, homo.unsqueeze(-1))[:, :, :3, 0]


def pose_feature(rot_mats: torch.Tensor) -> torch.Tensor:
    """Pose-corrective features from the non-root joint rotations (smplx convention).

    rot_mats: (B, J, 3, 3)  ->  (B, (J-1) * 9)
    """
    b = rot_mats.shape[0]
    ident = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device)
    return (rot_mats[:, 1:] - ident).reshape(b, -1)


def lbs(
    betas: torch.Tensor,
    pose: torch.Tensor,
    v_template: torch.Tensor,
    shapedirs: torch.Tensor,
    posedirs: torch.Tensor,
    j_regressor: torch.Tensor,
    parents: torch.Tensor,
    lbs_weights: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shape blendshapes, pose correctives and linear blend skinning (SMPL/FLAME).

    betas: (B, K) shape+expression coefficients; pose: (B, J*3) axis-angle per joint;
    v_template: (V, 3), or (B, V, 3) per item (e.g. identities already applied);
    shapedirs: (K, V, 3); posedirs: (P, V*3) with P = (J-1)*9; j_regressor: (J, V);
    parents: (J,); lbs_weights: (V, J).
    Returns vertices (B, V, 3) and posed joints (B, J, 3).
    """
    b = betas.shape[0]
    template = v_template if v_template.ndim == 3 else v_template[None]  # (B or 1, V, 3)
    v_shaped = template + blend_shapes(betas, shapedirs)  # (B, V, 3)
    joints = vertices2joints(j_regressor, v_shaped)  # (B, J, 3)
    rot_mats = batch_rodrigues(pose.reshape(-1, 3)).reshape(b, -1, 3, 3)  # (B, J, 3, 3)
    pose_offsets = torch.matmul(pose_feature(rot_mats), posedirs).reshape(b, -1, 3)
    v_posed = v_shaped + pose_offsets  # (B, V, 3)
    posed_joints, rel = batch_rigid_transform(rot_mats, joints, parents)
    return skin_vertices(v_posed, lbs_weights, rel), posed_joints


def rotate_about(points: torch.Tensor, rot: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """Rigidly rotate points about a centre.

    points: (B, N, 3); rot: (B, 3, 3); centre: (B, 3) or (3,)  ->  (B, N, 3)
    """
    c = centre.reshape(-1, 1, 3)
    ident = torch.eye(3, dtype=rot.dtype, device=rot.device)
    # p + (R - I)(p - c): exactly p when R is the identity
    return points + torch.matmul(points - c, (rot - ident).transpose(1, 2))


def neck_skinning(points: torch.Tensor, rot: torch.Tensor, pivot: torch.Tensor,
                  weights: torch.Tensor) -> torch.Tensor:
    """Points rotated about a pivot by their weight's share of the motion (one bone, linear
    blend): ``p + w (R - I)(p - c)``, the same as ``p + w (rotate_about(p) - p)``.

    points: (B, N, 3); rot: (B, 3, 3); pivot: (3,); weights: (N,)  ->  (B, N, 3)
    """
    ident = torch.eye(3, dtype=rot.dtype, device=rot.device)
    moved = torch.matmul(points - pivot.reshape(1, 1, 3), (rot - ident).transpose(1, 2))
    return torch.addcmul(points, weights[None, :, None], moved)
