"""Live WebRTC service (aiortc media, websockets signalling): lands with the service issue.

Until then `vn3d demo` is the main job; see docs/ARCHITECTURE.md for where it plugs in.
"""
