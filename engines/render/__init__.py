"""Offscreen rendering with ModernGL (EGL): the head renderer, cameras, per-material
shading, strand hair drawing and the default skin texture."""
