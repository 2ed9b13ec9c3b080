"""Make ``engines/face/data/mediapipe_to_ict.npz``: where MediaPipe's 468 face-mesh landmarks
lie on the ICT-FaceKit head (see engines/face/correspondence.py for the method).

    python scripts/make_landmark_correspondence.py
"""

from __future__ import annotations

import json

from engines.face.correspondence import (
    ICT_FILE,
    build_ict_correspondence,
    canonical_face_vertices,
    save_correspondence,
)
from engines.face.ict import ICTFaceModel


def main() -> None:
    model = ICTFaceModel()
    corr, stats = build_ict_correspondence(
        model.neutral.numpy(), model.topology, canonical_face_vertices()
    )
    save_correspondence(corr)
    print(json.dumps(stats, indent=2))
    print(f"wrote {ICT_FILE}")


if __name__ == "__main__":
    main()
