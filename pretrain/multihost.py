"""Coordination of the processes of one multi-process run.

Every process runs the same command on the same `--workdir`. Process 0 alone
writes the plain run files and makes the checks of the workdir before a run,
and the other processes get its result through `run_on_primary`. Every
process makes the orbax saves together. In a single process every function
here calls straight through.
"""

import json
from collections.abc import Callable
from typing import Any

import jax
import numpy as np


class PrimaryProcessError(RuntimeError):
    """Process 0 failed in a step that the other processes waited for."""


def is_primary() -> bool:
    """Return whether this process writes the run files (process 0)."""
    return jax.process_index() == 0


def broadcast_json(value: Any) -> Any:
    """Return process 0's `value`, which must be JSON-serializable, in every process.

    Every process must call this at the same point. The other processes may
    pass any value, for example None.
    """
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    encoded = json.dumps(value).encode() if is_primary() else b""
    size = multihost_utils.broadcast_one_to_all(np.int32(len(encoded)))
    buffer = np.zeros(int(size), np.uint8)
    if is_primary():
        buffer[:] = np.frombuffer(encoded, np.uint8)
    buffer = multihost_utils.broadcast_one_to_all(buffer)
    return json.loads(np.asarray(buffer, np.uint8).tobytes().decode())


def run_on_primary(
    fn: Callable[[], Any], *, errors: tuple[type[Exception], ...] = ()
) -> Any:
    """Call `fn` in process 0 only and return its JSON-serializable result in
    every process.

    It also acts as a barrier: no process returns before `fn` has finished.
    An exception of a type in `errors` is raised again, with the same message,
    in every process, so that all of them stop with the same error. Any other
    exception raises PrimaryProcessError in the other processes.
    """
    if jax.process_count() == 1:
        return fn()
    outcome = None
    failure = None
    if is_primary():
        try:
            outcome = {"value": fn()}
        except Exception as error:
            failure = error
            outcome = {"error": type(error).__name__, "message": str(error)}
    outcome = broadcast_json(outcome)
    if failure is not None:
        raise failure
    if "error" not in outcome:
        return outcome["value"]
    for error_type in errors:
        if error_type.__name__ == outcome["error"]:
            raise error_type(outcome["message"])
    raise PrimaryProcessError(
        f"process 0 failed with {outcome['error']}: {outcome['message']}. "
        "Its log has the traceback"
    )


def primary_first(
    fn: Callable[[], Any], *, errors: tuple[type[Exception], ...] = ()
) -> Any:
    """Call `fn` in process 0, then in the other processes once it succeeded.

    For steps that may create shared files, such as preparing a TFDS dataset,
    which concurrent processes would otherwise race to write. An error in
    process 0 stops every process, as in `run_on_primary`.
    """
    result = None

    def first():
        nonlocal result
        result = fn()

    run_on_primary(first, errors=errors)
    return result if is_primary() else fn()


def check_same_in_every_process(value: dict[str, Any], description: str) -> None:
    """Raise ConfigError in every process unless all pass the same `value`.

    Processes that run with different configs would train different
    programs and wait for each other at different collectives forever, so
    the commands compare before they train. `value` must be a
    JSON-serializable dict, and every process must call this at the same
    point.
    """
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    from pretrain.config import ConfigError

    primary = broadcast_json(value)
    mine = json.loads(json.dumps(value))  # the same types as the broadcast copy
    differs = mine != primary
    flags = np.asarray(multihost_utils.process_allgather(np.int32(differs)))
    differing = [index for index, flag in enumerate(flags.ravel()) if flag]
    if not differing:
        return
    processes = differing[0] if len(differing) == 1 else differing
    message = (
        f"the {description} of process {processes} "
        "differs from process 0's; start every process with the same command "
        "and config"
    )
    if differs:
        keys = sorted(
            key for key in set(mine) | set(primary) if mine.get(key) != primary.get(key)
        )
        message += f" (keys {keys} differ here)"
    raise ConfigError(message)
