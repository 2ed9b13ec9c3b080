"""``vn3d camera``: the avatar as a system camera (pyvirtualcam), rendered here (local.py)
or by a ``vn3d serve`` that this machine calls over WebRTC (remote.py)."""
