"""Face models: the ``FaceModel`` interface (model.py), ICT-FaceKit (ict.py, the open
default), FLAME (flame.py), the pure tensor functions they share (lbs.py), expression
presets, and where MediaPipe's landmarks lie on the ICT mesh (correspondence.py)."""
