"""The PRNG that the training steps draw with.

JAX's default generator, threefry2x32, runs on XLA:CPU as a loop of small
kernels. Philox (philox4x32) runs as one kernel: the RBM step at batch 256
takes about a fifth less time with it (`experiments.benchmarks.rbm_breakdown`).
So by default every method draws its training noise, masks and data order
with Philox (`--config.rng_impl`).
Initial weights always come from threefry2x32.
"""

import functools
import logging

import jax
import jax.numpy as jnp

# PRNG implementations that JAX registers under these names.
RNG_IMPLS = ("philox4x32", "threefry2x32", "rbg", "unsafe_rbg")
DEFAULT_RNG_IMPL = "philox4x32"

logger = logging.getLogger(__name__)


def draw_rng_impl(requested: str) -> str:
    """Return the PRNG to draw with: `requested`, except on several devices.

    JAX 0.10.2 cannot partition Philox's draws across a device mesh (lowering
    a sharded draw fails with "Unable to convert MHLO to StableHLO"), so a
    mesh draws with threefry2x32, whose draws do not depend on the mesh.
    """
    if requested != "philox4x32" or jax.device_count() == 1:
        return requested
    _warn_philox_fallback(jax.device_count())
    return "threefry2x32"


@functools.cache  # once per process: a grid resolves many configs
def _warn_philox_fallback(devices: int) -> None:
    logger.warning(
        "rng_impl philox4x32 cannot draw across %d devices in this JAX "
        "version; this run draws with threefry2x32",
        devices,
    )


def reseed(key: jax.Array, impl: str) -> jax.Array:
    """Return a key of PRNG `impl` seeded from 32 random bits of `key`."""
    seed = jax.random.bits(key, dtype=jnp.uint32)
    return jax.random.key(int(seed), impl=impl)


def train_key(key: jax.Array, impl: str) -> jax.Array:
    """Return the training key of PRNG `impl` for threefry2x32 `key`.

    For threefry2x32 it is `key` itself, so that runs saved before
    `rng_impl` existed, which drew with that key, keep their results.
    """
    if impl == "threefry2x32":
        return key
    return reseed(key, impl)
