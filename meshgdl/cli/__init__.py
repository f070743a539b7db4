"""``meshgdl`` command line: one module per sub-command, each exposing
``register(subparsers)`` (adds its parser and sets ``func``).

Every known failure (bad mesh, bad checkpoint, bad dataset, missing file) is
printed as one line ``meshgdl: error: ...`` with exit code 2 -- never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from meshgdl.errors import CheckpointError, DatasetError, MeshError, UsageError

# Sub-command modules, in the order ``meshgdl --help`` lists them.
COMMANDS = [
    "info",
    "geodesic",
    "spectrum",
    "view",
    "train",
    "eval",
    "segment",
    "classify",
    "models",
]


def build_parser() -> argparse.ArgumentParser:
    from meshgdl import __version__

    parser = argparse.ArgumentParser(
        prog="meshgdl",
        description="Geometric deep learning on triangle meshes.",
    )
    parser.add_argument("--version", action="version", version=f"meshgdl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"meshgdl.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (MeshError, CheckpointError, DatasetError, UsageError) as exc:
        print(f"meshgdl: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"meshgdl: error: file not found: {exc.filename or exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # Output piped into e.g. `head`: stop quietly, and keep Python from
        # complaining again when it flushes stdout at exit.
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        print("meshgdl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
