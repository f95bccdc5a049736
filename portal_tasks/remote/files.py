"""Files written whole: a reader sees the old file or the new one, never a part (standard library only,
Python 3.8+; shipped in the helper's zipapp, imported by the laptop).

The helper's installer (``BOOTSTRAP`` in link/base.py) writes the helper archive the same way with its own
few lines: it runs before any helper exists, on any Python from 2.7 on, so it cannot import this.
"""

from __future__ import annotations

import contextlib
import os


def write_atomic(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` (mode 0600): a reader sees the old file or the new one, never a part.

    A temporary file beside it, flushed to disk, renamed over it.
    """
    tmp = "%s.%d.%s.tmp" % (path, os.getpid(), os.urandom(4).hex())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the rename itself, on disk (where the file system allows it)
        dir_fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
