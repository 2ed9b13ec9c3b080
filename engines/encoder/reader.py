"""The encoder in the tracker: one face's landmarks → ψ and head rotation, through a
batched network function (in this process, or the server's shared batcher).
"""

from __future__ import annotations

import numpy as np
import torch

from engines.encoder.network import LandmarkEncoder, load_encoder, normalise, select_points


# -- in the tracker ----------------------------------------------------------------------
class EncoderReader:
    """ψ and head rotation of one face from its MediaPipe landmarks, through a batched
    network function: the shipped encoder in this process by default, or a shared
    :class:`engines.inference.batcher.InferenceBatcher` (the server batches sessions)."""

    def __init__(self, expression_names: tuple[str, ...], fn=None,
                 encoder: LandmarkEncoder | None = None) -> None:
        if fn is None:
            encoder = encoder or load_encoder()
            fn = torch_batch_fn(encoder)
        if encoder is not None and encoder.expression_names != tuple(expression_names):
            raise ValueError("the encoder was trained for another face model's expressions")
        self.n_expression = len(expression_names)
        self.fn = fn

    def __call__(self, landmarks: np.ndarray, width: int, height: int
                 ) -> tuple[np.ndarray, np.ndarray]:
        """landmarks (478, >=2) normalised to the frame, as MediaPipe gives them."""
        x = normalise_landmarks(landmarks, width, height)  # (940,)
        out = np.asarray(self.fn(x[None]), np.float64).reshape(-1)  # (E + 3,)
        return out[: self.n_expression], out[self.n_expression :]


def normalise_landmarks(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """MediaPipe's (478, >=2) normalised landmarks → the encoder's input (940,)."""
    px = select_points(landmarks) * np.array([width, height], np.float32)
    return normalise(torch.from_numpy(px[None].astype(np.float32)))[0].numpy()


def torch_batch_fn(encoder: LandmarkEncoder):
    """The encoder as a batched numpy function (B, 940) -> (B, E + 3)."""
    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return encoder(torch.as_tensor(x, dtype=torch.float32)).numpy()
    return run
