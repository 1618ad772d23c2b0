"""Run directories: checks before a run starts, and atomic writes."""

import json
import os
import shutil
import tempfile
from typing import Any

import jax

from pretrain.multihost import (
    check_same_in_every_process,
    is_primary,
    run_on_primary,
)


class WorkdirError(ValueError):
    """A run directory that cannot be used."""


def check_workdir(path: str) -> str:
    """Check that `path` can become a run directory, without creating it.

    In a multi-process run process 0 checks, so that every process gets the
    same result or the same WorkdirError.
    """
    return run_on_primary(lambda: _check_workdir(path), errors=(WorkdirError,))


def _check_workdir(path: str) -> str:
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
    if not os.path.isdir(existing):
        raise WorkdirError(
            f"workdir {path!r} cannot be created: {existing!r} is a file, not a "
            "directory; choose a path below a directory"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise WorkdirError(
            f"workdir {path!r} is not writable ({existing!r} does not allow "
            "writing); choose a directory you can write to"
        )
    return path


def _file_mode() -> int:
    # mkstemp creates files as 0600; give outputs the mode a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def directory_mode() -> int:
    """Return the mode `os.makedirs` would give a new directory under the umask."""
    return _file_mode() | ((_file_mode() & 0o444) >> 2)


def read_json_object(path: str) -> dict:
    """Return the JSON object in the file `path`.

    Raises ValueError naming the file when it is not valid JSON or contains
    another JSON value, so callers add only the fix to their own error.
    """
    try:
        with open(path) as f:
            value = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path!r} is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise ValueError(
            f"{path!r} must contain a JSON object, not a {type(value).__name__}"
        )
    return value


def write_json(path: str, value: Any) -> None:
    """Write JSON so that readers see either the old file or the whole new one.

    Only process 0 writes, so in the other processes of a multi-process run
    this does nothing.
    """
    if not is_primary():
        return
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(value, f, indent=2)
            f.write("\n")
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_text(path: str, text: str) -> None:
    """Write a text file atomically, from process 0 only (see `write_json`)."""
    if not is_primary():
        return
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


# Everything a run writes into its workdir; an overwrite removes these only,
# never other files the user keeps there.
RUN_OUTPUTS = (
    "checkpoints",
    "config.json",
    "provenance.json",
    "metrics.jsonl",
    "metrics.json",
    "labels.json",
    "tb",
    "encoder",
    "model",
    "filters.png",
    "reconstructions.png",
    "samples.png",
    "masks.png",
)


def remove_run_outputs(workdir: str, *, remove_empty: bool = False) -> None:
    """Delete the `RUN_OUTPUTS` in `workdir`, and the directory itself if it is
    then empty and `remove_empty` is set. Only process 0 removes anything."""
    if not is_primary():
        return
    for name in RUN_OUTPUTS:
        target = os.path.join(workdir, name)
        if os.path.isdir(target):
            shutil.rmtree(target)
        elif os.path.exists(target):
            os.remove(target)
    if remove_empty and os.path.isdir(workdir) and not os.listdir(workdir):
        os.rmdir(workdir)


# Config keys added after runs were saved without them, with the value that
# gives the behaviour those runs had, so that such runs still count as the
# same config when resumed or reused.
# Pretraining runs from before `rng_impl` drew with JAX's default PRNG, and
# fine-tuning runs from before `standardize_codes` fed the head raw codes.
ADDED_KEYS = {
    "stream": False,
    "rng_impl": "threefry2x32",
    "standardize_codes": False,
}


def with_added_keys(saved: dict, config: dict) -> dict:
    """Return `saved` with each `ADDED_KEYS` entry that `config` has and it lacks."""
    added = {
        key: value
        for key, value in ADDED_KEYS.items()
        if key in config and key not in saved
    }
    return {**saved, **added}


def config_differences(saved: dict, config: dict) -> str:
    """Describe the keys whose values differ between `saved` and `config`."""
    changed = sorted(
        key for key in set(saved) | set(config) if saved.get(key) != config.get(key)
    )
    text = f"keys {changed} differ: " + ", ".join(
        f"{key} was {_short(saved.get(key))}, now {_short(config.get(key))}"
        for key in changed
    )
    swapped = saved.get("rng_impl") == "philox4x32" and config.get("rng_impl") == (
        "threefry2x32"
    )
    if swapped and jax.device_count() > 1:
        # draw_rng_impl replaces philox4x32 on a mesh, whatever the config requests.
        text += (
            "; philox4x32 becomes threefry2x32 on more than one device, so "
            "resume on the device count the run started with"
        )
    return text


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def write_provenance(workdir: str, record: dict, *, resumed: bool) -> None:
    """Write `record` to `workdir`/provenance.json.

    A resumed run keeps the record of the process that started it and lists
    the record of each later process under "resumed", since a resume may
    come from another commit, package set or machine.
    """
    path = os.path.join(workdir, "provenance.json")
    if resumed and os.path.isfile(path):
        try:
            with open(path) as f:
                first = json.load(f)
        except (OSError, ValueError):
            first = None  # unreadable: this process's record replaces it
        if isinstance(first, dict):
            record = {**first, "resumed": [*first.get("resumed", []), record]}
    write_json(path, record)


def start_run(workdir: str, config: dict, *, overwrite: bool) -> bool:
    """Prepare `workdir` for a run of `config`; return True when resuming.

    A workdir holding a run of the same config resumes it. One holding a
    different config is rejected unless `overwrite`, which first removes the
    old run's outputs. In a multi-process run process 0 decides and writes
    `config.json`, and every process returns once it has. Before that, every
    process checks that all of them got the same workdir and config.
    """
    check_same_in_every_process({"workdir": workdir, **config}, "workdir and config")
    return run_on_primary(
        lambda: _start_run(workdir, config, overwrite=overwrite),
        errors=(WorkdirError,),
    )


def _start_run(workdir: str, config: dict, *, overwrite: bool) -> bool:
    path = os.path.join(workdir, "config.json")
    if os.path.isfile(path):
        with open(path) as f:
            saved = with_added_keys(json.load(f), config)
        if saved == config:
            return True
        if not overwrite:
            raise WorkdirError(
                f"workdir {workdir!r} contains a run with a different config "
                f"({config_differences(saved, config)}); pass --overwrite to "
                "replace it, or choose another --workdir"
            )
    if overwrite:
        remove_run_outputs(workdir)
    os.makedirs(workdir, exist_ok=True)
    write_json(path, config)
    return False
