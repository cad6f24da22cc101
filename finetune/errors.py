"""Errors the user can fix. The CLI prints them as one line and exits 2; anything else is a bug."""

from __future__ import annotations


class UserError(ValueError):
    """Bad input (recipe, data, model folder, paths): the message names the thing and the fix."""


class StopRequested(Exception):
    """SIGTERM/Ctrl-C arrived; the loop saved a checkpoint at the step boundary and stops."""


EXIT_USER_ERROR = 2
EXIT_STOPPED = 75  # EX_TEMPFAIL: stopped on request after a checkpoint; resume with --resume
EXIT_NON_FINITE = 3  # too many non-finite steps in a row; last good checkpoint kept
