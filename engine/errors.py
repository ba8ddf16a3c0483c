"""Errors the engine raises for bad user input.

Every error a user can cause (a damaged file, an unknown model name, a bad option) is an
``AtlasError`` whose message names the file or value and what is wrong with it. The CLI prints
it as one line; the GUI shows it in a dialog. Anything else is a bug and keeps its traceback.
"""


class AtlasError(Exception):
    """A problem with the user's input, explained in one sentence."""


class CheckpointError(AtlasError):
    """A checkpoint file cannot be read or is not a format we support."""


class UnsafePickleError(CheckpointError):
    """A pickle asked to run code or to load something outside our allow-list."""


class DirectionSetError(AtlasError):
    """A direction set file is missing, damaged or from an incompatible version."""
