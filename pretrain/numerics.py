"""Elementwise functions that the training steps spend much of their time in."""

import jax
import jax.numpy as jnp


@jax.custom_jvp
def softplus(x: jax.Array) -> jax.Array:
    """Return log(1 + e^x), finite for every finite x: 1000 gives 1000.

    It gives the values of `jax.nn.softplus` within float32 rounding. That
    one goes through `logaddexp`, which XLA:CPU runs slower, with or without
    the gradient (`experiments.benchmarks.rbm_breakdown` times both).
    """
    return jnp.maximum(x, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(x)))


@softplus.defjvp
def _softplus_jvp(primals, tangents):
    # The derivative is the sigmoid: one exp, where differentiating the form
    # above would take the sign, a select and a division as well.
    (x,), (dx,) = primals, tangents
    return softplus(x), jax.nn.sigmoid(x) * dx
