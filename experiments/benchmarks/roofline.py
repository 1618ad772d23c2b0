"""Achieved FLOP/s of four training steps as a fraction of the matmul figure.

Every step runs through `pretrain.train.PhaseTrainer` at batch 256 on random
inputs (the autoencoder layer also at batch 512): the RBM step of
`pretrain rbm` (scikit-learn's algorithm, 784 -> 500),
the tied denoising autoencoder layer of `pretrain dae` (784 -> 500, Adam),
the second stage of `pretrain conv_ae` (16 -> 32 channels on 14x14 maps, one
compiled step per batch as that method runs on CPU) and one Transformer
block with a linear head (mnist5k patches: 49 of 4x4, width 128, 4 heads).
FLOPs per step come from XLA's `cost_analysis()["flops"]` of the compiled
step. For the two dense steps the analytic count of their matrix products is
printed next to it.
"""

import statistics
from collections.abc import Callable
from dataclasses import dataclass

import jax
import numpy as np
import optax
from flax import nnx

from experiments.benchmarks.common import (
    AE_BATCH,
    AE_HIDDEN,
    dae_trainer,
    epoch_seconds,
    matmul_flops,
    matmul_seconds,
)
from experiments.benchmarks.rbm import rbm_step_flops, sklearn_settings
from experiments.benchmarks.transformer import Supervised, supervised_loss
from pretrain import rbm
from pretrain.conv import conv_stage
from pretrain.conv_autoencoder import (
    ConvAutoencoderStage,
    conv_config,
    reconstruction_loss_fn,
)
from pretrain.rng import DEFAULT_RNG_IMPL
from pretrain.train import PhaseTrainer
from pretrain.transformer import TransformerEncoder, transformer_spec

BATCH = 256
VISIBLE = 784


@dataclass
class StepCase:
    name: str
    trainer: PhaseTrainer
    data: dict[str, np.ndarray]  # one timed epoch of inputs
    analytic_flops: int | None  # matrix products only; None: not counted


def compiled_flops(trainer: PhaseTrainer, data: dict[str, np.ndarray]) -> float | None:
    """XLA's FLOP count of one compiled step of `trainer`, or None when the
    backend reports none.

    NOTE: this lowers the trainer's private jitted step, so a change of
    `pretrain.train._CompiledSteps` can break it. Lowering traces the step
    once more, which adds one to `trainer.trace_count`.
    """
    batch = {key: value[: trainer.batch_size] for key, value in data.items()}
    batch["weight"] = np.ones(trainer.batch_size, np.float32)
    compiled = trainer._compiled.step.lower(trainer.state, batch).compile()
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list | tuple):  # older jaxlibs return one per device
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        return None
    return float(analysis["flops"])


def rbm_case(steps: int) -> StepCase:
    config = sklearn_settings(batch_size=BATCH)
    model = rbm.RBM(VISIBLE, AE_HIDDEN, chains=BATCH, rngs=nnx.Rngs(0))
    trainer = PhaseTrainer(
        model,
        rbm.rbm_loss_fn(config),
        rbm.rbm_optimizer(config, steps),
        rng=jax.random.key(0, impl=config.rng_impl),
        batch_size=BATCH,
        name="rbm",
    )
    data = {"x": uniform((steps * BATCH, VISIBLE))}
    flops = rbm_step_flops(BATCH, VISIBLE)
    return StepCase("RBM PCD-1 784->500", trainer, data, flops)


def dense_ae_flops(batch: int, visible: int, hidden: int) -> int:
    # Encode and decode forward, then the gradients of the decoder input, of
    # the kernel through the decoder and of the kernel through the encoder:
    # five products of batch x visible x hidden (the input gradient is unused).
    return 5 * 2 * batch * visible * hidden


def dense_ae_case(steps: int, batch_size: int = AE_BATCH) -> StepCase:
    trainer = dae_trainer(VISIBLE, batch_size=batch_size)
    data = {"x": uniform((steps * batch_size, VISIBLE))}
    flops = dense_ae_flops(batch_size, VISIBLE, AE_HIDDEN)
    name = f"tied denoising AE 784->500, batch {batch_size}"
    return StepCase(name, trainer, data, flops)


def dense_ae_512_case(steps: int) -> StepCase:
    # Adam's update of the 784x500 kernel costs the same per step at any
    # batch, so a larger batch spends a larger share of the step in products.
    return dense_ae_case(steps, batch_size=2 * AE_BATCH)


def conv_stage_case(steps: int) -> StepCase:
    config = conv_config()
    stage = conv_stage(32, kernel_size=3, activation="relu", pool="max", pool_size=2)
    model = ConvAutoencoderStage(16, stage, (14, 14), rngs=nnx.Rngs(0))
    trainer = PhaseTrainer(
        model,
        reconstruction_loss_fn(config, "squared_error"),
        optax.adam(config.learning_rate),
        rng=jax.random.key(0, impl=DEFAULT_RNG_IMPL),
        batch_size=BATCH,
        scan=config.scan,
        name="conv_stage",
    )
    data = {"x": uniform((steps * BATCH, 14, 14, 16))}
    return StepCase("conv AE stage 16->32 ch, 14x14", trainer, data, None)


def transformer_case(steps: int) -> StepCase:
    spec = transformer_spec(
        "image", (28, 28, 1), patch_size=4, width=128, depth=1, heads=4
    )
    rngs = nnx.Rngs(0)
    model = Supervised(TransformerEncoder(spec, rngs=rngs), rngs=rngs)
    trainer = PhaseTrainer(
        model,
        supervised_loss,
        optax.adam(1e-3),
        rng=jax.random.key(0),
        batch_size=BATCH,
        name="transformer_block",
    )
    data = {
        "x": uniform((steps * BATCH, 28, 28, 1)),
        "y": np.random.default_rng(0).integers(0, 10, steps * BATCH).astype(np.int32),
    }
    return StepCase("Transformer block, width 128", trainer, data, None)


def uniform(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(0).uniform(size=shape).astype(np.float32)


CASES: tuple[Callable[[int], StepCase], ...] = (
    rbm_case,
    dense_ae_case,
    dense_ae_512_case,
    conv_stage_case,
    transformer_case,
)


def run(steps: int, repeats: int, rounds: int = 1) -> None:
    """Print each step's FLOP/s and its fraction of a matmul figure measured
    just before it, so that a change of load on a shared machine reaches both.

    With several `rounds`, each round measures the matmul and the step again,
    and the fractions printed are the median over rounds and their range.
    One timing of a few milliseconds per step on a shared 2-core machine
    moves by 10% or more between rounds, so one round can miss a goal that
    the median meets, or the reverse.
    """
    print(
        f"steps at batch {BATCH}, {steps} steps per timed epoch, median of "
        f"{repeats} epochs; FLOPs from XLA cost_analysis (analytic count of "
        "the matrix products in brackets); fractions of the float32 matmul "
        "2048x2048 (median jnp.dot) measured before each step"
        + (f", median over {rounds} rounds [min, max]:" if rounds > 1 else ":")
    )
    for make_case in CASES:
        case = make_case(steps)
        xla = compiled_flops(case.trainer, case.data)
        flops = xla if xla is not None else case.analytic_flops
        step_seconds, peaks = [], []
        for _ in range(rounds):
            peak_wall, peak_cpu = matmul_seconds(repeats=max(repeats, 5))
            wall, cpu = epoch_seconds(case.trainer, case.data, repeats)
            peaks.append((matmul_flops() / peak_wall, matmul_flops() / peak_cpu))
            step_seconds.append((wall / steps, cpu / steps))
        print("  " + format_case(case, xla, flops, step_seconds, peaks))


def format_case(case, xla, flops, step_seconds, peaks) -> str:
    """Format one step's figures over rounds. `step_seconds` and `peaks` hold
    one (wall-clock, CPU time) pair per round: seconds per step and matmul
    FLOP/s."""
    counted = "n/a" if xla is None else f"{xla / 1e9:.3f}"
    if case.analytic_flops is not None:
        counted += f" ({case.analytic_flops / 1e9:.3f})"
    median_step = statistics.median(seconds[0] for seconds in step_seconds)
    line = f"{case.name}: {median_step * 1e3:.2f} ms/step, GFLOP/step {counted}"
    if flops is None:
        return line + ", no FLOP count"
    parts = []
    for clock in (0, 1):
        achieved = [flops / seconds[clock] for seconds in step_seconds]
        peak = [round_peaks[clock] for round_peaks in peaks]
        fractions = [a / p for a, p in zip(achieved, peak, strict=True)]
        part = (
            f"{('wall', 'CPU')[clock]} {statistics.median(achieved) / 1e9:.1f} of "
            f"{statistics.median(peak) / 1e9:.1f} GFLOP/s = "
            f"{statistics.median(fractions):.0%}"
        )
        if len(fractions) > 1:
            part += f" [{min(fractions):.0%}, {max(fractions):.0%}]"
        parts.append(part)
    return f"{line}; " + "; ".join(parts)
