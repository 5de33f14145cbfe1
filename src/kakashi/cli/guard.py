"""The output guard: every command's outputs are checked before the command does any work.

A command that writes over one of its own inputs destroys it (``generate song.wav -o
song.wav``); one that writes over a read-only file replaces it anyway, because the atomic
rename (:mod:`kakashi.atomic`) needs only the folder to be writable, and read-only is how
the workflow protects trained models. And a folder where a file is expected used to fail
only at the final rename, after a whole training run. So before a command starts,
:func:`check_outputs` refuses, in one line naming the path and what to do:

- an output that is one of the command's inputs (same resolved path or same inode, so
  symbolic and hard links count), or another of its outputs;
- an existing folder where a file is written, an existing file where a folder is written;
- an output whose folder cannot be created or written;
- an existing read-only (protected) file;
- an input or output that is a symbolic link loop, and an input that is a named pipe, a
  device, a socket or a kernel file (``/proc``, ``/sys``, ``/dev``): told from ``os.stat``
  before anything opens it, since opening a pipe blocks and ``/dev/zero`` never ends
  (:mod:`kakashi.inputs`).

Each command declares what it reads and writes with :func:`declare` (or a function of its
own for outputs that depend on the flags), as ``set_defaults(paths=...)``; ``kakashi.cli.main``
runs the guard for every command, so no command can forget it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kakashi.errors import InputError, OutputError
from kakashi.inputs import LOOP, is_loop, kernel_folder, special


@dataclass
class CommandPaths:
    """What one command run reads and writes, each as (flag as typed, path)."""

    files: list[tuple[str, Path]] = field(default_factory=list)
    folders: list[tuple[str, Path]] = field(default_factory=list)
    inputs: list[tuple[str, Path]] = field(default_factory=list)


PathsOf = Callable[[argparse.Namespace], CommandPaths]


def attribute(flag: str) -> str:
    """The argparse attribute of a flag as typed: ``-o`` -> output, ``--audio-output`` ->
    audio_output, a positional name stays as it is."""
    if flag == "-o":
        return "output"
    return flag.lstrip("-").replace("-", "_")


def given(args: argparse.Namespace, flags: Iterable[str]) -> list[tuple[str, Path]]:
    """(flag, path) for each of ``flags`` given a value on the command line."""
    found = []
    for flag in flags:
        value = getattr(args, attribute(flag), None)
        if value not in (None, ""):
            found.append((flag, Path(value)))
    return found


def declare(
    *, files: Iterable[str] = (), folders: Iterable[str] = (), inputs: Iterable[str] = ()
) -> PathsOf:
    """The paths of a command whose inputs and outputs are plain flags, named as typed:
    ``declare(files=["-o"], inputs=["dance", "--audio"])``."""
    files, folders, inputs = tuple(files), tuple(folders), tuple(inputs)

    def paths_of(args: argparse.Namespace) -> CommandPaths:
        return CommandPaths(given(args, files), given(args, folders), given(args, inputs))

    return paths_of


def check_outputs(paths: CommandPaths) -> None:
    """Raise :class:`OutputError` unless every output can be written without harm, and
    :class:`InputError` for an input no command can read (see the module doc)."""
    for flag, path in paths.inputs:
        found = special(path)
        if found is not None:
            raise InputError(f"{flag} {path} {found}; give a regular file or folder")
    outputs = [(flag, path, "file") for flag, path in paths.files]
    outputs += [(flag, path, "folder") for flag, path in paths.folders]
    for index, (flag, path, kind) in enumerate(outputs):
        if is_loop(path):
            raise OutputError(f"{flag} {path} {LOOP}; delete the link or choose another {flag}")
        kernel = kernel_folder(path)
        if kernel is not None:
            raise OutputError(
                f"{flag} {path} is under {kernel}, the kernel's files; choose another {flag}"
            )
        for other_flag, other in paths.inputs:
            if _same(path, other):
                raise OutputError(
                    f"{flag} {path} is also the input {other_flag} of this command: writing "
                    f"it would destroy the input; choose another {flag}"
                )
        for other_flag, other, _ in outputs[:index]:
            if _same(path, other):
                raise OutputError(
                    f"{flag} {path} is also {other_flag}: two outputs cannot share a file; "
                    f"choose another {flag}"
                )
        if kind == "file":
            _check_file(flag, path)
        else:
            _check_folder(flag, path)


def _same(a: Path, b: Path) -> bool:
    """One file under two names: the same resolved path, or the same inode (hard link)."""
    if os.path.realpath(a) == os.path.realpath(b):  # realpath, unlike resolve, takes loops
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # either does not exist (yet): then they are not one file
        return False


def _check_file(flag: str, path: Path) -> None:
    if path.is_dir():
        raise OutputError(
            f"{flag} {path} is an existing folder, and this command writes a file; give a "
            f"file name, e.g. {path / ('NAME' + (path.suffix or ''))}"
        )
    if path.exists() and _read_only(path):
        raise OutputError(
            f"{flag} {path} is read-only (protected, as the workflow protects trained "
            f"models); delete it first if you mean to replace it, or choose another {flag}"
        )
    _check_writable_folder(flag, path, path.parent)


def _read_only(path: Path) -> bool:
    """No write permission for us, or no write bit at all: root may write anything, but a
    file whose write bits were all removed (Snakemake's ``protected()``) is still protected."""
    return not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222


def _check_folder(flag: str, path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise OutputError(
            f"{flag} {path} is an existing file, and this command writes a folder; give a "
            "folder name (an existing folder or a new one)"
        )
    _check_writable_folder(flag, path, path)


def _check_writable_folder(flag: str, path: Path, folder: Path) -> None:
    """``folder`` is writable, or can be created: its nearest existing ancestor must be a
    writable folder."""
    existing = folder if str(folder) else Path(".")
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(
            f"cannot create the folder for {flag} {path}: {existing} is a file, not a folder; "
            f"choose another {flag}"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(
            f"cannot write {flag} {path}: folder {existing} is not writable; choose another "
            f"{flag} or make the folder writable"
        )
