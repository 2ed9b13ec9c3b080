"""Hairstyle try-on: another style (aligned to the same head) or hair colour for a target
or an avatar, the rest unchanged."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import torch

from avatars.builder import Avatar
from avatars.hair.align import align_to_head
from avatars.hair.strands import Hairstyle
from avatars.hair.styles import list_styles, load_style
from engines.face.model import FaceModel
from engines.retarget.target import Target

NO_HAIR = "none"
COLOUR = re.compile(r"#([0-9a-fA-F]{6})")


def parse_colour(text: str) -> tuple[float, float, float]:
    """``#RRGGBB`` as sRGB in [0, 1]; ValueError otherwise."""
    match = COLOUR.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"a colour is #RRGGBB, e.g. #3b2a20; got {str(text)[:20]!r}")
    value = int(match[1], 16)
    return tuple((value >> shift & 255) / 255.0 for shift in (16, 8, 0))


def hex_colour(rgb: tuple[float, float, float]) -> str:
    """sRGB in [0, 1] as ``#rrggbb`` (the inverse of :func:`parse_colour`)."""
    return "#" + "".join(f"{round(255 * c):02x}" for c in rgb)


def styled_hair(style: str, shape: np.ndarray, model: FaceModel) -> Hairstyle | None:
    """A named style (or ``none``) aligned to the head of identity ``shape`` (n,)."""
    if style == NO_HAIR:
        return None
    if style not in list_styles():
        raise ValueError(f"unknown hairstyle {style[:40]!r}; one of {', '.join(list_styles())}"
                         f" or {NO_HAIR}")
    with torch.no_grad():
        head = model.prepare_identity(torch.as_tensor(shape, dtype=torch.float32)[None])[0]
    return align_to_head(load_style(style), head.numpy(), model.topology)


def restyle_avatar(avatar: Avatar, model: FaceModel, style: str | None = None,
                   colour: tuple[float, float, float] | None = None) -> Avatar:
    """The avatar with ``style`` (a name or ``none``; None: keep) and ``colour``."""
    hair = avatar.hair if style is None else styled_hair(style, avatar.shape, model)
    return replace(avatar, hair=hair, hair_rgb=colour or avatar.hair_rgb)


def restyle_target(target: Target, model: FaceModel, style: str | None = None,
                   colour: tuple[float, float, float] | None = None) -> Target:
    """The target with ``style`` and ``colour`` (as :func:`restyle_avatar`)."""
    hair = target.hair
    if style is not None:
        styled = styled_hair(style, target.shape[0].numpy(), model)
        hair = None if styled is None else styled.positions
    return replace(target, hair=hair, hair_rgb=colour or target.hair_rgb)
