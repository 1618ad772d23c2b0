"""The one training loop shared by every method and every fine-tuning stage.

A method supplies an NNX model, a loss function and an optax transformation;
`PhaseTrainer` owns the jit-compiled step. Inside the step the model lives in
the functional form that `nnx.split` gives (graph definition, params, other
state), so the state is a pytree that `jax.jit`, `lax.scan` and optax see and
parameter paths are stable names for freezing rules.

Batches always have `batch_size` rows: the last batch of an epoch is padded
with real rows from the same epoch and a `weight` of 0 marks them, so each
phase compiles its step once.
"""

import logging
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm
from flax import nnx
from jax.sharding import Mesh

from pretrain.checkpoint import phase_checkpointer
from pretrain.parallel import (
    batch_sharded,
    check_batch_size,
    data_mesh,
    host_tree,
    host_value,
    put,
    replicated,
)

logger = logging.getLogger(__name__)

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]
# loss_fn(model, batch, rng) -> (loss, metrics). `batch["weight"]` is 1.0 for
# real rows and 0.0 for padding, and the loss must ignore padded rows (use
# `weighted_mean`). Metrics are per-batch scalars averaged over real rows.
LossFn = Callable[[nnx.Module, Batch, jax.Array], tuple[jax.Array, Metrics]]


class NonFiniteLossError(FloatingPointError):
    """A loss or metric became NaN or infinite."""


def weighted_mean(values: jax.Array, weight: jax.Array) -> jax.Array:
    """Mean of per-example `values` [batch] over the rows whose weight is 1.

    Padded rows are selected away rather than multiplied by 0, so even an
    infinite value in a padded row leaves the mean unchanged.
    """
    kept = jnp.where(weight > 0, values, 0.0)
    return jnp.sum(kept * weight) / jnp.maximum(jnp.sum(weight), 1.0)


@flax.struct.dataclass
class TrainState:
    params: nnx.State
    rest: nnx.State  # batch statistics and any other state that is not trained
    opt_state: optax.OptState
    step: jax.Array  # int32 scalar, steps taken in this phase
    rng: jax.Array  # raw key data of the phase's step key; step k uses fold_in(rng, k)


def epoch_batches(
    n: int, batch_size: int, rng: jax.Array, drop_remainder: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled row indices [batches, batch_size] and 0/1 weights of one epoch."""
    if n == 0:
        raise ValueError("cannot train on an empty dataset")
    order = np.asarray(jax.random.permutation(rng, n))
    if drop_remainder:
        if n < batch_size:
            raise ValueError(
                f"drop_remainder with {n} examples and batch_size {batch_size} "
                "leaves no batch; lower batch_size or keep the last batch"
            )
        count = n // batch_size
        return order[: count * batch_size].reshape(count, batch_size), np.ones(
            (count, batch_size), np.float32
        )

    count = -(-n // batch_size)
    padding = count * batch_size - n
    # Padded rows repeat real rows of this epoch, so batch norm in training
    # mode gets real statistics. Their weight of 0 keeps them out of the loss.
    filler = np.resize(order, padding)
    indices = np.concatenate([order, filler]).reshape(count, batch_size)
    weight = (np.arange(count * batch_size) < n).astype(np.float32)
    return indices, weight.reshape(count, batch_size)


def _copy_tree(tree: Any) -> Any:
    # The trainer donates its state to the step, so it must own its buffers
    # and leave the caller's model usable.
    return jax.tree.map(jnp.copy, tree)


class _CompiledSteps:
    """The jit-compiled step and epoch of one (model structure, loss, optimizer).

    `PhaseTrainer`s given the same `cache_key` share one instance, so runs
    that differ only in data, initial values or injected hyperparameters
    (seeds, learning-rate candidates) compile once between them.
    """

    def __init__(self, graphdef, loss_fn: LossFn, tx, frozen, mesh, rng_impl):
        self.graphdef = graphdef
        self.rng_impl = rng_impl
        self.loss_fn = loss_fn
        self.tx = tx
        self.frozen = frozen
        self.mesh = mesh
        self.trace_count = 0  # how often the step was traced, i.e. compiled
        self.step = jax.jit(self._train_step, donate_argnums=0)
        self.epoch = jax.jit(self._train_epoch, donate_argnums=0)

    def _train_step(
        self, state: TrainState, batch: Batch
    ) -> tuple[TrainState, Metrics]:
        self.trace_count += 1
        key = jax.random.wrap_key_data(state.rng, impl=self.rng_impl)
        rng = jax.random.fold_in(key, state.step)
        if self.mesh is not None:
            batch = jax.lax.with_sharding_constraint(batch, batch_sharded(self.mesh))

        def loss_of(params):
            # copy=True gives the model its own Variables inside this trace, so
            # batch norm may update its statistics here.
            model = nnx.merge(self.graphdef, params, state.rest, copy=True)
            loss, metrics = self.loss_fn(model, batch, rng)
            _, _, rest = nnx.split(model, nnx.Param, ...)
            return loss, (metrics, rest)

        grad_fn = jax.value_and_grad(loss_of, has_aux=True)
        (loss, (metrics, rest)), grads = grad_fn(state.params)
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if self.frozen is not None:
            params = jax.tree.map(
                lambda frozen, old, new: old if frozen else new,
                self.frozen,
                state.params,
                params,
            )

        metrics = {"loss": loss, **metrics, "grad_norm": optax.tree.norm(grads)}
        metrics["examples"] = jnp.sum(batch["weight"])
        new_state = state.replace(
            params=params, rest=rest, opt_state=opt_state, step=state.step + 1
        )
        if self.mesh is not None:
            new_state = jax.lax.with_sharding_constraint(
                new_state, replicated(self.mesh)
            )
        return new_state, metrics

    def _train_epoch(
        self,
        state: TrainState,
        data: Mapping[str, jax.Array],
        indices: jax.Array,
        weight: jax.Array,
    ) -> tuple[TrainState, Metrics]:
        def body(state, batch_rows):
            rows, w = batch_rows
            batch = {key: value[rows] for key, value in data.items()}
            batch["weight"] = w
            return self._train_step(state, batch)

        return jax.lax.scan(body, state, (indices, weight))


_COMPILED: dict[Hashable, _CompiledSteps] = {}


class PhaseTrainer:
    """Train one phase (an autoencoder layer, a fine-tuning stage, ...).

    Args:
      model: the NNX module to train; it is not changed, call `model()` for
        the trained copy.
      loss_fn: see `LossFn`.
      tx: the optax transformation over the model's `nnx.Param` state.
      rng: key for data order and for the per-step keys passed to `loss_fn`
        (`fold_in(rng, step)`); the per-step keys keep its PRNG
        implementation (`jax.random.key(seed, impl=...)`).
      batch_size: rows per step.
      frozen: optional pytree of bools shaped like the params; True leaves are
        passed through the step unchanged, so they come out bit-identical
        whatever the optimizer does (for example -0.0 + 0.0 flips a sign bit).
      scan: run a whole epoch as one compiled `lax.scan`; needs the data on
        the device. With False, a compiled step is called once per batch.
      drop_remainder: drop the last partial batch instead of padding it.
      mesh: the data-parallel mesh; by default one over all devices when
        there is more than one (`pretrain.parallel.data_mesh`). Params are
        replicated and batches sharded, so `batch_size` must be a multiple of
        the device count.
      cache_key: trainers with equal keys reuse one compiled step. The caller
        promises that equal keys mean the same model structure, `loss_fn`
        behaviour, `frozen` mask and optimizer update. Values that differ
        between such trainers, such as a learning rate, must live in the
        optimizer state (`optax.inject_hyperparams`). NOTE: the cache is
        never emptied, so a process keeps every compiled phase it ran.
    """

    def __init__(
        self,
        model: nnx.Module,
        loss_fn: LossFn,
        tx: optax.GradientTransformation,
        *,
        rng: jax.Array,
        batch_size: int,
        frozen: Any = None,
        scan: bool = True,
        drop_remainder: bool = False,
        name: str = "train",
        mesh: Mesh | None | str = "auto",
        cache_key: Hashable | None = None,
    ):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.mesh = data_mesh() if mesh == "auto" else mesh
        check_batch_size(batch_size, self.mesh)
        self.batch_size = batch_size
        self.scan = scan
        self.drop_remainder = drop_remainder
        self.name = name
        self.shuffle_rng, step_rng = jax.random.split(rng)
        rng_impl = jax.random.key_impl(rng)

        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        params, rest = _copy_tree(params), _copy_tree(rest)
        self.state = TrainState(
            params=params,
            rest=rest,
            opt_state=tx.init(params),
            step=jnp.zeros((), jnp.int32),
            rng=jax.random.key_data(step_rng),
        )
        if self.mesh is not None:
            self.state = put(self.state, replicated(self.mesh))
        if cache_key is None:
            self._compiled = _CompiledSteps(
                graphdef, loss_fn, tx, frozen, self.mesh, rng_impl
            )
        else:
            key = (graphdef, cache_key, self.mesh, str(rng_impl))
            if key not in _COMPILED:
                _COMPILED[key] = _CompiledSteps(
                    graphdef, loss_fn, tx, frozen, self.mesh, rng_impl
                )
            self._compiled = _COMPILED[key]
        self._traces_at_start = self._compiled.trace_count
        self.graphdef = graphdef
        self.epochs_done = 0

    @property
    def trace_count(self) -> int:
        """How often the step was compiled since this trainer was built.

        Trainers with the same cache key share one compiled step, so one
        whose shapes an earlier trainer compiled counts 0.
        """
        return self._compiled.trace_count - self._traces_at_start

    def run_epoch(self, data: Mapping[str, Any]) -> dict[str, float]:
        """Train one epoch over `data` (arrays with a shared leading axis)."""
        n = len(next(iter(data.values())))
        rng = jax.random.fold_in(self.shuffle_rng, self.epochs_done)
        indices, weight = epoch_batches(n, self.batch_size, rng, self.drop_remainder)
        if self.epochs_done == 0 and self._compiled.trace_count == 0:
            logger.info("%s: compiling the train step", self.name)

        if self.mesh is not None:
            indices, weight = put((indices, weight), replicated(self.mesh))
        if self.scan:
            self.state, metrics = self._compiled.epoch(
                self.state, data, indices, weight
            )
        else:
            per_batch = []
            for rows, w in zip(indices, weight, strict=True):
                batch = {key: np.asarray(value[rows]) for key, value in data.items()}
                batch["weight"] = w
                if self.mesh is not None:
                    batch = put(batch, batch_sharded(self.mesh))
                self.state, metrics = self._compiled.step(self.state, batch)
                per_batch.append(metrics)
            metrics = jax.tree.map(lambda *xs: jnp.stack(xs), *per_batch)

        self.epochs_done += 1
        return summarize_epoch(metrics)

    @property
    def step(self) -> int:
        """Steps taken in this phase."""
        return int(host_value(self.state.step))

    def model(self) -> nnx.Module:
        """Return the model with the current params and state, on the local device."""
        params, rest = self.state.params, self.state.rest
        if self.mesh is not None:
            params, rest = host_tree((params, rest))
        return nnx.merge(self.graphdef, params, rest)


def summarize_epoch(metrics: Metrics) -> dict[str, float]:
    """Average per-batch metrics [batches] over the real examples of an epoch."""
    metrics = jax.device_get(host_tree(metrics))
    examples = np.asarray(metrics.pop("examples"), np.float64)
    grad_norm = np.asarray(metrics.pop("grad_norm"), np.float64)
    summary = {
        key: float(np.sum(np.asarray(value, np.float64) * examples) / examples.sum())
        for key, value in metrics.items()
    }
    summary["grad_norm"] = float(grad_norm.mean())
    return summary


def check_finite(metrics: Mapping[str, float], *, where: str) -> None:
    """Raise NonFiniteLossError naming `where` if any metric is NaN or inf."""
    bad = {key: value for key, value in metrics.items() if not np.isfinite(value)}
    if bad:
        raise NonFiniteLossError(
            f"non-finite metrics {bad} at {where}; lower the learning rate or "
            "check the input data for NaN or infinite values"
        )


def _apply(graphdef, state, fn, x):
    return fn(nnx.merge(graphdef, state), x)


_jit_apply = jax.jit(_apply, static_argnums=(0, 2))


def predict(
    model: nnx.Module,
    fn: Callable[[nnx.Module, jax.Array], jax.Array],
    x: np.ndarray,
    *,
    batch_size: int = 512,
) -> np.ndarray:
    """Apply `fn(model, batch)` to `x` in fixed-shape batches; one compile per shape.

    `fn` should be a module-level function so that repeated calls reuse the
    compiled program.
    """
    graphdef, state = nnx.split(model)
    n = len(x)
    if n == 0:
        raise ValueError("predict got no examples")
    size = min(batch_size, n)
    count = -(-n // size)
    padded = np.concatenate([x, np.repeat(x[:1], count * size - n, axis=0)])
    outputs = [
        _jit_apply(graphdef, state, fn, padded[i * size : (i + 1) * size])
        for i in range(count)
    ]
    return np.concatenate(jax.device_get(outputs))[:n]


class BestTracker:
    """Early stopping on a score computed after each epoch, keeping the best state.

    `score(metrics)` returns a tuple compared lexicographically, higher is
    better (for example `(val_accuracy, -val_loss)`); ties keep the earlier
    epoch. With `patience`, the phase stops after that many epochs without a
    better score.
    """

    def __init__(self, score: Callable[[dict], tuple], patience: int | None = None):
        self.score = score
        self.patience = patience
        self.best_score: tuple | None = None
        self.best_epoch = 0
        self.best_state: tuple[nnx.State, nnx.State] | None = None  # params, rest

    def update(self, epoch: int, metrics: dict, trainer: "PhaseTrainer") -> bool:
        """Record epoch `epoch` (1-based); return True to stop the phase."""
        score = tuple(self.score(metrics))
        if self.best_score is None or score > self.best_score:
            self.best_score, self.best_epoch = score, epoch
            self.best_state = _copy_tree((trainer.state.params, trainer.state.rest))
        return self.patience is not None and epoch - self.best_epoch >= self.patience

    def best_model(self, trainer: "PhaseTrainer") -> nnx.Module:
        return nnx.merge(trainer.graphdef, *host_tree(self.best_state))


def fit(
    trainer: PhaseTrainer,
    data: Mapping[str, Any],
    *,
    epochs: int,
    writer: Any = None,
    on_epoch: Callable[[int, dict[str, float]], bool] | None = None,
    select: BestTracker | None = None,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Run `epochs` epochs of `trainer`, logging each and stopping early on request.

    `on_epoch(epoch, metrics)` runs after each epoch (for validation, say) and
    may add entries to `metrics`; it returns True to stop the phase. `select`
    then tracks the best epoch. Inside `pretrain.checkpoint.checkpoint_root`,
    the phase is checkpointed under its trainer's name and resumed from its
    latest checkpoint; a finished phase is restored without training.
    """
    if epochs <= 0:
        raise ValueError(f"epochs must be positive, got {epochs}")
    checkpointer = phase_checkpointer(trainer.name)
    try:
        return _fit_epochs(
            trainer, data, epochs, writer, on_epoch, select, progress, checkpointer
        )
    finally:
        if checkpointer is not None:
            checkpointer.close()


def _fit_epochs(
    trainer, data, epochs, writer, on_epoch, select, progress, checkpointer
) -> list[dict[str, float]]:
    history, finished = _resume(trainer, checkpointer, select, writer)
    if finished:
        return history
    if trainer.scan:
        if trainer.mesh is None:
            data = jax.device_put({k: jnp.asarray(v) for k, v in data.items()})
        else:
            # Every device gets the whole in-memory dataset, and each step
            # gathers a batch and shards it.
            data = put(dict(data), replicated(trainer.mesh))

    # disable=None lets tqdm hide the bar when stderr is not a terminal.
    bar = tqdm.trange(
        trainer.epochs_done,
        epochs,
        initial=trainer.epochs_done,
        total=epochs,
        desc=trainer.name,
        leave=False,
        disable=None if progress else True,
    )
    for epoch in bar:
        metrics = trainer.run_epoch(data)
        _check_epoch(metrics, trainer, epoch, checkpointer)
        stop = on_epoch(epoch, metrics) if on_epoch is not None else False
        if select is not None:
            stop = select.update(epoch + 1, metrics, trainer) or stop
        metrics["epoch"] = epoch + 1
        history.append(metrics)
        if writer is not None:
            writer.write(trainer.name, trainer.step, metrics)
        finished = stop or epoch + 1 == epochs
        if checkpointer is not None and checkpointer.due(epoch + 1, finished):
            _save(trainer, checkpointer, select, writer, history, finished)
        bar.set_postfix(loss=f"{metrics['loss']:.4g}")
        if stop:
            break
    if writer is not None and checkpointer is not None:
        # Only a resume, which needs checkpoints, reads where a phase began.
        writer.phase_start = writer.offset()
    return history


def _check_epoch(metrics, trainer, epoch, checkpointer) -> None:
    last = None if checkpointer is None else checkpointer.latest_path()
    where = (
        f"{trainer.name}, epoch {epoch + 1}, step {trainer.step} "
        f"(last good checkpoint: {last or 'none'})"
    )
    check_finite(metrics, where=where)


def _items(trainer, select) -> dict[str, Any]:
    items = {"state": trainer.state}
    if select is not None:
        items["best"] = select.best_state or (trainer.state.params, trainer.state.rest)
    return items


def _save(trainer, checkpointer, select, writer, history, finished) -> None:
    meta = {
        "epochs_done": trainer.epochs_done,
        "history": history,
        "finished": finished,
        "best_epoch": None if select is None else select.best_epoch,
        "best_score": None if select is None else list(select.best_score),
        "metrics_offset": None if writer is None else writer.offset(),
    }
    checkpointer.save(trainer.epochs_done, _items(trainer, select), meta)


def _resume(trainer, checkpointer, select, writer) -> tuple[list[dict], bool]:
    """Restore the latest checkpoint into `trainer` and `select`, if any."""
    if checkpointer is None:
        return [], False
    restored = checkpointer.restore(_items(trainer, select))
    if restored is None:
        if writer is not None:
            # An earlier attempt at this phase may have stopped before its first
            # checkpoint. The phase starts over, so its old lines are dropped.
            writer.truncate(writer.phase_start)
        return [], False

    items, meta = restored
    trainer.state = items["state"]
    trainer.epochs_done = meta["epochs_done"]
    if select is not None:
        select.best_state = items["best"]
        select.best_epoch = meta["best_epoch"]
        select.best_score = tuple(meta["best_score"])
    if writer is not None and meta["metrics_offset"] is not None:
        if meta["finished"]:
            # The phase does not run again, and the lines after its end
            # belong to the phases after it.
            writer.phase_start = meta["metrics_offset"]
        else:
            # Drop metric lines written after the checkpoint; they are rewritten.
            writer.truncate(meta["metrics_offset"])
    return list(meta["history"]), meta["finished"]
