"""Throughput of a grid's fine-tuning steps: one process on every core
against one process pinned to each core, all running at once.

    python -m experiments.benchmarks.pinned [--case conv|dense] [--seconds 10]

Each case trains the network of a fine-tuning cell from scratch at batch 32,
as `finetune` does. Conv runs one compiled step per batch, as `experiments
low_label_conv_mnist5k` does, and dense one `lax.scan` per epoch. `conv` is
that experiment's encoder (stages of 32, 64 and 128 channels, kernel 5,
batch norm, max pooling) on 28x28 images. `dense` is the (512, 256) ReLU
encoder of `experiments low_label_dense` on 784 inputs. A worker process
compiles with one epoch of `--steps` steps, waits until every worker of its
layout has compiled, then runs epochs for at least `--seconds` and prints
its steps per second. The script runs one worker on all cores,
then one worker per core at the same time, and prints the summed steps per
second of each layout.

An experiment grid runs in the pinned layout with `--shard I/N` and
`taskset`, one shard per core; docs/guide.md shows the commands.
"""

import argparse
import json
import os
import subprocess
import sys
import time

BATCH = 32
CLASSES = 10
CONV_STAGES = (32, 64, 128)
DENSE_HIDDEN = (512, 256)


def build_trainer(case: str, steps: int):
    """Build the classifier of `case` in a PhaseTrainer, and its data."""
    import jax
    import numpy as np
    import optax
    from flax import nnx

    from finetune.model import Classifier, Head
    from finetune.run import classifier_loss_fn, default_config
    from pretrain.conv import conv_stage
    from pretrain.encoders import build_encoder, dense_spec
    from pretrain.train import PhaseTrainer

    if case == "conv":
        stages = [conv_stage(f, kernel_size=5, batch_norm=True) for f in CONV_STAGES]
        spec = {"family": "conv", "input_shape": [28, 28, 1], "stages": stages}
        shape = (28, 28, 1)
    else:
        spec = dense_spec((784,), list(DENSE_HIDDEN), activation="relu")
        shape = (784,)
    encoder = build_encoder(spec, rngs=nnx.Rngs(0))
    head = Head(encoder.features, (), CLASSES, rngs=nnx.Rngs(1))
    model = Classifier(encoder, head, encoder_batch_stats_train=True)

    trainer = PhaseTrainer(
        model,
        classifier_loss_fn(default_config()),
        optax.adam(1e-3),
        rng=jax.random.key(0),
        batch_size=BATCH,
        scan=case != "conv",
        name=f"{case}_finetune",
    )
    rows = steps * BATCH
    rng = np.random.default_rng(0)
    data = {
        "x": rng.uniform(size=(rows, *shape)).astype(np.float32),
        "y": rng.integers(0, CLASSES, size=rows).astype(np.int32),
    }
    return trainer, data


def worker(case: str, steps: int, seconds: float, cores: set[int]) -> None:
    """Time the case in this process, pinned to `cores`, and print its steps
    per second as one JSON line.

    After the compiling epoch the worker prints "ready" and waits for a line
    on stdin, so that workers started together also time together.
    """
    # Pinning comes before JAX starts its threads, and threads inherit the
    # affinity of the thread that starts them.
    os.sched_setaffinity(0, cores)
    import jax
    import jax.numpy as jnp

    trainer, data = build_trainer(case, steps)
    if trainer.scan:
        data = jax.device_put({key: jnp.asarray(value) for key, value in data.items()})
    trainer.run_epoch(data)
    print("ready", flush=True)
    sys.stdin.readline()

    # run_epoch ends in a device_get of the metrics, so each epoch is finished
    # when it returns.
    start, epochs = time.perf_counter(), 0
    while True:
        trainer.run_epoch(data)
        epochs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    print(json.dumps({"steps_per_second": epochs * steps / elapsed}), flush=True)


def start_worker(args, cores: set[int]) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "experiments.benchmarks.pinned",
        "--worker",
        f"--case={args.case}",
        f"--steps={args.steps}",
        f"--seconds={args.seconds}",
        f"--cores={','.join(map(str, sorted(cores)))}",
    ]
    return subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def read_line(process: subprocess.Popen) -> str:
    line = process.stdout.readline()
    if not line:
        process.wait()
        raise RuntimeError(
            f"benchmark worker failed with exit status {process.returncode}; "
            "its traceback is printed above"
        )
    return line.strip()


def run_workers(args, core_sets: list[set[int]]) -> list[float]:
    """Start one worker per core set, start their timing together once all
    have compiled, and return each worker's steps per second."""
    workers = [start_worker(args, cores) for cores in core_sets]
    for process in workers:
        read_line(process)  # "ready"
    for process in workers:
        process.stdin.write("go\n")
        process.stdin.flush()
    rates = [json.loads(read_line(process))["steps_per_second"] for process in workers]
    for process in workers:
        process.wait()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=("conv", "dense"), default="conv")
    parser.add_argument("--steps", type=int, default=60, help="steps per epoch")
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="timed seconds per worker"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cores", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        cores = {int(core) for core in args.cores.split(",")}
        worker(args.case, args.steps, args.seconds, cores)
        return

    from experiments.benchmarks.common import machine_lines

    cores = sorted(os.sched_getaffinity(0))
    print("\n".join(machine_lines()))
    print(f"case {args.case}, batch {BATCH}, {args.steps} steps per epoch")

    (one,) = run_workers(args, [set(cores)])
    print(f"1 process on cores {cores}: {one:.1f} steps/s")

    worker_rates = run_workers(args, [{core} for core in cores])
    total = sum(worker_rates)
    rates = ", ".join(f"{rate:.1f}" for rate in worker_rates)
    print(f"{len(cores)} processes, one per core: {total:.1f} steps/s ({rates})")
    print(f"ratio, pinned processes over one process: {total / one:.2f}x")


if __name__ == "__main__":
    main()
