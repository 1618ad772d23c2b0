"""Stacked autoencoders: greedy layer-wise (plain, denoising, sparse, contractive)
and an end-to-end deep autoencoder.

Layer-wise pretraining trains layer k to reconstruct its input, then encodes
the whole pool with it, and layer k+1 trains on those codes (Bengio et al.
2007, "Greedy Layer-Wise Training of Deep Networks"). The trained encoder
halves of all layers form the exported `DenseEncoder`.
"""

import functools
import logging
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from pretrain import config as config_lib
from pretrain.data.streaming import StreamedArray
from pretrain.encoders import DenseEncoder, DenseLayer, activation_fn, dense_spec
from pretrain.methods import Method, PretrainContext, TrainedEncoder, register
from pretrain.numerics import softplus
from pretrain.train import PhaseTrainer, fit, predict, weighted_mean

logger = logging.getLogger(__name__)


class AutoencoderLayer(nnx.Module):
    """One autoencoder layer: a `DenseLayer` encoder and a linear decoder.

    With `tied=True` the decoder uses the transpose of the encoder kernel, so
    a tied 784->128 layer has 784*128 + 128 + 784 = 101,264 params and an
    untied one 201,616.
    """

    def __init__(
        self,
        in_features: int,
        features: int,
        *,
        activation: str,
        batch_norm: bool,
        tied: bool,
        rngs: nnx.Rngs,
    ):
        self.encoder = DenseLayer(
            in_features,
            features,
            activation=activation,
            batch_norm=batch_norm,
            rngs=rngs,
        )
        self.decoder_bias = nnx.Param(jnp.zeros((in_features,)))
        init = nnx.initializers.glorot_uniform()
        self.decoder_kernel = (
            None if tied else nnx.Param(init(rngs.params(), (features, in_features)))
        )

    def decode(self, code: jax.Array) -> jax.Array:
        """Reconstruction before the output activation."""
        if self.decoder_kernel is None:
            kernel = self.encoder.linear.kernel[...].T
        else:
            kernel = self.decoder_kernel[...]
        return code @ kernel + self.decoder_bias[...]


def corrupt(x: jax.Array, rng: jax.Array, noise: str, level: float) -> jax.Array:
    """Corrupt a batch for denoising: masking noise zeroes each value with
    probability `level`; Gaussian noise adds N(0, level^2)."""
    if noise == "none" or level == 0.0:
        return x
    if noise == "mask":
        keep = jax.random.bernoulli(rng, 1.0 - level, x.shape)
        return jnp.where(keep, x, 0.0)
    return x + level * jax.random.normal(rng, x.shape)


def reconstruction_error(logits: jax.Array, target: jax.Array, loss: str) -> jax.Array:
    """Per-example error [batch], summed over features."""
    if loss == "cross_entropy":
        # -t log sigmoid(z) - (1 - t) log(1 - sigmoid(z)) in one softplus:
        # optax's form takes two, and XLA:CPU keeps both at full width.
        errors = softplus(logits) - target * logits
    else:
        errors = jnp.square(logits - target)
    return jnp.sum(errors, axis=-1)


def sparsity_penalty(code: jax.Array, weight: jax.Array, target: float) -> jax.Array:
    """KL(target || mean activation), summed over units; codes must be in (0, 1)."""
    mean = jnp.sum(code * weight[:, None], 0) / jnp.maximum(jnp.sum(weight), 1.0)
    mean = jnp.clip(mean, 1e-6, 1 - 1e-6)
    kl = target * jnp.log(target / mean) + (1 - target) * jnp.log(
        (1 - target) / (1 - mean)
    )
    return jnp.sum(kl)


def contractive_penalty(
    layer: DenseLayer, pre_activation: jax.Array, code: jax.Array
) -> jax.Array:
    """Squared Frobenius norm of d code / d input per example [batch].

    Closed form for an elementwise activation f: sum_j f'(a_j)^2 sum_i W_ij^2.
    """
    if layer.activation == "sigmoid":
        slope = code * (1 - code)
    elif layer.activation == "tanh":
        slope = 1 - jnp.square(code)
    elif layer.activation == "relu":
        slope = (pre_activation > 0).astype(code.dtype)
    else:
        slope = jnp.ones_like(code)
    column_norms = jnp.sum(jnp.square(layer.linear.kernel[...]), axis=0)
    return jnp.square(slope) @ column_norms


def layer_loss_fn(config: ml_collections.ConfigDict, loss: str):
    """Return the loss of one autoencoder layer as a `LossFn` for `PhaseTrainer`."""

    def loss_fn(model: AutoencoderLayer, batch, rng):
        x, weight = batch["x"], batch["weight"]
        noisy = corrupt(x, rng, config.noise, config.noise_level)
        pre_activation = model.encoder.pre_activation(noisy, train=True)
        code = activation_fn(model.encoder.activation)(pre_activation)
        error = weighted_mean(reconstruction_error(model.decode(code), x, loss), weight)

        metrics = {"reconstruction": error}
        total = error
        if config.sparsity_weight > 0:
            kl = sparsity_penalty(code, weight, config.sparsity_target)
            total += config.sparsity_weight * kl
            metrics["sparsity_kl"] = kl
        if config.contractive_weight > 0:
            jacobian = weighted_mean(
                contractive_penalty(model.encoder, pre_activation, code), weight
            )
            total += config.contractive_weight * jacobian
            metrics["jacobian_norm"] = jacobian
        return total, metrics

    return loss_fn


def loss_cache_key(config: ml_collections.ConfigDict, loss: str) -> tuple:
    """Return the config values that the compiled autoencoder step depends on."""
    return (
        "autoencoder",
        loss,
        config.noise,
        config.noise_level,
        config.sparsity_target,
        config.sparsity_weight,
        config.contractive_weight,
        config.learning_rate,
    )


def choose_loss(config: ml_collections.ConfigDict, unit_range: bool) -> str:
    """Cross-entropy for inputs in [0, 1] unless the config names a loss."""
    if config.loss != "auto":
        return config.loss
    return "cross_entropy" if unit_range else "squared_error"


def picture_rows(n: int, count: int = 10) -> np.ndarray:
    """Evenly spaced pool rows, so a pool sorted by class shows every class."""
    return np.linspace(0, n - 1, min(count, n)).astype(int)


def _encode_layer(layer: DenseLayer, x: jax.Array) -> jax.Array:
    return layer(x, train=False)


def _reconstruct(
    model: "AutoencoderLayer | DeepAutoencoder", x: jax.Array
) -> jax.Array:
    return model.decode(model.encoder(x, train=False))


def _encoder_spec(context: PretrainContext) -> dict:
    config = context.config
    return dense_spec(
        context.input_shape,
        list(config.hidden),
        activation=config.activation,
        batch_norm=config.batch_norm,
    )


def _scan(config: ml_collections.ConfigDict) -> bool:
    # A streamed pool is read batch by batch, so it cannot sit on the device
    # for a scanned epoch.
    return config.scan and not config.get("stream", False)


def encode_pool(layer: nnx.Module, inputs):
    """Encode `inputs` with one trained layer.

    An array is encoded now. A streamed pool is encoded batch by batch on
    each read, which keeps memory flat at the cost of re-encoding every epoch.
    """
    if isinstance(inputs, StreamedArray):
        return inputs.map(functools.partial(predict, layer, _encode_layer))
    return predict(layer, _encode_layer, inputs)


def pretrain_layerwise(context: PretrainContext) -> TrainedEncoder:
    """Train each layer on the codes of the one below, then stack the encoders."""
    config = context.config
    spec = _encoder_spec(context)
    encoder = DenseEncoder(
        context.input_shape, spec["layers"], rngs=nnx.Rngs(context.rng_for("init"))
    )
    inputs = context.x.reshape(len(context.x), -1)
    unit_range = context.unit_range
    pictures = {}

    for k, features in enumerate(config.hidden):
        loss = choose_loss(config, unit_range)
        logger.info("layer %d: %d -> %d, %s loss", k, inputs.shape[1], features, loss)
        layer = AutoencoderLayer(
            inputs.shape[1],
            features,
            activation=config.activation,
            batch_norm=config.batch_norm,
            tied=config.tied,
            rngs=nnx.Rngs(context.rng_for(f"layer{k}/init")),
        )
        trainer = PhaseTrainer(
            layer,
            layer_loss_fn(config, loss),
            optax.adam(config.learning_rate),
            rng=context.train_rng(f"layer{k}/train"),
            batch_size=config.batch_size,
            scan=_scan(config),
            drop_remainder=config.drop_remainder,
            name=f"layer{k}",
            cache_key=loss_cache_key(config, loss),
        )
        fit(trainer, {"x": inputs}, epochs=config.epochs, writer=context.writer)
        layer = trainer.model()

        if k == 0:
            shown = inputs[picture_rows(len(inputs))]
            reconstruction = predict(layer, _reconstruct, shown)
            if loss == "cross_entropy":
                reconstruction = jax.nn.sigmoid(reconstruction)
            pictures["reconstructions"] = (shown, np.asarray(reconstruction))
        nnx.update(encoder.layers[k], nnx.state(layer.encoder))
        inputs = encode_pool(layer.encoder, inputs)
        unit_range = config.activation == "sigmoid"

    first_kernel = np.asarray(encoder.layers[0].linear.kernel[...])
    return TrainedEncoder(encoder, spec, first_kernel, pictures)


class DeepAutoencoder(nnx.Module):
    """An encoder and a mirrored decoder trained end to end."""

    def __init__(self, encoder: DenseEncoder, *, tied: bool, rngs: nnx.Rngs):
        self.encoder = encoder
        self.tied = tied
        widths = [int(np.prod(encoder.input_shape))]
        widths += [layer.linear.out_features for layer in encoder.layers]
        self.decoder_biases = nnx.List(
            [nnx.Param(jnp.zeros((w,))) for w in widths[:-1]]
        )
        init = nnx.initializers.glorot_uniform()
        kernels = [
            nnx.Param(init(rngs.params(), (widths[i + 1], widths[i])))
            for i in range(len(widths) - 1)
        ]
        self.decoder_kernels = None if tied else nnx.List(kernels)

    def decode(self, code: jax.Array) -> jax.Array:
        """Reconstruction logits of the flattened input; hidden layers use the
        encoder's activation and the output layer none."""
        h = code
        for i in reversed(range(len(self.encoder.layers))):
            if self.decoder_kernels is None:
                kernel = self.encoder.layers[i].linear.kernel[...].T
            else:
                kernel = self.decoder_kernels[i][...]
            h = h @ kernel + self.decoder_biases[i][...]
            if i > 0:
                h = activation_fn(self.encoder.layers[i - 1].activation)(h)
        return h


def deep_loss_fn(config: ml_collections.ConfigDict, loss: str):
    def loss_fn(model: DeepAutoencoder, batch, rng):
        x, weight = batch["x"], batch["weight"]
        code = model.encoder(
            corrupt(x, rng, config.noise, config.noise_level), train=True
        )
        error = weighted_mean(reconstruction_error(model.decode(code), x, loss), weight)
        total, metrics = error, {"reconstruction": error}
        if config.sparsity_weight > 0:
            kl = sparsity_penalty(code, weight, config.sparsity_target)
            total += config.sparsity_weight * kl
            metrics["sparsity_kl"] = kl
        return total, metrics

    return loss_fn


def pretrain_end_to_end(context: PretrainContext) -> TrainedEncoder:
    """Train the whole deep autoencoder at once from a random start."""
    config = context.config
    spec = _encoder_spec(context)
    rngs = nnx.Rngs(context.rng_for("init"))
    encoder = DenseEncoder(context.input_shape, spec["layers"], rngs=rngs)
    model = DeepAutoencoder(encoder, tied=config.tied, rngs=rngs)
    inputs = context.x.reshape(len(context.x), -1)
    loss = choose_loss(config, context.unit_range)

    trainer = PhaseTrainer(
        model,
        deep_loss_fn(config, loss),
        optax.adam(config.learning_rate),
        rng=context.train_rng("train"),
        batch_size=config.batch_size,
        scan=_scan(config),
        drop_remainder=config.drop_remainder,
        name="deep",
        cache_key=("deep",) + loss_cache_key(config, loss),
    )
    fit(trainer, {"x": inputs}, epochs=config.epochs, writer=context.writer)
    model = trainer.model()

    shown = inputs[picture_rows(len(inputs))]
    reconstruction = np.asarray(predict(model, _reconstruct, shown))
    if loss == "cross_entropy":
        reconstruction = np.asarray(jax.nn.sigmoid(reconstruction))
    first_kernel = np.asarray(model.encoder.layers[0].linear.kernel[...])
    pictures = {"reconstructions": (shown, reconstruction)}
    return TrainedEncoder(model.encoder, spec, first_kernel, pictures)


def pretrain_autoencoder(context: PretrainContext) -> TrainedEncoder:
    if context.config.end_to_end:
        return pretrain_end_to_end(context)
    return pretrain_layerwise(context)


def check_reconstruction_config(
    config: ml_collections.ConfigDict,
    *,
    sparse_activations: tuple[str, ...],
    sparsity_requirement: str,
) -> None:
    """Check the loss, denoising and sparsity keys that every autoencoder shares."""
    check = config_lib.check
    config_lib.check_choice(config, "loss", ("auto", "cross_entropy", "squared_error"))
    config_lib.check_choice(config, "noise", ("none", "mask", "gaussian"))
    check(config.noise_level >= 0, "noise_level", config.noise_level, "must be >= 0")
    if config.noise == "mask":
        check(
            config.noise_level < 1.0,
            "noise_level",
            config.noise_level,
            "a masking probability must be in [0, 1)",
        )
    config_lib.check_sparsity(config)
    if config.sparsity_weight > 0:
        check(
            config.activation in sparse_activations,
            "activation",
            config.activation,
            sparsity_requirement,
        )


def check_config(config: ml_collections.ConfigDict) -> None:
    check = config_lib.check
    config_lib.check_widths(config)
    config_lib.check_choice(config, "activation", ("sigmoid", "relu", "tanh"))
    check_reconstruction_config(
        config,
        sparse_activations=("sigmoid",),
        sparsity_requirement="the KL sparsity penalty needs sigmoid codes in (0, 1)",
    )
    check(
        config.contractive_weight >= 0,
        "contractive_weight",
        config.contractive_weight,
        "must be >= 0",
    )
    if config.contractive_weight > 0:
        check(
            not config.batch_norm,
            "batch_norm",
            config.batch_norm,
            "the closed-form contractive penalty does not cover batch norm",
        )
        check(
            not config.end_to_end,
            "end_to_end",
            config.end_to_end,
            "the contractive penalty is applied per layer; train layer-wise",
        )


def autoencoder_config(**changes: Any) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.hidden = (256, 128)  # encoder widths, bottom to top
    config.activation = "sigmoid"
    config.batch_norm = False  # batch norm after each encoder linear map
    config.tied = True  # decoder kernel = transpose of the encoder kernel
    config.loss = "auto"  # cross_entropy for inputs in [0, 1], else squared_error
    config.noise = "none"  # denoising corruption: none, mask or gaussian
    config.noise_level = 0.0  # masking probability, or Gaussian std
    config.sparsity_target = 0.05  # target mean activation of each code unit
    config.sparsity_weight = 0.0  # weight of the KL sparsity penalty
    config.contractive_weight = 0.0  # weight of the Jacobian norm penalty
    config.end_to_end = False  # train the deep autoencoder at once, not per layer
    config.epochs = 30  # per layer
    config.batch_size = 64
    config.learning_rate = 1e-3  # Adam
    config.update(changes)
    return config


for name, description, changes in [
    ("ae", "stacked autoencoder, trained layer by layer", {}),
    (
        "dae",
        "stacked denoising autoencoder (masking noise, 25%)",
        {"noise": "mask", "noise_level": 0.25},
    ),
    (
        "sparse_ae",
        "stacked sparse autoencoder (KL penalty on mean activation)",
        {"sparsity_weight": 0.1},
    ),
    (
        "contractive_ae",
        "stacked contractive autoencoder (Jacobian norm penalty)",
        {"contractive_weight": 0.1},
    ),
    ("deep_ae", "deep autoencoder trained end to end", {"end_to_end": True}),
]:
    register(
        Method(
            name=name,
            description=description,
            defaults=lambda changes=changes: autoencoder_config(**changes),
            check_config=check_config,
            pretrain=pretrain_autoencoder,
            streams=True,
        )
    )
