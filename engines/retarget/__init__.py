"""Retargeting: a ``Target`` (target.py), the per-frame ``Retargeter`` with its modes
(retargeter.py), tracking overlapped with rendering (overlapped.py), offline clips
(clip.py) and the demo clip (demo.py)."""
