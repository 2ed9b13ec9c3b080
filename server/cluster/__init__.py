"""Cluster mode: a gateway (``vn3d serve --cluster ADDRESS``) places each call on a session
host, a Ray actor on a worker node (``vn3d worker``); see docs/DEPLOYMENT.md."""

SLOT = "vn3d_slot"  # the Ray resource a worker node offers per call it can host
