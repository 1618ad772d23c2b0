"""Epoch-boundary checkpoints of training phases, for resuming a killed run.

A run sets a checkpoint root with `checkpoint_root(directory)`. Every phase
that `pretrain.train.fit` trains inside it then saves an orbax checkpoint in
`directory/<phase name>/` each `checkpoint_every` epochs and when it ends.
The checkpoint contains the whole `TrainState` (params, optimizer state,
step, random key and other state such as persistent chains), the best state
so far for early stopping, and JSON metadata (epochs done, history, whether
the phase finished). Started again, `fit` restores the
latest committed checkpoint and goes on from there, so a resumed run ends
bit-identical to an uninterrupted one on CPU.

In a multi-process run every process saves and restores the same directory
together, with orbax's default primary host (process 0) creating its
directories. The state contains global replicated arrays, whose shards orbax
writes once, from the process whose device has replica 0.
"""

import contextlib
import contextvars
import dataclasses
import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class _Root:
    directory: str
    every: int  # epochs between checkpoints; 0 saves only when a phase ends
    phases: set[str] = dataclasses.field(default_factory=set)


_ROOT: contextvars.ContextVar[_Root | None] = contextvars.ContextVar(
    "checkpoint_root", default=None
)


@contextlib.contextmanager
def checkpoint_root(directory: str | None, every: int = 1):
    """Checkpoint every phase trained inside this block under `directory`.

    `directory=None` turns checkpointing off inside the block.
    """
    root = None if directory is None else _Root(directory, every)
    token = _ROOT.set(root)
    try:
        yield
    finally:
        _ROOT.reset(token)


@contextlib.contextmanager
def checkpoint_subdirectory(name: str):
    """Nest the current checkpoint root one level deeper (no-op when off)."""
    root = _ROOT.get()
    if root is None:
        yield
        return
    with checkpoint_root(os.path.join(root.directory, name), root.every):
        yield


def phase_saved(phase: str) -> bool:
    """Return whether `phase` has a checkpoint directory under the current root."""
    root = _ROOT.get()
    return root is not None and os.path.isdir(os.path.join(root.directory, phase))


def phase_checkpointer(phase: str) -> "PhaseCheckpointer | None":
    """Return the checkpointer of `phase` under the current root, or None when off."""
    root = _ROOT.get()
    if root is None:
        return None
    if phase in root.phases:
        raise ValueError(
            f"two phases named {phase!r} in one run would share a checkpoint; "
            "give each PhaseTrainer a unique name"
        )
    root.phases.add(phase)
    return PhaseCheckpointer(os.path.join(root.directory, phase), root.every)


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_saveable(tree: Any) -> Any:
    # orbax stores plain arrays; typed PRNG keys go in as their raw key data.
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _from_saved(saved: Any, like: Any) -> Any:
    def restore(value, target):
        if _is_key(target):
            return jax.random.wrap_key_data(value, impl=jax.random.key_impl(target))
        return value

    return jax.tree.map(restore, saved, like)


class PhaseCheckpointer:
    """Save and restore one phase's checkpoints in `directory`."""

    def __init__(self, directory: str, every: int):
        self.directory = os.path.abspath(directory)
        self.every = every
        self._manager = None

    @property
    def manager(self) -> ocp.CheckpointManager:
        if self._manager is None:
            options = ocp.CheckpointManagerOptions(max_to_keep=2, create=True)
            self._manager = ocp.CheckpointManager(self.directory, options=options)
        return self._manager

    def latest_path(self) -> str | None:
        """Directory of the latest committed checkpoint, for error messages."""
        # Creating the manager is collective in a multi-process run, so it is
        # left to `save` and `restore`, which every process calls together.
        # Before either made one, this phase has saved nothing.
        if self._manager is None:
            return None
        step = self.manager.latest_step()
        return None if step is None else os.path.join(self.directory, str(step))

    def due(self, epochs_done: int, finished: bool) -> bool:
        return finished or (self.every > 0 and epochs_done % self.every == 0)

    def save(self, epochs_done: int, items: dict[str, Any], meta: dict) -> None:
        args = {
            name: ocp.args.StandardSave(_to_saveable(tree))
            for name, tree in items.items()
        }
        args["meta"] = ocp.args.JsonSave(meta)
        self.manager.save(epochs_done, args=ocp.args.Composite(**args), force=True)
        self.manager.wait_until_finished()

    def restore(self, like: dict[str, Any]) -> tuple[dict[str, Any], dict] | None:
        """Restore the latest checkpoint's items (shaped like `like`) and metadata."""
        if not os.path.isdir(self.directory):
            return None
        step = self.manager.latest_step()
        if step is None:
            return None
        abstract = {
            name: jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_saveable(tree))
            for name, tree in like.items()
        }
        args = {name: ocp.args.StandardRestore(tree) for name, tree in abstract.items()}
        args["meta"] = ocp.args.JsonRestore()
        restored = self.manager.restore(step, args=ocp.args.Composite(**args))
        items = {name: _from_saved(restored[name], like[name]) for name in like}
        logger.info("resuming %s from epoch %d", self.directory, step)
        return items, restored["meta"]

    def close(self) -> None:
        if self._manager is not None:
            self._manager.close()
