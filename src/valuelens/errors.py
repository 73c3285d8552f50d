"""The one error type users see: a single line naming the file and place."""


class ValueLensError(Exception):
    """Bad input or an unrecoverable external failure, with a one-line message.

    The CLI prints ``str(err)`` and exits with :attr:`exit_code` (2 for bad
    input, 1 for failures of backends or servers), never a traceback.
    """

    exit_code = 2

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(" ".join(message.split()))
        if exit_code is not None:
            self.exit_code = exit_code


class BackendError(ValueLensError):
    """A model backend failed permanently (after bounded retries)."""

    exit_code = 1


class MissingDependency(ValueLensError):
    """An optional dependency needed by the requested backend is not installed."""

    exit_code = 2
