"""Compile counts and compile seconds of a pretraining and a fine-tuning run.

A 2-layer `pretrain dae` run and a 2-stage `finetune` run (preset full:
the head alone, then every layer) train on digits. Neither training set is a
multiple of its batch size, so every epoch ends in a padded batch. Each
phase prints its `PhaseTrainer.trace_count`, the times its compiled step
was traced. JAX's monitoring events give the seconds spent
tracing, lowering and compiling, for the train steps and for every other
jitted function, apart from the rest of the run.
"""

import collections
import contextlib
import os
import time
from unittest import mock

import jax

import finetune.run
from pretrain import config as config_lib
from pretrain.run import default_config
from pretrain.run import run as pretrain_run
from pretrain.train import PhaseTrainer

# Durations of these events sum to the compile time of one jitted function.
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
BACKEND_COMPILE_EVENT = COMPILE_EVENTS[2]
# `PhaseTrainer` jits these two methods; everything else is outside the step.
STEP_FUNCTIONS = ("_train_step", "_train_epoch")


class CompileLog:
    """Compile seconds and backend compile counts, by jitted function name."""

    def __init__(self):
        self.seconds = collections.defaultdict(float)
        self.compiles = collections.Counter()

    def __call__(self, event: str, duration: float, **kwargs) -> None:
        if event not in COMPILE_EVENTS:
            return
        name = str(kwargs.get("fun_name", "?"))
        self.seconds[name] += duration
        if event == BACKEND_COMPILE_EVENT:
            self.compiles[name] += 1

    def split(self) -> tuple[float, float, int, int]:
        """Seconds and compiles of the train steps, then of everything else."""
        step = [name for name in self.seconds if is_step(name)]
        other = [name for name in self.seconds if not is_step(name)]
        return (
            sum(self.seconds[name] for name in step),
            sum(self.seconds[name] for name in other),
            sum(self.compiles[name] for name in step),
            sum(self.compiles[name] for name in other),
        )


def is_step(name: str) -> bool:
    return any(step in name for step in STEP_FUNCTIONS)


@contextlib.contextmanager
def recording():
    """Yield the `PhaseTrainer`s built inside, each with its `trace_count` at
    construction, the rows each trained on, and a `CompileLog` of the
    compiles inside."""
    trainers: list[tuple[PhaseTrainer, int]] = []
    rows: dict[int, int] = {}  # id(trainer) -> rows of its training data
    log = CompileLog()
    original_init, original_epoch = PhaseTrainer.__init__, PhaseTrainer.run_epoch

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        trainers.append((self, self.trace_count))

    def run_epoch(self, data):
        rows[id(self)] = len(next(iter(data.values())))
        return original_epoch(self, data)

    jax.monitoring.register_event_duration_secs_listener(log)
    try:
        with (
            mock.patch.object(PhaseTrainer, "__init__", init),
            mock.patch.object(PhaseTrainer, "run_epoch", run_epoch),
        ):
            yield trainers, rows, log
    finally:
        jax.monitoring.unregister_event_duration_listener(log)


def report(title: str, trainers, rows, log: CompileLog, seconds: float) -> None:
    step_s, other_s, step_n, other_n = log.split()
    print(f"{title}: {seconds:.1f} s in all")
    for trainer, traces_before in trainers:
        traces = trainer.trace_count - traces_before
        print(
            f"  phase {trainer.name}: trace_count {traces} over "
            f"{trainer.epochs_done} epochs, {trainer.step} steps, "
            f"{rows.get(id(trainer), 0)} rows at batch {trainer.batch_size}"
        )
    print(
        f"  train-step compiles: {step_n}, {step_s:.2f} s; other jitted "
        f"functions: {other_n} compiles, {other_s:.2f} s; rest of the run "
        f"(steps, data, export): {seconds - step_s - other_s:.2f} s"
    )


def run(data_dir: str, workdir: str, epochs: int) -> None:
    """Print the compiles of a 2-layer pretraining and a 2-stage fine-tuning run."""
    pretrain_config = config_lib.build_config(
        lambda: default_config("dae"),
        overrides={
            "dataset": "digits",
            "data_dir": data_dir,
            "hidden": (64, 32),
            "epochs": epochs,
            "batch_size": 64,
        },
    )
    with recording() as (trainers, rows, log):
        start = time.perf_counter()
        export = pretrain_run("dae", pretrain_config, os.path.join(workdir, "dae"))
        seconds = time.perf_counter() - start
    report("pretrain dae, 2 layers (64, 32), digits", trainers, rows, log, seconds)

    finetune_config = config_lib.build_config(
        finetune.run.default_config,
        overrides={
            "encoder": export,
            "dataset": "digits",
            "data_dir": data_dir,
            "labels": "all",
            "preset": "full",
            "epochs_head": epochs,
            "epochs_finetune": epochs,
        },
    )
    with recording() as (trainers, rows, log):
        start = time.perf_counter()
        finetune.run.run(finetune_config, os.path.join(workdir, "finetune"))
        seconds = time.perf_counter() - start
    report("finetune preset full (2 stages), digits", trainers, rows, log, seconds)
