"""Photo -> FLAME with the registered checkpoints: DECA's coarse encoder (deca.py on
resnet.py), MICA (mica.py on iresnet.py), reading checkpoints (checkpoints.py), the
per-photo pipeline (photo_to_flame.py) and its contact sheet (sheet.py)."""
