"""What an input path really is, told before anything opens it.

``open()`` on a named pipe blocks until a writer comes (``kakashi motion fifo.bvh`` waited
forever); ``/dev/zero`` never ends; ``Path.resolve`` raises ``RuntimeError`` on a symbolic
link loop; and ``is_file()`` is False for all of them, so readers used to say "does not
exist" of a file that does. :func:`problem` looks with ``os.stat`` (which never blocks) and
names what the path is: missing, a link loop, a folder, a named pipe, a device, a socket,
or a file of the kernel (``/proc``, ``/sys``, ``/dev``: ``/proc/self/environ`` is a regular
file to ``stat``, and a sheet row naming it read the parsing process's environment).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

# Kernel and device files: never a video, a song, a dance or a model.
KERNEL_FOLDERS = ("/proc", "/sys", "/dev")
LOOP = "is a symbolic link loop (links that lead back to themselves)"


def is_loop(path: str | Path) -> bool:
    """True for a symbolic link that never reaches a file (``os.stat`` says ELOOP)."""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def kernel_folder(path: str | Path) -> str | None:
    """The kernel folder (``/proc``, ``/sys``, ``/dev``) that ``path`` lies in, if any."""
    real = os.path.realpath(path)  # never raises: a loop stays unresolved
    for folder in KERNEL_FOLDERS:
        if real == folder or real.startswith(folder + "/"):
            return folder
    return None


def problem(path: str | Path, want: str = "file") -> str | None:
    """None when ``path`` is a ``want`` ("file", "folder" or "either"), else what it is:
    "does not exist", "is a folder, not a file", "is a named pipe (FIFO), not a file", ..."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return LOOP
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return "does not exist"
        return f"cannot be read ({exc.strerror})"
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        kind = "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket"
        kind = "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else kind
        return f"is {kind}, not a {'folder' if want == 'folder' else 'file'}"
    folder = kernel_folder(path)
    if folder is not None:
        return f"is a kernel file under {folder}, not a {'folder' if want == 'folder' else 'file'}"
    if stat.S_ISDIR(mode):
        return None if want in ("folder", "either") else "is a folder, not a file"
    return None if want in ("file", "either") else "is a file, not a folder"


def special(path: str | Path) -> str | None:
    """What is wrong with ``path`` as an input of any kind (file or folder), or None: a link
    loop, a pipe, a device, a socket or a kernel file. A missing path is left to the reader,
    which knows what to suggest."""
    found = problem(path, "either")
    return None if found in (None, "does not exist") else found


def require(path: str | Path, what: str, error: type[Exception], fix: str, want: str = "file"):
    """``Path(path)`` if it is a ``want``; else raise ``error``: "WHAT PATH PROBLEM; FIX"."""
    found = problem(path, want)
    if found is not None:
        raise error(f"{what} {path} {found}; {fix}")
    return Path(path)
