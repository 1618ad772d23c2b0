"""Restricted Boltzmann machines: the model, its Gibbs sampler and its CD loss.

Visible units are Bernoulli (inputs in [0, 1]) or Gaussian (standardised
inputs); hidden units are Bernoulli. The Gaussian-Bernoulli energy is

    E(v, h) = sum_i (v_i - b_i)^2 / (2 s_i^2) - c.h - sum_i (v_i / s_i^2) (W h)_i

so p(h_j = 1 | v) = sigmoid(c_j + ((v / s^2) W)_j) and p(v | h) = N(b + W h, s^2),
with s^2 = 1 unless the variances are learned.

Training is contrastive divergence (CD-k) or persistent CD through the shared
loop: the loss is the mean free energy of the data minus the mean free energy
of the negative samples (held constant with `stop_gradient`), whose gradient
is <d(-E)/d theta>_model - <d(-E)/d theta>_data, the CD gradient.

Gibbs steps follow Hinton, "A Practical Guide to Training Restricted
Boltzmann Machines" (UTML TR 2010-003, sections 3.1 to 3.3):

- hidden units driven by data are sampled to binary states before the
  reconstruction, and so are the hidden units between the k steps of CD-k;
- visible units of a reconstruction are probabilities (Gaussian: means),
  unless `sample_visible` draws them (scikit-learn's BernoulliRBM does);
- the gradient statistics and the last hidden pass use hidden probabilities,
  which the free energy gives by summing the hidden units out;
- persistent chains store binary hidden states, drawn from the last hidden
  probabilities of each step, so each chain stays a proper Markov chain.

The `rbm` and `dbn` methods that train these models live in `pretrain.dbn`,
and the per-epoch monitors in `pretrain.rbm_monitor`.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from pretrain.autoencoder import sparsity_penalty
from pretrain.numerics import softplus
from pretrain.train import weighted_mean


class RBMWeights(NamedTuple):
    """The arrays of one RBM, as the pure functions of this module take them."""

    kernel: jax.Array  # W [visible, hidden]
    visible_bias: jax.Array  # b [visible]
    hidden_bias: jax.Array  # c [hidden]
    variance: jax.Array | None  # s^2 [visible] of Gaussian units; None: Bernoulli


def hidden_pre_activation(weights: RBMWeights, v: jax.Array) -> jax.Array:
    """c + (v / s^2) W, the input of each hidden unit [batch, hidden]."""
    if weights.variance is not None:
        v = v / weights.variance
    return v @ weights.kernel + weights.hidden_bias


def hidden_probabilities(weights: RBMWeights, v: jax.Array) -> jax.Array:
    return jax.nn.sigmoid(hidden_pre_activation(weights, v))


def visible_mean(weights: RBMWeights, h: jax.Array) -> jax.Array:
    """E[v | h]: probabilities for Bernoulli units, b + W h for Gaussian ones."""
    pre_activation = h @ weights.kernel.T + weights.visible_bias
    if weights.variance is None:
        return jax.nn.sigmoid(pre_activation)
    return pre_activation


def sample_visible(weights: RBMWeights, h: jax.Array, rng: jax.Array) -> jax.Array:
    mean = visible_mean(weights, h)
    if weights.variance is None:
        return jax.random.bernoulli(rng, mean).astype(mean.dtype)
    noise = jax.random.normal(rng, mean.shape, mean.dtype)
    return mean + jnp.sqrt(weights.variance) * noise


def sample_hidden(probabilities: jax.Array, rng: jax.Array) -> jax.Array:
    return jax.random.bernoulli(rng, probabilities).astype(probabilities.dtype)


def free_energy_from_pre(
    weights: RBMWeights, v: jax.Array, pre_activation: jax.Array
) -> jax.Array:
    """F(v) [batch] given the hidden pre-activations of v.

    softplus(x) = log(1 + e^x) keeps large inputs finite: a pre-activation of
    1000 contributes -1000.
    """
    hidden_term = jnp.sum(softplus(pre_activation), axis=-1)
    if weights.variance is None:
        return -(v @ weights.visible_bias) - hidden_term
    quadratic = jnp.square(v - weights.visible_bias) / (2 * weights.variance)
    return jnp.sum(quadratic, axis=-1) - hidden_term


def free_energy(weights: RBMWeights, v: jax.Array) -> jax.Array:
    """F(v) = -log sum_h exp(-E(v, h)) [batch]."""
    return free_energy_from_pre(weights, v, hidden_pre_activation(weights, v))


class PersistentChains(nnx.Variable):
    """Binary hidden states [chains, hidden] of the persistent Gibbs chains.

    Not an `nnx.Param`, so the shared loop carries it in `TrainState.rest`
    from step to step and optax never updates it.
    """


def _inverse_softplus(y: float) -> float:
    return float(np.log(np.expm1(y)))


class RBM(nnx.Module):
    """An RBM with Bernoulli hidden units and Bernoulli or Gaussian visible units.

    With `learn_variance`, s^2 = `min_variance` + softplus(raw_variance), so
    the variances stay above the floor; they start at 1. `chains` > 0 adds
    that many persistent chains for persistent CD.
    """

    def __init__(
        self,
        visible: int,
        hidden: int,
        *,
        gaussian: bool = False,
        learn_variance: bool = False,
        min_variance: float = 0.01,
        chains: int = 0,
        visible_bias: np.ndarray | None = None,
        rngs: nnx.Rngs,
    ):
        if learn_variance and not gaussian:
            raise ValueError("learned variances need Gaussian visible units")
        # Small random weights, N(0, 0.01^2), as the practical guide advises.
        self.kernel = nnx.Param(
            0.01 * jax.random.normal(rngs.params(), (visible, hidden))
        )
        if visible_bias is None:
            visible_bias = np.zeros(visible, np.float32)
        self.visible_bias = nnx.Param(jnp.asarray(visible_bias, jnp.float32))
        self.hidden_bias = nnx.Param(jnp.zeros((hidden,)))
        self.gaussian = gaussian
        self.min_variance = min_variance
        start = _inverse_softplus(1.0 - min_variance)
        self.raw_variance = (
            nnx.Param(jnp.full((visible,), start)) if learn_variance else None
        )
        self.chains = PersistentChains(jnp.zeros((chains, hidden))) if chains else None

    def weights(self) -> RBMWeights:
        variance = None
        if self.gaussian:
            if self.raw_variance is None:
                variance = jnp.ones(self.visible_bias.shape)
            else:
                variance = self.min_variance + jax.nn.softplus(self.raw_variance[...])
        return RBMWeights(
            self.kernel[...], self.visible_bias[...], self.hidden_bias[...], variance
        )


def gibbs_negative(
    weights: RBMWeights,
    h: jax.Array,
    rng: jax.Array,
    *,
    steps: int,
    sample_visible_units: bool,
) -> jax.Array:
    """Visible negative samples after `steps` Gibbs steps from binary hidden `h`.

    Each step reconstructs v from h (probabilities or means unless
    `sample_visible_units`); between steps the hidden units are resampled to
    binary states. The last hidden pass is left to the caller.
    """
    keys = jax.random.split(rng, 2 * steps)

    def reconstruct(h, key):
        if sample_visible_units:
            return sample_visible(weights, h, key)
        return visible_mean(weights, h)

    v = reconstruct(h, keys[0])
    for step in range(1, steps):
        h = sample_hidden(hidden_probabilities(weights, v), keys[2 * step - 1])
        v = reconstruct(h, keys[2 * step])
    return v


def step_keys(rng: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Split the key of one training step into the negative-sample key and
    the chain-update key."""
    negative_key, chain_key = jax.random.split(rng)
    return negative_key, chain_key


def negative_samples(
    weights: RBMWeights,
    v_data: jax.Array,
    chains: jax.Array | None,
    rng: jax.Array,
    config: ml_collections.ConfigDict,
) -> jax.Array:
    """Draw the negative samples of one step, held constant for the gradient.

    CD-k starts from binary hidden states sampled given the data; persistent
    CD starts from the stored `chains`.
    """
    weights = jax.tree.map(jax.lax.stop_gradient, weights)
    hidden_key, gibbs_key = jax.random.split(rng)
    if chains is None:
        h = sample_hidden(hidden_probabilities(weights, v_data), hidden_key)
    else:
        h = chains
    v_neg = gibbs_negative(
        weights,
        h,
        gibbs_key,
        steps=config.cd_k,
        sample_visible_units=config.sample_visible,
    )
    return jax.lax.stop_gradient(v_neg)


def rbm_loss_fn(config: ml_collections.ConfigDict):
    """Build the CD-k or persistent-CD surrogate loss of one RBM as a `LossFn`.

    With persistent CD the chains advance every step, padded batch or not,
    and every chain counts in the negative term. With CD-k the negative
    samples come from the batch rows, so padded rows are left out of both
    terms.
    """

    def loss_fn(model: RBM, batch, rng):
        weights = model.weights()
        v_data, weight = batch["x"], batch["weight"]
        negative_key, chain_key = step_keys(rng)
        chains = model.chains[...] if config.persistent else None
        v_neg = negative_samples(weights, v_data, chains, negative_key, config)

        if config.persistent:
            # The chains do not depend on this batch, so one product gives the
            # hidden inputs of data and chains, and one product its gradient.
            # The free energy, too, is taken over the stacked rows: XLA would
            # otherwise draw the negative samples twice, once for the stack
            # and once for their own energy term.
            both = jnp.concatenate([v_data, v_neg])
            pre = hidden_pre_activation(weights, both)
            pre_data = pre[: len(v_data)]
            chain_p = jax.nn.sigmoid(jax.lax.stop_gradient(pre[len(v_data) :]))
            model.chains[...] = sample_hidden(chain_p, chain_key)
            energy = free_energy_from_pre(weights, both, pre)
            data_energy, neg_energy = energy[: len(v_data)], energy[len(v_data) :]
            neg_weight = jnp.ones((len(v_neg),), v_neg.dtype)
        else:
            pre_data = hidden_pre_activation(weights, v_data)
            pre_neg = hidden_pre_activation(weights, v_neg)
            data_energy = free_energy_from_pre(weights, v_data, pre_data)
            neg_energy = free_energy_from_pre(weights, v_neg, pre_neg)
            neg_weight = weight

        loss = weighted_mean(data_energy, weight) - weighted_mean(
            neg_energy, neg_weight
        )
        metrics = {}
        if config.sparsity_weight > 0:
            hidden_p = jax.nn.sigmoid(pre_data)
            kl = sparsity_penalty(hidden_p, weight, config.sparsity_target)
            loss += config.sparsity_weight * kl
            metrics["sparsity_kl"] = kl
        return loss, metrics

    return loss_fn


def _is_kernel(path, _) -> bool:
    return any(getattr(key, "key", None) == "kernel" for key in path)


def rbm_optimizer(
    config: ml_collections.ConfigDict, steps_per_epoch: int
) -> optax.GradientTransformation:
    """SGD with momentum `momentum_initial` until `momentum_switch_epoch`, then
    `momentum_final`; L2 weight decay on the kernel only (not the biases)."""
    total_steps = config.epochs * steps_per_epoch
    if config.lr_schedule == "linear":
        learning_rate = optax.linear_schedule(config.learning_rate, 0.0, total_steps)
    elif config.lr_schedule == "cosine":
        learning_rate = optax.cosine_decay_schedule(config.learning_rate, total_steps)
    else:
        learning_rate = config.learning_rate
    switch_step = config.momentum_switch_epoch * steps_per_epoch

    def momentum(count):
        return jnp.where(
            count < switch_step, config.momentum_initial, config.momentum_final
        )

    def kernel_mask(params):
        return jax.tree_util.tree_map_with_path(_is_kernel, params)

    # Leave out the terms that a config turns off: each one is another pass
    # over the kernel per step, a large share of a small RBM's step on CPU.
    no_momentum = config.momentum_initial == 0 and config.momentum_final == 0
    sgd = optax.inject_hyperparams(optax.sgd)(
        learning_rate=learning_rate, momentum=None if no_momentum else momentum
    )
    if config.weight_decay == 0:
        return sgd
    return optax.chain(
        optax.add_decayed_weights(config.weight_decay, mask=kernel_mask), sgd
    )


def steps_per_epoch(n: int, batch_size: int, drop_remainder: bool) -> int:
    return n // batch_size if drop_remainder else -(-n // batch_size)
