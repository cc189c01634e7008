"""User-facing errors: the CLI prints their message and exits 2, with no traceback."""


class MoebertError(Exception):
    """A bad input (key, file, setting) that the user can fix; the message names it."""
