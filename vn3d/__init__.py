"""vn3d-retarget: command line, configuration and set-up checks."""
