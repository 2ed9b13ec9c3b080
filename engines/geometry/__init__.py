"""Mesh geometry shared by fitting, hair and evaluation: rigid alignment, closest points on
a triangle mesh, smooth normals, quads to triangles."""
