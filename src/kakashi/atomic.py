"""Atomic file writes: every output appears whole under its name, or not at all.

A job killed mid-write (time limit, node crash, Ctrl-C) or a writer that fails must never
leave a half-written file under the real name, because Snakemake and the next stage would
take it for a finished output. Writers write to a hidden temporary name in the target
folder (same file system, so the rename is atomic) and rename it into place when done.
The leading dot keeps partial files out of globs such as ``split=*/*.parquet``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from kakashi.errors import OutputError

if TYPE_CHECKING:
    import numpy as np


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a hidden temporary path next to ``path``; rename it to ``path`` on success.

    The temporary file keeps the suffix, so tools that pick a format from the name (ffmpeg,
    soundfile, numpy's savez, matplotlib) still do the right thing. On any exception it is
    deleted and the error propagates.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the folder for {path}: {exc}; choose another -o") from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(
            f"cannot write {path}: folder {folder} is not writable; choose another -o"
        )
    temporary = hidden_beside(path, "part" + path.suffix)
    try:
        yield temporary
        temporary.replace(path)
    finally:
        # Reached with the temporary still present only when the writer failed.
        temporary.unlink(missing_ok=True)


def hidden_beside(path: Path, ending: str) -> Path:
    """A hidden, unique name in ``path``'s folder: ``.STEM.XXXXXXXX.ENDING``."""
    return path.parent / f".{path.stem}.{uuid.uuid4().hex[:8]}.{ending}"


@contextlib.contextmanager
def scratch_file(beside: str | Path, ending: str) -> Iterator[Path]:
    """A hidden path next to the output ``beside`` for a tool's intermediate file (moviepy's
    audio track), deleted on every way out: success, error, Ctrl-C or SIGTERM."""
    scratch = hidden_beside(Path(beside), ending)
    try:
        yield scratch
    finally:
        scratch.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through :func:`atomic_output`."""
    with atomic_output(path) as temporary:
        temporary.write_text(text)


def atomic_savez(path: str | Path, **arrays: np.ndarray) -> None:
    """``np.savez`` through :func:`atomic_output`, under exactly the name given.

    Through a file handle: given a name, ``np.savez`` appends ``.npz`` when it is missing,
    and the rename would then look for a file that was never written.
    """
    import numpy as np  # here, so the command line's light modules can import this one

    with atomic_output(path) as temporary, open(temporary, "wb") as handle:
        np.savez(handle, **arrays)
