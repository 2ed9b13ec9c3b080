"""The seven basic expressions as hand-set ARKit weights (until the ERM supplies them).

Weights follow the usual FACS reading of each emotion (happiness: cheek raiser + lip
corner puller; sadness: inner brow raiser + lip corner depressor; ...), mapped to ARKit
names; ``_L``/``_R`` pairs are set together.
"""

from __future__ import annotations

BASIC_EXPRESSIONS = ("neutral", "happy", "sad", "afraid", "angry", "surprised", "disgusted")


def _both(**weights: float) -> dict[str, float]:
    """Expand ``name=w`` into ``name_L=w`` and ``name_R=w`` for sided ARKit shapes."""
    return {f"{name}_{side}": w for name, w in weights.items() for side in ("L", "R")}


EXPRESSION_WEIGHTS: dict[str, dict[str, float]] = {
    "neutral": {},
    "happy": _both(
        mouthSmile=0.85, cheekSquint=0.6, eyeSquint=0.35, mouthUpperUp=0.15, mouthDimple=0.2
    )
    | {"jawOpen": 0.12},
    "sad": _both(browInnerUp=0.8, browDown=0.15, mouthFrown=0.75, eyeLookDown=0.25, eyeSquint=0.15)
    | {"mouthShrugLower": 0.45, "mouthRollLower": 0.1},
    "afraid": _both(browInnerUp=0.9, browOuterUp=0.45, eyeWide=0.85, mouthStretch=0.6)
    | {"jawOpen": 0.22},
    "angry": _both(browDown=0.95, eyeSquint=0.45, noseSneer=0.35, mouthPress=0.5, mouthFrown=0.25)
    | {"mouthShrugUpper": 0.2},
    "surprised": _both(browInnerUp=0.9, browOuterUp=0.9, eyeWide=0.8)
    | {"jawOpen": 0.55, "mouthFunnel": 0.2},
    "disgusted": _both(
        noseSneer=0.9,
        mouthUpperUp=0.6,
        browDown=0.5,
        cheekSquint=0.45,
        eyeSquint=0.35,
        mouthFrown=0.3,
    )
    | {"mouthShrugLower": 0.3},
}


def expression_weights(name: str) -> dict[str, float]:
    """ARKit weights of a basic expression; ``ValueError`` names the valid ones."""
    if name not in EXPRESSION_WEIGHTS:
        raise ValueError(f"unknown expression {name!r}; one of {', '.join(BASIC_EXPRESSIONS)}")
    return dict(EXPRESSION_WEIGHTS[name])


def parse_weights(text: str) -> dict[str, float]:
    """Parse ``"jawOpen=0.8,mouthSmile_L=0.6"`` (or a basic expression name) into weights."""
    text = text.strip()
    if not text:
        return {}
    if "=" not in text:
        return expression_weights(text)
    out: dict[str, float] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"bad weight {item!r}: use NAME=NUMBER, e.g. jawOpen=0.8") from None
        if not sep:
            raise ValueError(f"bad weight {item!r}: use NAME=NUMBER, e.g. jawOpen=0.8")
    return out
