"""The ``vn3d`` command: one subcommand per job (the groups live in ``vn3d/commands/``)."""

from __future__ import annotations

import argparse
import sys

from engines.files.assets import AssetMissingError
from vn3d.commands import avatar, camera, dataset, flame, networks, render, serve, worker


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vn3d", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (render, networks, avatar, dataset, flame, serve, camera, worker):
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (AssetMissingError, ValueError, KeyError, FileNotFoundError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"vn3d {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
