"""``python main.py`` entry point: the GUI by default, subcommands for headless work."""

from __future__ import annotations

import argparse
import importlib
import sys

from engine.errors import AtlasError

# Each command module defines ``register(subparsers)`` which adds its parser and sets ``func``.
COMMANDS = [
    "models",
    "info",
    "render",
    "gui",
    "discover",
    "rca",
    "export",
    "weights",
    "train",
    "score",
    "analyze",
    "project",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="main.py",
        description="GAN Atlas: discover, browse, annotate and export interpretable directions in GAN generators.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"cli.cmd_{name}").register(sub)
    return parser


# Options whose values may start with '-' (e.g. ``--shifts -3:3:7``), which argparse would take for options.
NEGATIVE_VALUE_OPTIONS = {"--shifts", "--range", "--t", "--shift"}


def _join_negative_values(argv: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a in NEGATIVE_VALUE_OPTIONS and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            out.append(f"{a}={argv[i + 1]}")
            i += 2
        else:
            out.append(a)
            i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    argv = _join_negative_values(sys.argv[1:] if argv is None else list(argv))
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        if "gui" in parser._subparsers._group_actions[0].choices:  # noqa: SLF001
            args = parser.parse_args(["gui", *argv])
        else:
            parser.print_help()
            return 0
    try:
        return int(args.func(args) or 0)
    except AtlasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
