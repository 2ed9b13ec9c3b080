"""An avatar from one portrait: identity shape, texture and strand hair, stage by stage.

``AvatarBuilder.build`` reads top to bottom: landmarks (MediaPipe, still-image mode) -> shape,
expression and camera (:mod:`avatars.identity_fit`) -> the photo's exposure, restored when
the eyes say it is too dark (:mod:`avatars.exposure`) -> texture
(:mod:`avatars.texture_unwrap`) -> hair colour, style and alignment (:mod:`avatars.hair.styles`).
The avatar keeps β with a neutral expression as the target; the photo's own expression
and camera stay in its parameters for re-rendering the photo (quality benchmark).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from PIL import Image

from avatars.exposure import exposed
from avatars.eye_colour import EYE_OPENINGS, iris_colour
from avatars.face_finder import find_face
from avatars.hair.align import align_to_head, anchor_aligned
from avatars.hair.choice import depth_buffer, in_front, measure_hair
from avatars.hair.photo import choose_style, hair_colour, head_box
from avatars.hair.scalp import skin_faces
from avatars.hair.strands import Hairstyle
from avatars.hair.styles import STYLE_TRAITS, list_styles, load_style
from avatars.identity_fit import FitConfig, LandmarkFitter, PhotoFit
from avatars.texture_unwrap import unwrap_texture
from engines.face.correspondence import load_ict_correspondence
from engines.face.model import FaceModel
from engines.render.hair import DEFAULT_COLOUR
from engines.retarget.target import Target
from engines.tracking.landmarkers import DEFAULT_LANDMARKER
from engines.tracking.tracker import FaceTracker, TrackerConfig

STAGES = ("landmarks", "shape", "texture", "hair")
BALD_DELTA_E = 20.0  # see bare_scalp
BALD_LIGHTER_L = 10.0
SILHOUETTE_SIDE = 160  # px: hair silhouettes are compared at this size
EYE_MARGIN = 0.3  # of an eye's width: the band over each eye left out of the texture
# MediaPipe face-mesh rings: the mouth's inner lip line and the two eye openings
MOUTH_OPENING = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14,
                 87, 178, 88, 95]  # fmt: skip


class AvatarError(ValueError):
    """The photo cannot make an avatar (no face, unreadable, ...); the message says why."""


@dataclass
class AvatarConfig:
    texture_size: int = 1024
    hair: str = "auto"  # "auto" (chosen by silhouette), a style name, or "none"
    fit: FitConfig = field(default_factory=FitConfig)
    landmarker: str = DEFAULT_LANDMARKER  # which runtime reads the photo's landmarks


@dataclass
class Avatar:
    """Everything an avatar is; files and the store read and write exactly this."""

    name: str
    model: str  # the face model's name ("ict")
    shape: np.ndarray  # (n_shape,) float32 identity β
    texture: np.ndarray  # (S, k*S, 3) uint8 UV texture, k UDIM tiles
    hair: Hairstyle | None  # strands aligned to this head (32, 32, 100, 3), or none
    hair_rgb: tuple[float, float, float]  # sRGB in [0, 1]
    source_sha256: str  # of the photo's bytes
    photo: PhotoFit  # the photo's expression and camera
    iris_rgb: tuple[float, float, float] | None = None  # sRGB in [0, 1]; None: not seen
    timings_ms: dict[str, float] = field(default_factory=dict)

    def target(self) -> Target:
        """This avatar as a retargeting target (its identity, texture and hair)."""
        hair = None if self.hair is None else self.hair.positions
        return Target(
            self.name, torch.from_numpy(self.shape[None].copy()), self.texture, hair,
            self.hair_rgb, self.iris_rgb,
        )


@dataclass(frozen=True)
class PhotoLimits:
    """What an uploaded photo may be."""

    max_bytes: int = 15 * 1024 * 1024
    max_pixels: int = 40_000_000  # decoded width * height
    types: tuple[str, ...] = ("JPEG", "PNG", "WEBP")


def decode_photo(data: bytes, limits: PhotoLimits | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB from encoded image bytes within ``limits``; AvatarError when
    too big, of another type or unreadable. The size is read from the header first, so
    a small file that decodes to a huge image is refused before it is decoded."""
    limits = limits or PhotoLimits()
    if len(data) > limits.max_bytes:
        raise AvatarError(f"the photo is larger than {limits.max_bytes // (1024 * 1024)} MB")
    try:
        with Image.open(io.BytesIO(data)) as header:
            kind, (w, h) = header.format, header.size
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise AvatarError("the photo could not be read (use a JPEG, PNG or WebP image)") from exc
    if kind not in limits.types:
        raise AvatarError(f"photos must be {', '.join(limits.types)}; got {kind}")
    if w * h > limits.max_pixels:
        raise AvatarError(f"the photo has {w}x{h} pixels; at most {limits.max_pixels} allowed")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise AvatarError("the photo could not be decoded (use a JPEG, PNG or WebP image)")
    return np.ascontiguousarray(img[:, :, ::-1])


class AvatarBuilder:
    """Holds the models a build needs (tracker, correspondence, renderer) across builds."""

    def __init__(self, model: FaceModel, config: AvatarConfig | None = None) -> None:
        self.config = config or AvatarConfig()
        self.model = model
        self.fitter = LandmarkFitter(model, load_ict_correspondence(), self.config.fit)
        self._tracker: FaceTracker | None = None

    def landmarks(self, image: np.ndarray) -> tuple[np.ndarray, int]:
        """Pixel landmarks (478, 2) of the largest face and the number of faces."""
        if self._tracker is None:
            self._tracker = FaceTracker(
                self.model.expression_names,
                TrackerConfig(video=False, smoothing=None, landmarker=self.config.landmarker),
            )
        if (face := find_face(self._tracker, image)) is None:
            raise AvatarError("no face found in the photo: use a frontal portrait")
        return face

    def build(
        self,
        image: np.ndarray,
        name: str,
        source_sha256: str,
        progress: Callable[[str], None] | None = None,
    ) -> Avatar:
        """An avatar from an RGB photo (H, W, 3) uint8."""
        model = self.model
        if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 32:
            raise AvatarError(
                f"the photo must be an RGB image of at least 32x32; got {image.shape}"
            )
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def stage(label: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[label] = 1000 * (now - clock)
            clock = now
            if progress:
                progress(label)

        lms, _ = self.landmarks(image)
        stage("landmarks")
        h, w = image.shape[:2]
        fit = self.fitter.fit([(lms, w, h)])[0]
        shape = torch.from_numpy(fit.shape[None].copy())
        with torch.no_grad():
            identity = model.prepare_identity(shape)  # (1, V, 3)
            posed = model.forward_prepared(
                identity, torch.from_numpy(fit.expression[None].copy()), torch.zeros(1, 6)
            )[0].numpy()
        stage("shape")

        image, _ = exposed(image, lms)  # brightened when the eyes say it is under-exposed
        texture, hair, rgb = self.appearance(image, lms, fit, identity[0].numpy(), posed, stage)
        iris = iris_colour(image, lms)
        return Avatar(
            name, model.name, fit.shape, texture, hair, rgb or DEFAULT_COLOUR,
            source_sha256, fit, iris, timings,
        )

    def appearance(
        self,
        image: np.ndarray,
        lms: np.ndarray,
        fit: PhotoFit,
        head: np.ndarray,  # (V, 3) the identity's neutral vertices
        posed: np.ndarray,  # (V, 3) with the photo's expression, no pose
        stage: Callable[[str], None] | None = None,
    ) -> tuple[np.ndarray, Hairstyle | None, tuple[float, float, float] | None]:
        """(UV texture, hair or None, hair sRGB or None) from a fitted photo: hair and the
        mouth/eye openings stay out of the texture; the hair per ``config.hair``."""
        cfg, model = self.config, self.model
        h, w = image.shape[:2]
        rgb, hair_mask = hair_colour(image, lms) if cfg.hair != "none" else (None, None)
        exclude = openings_mask(lms, (h, w))
        if hair_mask is not None:
            exclude |= hair_mask
        rot = cv2.Rodrigues(fit.rotation)[0]
        unwrap = unwrap_texture(
            image, posed @ rot.T + fit.translation, fit.focal_px, model.topology,
            model.neutral.numpy(), cfg.texture_size, exclude,
        )
        if rgb is not None and bare_scalp(rgb, unwrap.skin_rgb):
            rgb = None
        if stage:
            stage("texture")
        hair = None
        if cfg.hair == "auto":  # no hair colour found: the photo shows (almost) no hair
            hair = self.choose_hair(head, fit, hair_mask) if rgb is not None else None
        elif cfg.hair != "none":
            hair = align_to_head(load_style(cfg.hair), head, model.topology)
        if stage:
            stage("hair")
        return unwrap.texture, hair, rgb

    def choose_hair(
        self, head: np.ndarray, fit: PhotoFit, hair_mask: np.ndarray | None
    ) -> Hairstyle | None:
        """The style for the photo's hair region (H, W) bool: the one whose traits (length
        class, tied, fringe) agree best with those the region shows, then whose visible
        silhouette over the photo best matches it (IoU); None when the photo shows no
        hair. Silhouettes come from the anchor-aligned strands projected with the photo's
        camera, less the points the head (V, 3) hides; only the winner gets the full
        alignment."""
        if hair_mask is None or hair_mask.sum() == 0:
            return None
        skin = head[np.unique(skin_faces(self.model.topology))]
        x0, y0, x1, y1 = head_box((fit.height, fit.width), fit.landmarks_px)  # the head's part
        k = min(1.0, SILHOUETTE_SIDE / max(x1 - x0, y1 - y0))
        size = (max(8, round((x1 - x0) * k)), max(8, round((y1 - y0) * k)))

        def pixels_of(points: np.ndarray) -> np.ndarray:  # (N, 3) -> (N, 2) in ``size``
            return (fit.project(points) - (x0, y0)) * k

        crop = hair_mask[y0:y1, x0:x1].astype(np.uint8)
        photo = cv2.resize(crop, size, interpolation=cv2.INTER_AREA) > 0
        rot, t = cv2.Rodrigues(fit.rotation)[0], fit.translation  # model -> camera
        buffer = depth_buffer(pixels_of(head), head @ rot[2] + t[2], size)
        landmarks = (fit.landmarks_px - (x0, y0)) * k
        traits = measure_hair(photo, landmarks, np.isfinite(buffer)).traits()
        # the traits rank first (choose_style): only the styles that agree best need a
        # silhouette
        agree = {n: traits.agreement(STYLE_TRAITS[n]) for n in list_styles()}
        silhouettes = {}
        for name in (n for n, a in agree.items() if a == max(agree.values())):
            style = load_style(name)
            strands = anchor_aligned(style, skin)[style.active.reshape(-1)].reshape(-1, 3)
            pixels = pixels_of(strands)
            shown = in_front(pixels, strands @ rot[2] + t[2], buffer)
            silhouettes[name] = splat_mask(pixels[shown], size)
        best = choose_style(photo, silhouettes, traits)
        return align_to_head(load_style(best), head, self.model.topology)

    def close(self) -> None:
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None


def bare_scalp(hair_rgb: tuple[float, float, float], skin_rgb: np.ndarray) -> bool:
    """Whether what reads as hair (sRGB in [0, 1]) is a bare or shaved scalp: skin-like
    (within ``BALD_DELTA_E`` in CIELAB of the skin, sRGB 0-255) and brighter than the
    face's skin by ``BALD_LIGHTER_L`` (a scalp shines; hair is darker than its skin, even
    very short dark hair on dark skin). On the London Set: the two shaved heads only."""
    both = np.array([[np.asarray(hair_rgb) * 255, skin_rgb]], np.float32) / 255.0
    hair, skin = cv2.cvtColor(both, cv2.COLOR_RGB2LAB)[0]
    close = float(np.linalg.norm(hair - skin)) < BALD_DELTA_E
    return close and float(hair[0] - skin[0]) > BALD_LIGHTER_L


def openings_mask(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the mouth and eye openings, whose pixels are not skin, and over each
    eye a band ``EYE_MARGIN`` of its width tall (the lash line and the upper lid's rim:
    the head's upper lids cover the eyes with these texels when they shut, and the
    photo's lash line painted mid-lid reads as a ghost of an open eye)."""
    rings = [np.round(landmarks[ring]).astype(np.int32) for ring in (MOUTH_OPENING, *EYE_OPENINGS)]
    mask = cv2.dilate(cv2.fillPoly(np.zeros(shape, np.uint8), rings, 1), np.ones((3, 3), np.uint8))
    for eye_ring in rings[1:]:
        r = round(EYE_MARGIN * np.ptp(eye_ring[:, 0]))
        eye = cv2.fillPoly(np.zeros(shape, np.uint8), [eye_ring], 1)
        mask |= cv2.dilate(eye, over_kernel(r), anchor=(r // 2, 0))
    return mask.astype(bool)


def over_kernel(r: int) -> np.ndarray:
    """(r + 1, 2 (r // 2) + 1) uint8: the lower half of an ellipse r tall and r wide.
    Anchored at its top middle, a dilation with it grows a mask upwards by r px, rounded
    (r / 2 px to each side at the mask's own height, none at the top)."""
    a = r // 2
    j, i = np.mgrid[0 : r + 1, -a : a + 1]
    return (((i / max(a, 1)) ** 2 + (j / max(r, 1)) ** 2) <= 1.0).astype(np.uint8)


def splat_mask(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool covered by points at pixels (N, 2), closed into a solid silhouette."""
    w, h = size
    mask = np.zeros((h, w), np.uint8)
    xi, yi = np.floor(pixels[:, 0]).astype(int), np.floor(pixels[:, 1]).astype(int)
    ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    mask[yi[ok], xi[ok]] = 1
    return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8)).astype(bool)
