"""``python main.py`` entry point: the GUI by default, subcommands for headless work.

No input, however wrong, prints a traceback. Exit status: 0 done; 2 a bad command line (argparse's
errors and ``BadValueError``: a malformed or out-of-bounds value); 1 any other ``AtlasError`` (a
missing or damaged file, a model that does not fit) and internal errors, which print one line
naming a log file that holds the traceback (``engine.crash_log``); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from engine.errors import AtlasError, BadValueError, describe_exception, one_line

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

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (``error: main.py render: argument --x: ...``)."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(EXIT_USAGE, f"error: {self.prog}: {one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="main.py",
        description="GAN Atlas: discover, browse, annotate and export interpretable directions in GAN generators.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(f"cli.cmd_{name}").register(sub)
    _add_threads_everywhere(sub)
    return parser


def _add_threads_everywhere(sub) -> None:
    """``--threads N`` applies to every command (main() caps torch's threads before running it)."""
    from cli.common import threads_int

    for p in set(sub.choices.values()):
        if not any("--threads" in a.option_strings for a in p._actions):  # noqa: SLF001
            p.add_argument(
                "--threads", type=threads_int, default=argparse.SUPPRESS, help="CPU threads for torch (default: auto)"
            )
        for action in p._actions:  # noqa: SLF001 - nested commands (weights status / download)
            if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
                _add_threads_everywhere(action)


# Options whose values may start with '-' (e.g. ``--shifts -3:3:7``), which argparse would take for options.
NEGATIVE_VALUE_OPTIONS = {"--shifts", "--range", "--t", "--shift", "-T", "--t-max"}


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


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    """The parsed arguments, or the exit status argparse chose (``--help``: 0; an error: 2)."""
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            if "gui" in parser._subparsers._group_actions[0].choices:  # noqa: SLF001
                return parser.parse_args(["gui", *argv])
            parser.print_help()
            return 0
        return args
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else EXIT_USAGE)


def exit_process(code: int) -> None:
    """End the process with ``code``: at once (``os._exit``, after flushing) while a closed job's
    helper thread is still inside torch (``engine.jobs.helpers_running``), normally otherwise."""
    jobs = sys.modules.get("engine.jobs")
    if jobs is not None and jobs.helpers_running():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else list(argv)
    try:
        args = _parse(build_parser(), _join_negative_values(raw))
        if isinstance(args, int):
            return args
        threads = getattr(args, "threads", None)
        if threads and args.command != "gui":
            from engine.device import cap_threads

            cap_threads(threads)
        return int(args.func(args) or 0)
    except BadValueError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except AtlasError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `main.py models | head -1`: the reader left; nothing to say
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - a bug: one line for the user, the traceback in a log
        from engine.crash_log import write_crash_log

        log = write_crash_log(exc, ["main.py", *raw])
        where = f"details in {log}" if log is not None else "no log could be written"
        print(f"internal error: {describe_exception(exc)} ({where})", file=sys.stderr)
        return EXIT_ERROR
