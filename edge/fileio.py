"""Files the project writes and checks: atomic writes, whole-line appends and sha256, one
implementation each."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

# seconds of events a power cut may take from --events FILE (fdatasync at most this often)
DEFAULT_EVENTS_SYNC = 1.0


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` to write to; on success it is flushed to disk and
    renamed over `path`, so a reader never sees half a file. On failure it is removed.

    For writers that want a path rather than bytes (Keras' `model.save`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; artefacts are meant to be read by others
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (datasets can be larger than memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class LineAppender:
    """Appends whole lines to a file: each `append` is one O_APPEND write, and a write the
    disk could only take part of is cut back, so the file always ends on a whole line.

    A reader (or the next run) never meets a torn JSON line, even when the disk fills
    mid-line.

    How much a power cut may take is `sync_every`: the file is fdatasync'ed once that many
    seconds have passed since the oldest write not yet on disk (checked on every `append` and
    `tick`), so a cut loses at most about that much; 0 syncs after every write (nothing
    written is ever lost, at one small journal commit per write: SD-card wear); None never
    syncs (ext4 writes back within about 5 s by itself). A crash or a kill loses nothing in
    any mode: the page cache outlives the process."""

    def __init__(self, path: str | os.PathLike, sync_every: float | None = None):
        self.path = str(path)
        self.sync_every = sync_every
        self._unsynced_since: float | None = None  # monotonic time of the oldest unsynced write
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        # Cutting back only makes sense on a regular file (not /dev/full, a pipe, a tty).
        self._regular = stat.S_ISREG(os.fstat(self._fd).st_mode)
        self.cut_at_open = self._cut_torn_tail() if self._regular else 0  # bytes removed

    def _cut_torn_tail(self) -> int:
        """A power cut can leave the file ending in part of a write (ext4 writes back pages,
        and the size on disk follows them); appending after it would glue the next line onto
        the fragment. Cut back to the last newline instead, and say so."""
        size = os.fstat(self._fd).st_size
        if size == 0:
            return 0
        keep, pos = 0, size
        with open(self.path, "rb") as f:
            while pos > 0:
                start = max(0, pos - 65536)
                f.seek(start)
                block = f.read(pos - start)
                if pos == size and block.endswith(b"\n"):
                    return 0
                newline = block.rfind(b"\n")
                if newline >= 0:
                    keep = start + newline + 1
                    break
                pos = start
        os.ftruncate(self._fd, keep)
        log.warning(
            "%s ended in half a line (%d bytes, left by a crash or power cut); "
            "cut back to its last whole line",
            self.path, size - keep,
        )  # fmt: skip
        return size - keep

    def append(self, data: bytes) -> None:
        """Write all of `data` or, on OSError (ENOSPC, EIO, EFBIG ...), none of it."""
        start = os.fstat(self._fd).st_size if self._regular else 0
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError:
            written = len(data) - len(view)
            with contextlib.suppress(OSError):
                # Only when the file is as we left it: the rotation timer may have truncated
                # it meanwhile, and cutting "back" then would pad it with zeros.
                if written and self._regular and os.fstat(self._fd).st_size == start + written:
                    os.ftruncate(self._fd, start)
            raise
        if self._unsynced_since is None:
            self._unsynced_since = time.monotonic()
        self.tick()

    def tick(self, now: float | None = None) -> None:
        """fdatasync when the oldest unsynced write is `sync_every` seconds old (or more)."""
        if self.sync_every is None or self._unsynced_since is None or not self._regular:
            return
        now = time.monotonic() if now is None else now
        if now - self._unsynced_since >= self.sync_every:
            os.fdatasync(self._fd)
            self._unsynced_since = None

    def close(self) -> None:
        if self._fd >= 0:
            if self.sync_every is not None and self._unsynced_since is not None:
                with contextlib.suppress(OSError):
                    os.fdatasync(self._fd)
            os.close(self._fd)
            self._fd = -1
