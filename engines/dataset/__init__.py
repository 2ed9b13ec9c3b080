"""VN3DFace-style datasets: the input photos (photos.py), building them (build.py) and
reading them back (loader.py)."""
