"""Speed of one Transformer training step, in examples per second.

    python -m experiments.benchmarks.transformer [--steps 10] [--repeats 5]

Two steps are timed at each size, both through `pretrain.train.PhaseTrainer`
with the epoch as one compiled `lax.scan`, on random inputs:

- "mae": the MAE pretraining step (encoder over the 25% visible patches, a
  2-block decoder of width 32 over all patches, masked-patch loss);
- "supervised": the encoder over all patches with a linear head and
  cross-entropy, as in fine-tuning with every layer trainable.

Each figure is the median over `--repeats` epochs of `--steps` steps at
batch 256, after one compiling epoch, in wall-clock time and in the
process's CPU time (all threads), which depends less on other jobs sharing
the machine. Prints a Markdown table.
"""

import argparse
import os
import platform
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from pretrain.mae import MaskedAutoencoder, mae_loss_fn
from pretrain.masked_config import mae_config
from pretrain.optimizer import adamw_warmup_cosine
from pretrain.train import PhaseTrainer, weighted_mean
from pretrain.transformer import TransformerEncoder, transformer_spec

BATCH = 256
# (name, input shape, patch size, width, depth, heads)
SIZES = [
    ("digits", (8, 8, 1), 2, 64, 4, 4),
    ("mnist5k", (28, 28, 1), 4, 128, 4, 4),
    ("mnist1d", (40, 1), 2, 64, 4, 4),
]


class Supervised(nnx.Module):
    def __init__(self, encoder: TransformerEncoder, *, rngs: nnx.Rngs):
        self.encoder = encoder
        self.head = nnx.Linear(encoder.width, 10, rngs=rngs)


def supervised_loss(model: Supervised, batch, rng):
    del rng
    logits = model.head(model.encoder(batch["x"], train=True))
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])
    return weighted_mean(losses, batch["weight"]), {}


def build(kind: str, spec: dict):
    rngs = nnx.Rngs(0)
    encoder = TransformerEncoder(spec, rngs=rngs)
    if kind == "supervised":
        return Supervised(encoder, rngs=rngs), supervised_loss
    model = MaskedAutoencoder(
        encoder,
        patch_features=encoder.embed.in_features,
        width=32,
        depth=2,
        heads=4,
        mlp_ratio=4.0,
        rngs=rngs,
    )
    return model, mae_loss_fn(mae_config())


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def examples_per_second(
    kind: str, spec: dict, steps: int, repeats: int
) -> tuple[float, float]:
    """Examples per wall-clock second and per CPU second of `kind` steps."""
    model, loss_fn = build(kind, spec)
    tx = adamw_warmup_cosine(
        1e-3, warmup_steps=10, total_steps=10_000, weight_decay=0.05, clip_norm=1.0
    )
    trainer = PhaseTrainer(
        model, loss_fn, tx, rng=jax.random.key(0), batch_size=BATCH, name=kind
    )
    n = steps * BATCH
    rng = np.random.default_rng(0)
    data = {
        "x": jnp.asarray(rng.uniform(size=(n, *spec["input_shape"])), jnp.float32),
        "y": jnp.asarray(rng.integers(0, 10, n), jnp.int32),
    }
    trainer.run_epoch(data)  # compiles
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), cpu_seconds()
        trainer.run_epoch(data)  # returns host floats, so the epoch has finished
        wall.append(time.perf_counter() - start)
        cpu.append(cpu_seconds() - start_cpu)
    return n / statistics.median(wall), n / statistics.median(cpu)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="steps per timed epoch")
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs")
    args = parser.parse_args(argv)

    print(
        f"jax {jax.__version__}, backend {jax.default_backend()}, "
        f"{os.cpu_count()} CPUs ({cpu_model()}), batch {BATCH}"
    )
    print()
    print(
        "| size | input | patches | width | depth | heads | step "
        "| examples/s | examples/CPU s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, shape, patch, width, depth, heads in SIZES:
        kind = "image" if len(shape) == 3 else "signal"
        spec = transformer_spec(
            kind, shape, patch_size=patch, width=width, depth=depth, heads=heads
        )
        for step in ("mae", "supervised"):
            rate, cpu_rate = examples_per_second(step, spec, args.steps, args.repeats)
            print(
                f"| {name} | {'x'.join(map(str, shape))}, patch {patch} | "
                f"{spec['sequence_length']} | {width} | {depth} | {heads} | "
                f"{step} | {rate:,.0f} | {cpu_rate:,.0f} |"
            )


if __name__ == "__main__":
    main()
