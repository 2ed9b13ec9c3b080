"""Pictures of the default ERM: the seven emotions at intensity 1.0 on the default head,
and happy at 0.25 / 0.5 / 0.75 / 1.0 (matplotlib PNGs in docs/).

    python scripts/erm_figures.py [--out docs]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from engines.emotion.facs import EMOTIONS, LABELS
from engines.emotion.models import default_emotion_models
from engines.face.ict import ICTFaceModel
from engines.render.renderer import MeshRenderer, RenderConfig
from engines.render.skin_texture import plain_skin_texture


def render_emotion(model, renderer, models, values: dict[str, float]):
    psi, theta = models.sliders(values)
    pose = torch.from_numpy(theta)[None].float()
    with torch.no_grad():
        v = model(torch.zeros(1, model.n_shape), torch.from_numpy(psi)[None], pose)[0]
    return renderer.render(v)


def figure(images, titles, path: Path, suptitle: str) -> None:
    fig, axes = plt.subplots(1, len(images), figsize=(2.2 * len(images), 2.6))
    for ax, img, title in zip(axes, images, titles, strict=True):
        ax.imshow(img)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = ICTFaceModel()
    models = default_emotion_models(model.expression_names)
    cfg = RenderConfig(width=288, height=288, samples=4)
    with MeshRenderer(model.topology, cfg, texture=plain_skin_texture(model)) as r:
        seven = [
            render_emotion(model, r, models, {e: 1.0} if e in EMOTIONS else {}) for e in LABELS
        ]
        ramp = [render_emotion(model, r, models, {"happy": i}) for i in (0.25, 0.5, 0.75, 1.0)]
    figure(
        seven,
        list(LABELS),
        out / "erm_emotions.png",
        "Default ERM (trained on FACS records): each emotion at intensity 1.0",
    )
    figure(
        ramp,
        ["happy 0.25", "happy 0.5", "happy 0.75", "happy 1.0"],
        out / "erm_happy_ramp.png",
        "Default ERM: happy at increasing intensity",
    )


if __name__ == "__main__":
    main()
