"""The one exception type for mistakes a user can fix (bad config, missing file, unreachable store).

The CLI prints such an error as one line, without a traceback, and exits with status 2.
"""


class UserError(Exception):
    """An input problem; the message names the field, file or value and what to do."""


class ConfigWarning(UserWarning):
    """A setting that works but is probably not what the user wants; the message names the field and the fix.

    The CLI prints such a warning as one line (``dense-reward COMMAND: warning: ...``), without the library
    line that raised it.
    """
