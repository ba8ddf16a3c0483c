"""Errors the engine raises for bad user input.

Every error a user can cause (a damaged file, an unknown model name, a bad option) is an
``AtlasError`` whose message names the file or value and what is wrong with it. The CLI prints
it as one line; the GUI shows it in a dialog. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import re


class AtlasError(Exception):
    """A problem with the user's input, explained in one sentence."""


class CheckpointError(AtlasError):
    """A checkpoint file cannot be read or is not a format we support."""


class UnsafePickleError(CheckpointError):
    """A pickle asked to run code or to load something outside our allow-list."""


class DirectionSetError(AtlasError):
    """A direction set file is missing, damaged or from an incompatible version."""


class BadValueError(AtlasError):
    """A value the user typed (a command-line option, a parameter, a text field) is malformed or
    out of bounds. The CLI exits with status 2 for these (a usage error), 1 for other errors."""


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# torch's weights-only refusal, from its first words to its closing documentation link
_TORCH_REFUSAL = re.compile(r"Weights only load failed.*?(?:torch\.load\.html\.?|$)", re.DOTALL)
_CPP_TRACE = re.compile(r"\s*Exception raised from .*", re.DOTALL)  # c10::Error's C++ frames
_TORCH_GLOBAL = re.compile(r"(?:Unsupported global: GLOBAL|Trying to load unsupported GLOBAL) ([\w.]+)")


def _refusal(match: re.Match) -> str:
    g = _TORCH_GLOBAL.search(match.group(0))
    what = f"it names {g.group(1)}" if g else "it holds more than tensors and plain data"
    return f"refused by the safe loader: {what}, which could run code"


def one_line(text: object, limit: int = 500) -> str:
    """``text`` as one printable line: terminal escape codes removed, whitespace collapsed, torch's
    weights-only refusal replaced by what it means (never its advice to load the file with
    ``weights_only=False``, which would run code from it) and C++ stack traces cut off."""
    s = _TORCH_REFUSAL.sub(_refusal, _ANSI.sub("", str(text)))
    s = _CPP_TRACE.sub("", s)
    s = " ".join(s.split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def describe_exception(exc: BaseException) -> str:
    """``ClassName: message`` of a library exception as one line safe to show (see ``one_line``)."""
    msg = one_line(exc)
    return f"{exc.__class__.__name__}: {msg}" if msg else exc.__class__.__name__
