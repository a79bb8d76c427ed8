"""The one base class of the failures a user can act on, so the command line catches them once.

A :class:`UserError` is reported by ``darla`` as one line, ``darla: <label>: <message>``, with
exit status ``exit_code`` and no traceback. Each subclass keeps its standard-library base too
(a config error is still a ``ValueError``), so code that catches those is unaffected. It imports
nothing: every module of ``darla`` may use it.

Failures raised below this layer (``vision``, ``agents``: a corrupted checkpoint, a non-finite
loss) cannot derive from it; the command line recognises those by their own classes.
"""

from __future__ import annotations


class UserError(Exception):
    """A failure the user can act on: one line, exit ``exit_code``, no traceback."""

    exit_code: int = 1
    label: str = "error"
