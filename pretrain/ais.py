"""Log partition functions of RBMs: annealed importance sampling and enumeration.

`ais_log_partition` estimates log Z of a Bernoulli-Bernoulli RBM by annealed
importance sampling (AIS) as in Salakhutdinov and Murray (2008), "On the
Quantitative Analysis of Deep Belief Networks" (ICML). The chains start in a
base-rate RBM (no weights, no hidden biases, visible biases from the data
mean), whose log Z is known in closed form, and anneal to the target RBM
through the intermediate distributions

    p*_beta(v) = exp((1 - beta) a.v + beta b.v) prod_j (1 + exp(beta (v W + c)_j))

with hidden units summed out (a: base-rate visible biases, b and c: the
target's visible and hidden biases). At beta = 0 the product is 2^hidden,
the base-rate RBM's hidden factor. By Jensen's inequality the estimate of
log Z is biased low on average, so log-likelihoods computed from it are
biased high.

`exact_log_partition` sums over every state of the smaller layer, so it is
exact and feasible up to about 20 units on that side. It also covers
Gaussian visible units by integrating them out in closed form.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from pretrain.numerics import softplus

# Largest number of enumerated units; 2^22 states are a few seconds on a CPU.
MAX_ENUMERATED_UNITS = 22

# Rows of enumerated states evaluated per compiled call.
_CHUNK = 2**14


def base_rate_bias(x: np.ndarray, pseudo_count: float = 1.0) -> np.ndarray:
    """Visible biases log(p / (1 - p)) of the base-rate RBM, p the data mean.

    `pseudo_count` adds that many all-0.5 examples, so a pixel that is always
    0 or always 1 gets a finite bias.
    """
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    p = (x.sum(0) + 0.5 * pseudo_count) / (len(x) + pseudo_count)
    return np.log(p / (1 - p)).astype(np.float32)


def _log_unnormalised(kernel, visible_bias, hidden_bias, base_bias, beta, v):
    # log p*_beta(v) of the intermediate distribution, hidden units summed out.
    visible_term = v @ ((1 - beta) * base_bias + beta * visible_bias)
    return visible_term + jnp.sum(softplus(beta * (v @ kernel + hidden_bias)), axis=-1)


def _ais_transition(kernel, visible_bias, hidden_bias, base_bias, beta, v, rng):
    # One Gibbs sweep v -> h -> v that leaves p_beta invariant.
    hidden_key, visible_key = jax.random.split(rng)
    hidden_p = jax.nn.sigmoid(beta * (v @ kernel + hidden_bias))
    h = jax.random.bernoulli(hidden_key, hidden_p).astype(v.dtype)
    visible_logits = (1 - beta) * base_bias + beta * (h @ kernel.T + visible_bias)
    return jax.random.bernoulli(visible_key, jax.nn.sigmoid(visible_logits)).astype(
        v.dtype
    )


def _ais_log_weights(kernel, visible_bias, hidden_bias, base_bias, rng, chains, betas):
    start_key, steps_key = jax.random.split(rng)
    v = jax.random.bernoulli(
        start_key, jax.nn.sigmoid(base_bias), (chains, kernel.shape[0])
    ).astype(kernel.dtype)
    step_keys = jax.random.split(steps_key, len(betas) - 1)

    def step(carry, inputs):
        v, log_weights = carry
        beta_prev, beta, key = inputs
        params = (kernel, visible_bias, hidden_bias, base_bias)
        log_weights += _log_unnormalised(*params, beta, v)
        log_weights -= _log_unnormalised(*params, beta_prev, v)
        v = _ais_transition(*params, beta, v, key)
        return (v, log_weights), None

    inputs = (betas[:-1], betas[1:], step_keys)
    (_, log_weights), _ = jax.lax.scan(step, (v, jnp.zeros((chains,))), inputs)
    return log_weights


_jit_ais_log_weights = jax.jit(_ais_log_weights, static_argnums=(5,))


def ais_log_partition(
    kernel: jax.Array,
    visible_bias: jax.Array,
    hidden_bias: jax.Array,
    base_bias: jax.Array,
    rng: jax.Array,
    *,
    chains: int = 100,
    temperatures: int = 1000,
) -> tuple[float, np.ndarray]:
    """Estimate log Z of a Bernoulli RBM by AIS; return it and the chains' log
    weights.

    `temperatures` inverse temperatures are spaced evenly in [0, 1]; each
    intermediate one gets one Gibbs sweep per chain. The estimate is
    log Z_base + log mean(exp(log_weights)).
    """
    if chains < 1 or temperatures < 2:
        raise ValueError(
            f"AIS needs chains >= 1 and temperatures >= 2, got {chains} and "
            f"{temperatures}"
        )
    kernel = jnp.asarray(kernel, jnp.float32)
    betas = jnp.linspace(0.0, 1.0, temperatures, dtype=jnp.float32)
    log_weights = _jit_ais_log_weights(
        kernel,
        jnp.asarray(visible_bias, jnp.float32),
        jnp.asarray(hidden_bias, jnp.float32),
        jnp.asarray(base_bias, jnp.float32),
        rng,
        chains,
        betas,
    )
    log_weights = np.asarray(log_weights, np.float64)
    base_log_z = np.sum(np.logaddexp(0.0, np.asarray(base_bias, np.float64)))
    base_log_z += kernel.shape[1] * math.log(2.0)
    log_mean_weight = np.logaddexp.reduce(log_weights) - math.log(chains)
    return float(base_log_z + log_mean_weight), log_weights


def _all_states(start: int, count: int, units: int) -> np.ndarray:
    codes = np.arange(start, start + count, dtype=np.int64)
    bits = (codes[:, None] >> np.arange(units, dtype=np.int64)) & 1
    return bits.astype(np.float32)


@jax.jit
def _sum_over_visible(kernel, visible_bias, hidden_bias, v):
    # log sum over these visible states of exp(-F(v)).
    log_terms = v @ visible_bias + jnp.sum(softplus(v @ kernel + hidden_bias), axis=-1)
    return jax.nn.logsumexp(log_terms)


@jax.jit
def _sum_over_hidden(kernel, visible_bias, hidden_bias, h):
    # Bernoulli visible units summed out for each hidden state.
    log_terms = h @ hidden_bias + jnp.sum(
        softplus(h @ kernel.T + visible_bias), axis=-1
    )
    return jax.nn.logsumexp(log_terms)


@jax.jit
def _sum_over_hidden_gaussian(kernel, visible_bias, hidden_bias, variance, h):
    # Gaussian visible units integrated out: for v ~ exp(-(v - b)^2 / (2 s^2)
    # + v m / s^2) the integral is sqrt(2 pi s^2) exp(((b + m)^2 - b^2) / (2 s^2)),
    # with m = (W h); the sqrt factor is added once outside.
    shifted = h @ kernel.T + visible_bias
    log_terms = h @ hidden_bias + jnp.sum(
        (jnp.square(shifted) - jnp.square(visible_bias)) / (2 * variance), axis=-1
    )
    return jax.nn.logsumexp(log_terms)


def exact_log_partition(
    kernel: np.ndarray,
    visible_bias: np.ndarray,
    hidden_bias: np.ndarray,
    variance: np.ndarray | None = None,
) -> float:
    """Compute log Z by enumerating the states of the smaller layer.

    With `variance` [visible] the visible units are Gaussian, with energy
    sum_i (v_i - b_i)^2 / (2 variance_i) - c.h - sum_i v_i (W h)_i / variance_i,
    and only hidden states are enumerated. Raises ValueError when the
    enumerated layer has more than `MAX_ENUMERATED_UNITS` units.
    """
    visible, hidden = np.shape(kernel)
    enumerate_visible = variance is None and visible < hidden
    units = visible if enumerate_visible else hidden
    if units > MAX_ENUMERATED_UNITS:
        raise ValueError(
            f"exact log Z enumerates 2^{units} states; use at most "
            f"{MAX_ENUMERATED_UNITS} units on the smaller side, or AIS"
        )
    arrays = [jnp.asarray(a, jnp.float32) for a in (kernel, visible_bias, hidden_bias)]
    if variance is not None:
        variance = jnp.asarray(variance, jnp.float32)

    partial = []
    for start in range(0, 2**units, _CHUNK):
        states = jnp.asarray(_all_states(start, min(_CHUNK, 2**units - start), units))
        if enumerate_visible:
            partial.append(_sum_over_visible(*arrays, states))
        elif variance is None:
            partial.append(_sum_over_hidden(*arrays, states))
        else:
            partial.append(_sum_over_hidden_gaussian(*arrays, variance, states))
    log_z = float(np.logaddexp.reduce(np.asarray(partial, np.float64)))
    if variance is not None:
        log_z += 0.5 * float(np.sum(np.log(2 * np.pi * np.asarray(variance))))
    return log_z
