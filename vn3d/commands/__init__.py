"""The ``vn3d`` subcommands, one module per group; each has ``register(sub)``, which adds its
parsers and sets each one's ``func``."""
