"""Avatars: everything an avatar is and how it is made. builder.py (photo -> avatar),
identity_fit.py (shape β from landmarks, MICA's role), texture_unwrap.py (UV texture
from the photo, DECA's role; texture_blend.py keeps background out and fills seamlessly),
eye_colour.py (the iris colour), colour.py (CIELAB), hair/ (strand styles, scalp,
alignment, colour, export), restyle.py (hair try-on), files.py (folder, zip), glb.py
(the GLB for viewers), store.py (the avatar store), catalogue.py (every target a user
can pick, under one id scheme)."""
