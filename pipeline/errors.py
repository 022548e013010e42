"""The project's error base class: a problem with what the user gave, not a bug.

Every error that a user can cause and fix (a bad option, config, dataset, store, checkpoint or
weights file) derives from :class:`UserError`. The command line prints such an error's message
and exits with status 2; anything else is a programming error and surfaces as a traceback
(exit 1). Each subclass also derives from ``ValueError``, which callers caught before.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input; its message says what and where (file, row, option)."""


__all__ = ["UserError"]
