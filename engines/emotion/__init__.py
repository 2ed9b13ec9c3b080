"""Emotions: FACS records (facs.py), the ERM (six intensities -> ψ + θ, erm.py), the
detector (ψ -> 7 classes) and steady label, the sliders API and live emotion mode
(models.py), records from labelled photos (photo_records.py)."""
