"""Reading DECA's and MICA's checkpoints: tensors only, and errors that name the file.

Both are ``torch.save`` dicts of state dicts (``deca_model.tar``: ``E_flame``, ``E_detail``,
``D_detail``; ``mica.tar``: ``arcface``, ``flameModel``). They are read with
``weights_only=True``, so a file that names any code is refused instead of run.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from engines.files.registered import RegisteredFile


class CheckpointError(ValueError):
    """A checkpoint is unreadable or not the network it should hold; says which and how."""


def read_checkpoint(file: Path, spec: RegisteredFile, sections: tuple[str, ...]) -> dict:
    """The checkpoint's dict, with each of ``sections`` present and a state dict."""
    try:
        data = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, not a torch file, a pickle naming code
        raise CheckpointError(
            f"{file}: cannot read it as the {spec.what} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]}); the file may be truncated or another file. "
            f"Fix: {spec.how_to_get}"
        ) from exc
    missing = [s for s in sections if not isinstance(data, Mapping) or s not in data]
    if missing:
        found = sorted(map(str, data)) if isinstance(data, Mapping) else type(data).__name__
        raise CheckpointError(
            f"{file}: not the {spec.what}: no {', '.join(map(repr, missing))} in it "
            f"(found {found}). Fix: {spec.how_to_get}"
        )
    return dict(data)


def load_weights(
    module: nn.Module, state: Mapping[str, torch.Tensor], file: Path, spec: RegisteredFile,
    section: str, prefix: str = "",
) -> None:
    """Load ``state`` (keys under ``prefix``) into ``module``: every key of the module must
    be there with its shape; keys outside ``prefix`` are other networks and ignored."""
    picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    wanted = module.state_dict()
    missing = [k for k in wanted if k not in picked]
    unexpected = [k for k in picked if k not in wanted]
    wrong = [
        f"{prefix}{k} {tuple(picked[k].shape)} (expected {tuple(v.shape)})"
        for k, v in wanted.items() if k in picked and picked[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing, e.g. {prefix}{missing[0]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected, e.g. {prefix}{unexpected[0]}")
    if wrong:
        problems.append(f"{len(wrong)} of another shape, e.g. {wrong[0]}")
    if problems:
        raise CheckpointError(
            f"{file}: {section!r} is not the network this version reads "
            f"({'; '.join(problems)}). Fix: {spec.how_to_get}"
        )
    module.load_state_dict(picked)
