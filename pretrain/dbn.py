"""The `rbm` and `dbn` pretraining methods.

A deep belief network is a greedy stack of RBMs (`pretrain.rbm`): each RBM
trains on the hidden probabilities (or samples) of the one below. The stack
is exported as a `dense` family sigmoid encoder, so `finetune` treats it
like any encoder. `rbm` is the one-layer case.
"""

import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from pretrain import ais, pictures
from pretrain import config as config_lib
from pretrain.data import DatasetError
from pretrain.encoders import DenseEncoder, dense_spec
from pretrain.methods import Method, PretrainContext, TrainedEncoder, register
from pretrain.rbm import (
    RBM,
    RBMWeights,
    hidden_probabilities,
    rbm_loss_fn,
    rbm_optimizer,
    sample_hidden,
    sample_visible,
    steps_per_epoch,
    visible_mean,
)
from pretrain.rbm_monitor import Monitor, numpy_generator
from pretrain.rng import draw_rng_impl, reseed
from pretrain.train import PhaseTrainer, fit, predict

logger = logging.getLogger(__name__)

# Gibbs steps of the chains drawn in samples.png, and the snapshots shown.
SAMPLE_STEPS = 1000
SAMPLE_SNAPSHOTS = 10
SAMPLE_CHAINS = 8

# Slack on [0, 1] for Bernoulli inputs, for float32 rounding of minmax scaling.
_RANGE_SLACK = 1e-5


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
    train_key = reseed(train_key, draw_rng_impl(config.rng_impl))
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
    config_lib.check_widths(config)
    config_lib.check_choice(config, "visible", ("bernoulli", "gaussian"))
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
    config_lib.check_choice(config, "lr_schedule", ("constant", "linear", "cosine"))
    config_lib.check_sparsity(config)
    config_lib.check_choice(config, "dbn_propagate", ("probabilities", "samples"))


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
