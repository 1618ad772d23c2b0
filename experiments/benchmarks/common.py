"""Timing helpers and the dense denoising autoencoder layer that several
benchmarks share."""

import os
import platform
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from pretrain.autoencoder import AutoencoderLayer, autoencoder_config, layer_loss_fn
from pretrain.data import fit_scaler, load_dataset
from pretrain.rng import DEFAULT_RNG_IMPL
from pretrain.train import PhaseTrainer

MATMUL_SIZE = 2048
# The dense layer of the roofline, peer and growth figures: a tied denoising
# autoencoder layer as `pretrain dae` trains it (masking noise 0.25, sigmoid
# code, cross-entropy loss, Adam).
AE_HIDDEN = 500
AE_BATCH = 256
AE_LEARNING_RATE = 1e-3
AE_NOISE_LEVEL = 0.25


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Return the wall-clock and process CPU seconds (all threads) of `fn()`."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def median_pair(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    """Median wall-clock and median CPU seconds of (wall, cpu) pairs."""
    return (
        statistics.median(p[0] for p in pairs),
        statistics.median(p[1] for p in pairs),
    )


def matmul_seconds(repeats: int, size: int = MATMUL_SIZE) -> tuple[float, float]:
    """Median wall and CPU seconds of a jitted size x size float32 jnp.dot."""
    keys = jax.random.split(jax.random.key(0))
    a = jax.random.normal(keys[0], (size, size), jnp.float32)
    b = jax.random.normal(keys[1], (size, size), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    return median_pair(
        [timed(lambda: dot(a, b).block_until_ready()) for _ in range(repeats)]
    )


def matmul_flops(size: int = MATMUL_SIZE) -> int:
    return 2 * size**3


def machine_lines() -> list[str]:
    """Describe the CPU, JAX devices and load, for the head of a report."""
    cpu = platform.processor() or "unknown"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            names = [
                line.split(":", 1)[1].strip() for line in f if "model name" in line
            ]
        cpu = names[0] if names else cpu
    load = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    return [
        f"machine: {os.cpu_count()} CPUs, {cpu}, {platform.machine()}",
        f"jax {jax.__version__}, backend {jax.default_backend()}, "
        f"devices {jax.devices()}",
        f"load average: {load}",
    ]


def mnist5k_pool(data_dir: str) -> np.ndarray:
    """Load the min-max scaled mnist5k training pool, flattened: float32 [4000, 784]."""
    dataset = load_dataset("mnist5k", data_dir=data_dir)
    x = fit_scaler(dataset.train_x, "minmax").apply(dataset.train_x)
    return x.reshape(len(x), -1).astype(np.float32)


def dae_config():
    return autoencoder_config(
        noise="mask", noise_level=AE_NOISE_LEVEL, learning_rate=AE_LEARNING_RATE
    )


def dae_trainer(
    in_features: int, hidden: int = AE_HIDDEN, batch_size: int = AE_BATCH
) -> PhaseTrainer:
    """Build a `PhaseTrainer` of one tied denoising autoencoder layer as
    `pretrain dae` does, with its own compiled step (no cache key)."""
    layer = AutoencoderLayer(
        in_features,
        hidden,
        activation="sigmoid",
        batch_norm=False,
        tied=True,
        rngs=nnx.Rngs(0),
    )
    return PhaseTrainer(
        layer,
        layer_loss_fn(dae_config(), "cross_entropy"),
        optax.adam(AE_LEARNING_RATE),
        rng=jax.random.key(0, impl=DEFAULT_RNG_IMPL),
        batch_size=batch_size,
        name="dae_layer",
    )


def epoch_seconds(
    trainer: PhaseTrainer, data: dict[str, np.ndarray], epochs: int
) -> tuple[float, float]:
    """Median wall and CPU seconds per epoch of `trainer` over `data`, after
    one compiling epoch. `run_epoch` ends in a device_get of the metrics, so
    each timing covers the finished epoch."""
    if trainer.scan:
        data = jax.device_put({key: jnp.asarray(value) for key, value in data.items()})
    trainer.run_epoch(data)
    return median_pair([timed(lambda: trainer.run_epoch(data)) for _ in range(epochs)])
