"""Render a GLB with three.js (GLTFLoader) in headless Chromium, from a product camera.

A helper for tests, not a test file. The page is ``client_web/viewer/`` (its three.js is
installed by ``make viewer``; nothing is downloaded here). A threaded HTTP server on
127.0.0.1 serves that folder and the GLB; Chromium renders through SwiftShader's WebGL2
and the canvas comes back as pixels. Run inside a private network namespace (the
callers are ``netns`` tests).

Camera mapping: the product's :class:`~engines.render.camera.PerspectiveCamera` and
three's are the same pinhole (OpenGL: y up, looking down -z, vertical fov in degrees,
symmetric frustum, aspect = width / height), so fov, eye, target, up, near and far carry
over as they are, positions scaled from model units to the GLB's metres. Both images are
returned with row 0 at the top.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import io
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np
from chromium import CHROMEDRIVER, CHROMIUM, chrome
from PIL import Image

from engines.render.camera import PerspectiveCamera

REPO = Path(__file__).resolve().parents[1]
VIEWER = REPO / "client_web" / "viewer"
THREE_MODULE = VIEWER / "node_modules" / "three" / "build" / "three.module.js"
MAKE_TARGET = "make viewer"  # (also run by `make test-system`, hence `make test`)
GLB_PATH = "/avatar.glb"
RENDER_TIMEOUT_S = 60.0

# WebGL2 on the CPU: ANGLE on SwiftShader (Vulkan). Chromium falls back to it by itself on a
# machine without a GPU today, but only while that fallback lasts; these flags ask for it.
WEBGL_FLAGS = ("--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader")

WEBGL_INFO_JS = """
const gl = document.createElement('canvas').getContext('webgl2');
if (!gl) return null;
const ext = gl.getExtension('WEBGL_debug_renderer_info');
return ext ? gl.getParameter(ext.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
"""
STATE_JS = "return {done: window.viewerDone === true, error: window.viewerError || null};"
CANVAS_JS = "return document.querySelector('canvas').toDataURL('image/png');"


def viewer_missing() -> str | None:
    """Why the viewer cannot run here (a skip reason), or None when it can."""
    if not THREE_MODULE.is_file():
        return (
            f"three.js is not installed in {VIEWER.relative_to(REPO)}: run `{MAKE_TARGET}` "
            "(part of `make test-system`)"
        )
    for exe in (CHROMIUM, CHROMEDRIVER):
        if not Path(exe).is_file():
            return f"{exe} missing: run `make test-system` (apt chromium chromium-driver)"
    return None


def hex_colour(rgb: tuple[float, float, float]) -> str:
    """An sRGB colour in [0, 1] as 'rrggbb'."""
    return "".join(f"{round(255 * min(max(c, 0.0), 1.0)):02x}" for c in rgb)


def camera_query(camera: PerspectiveCamera, units_in_metres: float = 0.01) -> dict[str, str]:
    """The viewer's query parameters for a product camera (positions into metres)."""

    def vec(v: tuple[float, float, float], scale: float) -> str:
        return ",".join(f"{scale * c:.9g}" for c in v)

    s = units_in_metres
    return {
        "fov": f"{camera.fov_y_deg:.9g}",
        "eye": vec(camera.eye, s),
        "target": vec(camera.target, s),
        "up": vec(camera.up, 1.0),  # a direction: not scaled
        "near": f"{camera.near * s:.9g}",
        "far": f"{camera.far * s:.9g}",
    }


class _Handler(http.server.SimpleHTTPRequestHandler):
    """The viewer folder, plus the GLB from memory at GLB_PATH."""

    extensions_map = {  # noqa: RUF012 (the base class's attribute)
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".html": "text/html",
        ".glb": "model/gltf-binary",
    }

    def __init__(self, *args, glb_box: list[bytes], **kwargs) -> None:
        self.glb_box = glb_box
        super().__init__(*args, directory=str(VIEWER), **kwargs)

    def do_GET(self) -> None:
        if urllib.parse.urlsplit(self.path).path == GLB_PATH:
            body = self.glb_box[0]
            self.send_response(200)
            self.send_header("Content-Type", "model/gltf-binary")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet


class ThreeJsViewer:
    """One loopback server and one headless Chromium, for any number of renders."""

    def __init__(self) -> None:
        reason = viewer_missing()
        if reason:
            raise FileNotFoundError(reason)
        self._glb: list[bytes] = [b""]
        handler = functools.partial(_Handler, glb_box=self._glb)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self._profile = tempfile.TemporaryDirectory(prefix="threejs-view-")
        try:
            self.driver = _chrome(Path(self._profile.name))
        except Exception:
            self._stop_server()
            raise
        self.driver.get(f"http://127.0.0.1:{self.port}/index.html?nothing")
        self.webgl = self.driver.execute_script(WEBGL_INFO_JS)
        if not self.webgl:
            self.close()
            raise RuntimeError(f"no WebGL2 in headless Chromium with {' '.join(WEBGL_FLAGS)}")

    def render(
        self,
        glb: bytes,
        camera: PerspectiveCamera,
        size: int = 512,
        background: tuple[float, float, float] = (0.42, 0.45, 0.50),
        units_in_metres: float = 0.01,
    ) -> np.ndarray:
        """The GLB seen from ``camera`` (model units; the GLB in metres): (size, size, 3)."""
        self._glb[0] = glb
        query = {
            "glb": f"{GLB_PATH}?n={time.monotonic_ns()}",  # no cached GLB between renders
            "w": str(size),
            "h": str(size),
            "bg": hex_colour(background),
            **camera_query(camera, units_in_metres),
        }
        url = f"http://127.0.0.1:{self.port}/index.html?{urllib.parse.urlencode(query)}"
        self.driver.get(url)
        deadline = time.monotonic() + RENDER_TIMEOUT_S
        state = self.driver.execute_script(STATE_JS)
        while not (state["done"] or state["error"]):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"three.js viewer did not finish in {RENDER_TIMEOUT_S:.0f} s;"
                    f" browser log:\n{self.browser_log()}"
                )
            time.sleep(0.1)
            state = self.driver.execute_script(STATE_JS)
        if state["error"]:
            raise RuntimeError(f"three.js viewer: {state['error']}\n{self.browser_log()}")
        url = self.driver.execute_script(CANVAS_JS)
        png = base64.b64decode(url.split(",", 1)[1])
        img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        if img.shape != (size, size, 3):
            raise RuntimeError(f"the canvas is {img.shape[1]}x{img.shape[0]}, not {size}x{size}")
        return img

    def browser_log(self) -> str:
        try:
            return "\n".join(f"{e['level']} {e['message']}" for e in self.driver.get_log("browser"))
        except Exception as exc:  # a diagnostic only
            return f"(no browser log: {exc})"

    def _stop_server(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._profile.cleanup()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.driver.quit()
        self._stop_server()

    def __enter__(self) -> ThreeJsViewer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def render_glb(
    glb: bytes,
    camera: PerspectiveCamera,
    size: int,
    background: tuple[float, float, float],
) -> np.ndarray:
    """One three.js render (H, W, 3) uint8 of a GLB (metres) from a product camera (cm)."""
    with ThreeJsViewer() as viewer:
        return viewer.render(glb, camera, size, background)


def _chrome(profile: Path):
    return chrome((
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--force-device-scale-factor=1",
        "--window-size=800,800",
        f"--user-data-dir={profile}",
        *WEBGL_FLAGS,
    ))
