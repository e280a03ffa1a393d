"""The one exception type for mistakes a user can make (bad input, bad params, missing files)."""


class UserError(Exception):
    """A problem the user can fix; the CLI prints it as one line and exits non-zero."""
