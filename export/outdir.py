"""An export's output directory, written whole or not at all.

Files go to a hidden sibling directory `.NAME.partial-PID`; only when everything is written is it
renamed to NAME (a previous export there is an error unless overwrite, then it is replaced — moved
aside, the new one renamed in, the old one deleted). A crash leaves the partial directory, which
never looks like a finished export.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
from collections.abc import Iterator


class OutputExistsError(FileExistsError):
    """OUTDIR already holds something and --overwrite was not given."""


def check_free(out: pathlib.Path, overwrite: bool) -> None:
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise OutputExistsError(
            f"{out}: already exists (a previous export?); pass --overwrite to replace it"
        )


@contextlib.contextmanager
def staged_outdir(out: str | os.PathLike, overwrite: bool = False) -> Iterator[pathlib.Path]:
    """Yield a fresh directory to write the export into; on success it becomes `out`."""
    out = pathlib.Path(out)
    check_free(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(stage, out)
    shutil.rmtree(old, ignore_errors=True)
