"""Plain Wavefront OBJ meshes: vertices and triangles, no materials."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Write vertices (V, 3) and 0-based triangles (F, 3) as an OBJ file."""
    with open(path, "w") as f:
        np.savetxt(f, vertices, fmt="v %.5f %.5f %.5f")
        np.savetxt(f, faces + 1, fmt="f %d %d %d")
