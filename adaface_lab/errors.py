"""The errors a user can act on, as one kind: the ``adaface-lab`` command prints them as one ``error: …``
line (:func:`adaface_lab.cli.main`), the app as an error box.

What counts as such an error, besides :class:`LabError`: ``ValueError`` (a bad option or a bad file, as
every reader and constructor of the lab raises it) and ``OSError`` (a file missing, unreadable, or in the
way). Anything else is a bug, and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["LabError", "USER_ERRORS", "one_line"]


class LabError(Exception):
    """An error whose message tells the user what happened and what to try; ``exit_code`` is the
    command's exit status for it."""

    exit_code: int = 2


#: The exceptions the command line and the app report as a message rather than a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (LabError, ValueError, OSError)


def one_line(error: BaseException) -> str:
    """An error's message as one line (its lines joined, spaces collapsed; its type when it has none)."""
    if isinstance(error, OSError) and error.strerror and error.filename:
        text = f"{error.strerror}: {error.filename}"
    else:
        text = str(error) or type(error).__name__
    return " ".join(" / ".join(line.strip() for line in text.splitlines() if line.strip()).split())
