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


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler, ``timeout``): handled like Ctrl-C, exit 143."""


def os_error(path: object, err: OSError, doing: str = "cannot write") -> ValueLensError:
    """An OSError as one line naming the path and what to do; exit 1 for a
    full disk or an I/O error (rerun resumes), 2 for an unusable path."""
    import errno

    code = err.errno
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return ValueLensError(f"{path}: no space left on the device ({err.strerror or 'disk full'}); free some "
                              f"space and rerun the same command (it resumes from the store)", exit_code=1)
    if code == errno.EIO:
        return ValueLensError(f"{path}: input/output error; check the disk", exit_code=1)
    why = {errno.EROFS: "read-only file system", errno.EACCES: "permission denied", errno.EPERM: "not permitted",
           errno.ELOOP: "too many levels of symbolic links (a symlink loop?)",
           errno.ENOTDIR: "a part of the path is not a directory", errno.EISDIR: "is a directory",
           errno.EEXIST: "exists and is not a directory", errno.ENAMETOOLONG: "name too long"}.get(
        code or 0, err.strerror or type(err).__name__)
    return ValueLensError(f"{path}: {doing} ({why})")
