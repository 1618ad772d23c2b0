"""Seconds per epoch of the dense denoising autoencoder layer as the number of
examples and the width grow.

The layer is the tied 784 -> width layer of `pretrain dae` at batch 256 on
uniform random inputs in [0, 1]. When the time is linear in the examples,
the seconds per example stay flat. Each product costs examples x 784 x
width, so when the time is linear in the width as well, the seconds per
example and hidden unit stay flat.
"""

import numpy as np

from experiments.benchmarks.common import AE_HIDDEN, dae_trainer, epoch_seconds

VISIBLE = 784


def inputs(n: int) -> dict[str, np.ndarray]:
    x = np.random.default_rng(0).uniform(size=(n, VISIBLE)).astype(np.float32)
    return {"x": x}


def run(examples: list[int], widths: list[int], width_examples: int, epochs: int):
    """Print seconds per epoch over `examples` rows at width 500, and over
    `widths` at `width_examples` rows."""
    print(f"dense AE layer {VISIBLE}->{AE_HIDDEN}, median of {epochs} epochs:")
    print("  examples | s per epoch | microseconds per example")
    for n in examples:
        wall, _ = epoch_seconds(dae_trainer(VISIBLE), inputs(n), epochs)
        print(f"  {n:8d} | {wall:11.4f} | {wall / n * 1e6:8.2f}")

    print(f"dense AE layer {VISIBLE}->width, {width_examples} examples:")
    print("  width | s per epoch | microseconds per example | ns per example and unit")
    data = inputs(width_examples)
    for width in widths:
        wall, _ = epoch_seconds(dae_trainer(VISIBLE, hidden=width), data, epochs)
        per_example = wall / width_examples
        print(
            f"  {width:5d} | {wall:11.4f} | {per_example * 1e6:8.2f} | "
            f"{per_example / width * 1e9:8.2f}"
        )
