"""Where the RBM step's time goes: its matrix products alone, and the step
with each PRNG implementation, as fractions of the matmul figure; then each
product alone, jitted and in NumPy; then the softplus of the free energy,
JAX's and `pretrain.numerics.softplus`.

    python -m experiments.benchmarks.rbm_breakdown [--batch 256]

The products-alone case runs the step's three products (data and chain
hidden inputs, the reconstruction, both gradient statistics in one) in a
`lax.scan` of 20 steps, each followed by a sum that keeps XLA from
shrinking it, with every operand shifted by the carry so that XLA cannot
hoist a product out of the loop. The gap between that figure and the whole step is the
step's elementwise work.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.benchmarks.common import matmul_flops, matmul_seconds
from experiments.benchmarks.rbm import HIDDEN, rbm_step_flops, sklearn_settings
from pretrain import rbm
from pretrain.numerics import softplus
from pretrain.train import PhaseTrainer

VISIBLE = 784
STEPS = 20
REPEATS = 7


def median_seconds(fn) -> float:
    fn()  # compile
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def products_seconds(batch: int) -> float:
    keys = jax.random.split(jax.random.key(0), 3)
    kernel = 0.01 * jax.random.normal(keys[0], (VISIBLE, HIDDEN))
    both = jax.random.uniform(keys[1], (2 * batch, VISIBLE))
    hidden = jax.random.uniform(keys[2], (2 * batch, HIDDEN))

    @jax.jit
    def run(kernel, both, hidden):
        def body(shift, _):
            # Every operand depends on the carry: XLA hoists a product of
            # loop-invariant operands out of the scan, which would time it once.
            weights, visible, hidden_ = kernel + shift, both + shift, hidden + shift
            pre = visible @ weights
            reconstruction = hidden_[:batch] @ weights.T
            gradient_statistics = visible.T @ hidden_
            total = (
                jnp.sum(pre) + jnp.sum(reconstruction) + jnp.sum(gradient_statistics)
            )
            return shift + 1e-12 * total, None

        return jax.lax.scan(body, 0.0, None, length=STEPS)[0]

    return median_seconds(lambda: run(kernel, both, hidden).block_until_ready())


def step_seconds(batch: int, rng_impl: str) -> float:
    config = sklearn_settings(batch_size=batch, rng_impl=rng_impl)
    model = rbm.RBM(VISIBLE, HIDDEN, chains=batch, rngs=nnx.Rngs(0))
    trainer = PhaseTrainer(
        model,
        rbm.rbm_loss_fn(config),
        rbm.rbm_optimizer(config, STEPS),
        rng=jax.random.key(0, impl=rng_impl),
        batch_size=batch,
    )
    x = np.random.default_rng(0).uniform(size=(STEPS * batch, VISIBLE))
    data = jax.device_put({"x": jnp.asarray(x, jnp.float32)})
    return median_seconds(lambda: trainer.run_epoch(data))


def softplus_seconds(fn, batch: int) -> tuple[float, float]:
    """Time sum(fn(x)) alone and with its gradient (median seconds each),
    where x has the shape of the stacked hidden pre-activations."""
    x = 3.0 * jax.random.normal(jax.random.key(0), (2 * batch, HIDDEN))
    value = jax.jit(lambda x: jnp.sum(fn(x)))
    both = jax.jit(jax.value_and_grad(lambda x: jnp.sum(fn(x))))
    return (
        median_seconds(lambda: value(x).block_until_ready()),
        median_seconds(lambda: jax.block_until_ready(both(x))),
    )


def product_seconds(product, left: np.ndarray, right: np.ndarray) -> tuple:
    """Median seconds of `product(left, right)` jitted on the device and in NumPy."""
    jitted = jax.jit(product)
    on_device = jax.device_put((left, right))
    xla = median_seconds(lambda: jitted(*on_device).block_until_ready())
    return xla, median_seconds(lambda: product(left, right))


def single_products(batch: int) -> list[tuple[str, int, float, float]]:
    """Time each of the step's three products alone, jitted and in NumPy.

    Returns (name, FLOPs, XLA seconds, NumPy seconds) per product, medians.
    The gradient product contracts over the stacked batch rows. XLA:CPU in
    jax 0.10.2 runs it through its default dot, and the two forward products
    through its YNNPACK fusion (seen in the compiled HLO).
    """
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(VISIBLE, HIDDEN)).astype(np.float32)
    both = rng.uniform(size=(2 * batch, VISIBLE)).astype(np.float32)
    hidden = rng.uniform(size=(2 * batch, HIDDEN)).astype(np.float32)
    stacked_flops = 2 * (2 * batch) * VISIBLE * HIDDEN
    cases = (
        ("hidden inputs [2B, V] x [V, H]", lambda a, b: a @ b, both, kernel, 1),
        (
            "reconstruction [B, H] x [H, V]",
            lambda a, b: a @ b.T,
            hidden[:batch],
            kernel,
            0.5,
        ),
        ("gradient [2B, V]^T x [2B, H]", lambda a, b: a.T @ b, both, hidden, 1),
    )
    results = []
    # The last entry of a case is its FLOPs as a fraction of the stacked product's.
    for name, product, left, right, flops_fraction in cases:
        xla, numpy = product_seconds(product, left, right)
        results.append((name, int(flops_fraction * stacked_flops), xla, numpy))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()

    flops = STEPS * rbm_step_flops(args.batch, VISIBLE)
    cases = [("three products alone", lambda: products_seconds(args.batch))]
    for impl in ("philox4x32", "threefry2x32"):
        cases.append(
            (f"whole step, {impl}", lambda impl=impl: step_seconds(args.batch, impl))
        )

    print(f"RBM 784 -> {HIDDEN}, batch {args.batch}, {STEPS} steps per timing:")
    for name, measure in cases:
        peak = matmul_flops() / matmul_seconds(repeats=10)[0]
        seconds = measure()
        achieved = flops / seconds
        print(
            f"  {name}: {seconds / STEPS * 1e3:.2f} ms/step, "
            f"{achieved / 1e9:.1f} GFLOP/s = {achieved / peak:.0%} of the matmul"
        )

    print(f"each product alone at batch {args.batch}, median of {REPEATS} calls:")
    peak = matmul_flops() / matmul_seconds(repeats=10)[0]
    for name, flops, xla, numpy in single_products(args.batch):
        print(
            f"  {name}: XLA {xla * 1e3:.3f} ms = {flops / xla / peak:.0%} of the "
            f"matmul, NumPy {numpy * 1e3:.3f} ms = {flops / numpy / peak:.0%}"
        )

    print(f"softplus over [{2 * args.batch}, {HIDDEN}], value and value+gradient:")
    for name, fn in (("jax.nn.softplus", jax.nn.softplus), ("ours", softplus)):
        value, both = softplus_seconds(fn, args.batch)
        print(f"  {name}: {value * 1e3:.3f} ms, {both * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
