"""Strand hair: the format (strands.py), the scalp (scalp.py), the style database
(styles.py), alignment to a head (align.py), colour and choice from a photo (photo.py),
OBJ and ribbon export (export.py)."""
