"""Files: the asset folder ($VN3D_ASSETS), the disk cache ($VN3D_CACHE), H.264 writing."""
