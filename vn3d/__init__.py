"""vn3d-retarget: the command line (cli.py, commands/) and set-up checks (doctor.py)."""
