"""Speed and quality of `pretrain.rbm` next to scikit-learn's BernoulliRBM.

    python -m experiments.benchmarks.rbm [--epochs 5] [--digits-epochs 30]

Both sides run scikit-learn's algorithm: persistent CD with one Gibbs step
and sampled visible units, plain SGD at the same learning rate (no momentum,
no weight decay). Speed is measured on mnist5k (784 visible, 500 hidden,
batch 100). Quality is measured on digits at 100 labels, with logistic
regression on the hidden probabilities and with `finetune` (preset gradual)
of our export.
Datasets are prepared in a temporary TFDS directory unless --data-dir is
given.
"""

import argparse
import os
import platform
import statistics
import tempfile
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import BernoulliRBM
from threadpoolctl import threadpool_limits

import finetune.run
from pretrain import config as config_lib
from pretrain import rbm
from pretrain.data import fit_scaler, label_split, load_dataset
from pretrain.export import load_encoder
from pretrain.run import default_config
from pretrain.run import run as pretrain_run
from pretrain.train import PhaseTrainer, predict

HIDDEN = 500
LEARNING_RATE = 0.05
MATMUL_SIZE = 2048


def sklearn_settings(**changes):
    """Our config set to scikit-learn's algorithm (PCD-1, sampled visible units)."""
    config = default_config("rbm")
    config.update(
        hidden=(HIDDEN,),
        persistent=True,
        cd_k=1,
        sample_visible=True,
        batch_size=100,
        learning_rate=LEARNING_RATE,
        momentum_initial=0.0,
        momentum_final=0.0,
        weight_decay=0.0,
        monitor_fraction=0.0,  # scikit-learn trains on the whole pool
        ais_every=0,
    )
    config.update(changes)
    return config


def timed(fn) -> tuple[float, float]:
    """Measure wall-clock and process CPU seconds (all threads) of `fn()`.

    On a shared machine the wall time grows with the load of other
    processes. The CPU time counts only the time this process ran, so it is
    the steadier figure of how much work a computation costs.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def median_pair(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(p[0] for p in pairs), statistics.median(
        p[1] for p in pairs
    )


def matmul_seconds(repeats: int = 20) -> tuple[float, float]:
    """Median wall and CPU seconds of a jitted 2048x2048 float32 jnp.dot."""
    keys = jax.random.split(jax.random.key(0))
    a = jax.random.normal(keys[0], (MATMUL_SIZE, MATMUL_SIZE), jnp.float32)
    b = jax.random.normal(keys[1], (MATMUL_SIZE, MATMUL_SIZE), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    return median_pair(
        [timed(lambda: dot(a, b).block_until_ready()) for _ in range(repeats)]
    )


def ours_epoch_seconds(x: np.ndarray, batch_size: int, epochs: int) -> tuple:
    """Median wall and CPU seconds per epoch after one warm-up (compiling) epoch."""
    config = sklearn_settings(batch_size=batch_size)
    model = rbm.RBM(x.shape[1], HIDDEN, chains=batch_size, rngs=nnx.Rngs(0))
    steps = rbm.steps_per_epoch(len(x), batch_size, False)
    trainer = PhaseTrainer(
        model,
        rbm.rbm_loss_fn(config),
        rbm.rbm_optimizer(config, steps),
        rng=jax.random.key(0, impl=config.rng_impl),
        batch_size=batch_size,
    )
    data = jax.device_put({"x": jnp.asarray(x)})
    trainer.run_epoch(data)
    # run_epoch ends in a device_get of the metrics, so it waits for the epoch.
    return median_pair([timed(lambda: trainer.run_epoch(data)) for _ in range(epochs)])


def sklearn_epoch_seconds(x: np.ndarray, epochs: int) -> tuple[float, float]:
    model = BernoulliRBM(
        n_components=HIDDEN,
        learning_rate=LEARNING_RATE,
        batch_size=100,
        n_iter=epochs,
        random_state=0,
    )
    wall, cpu = timed(lambda: model.fit(x))
    return wall / epochs, cpu / epochs


def rbm_step_flops(batch_size: int, visible: int) -> int:
    # Five products per step: data and chain hidden inputs, the chain
    # reconstruction, and the positive and negative statistics.
    return 5 * 2 * batch_size * visible * HIDDEN


def speed(data_dir: str, epochs: int, rounds: int) -> None:
    dataset = load_dataset("mnist5k", data_dir=data_dir)
    x = fit_scaler(dataset.train_x, "minmax").apply(dataset.train_x)
    x = x.reshape(len(x), -1)
    print(f"mnist5k pool: {x.shape[0]} rows x {x.shape[1]} visible, {HIDDEN} hidden")

    # Rounds interleave the contenders, so a change of load on a shared
    # machine reaches all of them, and each RBM timing has a matmul timing
    # next to it. Each figure is the median over rounds.
    names = (
        "ours",
        "ours_256",
        "sklearn_float32",
        "sklearn_float64",
        "sklearn_float32_1thread",
    )
    timings = {name: [] for name in names}
    matmul = {100: [], 256: []}
    for _ in range(rounds):
        for batch_size, name in ((100, "ours"), (256, "ours_256")):
            matmul[batch_size].append(matmul_seconds())
            timings[name].append(ours_epoch_seconds(x, batch_size, epochs))
        timings["sklearn_float32"].append(sklearn_epoch_seconds(x, epochs))
        timings["sklearn_float64"].append(
            sklearn_epoch_seconds(x.astype(np.float64), epochs)
        )
        # OpenBLAS's threads wait for each other after every small product,
        # which costs far more on a loaded machine than on an idle one.
        with threadpool_limits(limits=1, user_api="blas"):
            timings["sklearn_float32_1thread"].append(sklearn_epoch_seconds(x, epochs))

    matmul_flops = 2 * MATMUL_SIZE**3
    for clock, index in (("wall-clock", 0), ("CPU", 1)):
        seconds = {name: median_pair(timings[name])[index] for name in names}
        peak = matmul_flops / median_pair(matmul[100] + matmul[256])[index]
        print(f"{clock} time:")
        print(f"  float32 matmul {MATMUL_SIZE}x{MATMUL_SIZE}: {peak / 1e9:.1f} GFLOP/s")
        for name in names[:1] + names[2:]:
            print(f"  seconds per epoch, {name} (batch 100): {seconds[name]:.4f}")
        for other in names[2:]:
            print(f"  speed-up over {other}: {seconds[other] / seconds['ours']:.2f}x")
        for batch_size, name in ((100, "ours"), (256, "ours_256")):
            steps = rbm.steps_per_epoch(len(x), batch_size, False)
            fractions = [
                steps
                * rbm_step_flops(batch_size, x.shape[1])
                / rbm_time[index]
                / (matmul_flops / matmul_time[index])
                for rbm_time, matmul_time in zip(
                    timings[name], matmul[batch_size], strict=True
                )
            ]
            achieved = steps * rbm_step_flops(batch_size, x.shape[1]) / seconds[name]
            print(
                f"  batch {batch_size}: {seconds[name]:.4f} s per epoch, "
                f"{achieved / 1e9:.1f} GFLOP/s; per round, fraction of the "
                "adjacent matmul: "
                + ", ".join(f"{f:.0%}" for f in fractions)
                + f" (median {statistics.median(fractions):.0%})"
            )


def logistic_accuracy(train_x, train_y, test_x, test_y) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(max_iter=2000).fit(train_x, train_y)
    return float(model.score(test_x, test_y))


def _encode(module, x):
    return module(x)


def _export_scores(export: str, data_dir: str, workdir: str, digits) -> tuple:
    """Logistic regression on the export's hidden probabilities, and finetune."""
    pool, test, train_idx, train_y, test_y = digits
    encoder = load_encoder(export).module
    probe = logistic_accuracy(
        predict(encoder, _encode, pool[train_idx]),
        train_y,
        predict(encoder, _encode, test),
        test_y,
    )
    finetune_config = config_lib.build_config(
        finetune.run.default_config,
        overrides={
            "encoder": export,
            "labels": "100",
            "preset": "gradual",
            "data_dir": data_dir,
        },
    )
    tuned = finetune.run.run(finetune_config, workdir)
    return probe, tuned["test_accuracy"]


def quality(data_dir: str, epochs: int, workdir: str) -> None:
    dataset = load_dataset("digits", data_dir=data_dir)
    scaler = fit_scaler(dataset.train_x, "minmax")
    pool = scaler.apply(dataset.train_x).reshape(len(dataset.train_x), -1)
    test = scaler.apply(dataset.test_x).reshape(len(dataset.test_x), -1)
    split = label_split(dataset.train_y, 100, dataset.num_classes, 0)
    labels = dataset.train_y[split.train_idx]
    digits = (pool, test, split.train_idx, labels, dataset.test_y)

    same = config_lib.build_config(
        lambda: sklearn_settings(epochs=epochs),
        overrides={"dataset": "digits", "data_dir": data_dir},
    )
    export = pretrain_run("rbm", same, os.path.join(workdir, "rbm"))
    ours, tuned = _export_scores(
        export, data_dir, os.path.join(workdir, "finetune"), digits
    )

    theirs_model = BernoulliRBM(
        n_components=HIDDEN,
        learning_rate=LEARNING_RATE,
        batch_size=100,
        n_iter=epochs,
        random_state=0,
    ).fit(pool)
    theirs = logistic_accuracy(
        theirs_model.transform(pool[split.train_idx]),
        labels,
        theirs_model.transform(test),
        dataset.test_y,
    )
    pixels = logistic_accuracy(pool[split.train_idx], labels, test, dataset.test_y)

    # Our defaults (CD-1, momentum, weight decay, 10% held out) for context.
    default = config_lib.build_config(
        lambda: default_config("rbm"),
        overrides={"dataset": "digits", "data_dir": data_dir, "ais_every": 0},
    )
    default_export = pretrain_run("rbm", default, os.path.join(workdir, "default"))
    default_probe, default_tuned = _export_scores(
        default_export, data_dir, os.path.join(workdir, "finetune_default"), digits
    )

    print(f"digits, 100 labels, test set of {len(test)}; test accuracy:")
    print(f"  logistic regression on pixels:                  {pixels:.4f}")
    print(f"  scikit-learn's algorithm, {epochs} epochs, {HIDDEN} hidden:")
    print(f"    logistic regression on our p(h | v):          {ours:.4f}")
    print(f"    logistic regression on sklearn transform:     {theirs:.4f}")
    print(f"    finetune (gradual) of our export:             {tuned:.4f}")
    print(f"  our defaults, {default.epochs} epochs, hidden {default.hidden}:")
    print(f"    logistic regression on p(h | v):              {default_probe:.4f}")
    print(f"    finetune (gradual) of the export:             {default_tuned:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--digits-epochs", type=int, default=30, help="RBM epochs")
    parser.add_argument("--data-dir", help="TFDS data directory (default: a temp dir)")
    args = parser.parse_args()

    cpu = "unknown"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            names = [
                line.split(":", 1)[1].strip() for line in f if "model name" in line
            ]
        cpu = names[0] if names else cpu
    print(f"machine: {os.cpu_count()} CPUs, {cpu}, {platform.machine()}")
    print(f"jax {jax.__version__}, devices {jax.devices()}")
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or os.path.join(tmp, "tfds")
        speed(data_dir, args.epochs, args.rounds)
        quality(data_dir, args.digits_epochs, tmp)
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
