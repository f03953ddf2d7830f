"""The folders the commands write into: made before any work starts, or refused in one line."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


class OutputError(OSError):
    """An output folder that cannot be made or written: the path is a file, or its parent is not writable."""


def output_folder(path: Path, option: str) -> Path:
    """Make ``path`` (and its parents) if needed and return it; ``option`` names the setting, for the message."""
    if path.exists() and not path.is_dir():
        raise OutputError(f"{option} {path} is a file, not a folder: pass a folder path (it is made if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{option} {path} cannot be made ({error.strerror}): pass a folder you can write") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {path} is not writable: pass a folder you can write")
    return path


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write`` on a temporary file beside ``path``, then rename it over ``path``: never half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
