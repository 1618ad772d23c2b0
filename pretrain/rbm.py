"""Restricted Boltzmann machines and deep belief networks (`rbm` and `dbn`).

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

A deep belief network is a greedy stack: each RBM trains on the hidden
probabilities (or samples) of the one below. The stack is exported as a
`dense` family sigmoid encoder, so `finetune` treats it like any encoder.
"""

import logging
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from pretrain import ais, pictures
from pretrain import config as config_lib
from pretrain.autoencoder import sparsity_penalty
from pretrain.data import DatasetError
from pretrain.encoders import DenseEncoder, dense_spec
from pretrain.methods import Method, PretrainContext, TrainedEncoder, register
from pretrain.train import PhaseTrainer, fit, predict, weighted_mean

logger = logging.getLogger(__name__)

# Gibbs steps of the chains drawn in samples.png, and the snapshots shown.
SAMPLE_STEPS = 1000
SAMPLE_SNAPSHOTS = 10
SAMPLE_CHAINS = 8

# Rows of the training sample and the held-out rows used by the monitors.
MAX_MONITOR_ROWS = 1000

# Largest layer whose states the monitors enumerate for the exact log Z.
EXACT_MAX_UNITS = 20

# Slack on [0, 1] for Bernoulli inputs, for float32 rounding of minmax scaling.
_RANGE_SLACK = 1e-5


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
    hidden_term = jnp.sum(jax.nn.softplus(pre_activation), axis=-1)
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
            both = hidden_pre_activation(weights, jnp.concatenate([v_data, v_neg]))
            pre_data, pre_neg = both[: len(v_data)], both[len(v_data) :]
            chain_p = jax.nn.sigmoid(jax.lax.stop_gradient(pre_neg))
            model.chains[...] = sample_hidden(chain_p, chain_key)
            neg_weight = jnp.ones((len(v_neg),), v_neg.dtype)
        else:
            pre_data = hidden_pre_activation(weights, v_data)
            pre_neg = hidden_pre_activation(weights, v_neg)
            neg_weight = weight

        data_energy = free_energy_from_pre(weights, v_data, pre_data)
        neg_energy = free_energy_from_pre(weights, v_neg, pre_neg)
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

    return optax.chain(
        optax.add_decayed_weights(config.weight_decay, mask=kernel_mask),
        optax.inject_hyperparams(optax.sgd)(
            learning_rate=learning_rate, momentum=momentum
        ),
    )


def steps_per_epoch(n: int, batch_size: int, drop_remainder: bool) -> int:
    return n // batch_size if drop_remainder else -(-n // batch_size)


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


def initial_visible_bias(x: np.ndarray, gaussian: bool) -> np.ndarray:
    """log(p / (1 - p)) of the data mean p for Bernoulli units (practical
    guide, section 8); the data mean for Gaussian ones."""
    if gaussian:
        return x.mean(0).astype(np.float32)
    return ais.base_rate_bias(x)


def train_rbm(
    train: np.ndarray,
    heldout: np.ndarray,
    features: int,
    config: ml_collections.ConfigDict,
    rng: jax.Array,
    *,
    gaussian: bool,
    writer: Any = None,
    name: str = "rbm",
) -> RBM:
    """Train one RBM on `train` [n, visible], monitoring it against `heldout`."""
    init_key, train_key, monitor_key = jax.random.split(rng, 3)
    model = RBM(
        train.shape[1],
        features,
        gaussian=gaussian,
        learn_variance=gaussian and config.learn_variance,
        min_variance=config.min_variance,
        chains=config.batch_size if config.persistent else 0,
        visible_bias=initial_visible_bias(train, gaussian),
        rngs=nnx.Rngs(init_key),
    )
    steps = steps_per_epoch(len(train), config.batch_size, config.drop_remainder)
    trainer = PhaseTrainer(
        model,
        rbm_loss_fn(config),
        rbm_optimizer(config, steps),
        rng=train_key,
        batch_size=config.batch_size,
        scan=config.scan,
        drop_remainder=config.drop_remainder,
        name=name,
    )
    monitor = Monitor(
        train, heldout, config, monitor_key, gaussian=gaussian, epochs=config.epochs
    )

    def on_epoch(epoch, metrics):
        metrics.update(monitor(trainer.model(), epoch))
        return False

    fit(
        trainer,
        {"x": train},
        epochs=config.epochs,
        writer=writer,
        on_epoch=on_epoch,
    )
    return trainer.model()


def _hidden_probabilities(model: RBM, x: jax.Array) -> jax.Array:
    return hidden_probabilities(model.weights(), x)


def _reconstruct(model: RBM, x: jax.Array) -> jax.Array:
    weights = model.weights()
    return visible_mean(weights, hidden_probabilities(weights, x))


def propagate(model: RBM, x: np.ndarray, mode: str, rng: jax.Array) -> np.ndarray:
    """Compute the next layer's inputs: hidden probabilities of `x`, or
    binary samples of them."""
    probabilities = predict(model, _hidden_probabilities, x)
    if mode == "samples":
        return np.asarray(sample_hidden(jnp.asarray(probabilities), rng))
    return probabilities


def export_encoder(
    rbms: list[RBM], input_shape: tuple[int, ...]
) -> tuple[DenseEncoder, dict]:
    """Build a `dense` sigmoid encoder that computes p(h | v) layer by layer.

    Layer i gets kernel W and bias c of RBM i, so it outputs hidden
    probabilities. A Gaussian first layer trained on standardised inputs, and
    the export stores that scaler. Its hidden input is c + (v / s^2) W, so
    its exported kernel is W / s^2 row by row, which is W at unit variance.
    """
    hidden = [rbm.kernel.shape[1] for rbm in rbms]
    spec = dense_spec(input_shape, hidden, activation="sigmoid")
    encoder = DenseEncoder(input_shape, spec["layers"], rngs=nnx.Rngs(0))
    for layer, rbm in zip(encoder.layers, rbms, strict=True):
        weights = rbm.weights()
        kernel = weights.kernel
        if weights.variance is not None:
            kernel = kernel / weights.variance[:, None]
        layer.linear.kernel[...] = kernel
        layer.linear.bias[...] = weights.hidden_bias
    return encoder, spec


def _sample_chains(layers: tuple[RBMWeights, ...], start, rng, steps, snapshots):
    top = layers[-1]
    every = steps // snapshots

    def gibbs_step(i, carry):
        v, key = carry
        key, hidden_key, visible_key = jax.random.split(key, 3)
        h = sample_hidden(hidden_probabilities(top, v), hidden_key)
        return sample_visible(top, h, visible_key), key

    def snapshot(carry, _):
        v, key = jax.lax.fori_loop(0, every, gibbs_step, carry)
        # Draw E[v | h] of the last hidden state, passed down the stack with
        # probabilities, which is smoother to look at than a binary sample.
        key, hidden_key = jax.random.split(key)
        h = sample_hidden(hidden_probabilities(top, v), hidden_key)
        picture = visible_mean(top, h)
        for weights in reversed(layers[:-1]):
            picture = visible_mean(weights, picture)
        return (v, key), picture

    _, frames = jax.lax.scan(snapshot, (start, rng), None, length=snapshots)
    return frames


_jit_sample_chains = jax.jit(_sample_chains, static_argnums=(3, 4))


def draw_samples(rbms: list[RBM], top_inputs: np.ndarray, rng: jax.Array) -> np.ndarray:
    """Draw Gibbs samples of the top RBM, passed down the stack, as
    [snapshots, chains, visible] arrays.

    The chains start from a base-rate draw of the top RBM's inputs (Bernoulli
    units) or from zero (Gaussian units, standardised scale).
    """
    layers = tuple(rbm.weights() for rbm in rbms)
    start_key, chain_key = jax.random.split(rng)
    shape = (SAMPLE_CHAINS, top_inputs.shape[1])
    if layers[-1].variance is None:
        mean = jnp.asarray(top_inputs.mean(0))
        start = jax.random.bernoulli(start_key, mean, shape).astype(jnp.float32)
    else:
        start = jnp.zeros(shape)
    frames = _jit_sample_chains(
        layers, start, chain_key, SAMPLE_STEPS, SAMPLE_SNAPSHOTS
    )
    return np.asarray(frames)


def check_input_range(x: np.ndarray, visible: str) -> None:
    """Raise DatasetError when Bernoulli visible units get inputs outside [0, 1]."""
    if visible != "bernoulli":
        return
    low, high = float(x.min()), float(x.max())
    if low < -_RANGE_SLACK or high > 1 + _RANGE_SLACK:
        raise DatasetError(
            f"Bernoulli visible units need inputs in [0, 1], but the scaled "
            f"inputs range over [{low:.4g}, {high:.4g}]; use "
            "--config.scaling=minmax, or --config.visible=gaussian with "
            "--config.scaling=standard"
        )


def numpy_generator(rng: jax.Array) -> np.random.Generator:
    """A NumPy generator seeded from a JAX key, for host-side permutations
    that would otherwise compile one program per length."""
    return np.random.default_rng(np.asarray(jax.random.key_data(rng)))


def monitor_split(
    n: int, fraction: float, rng: jax.Array
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted training and held-out row indices; the held-out rows only feed
    the free-energy gap and log-likelihood monitors."""
    heldout_count = int(round(fraction * n)) if fraction > 0 else 0
    heldout_count = min(heldout_count, n - 1)
    order = numpy_generator(rng).permutation(n)
    return np.sort(order[heldout_count:]), np.sort(order[:heldout_count])


def pretrain_rbm_stack(context: PretrainContext) -> TrainedEncoder:
    """Train the RBMs of `config.hidden` greedily and export them as one encoder."""
    config = context.config
    x = context.x.reshape(len(context.x), -1)
    check_input_range(x, config.visible)
    if config.visible == "bernoulli":
        x = np.clip(x, 0.0, 1.0)
    train_idx, heldout_idx = monitor_split(
        len(x), config.monitor_fraction, context.rng_for("monitor_split")
    )
    logger.info(
        "training on %d rows; %d rows held out for the monitors",
        len(train_idx),
        len(heldout_idx),
    )

    rbms, inputs = [], x
    for k, features in enumerate(config.hidden):
        gaussian = k == 0 and config.visible == "gaussian"
        logger.info("layer %d: RBM %d -> %d", k, inputs.shape[1], features)
        rbm = train_rbm(
            inputs[train_idx],
            inputs[heldout_idx],
            features,
            config,
            context.rng_for(f"layer{k}"),
            gaussian=gaussian,
            writer=context.writer,
            name=f"layer{k}",
        )
        rbms.append(rbm)
        if k + 1 < len(config.hidden):
            inputs = propagate(
                rbm,
                inputs,
                config.dbn_propagate,
                context.rng_for(f"layer{k}/propagate"),
            )

    encoder, spec = export_encoder(rbms, context.input_shape)
    samples = draw_samples(rbms, inputs[train_idx], context.rng_for("samples"))
    pictures.save_samples(
        samples.transpose(1, 0, 2),
        context.input_shape,
        os.path.join(context.workdir, "samples.png"),
    )
    reconstruction = predict(rbms[0], _reconstruct, x[:10])
    return TrainedEncoder(
        encoder,
        spec,
        first_kernel=np.asarray(rbms[0].kernel[...]),
        pictures={"reconstructions": (x[:10], np.asarray(reconstruction))},
    )


def check_config(config: ml_collections.ConfigDict) -> None:
    _check_units(config)
    _check_training(config)
    _check_monitors(config)


def _check_units(config: ml_collections.ConfigDict) -> None:
    check = config_lib.check
    check(len(config.hidden) > 0, "hidden", config.hidden, "give at least one width")
    check(
        all(isinstance(h, int) and h > 0 for h in config.hidden),
        "hidden",
        config.hidden,
        "widths must be positive ints",
    )
    check(
        config.visible in ("bernoulli", "gaussian"),
        "visible",
        config.visible,
        "use bernoulli or gaussian",
    )
    if config.visible == "bernoulli":
        check(
            config.scaling == "minmax",
            "scaling",
            config.scaling,
            "Bernoulli visible units need inputs in [0, 1]; use "
            "--config.scaling=minmax, or --config.visible=gaussian",
        )
        check(
            not config.learn_variance,
            "learn_variance",
            config.learn_variance,
            "learned variances need --config.visible=gaussian",
        )
    else:
        check(
            config.scaling == "standard",
            "scaling",
            config.scaling,
            "Gaussian visible units with variances starting at 1 expect "
            "standardised inputs; use --config.scaling=standard",
        )
    check(
        0 < config.min_variance < 1,
        "min_variance",
        config.min_variance,
        "must be in (0, 1), below the starting variance of 1",
    )


def _check_training(config: ml_collections.ConfigDict) -> None:
    check = config_lib.check
    check(config.cd_k >= 1, "cd_k", config.cd_k, "must be an int >= 1")
    for key in ("momentum_initial", "momentum_final"):
        check(0 <= config[key] < 1, key, config[key], "must be in [0, 1)")
    check(
        config.momentum_switch_epoch >= 0,
        "momentum_switch_epoch",
        config.momentum_switch_epoch,
        "must be >= 0",
    )
    check(config.weight_decay >= 0, "weight_decay", config.weight_decay, "must be >= 0")
    check(
        config.lr_schedule in ("constant", "linear", "cosine"),
        "lr_schedule",
        config.lr_schedule,
        "use constant, linear or cosine",
    )
    check(
        0.0 < config.sparsity_target < 1.0,
        "sparsity_target",
        config.sparsity_target,
        "must be in (0, 1)",
    )
    check(
        config.sparsity_weight >= 0,
        "sparsity_weight",
        config.sparsity_weight,
        "must be >= 0",
    )
    check(
        config.dbn_propagate in ("probabilities", "samples"),
        "dbn_propagate",
        config.dbn_propagate,
        "use probabilities or samples",
    )


def _check_monitors(config: ml_collections.ConfigDict) -> None:
    check = config_lib.check
    check(
        0 <= config.monitor_fraction <= 0.5,
        "monitor_fraction",
        config.monitor_fraction,
        "must be in [0, 0.5]",
    )
    check(config.ais_every >= 0, "ais_every", config.ais_every, "must be >= 0")
    check(config.ais_chains >= 1, "ais_chains", config.ais_chains, "must be >= 1")
    check(
        config.ais_temperatures >= 2,
        "ais_temperatures",
        config.ais_temperatures,
        "must be >= 2",
    )


def check_rbm_config(config: ml_collections.ConfigDict) -> None:
    check_config(config)
    config_lib.check(
        len(config.hidden) == 1,
        "hidden",
        config.hidden,
        "rbm trains one layer; give one width or use the dbn method for a stack",
    )


def rbm_config(**changes: Any) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.hidden = (256,)  # hidden units per RBM, bottom to top
    config.visible = "bernoulli"  # bernoulli (inputs in [0, 1]) or gaussian
    config.learn_variance = False  # Gaussian only: learn per-visible variances
    config.min_variance = 0.01  # floor of learned variances, standardised units
    config.cd_k = 1  # Gibbs steps per negative sample
    config.persistent = False  # persistent CD, batch_size chains
    config.sample_visible = False  # sample reconstructions instead of means
    config.epochs = 50  # per layer
    config.batch_size = 32
    config.learning_rate = 0.05  # SGD step on the mean gradient per example
    config.lr_schedule = "constant"  # constant, or linear or cosine decay to 0
    config.momentum_initial = 0.5
    config.momentum_final = 0.9
    config.momentum_switch_epoch = 5  # epochs at momentum_initial
    config.weight_decay = 1e-4  # L2 coefficient on the weights, not the biases
    config.sparsity_target = 0.1  # target mean hidden probability
    config.sparsity_weight = 0.0  # weight of the KL sparsity penalty
    config.dbn_propagate = "probabilities"  # next layer's inputs: or samples
    config.monitor_fraction = 0.1  # pool share held out for the monitors
    config.ais_every = 10  # epochs between AIS estimates; 0 turns AIS off
    config.ais_chains = 100
    config.ais_temperatures = 1000  # inverse temperatures, evenly in [0, 1]
    config.update(changes)
    return config


register(
    Method(
        name="rbm",
        description="restricted Boltzmann machine (CD-k or persistent CD)",
        defaults=rbm_config,
        check_config=check_rbm_config,
        pretrain=pretrain_rbm_stack,
    )
)
register(
    Method(
        name="dbn",
        description="deep belief network, RBMs trained greedily layer by layer",
        defaults=lambda: rbm_config(hidden=(256, 128)),
        check_config=check_config,
        pretrain=pretrain_rbm_stack,
    )
)
