"""Write a file so that a crash, a kill or a full disk never leaves a half-written file behind.

The bytes go to a temporary file beside the target (same directory, so same filesystem), are
flushed and fsynced, then `os.replace` renames it over the target in one step: a reader sees either
the previous complete file or the new complete one. On any error the temporary file is removed,
the previous file is untouched and the error names the target.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Callable, Iterator


class WriteError(OSError):
    """Writing a file failed (e.g. disk full); the previous version of the file is intact."""


def _tmp_name(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _fsync_dir(directory: pathlib.Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yield a temporary path to write; on success it replaces `path` atomically.

    For writers that insist on a file name (safetensors, matplotlib): write to the yielded path.
    """
    path = pathlib.Path(path)
    tmp = _tmp_name(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise WriteError(
                e.errno, f"{path}: write failed ({e.strerror or e}); the previous file is intact"
            ) from e
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (temporary file, fsync, rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write `text` to `path` atomically (temporary file, fsync, rename)."""
    atomic_write_bytes(path, text.encode(encoding))


def atomic_write_with(path: str | os.PathLike, write: Callable[[pathlib.Path], object]) -> None:
    """Call `write(tmp_path)` and rename the result over `path` atomically."""
    with atomic_path(path) as tmp:
        write(tmp)
