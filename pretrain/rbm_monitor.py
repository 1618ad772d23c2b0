"""Per-epoch monitors of an RBM: reconstruction, pseudo-likelihood, the
free-energy gap and log-likelihoods from AIS or exact enumeration."""

import jax
import jax.numpy as jnp
import numpy as np

from pretrain import ais
from pretrain.rbm import (
    RBM,
    RBMWeights,
    free_energy,
    hidden_probabilities,
    visible_mean,
)

# Rows of the training sample and the held-out rows used by the monitors.
MAX_MONITOR_ROWS = 1000

# Largest layer whose states the monitors enumerate for the exact log Z.
EXACT_MAX_UNITS = 20


@jax.jit
def _monitor_stats(weights: RBMWeights, train: jax.Array, rng: jax.Array):
    hidden_p = hidden_probabilities(weights, train)
    reconstruction = visible_mean(weights, hidden_p)
    stats = {
        "hidden_mean": jnp.mean(hidden_p),
        "reconstruction_mse": jnp.mean(jnp.square(reconstruction - train)),
        "free_energy_train": jnp.mean(free_energy(weights, train)),
    }
    if weights.variance is None:
        # Stochastic pseudo-likelihood as in scikit-learn's score_samples,
        # which flips one random unit per example: log sigmoid(F(flipped) -
        # F(v)) is the log conditional of that unit. scikit-learn reports
        # `visible` times this value.
        units = jax.random.randint(rng, (len(train),), 0, train.shape[1])
        flip = jax.nn.one_hot(units, train.shape[1], dtype=train.dtype)
        flipped = train + flip * (1 - 2 * train)
        gap = free_energy(weights, flipped) - free_energy(weights, train)
        stats["pseudo_likelihood"] = jnp.mean(jax.nn.log_sigmoid(gap))
    return stats


@jax.jit
def _mean_free_energy(weights: RBMWeights, v: jax.Array) -> jax.Array:
    return jnp.mean(free_energy(weights, v))


class Monitor:
    """Per-epoch monitors of one RBM, written as extra epoch metrics.

    Every epoch, on a fixed training sample:

    - `hidden_mean`: the mean hidden probability;
    - `reconstruction_mse`: squared error per visible unit of E[v | p(h | v)];
    - `pseudo_likelihood`: the stochastic pseudo-likelihood per visible unit
      (Bernoulli units only);
    - `free_energy_gap`: mean F(held-out) - mean F(training sample), which
      grows when the RBM overfits.

    Every `ais_every` epochs and at the last one, Bernoulli RBMs get an AIS
    estimate of log Z (`ais_log_z`) and the average log-likelihood of both
    sets. Models that `enumerable` accepts also get the exact log Z
    (`exact_log_z`) and the same log-likelihoods from it.
    """

    def __init__(self, train, heldout, config, rng, *, gaussian: bool, epochs: int):
        order = numpy_generator(jax.random.fold_in(rng, 0)).permutation(len(train))
        # A training sample as large as the held-out set keeps the two means
        # of the free-energy gap equally noisy.
        size = min(len(heldout) or MAX_MONITOR_ROWS, MAX_MONITOR_ROWS)
        self.train = jnp.asarray(train[order[:size]])
        self.heldout = jnp.asarray(heldout[:size]) if len(heldout) else None
        self.base_bias = None if gaussian else jnp.asarray(ais.base_rate_bias(train))
        self.config = config
        self.rng = rng
        self.epochs = epochs

    def __call__(self, model: RBM, epoch: int) -> dict[str, float]:
        weights = model.weights()
        key = jax.random.fold_in(self.rng, epoch + 1)
        stats = {
            k: float(v) for k, v in _monitor_stats(weights, self.train, key).items()
        }
        if self.heldout is not None:
            heldout_energy = float(_mean_free_energy(weights, self.heldout))
            stats["free_energy_gap"] = heldout_energy - stats["free_energy_train"]

        every = self.config.ais_every
        if every == 0 or ((epoch + 1) % every and epoch + 1 != self.epochs):
            return stats
        if self.base_bias is not None:
            log_z, _ = ais.ais_log_partition(
                weights.kernel,
                weights.visible_bias,
                weights.hidden_bias,
                self.base_bias,
                jax.random.fold_in(key, 1),
                chains=self.config.ais_chains,
                temperatures=self.config.ais_temperatures,
            )
            stats.update(self._log_likelihoods(weights, log_z, "ais"))
        if enumerable(weights):
            log_z = exact_log_partition(weights)
            stats.update(self._log_likelihoods(weights, log_z, "exact"))
        return stats

    def _log_likelihoods(self, weights, log_z: float, source: str) -> dict[str, float]:
        # log p(v) = -F(v) - log Z, averaged over each set. For inputs in
        # [0, 1] that are not binary this is the same formula, not a density.
        train = -float(_mean_free_energy(weights, self.train)) - log_z
        stats = {f"{source}_log_z": log_z, f"{source}_log_likelihood": train}
        if self.heldout is not None:
            heldout = -float(_mean_free_energy(weights, self.heldout)) - log_z
            stats[f"{source}_heldout_log_likelihood"] = heldout
        return stats


def enumerable(weights: RBMWeights) -> bool:
    """Return whether the monitors compute the exact log Z, which needs at
    most `EXACT_MAX_UNITS` hidden units (or visible units, if Bernoulli)."""
    visible, hidden = weights.kernel.shape
    if weights.variance is None:
        return min(visible, hidden) <= EXACT_MAX_UNITS
    return hidden <= EXACT_MAX_UNITS


def exact_log_partition(weights: RBMWeights) -> float:
    """log Z by enumeration; see `pretrain.ais.exact_log_partition`."""
    variance = None if weights.variance is None else np.asarray(weights.variance)
    return ais.exact_log_partition(
        np.asarray(weights.kernel),
        np.asarray(weights.visible_bias),
        np.asarray(weights.hidden_bias),
        variance,
    )


def numpy_generator(rng: jax.Array) -> np.random.Generator:
    """A NumPy generator seeded from a JAX key, for host-side permutations
    that would otherwise compile one program per length."""
    return np.random.default_rng(np.asarray(jax.random.key_data(rng)))
