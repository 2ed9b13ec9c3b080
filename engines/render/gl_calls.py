"""The renderer's heavy GL calls made through ctypes, so the interpreter lock is free
while the driver works.

moderngl's calls hold Python's GIL for their whole length. On Mesa llvmpipe a draw call
shades the vertices on the calling thread (3-8 ms for the head, more for hair) and the
readback waits for the rasteriser threads (~13 ms at 512²): time in which the server's
event loop, VP8 coding and the other sessions' trackers could not run. ctypes releases
the GIL around every foreign call, so the same two GL calls made through it let them.
Objects, state and uniforms stay moderngl's; only the draw and the read go through here,
on the objects' GL names (``.glo``), in the context that is current on this thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Callable

import moderngl
import numpy as np

GL_UNSIGNED_BYTE = 0x1401
GL_UNSIGNED_INT = 0x1405
GL_RGB = 0x1907
GL_RGBA = 0x1908
GL_PACK_ALIGNMENT = 0x0D05
GL_READ_FRAMEBUFFER = 0x8CA8

_SIGNATURES: dict[str, tuple[type | None, ...]] = {  # name: (restype, *argtypes)
    "glUseProgram": (None, ctypes.c_uint),
    "glBindVertexArray": (None, ctypes.c_uint),
    "glDrawElements": (None, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p),
    "glBindFramebuffer": (None, ctypes.c_uint, ctypes.c_uint),
    "glPixelStorei": (None, ctypes.c_uint, ctypes.c_int),
    "glReadPixels": (None, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p),
}
_functions: dict[str, Callable] | None = None
_lock = threading.Lock()


def _load() -> dict[str, Callable]:
    """The GL entry points, from EGL (glvnd's dispatch: they act on whichever context is
    current on the calling thread, Mesa's or NVIDIA's)."""
    global _functions
    with _lock:
        if _functions is None:
            name = ctypes.util.find_library("EGL") or "libEGL.so.1"
            egl = ctypes.CDLL(name)
            egl.eglGetProcAddress.restype = ctypes.c_void_p
            egl.eglGetProcAddress.argtypes = [ctypes.c_char_p]
            found = {}
            for fn, (restype, *argtypes) in _SIGNATURES.items():
                address = egl.eglGetProcAddress(fn.encode())
                if not address:
                    raise RuntimeError(f"EGL has no {fn}: is this an OpenGL 3.3 driver?")
                found[fn] = ctypes.CFUNCTYPE(restype, *argtypes)(address)
            _functions = found
        return _functions


def draw_elements(vao: moderngl.VertexArray, mode: int) -> None:
    """``vao.render(mode)`` for an indexed vertex array with 32-bit indices (every one
    the renderer makes), with the GIL released while the driver draws."""
    gl = _load()
    gl["glUseProgram"](vao.program.glo)
    gl["glBindVertexArray"](vao.glo)
    gl["glDrawElements"](mode, vao.vertices, GL_UNSIGNED_INT, None)
    gl["glBindVertexArray"](0)


def read_pixels(fbo: moderngl.Framebuffer, out: np.ndarray) -> np.ndarray:
    """Read ``fbo``'s colour into ``out`` (H, W, 3 or 4) uint8, C-contiguous, rows bottom
    first as GL stores them; waits for the frame with the GIL released."""
    height, width, comps = out.shape
    if out.dtype != np.uint8 or not out.flags.c_contiguous or comps not in (3, 4):
        raise ValueError(f"need a C-contiguous (H, W, 3|4) uint8 array; got {out.shape}")
    if (width, height) != tuple(fbo.size):
        raise ValueError(f"buffer is {width}x{height}, framebuffer {fbo.size}")
    gl = _load()
    gl["glBindFramebuffer"](GL_READ_FRAMEBUFFER, fbo.glo)
    gl["glPixelStorei"](GL_PACK_ALIGNMENT, 1)
    gl["glReadPixels"](0, 0, width, height, GL_RGB if comps == 3 else GL_RGBA,
                       GL_UNSIGNED_BYTE, out.ctypes.data)  # fmt: skip
    return out
