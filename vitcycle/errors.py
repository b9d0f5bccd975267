"""Errors a user can cause and fix. The CLI prints them as one line, without a traceback."""


class VitcycleError(Exception):
    """Base class: the message names the file or flag at fault and the fix."""
