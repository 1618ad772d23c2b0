"""Run directories: checks before a run starts, and atomic writes."""

import json
import os
import tempfile
from typing import Any


class WorkdirError(ValueError):
    """A run directory that cannot be used."""


def check_workdir(path: str) -> str:
    """Check that `path` can become a run directory, without creating it."""
    if not path:
        raise WorkdirError(
            "--workdir is required: the directory for this run's outputs"
        )
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise WorkdirError(
            f"workdir {path!r} is a file, not a directory; pass a directory path"
        )
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise WorkdirError(
            f"workdir {path!r} is not writable ({existing!r} does not allow "
            "writing); choose a directory you can write to"
        )
    return path


def write_json(path: str, value: Any) -> None:
    """Write JSON so that readers see either the old file or the whole new one."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(value, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_text(path: str, text: str) -> None:
    """Write a text file atomically (see `write_json`)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
