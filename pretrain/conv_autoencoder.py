"""Pretraining of the `conv` encoder: stacked convolutional autoencoders and
SimMIM-style masked prediction.

Stacked convolutional autoencoders (Masci et al. 2011, "Stacked
Convolutional Auto-Encoders for Hierarchical Feature Extraction") train one
stage at a time to reconstruct its input. The decoder of a stage undoes its
pooling by nearest-neighbour upsampling and its convolution by a transposed
convolution with the same stride. The next stage trains on the codes of the
one below, and `end_to_end=True` trains the whole mirrored autoencoder at
once.

Masked prediction (Xie et al. 2022, "SimMIM: A Simple Framework for Masked
Image Modeling") replaces a random subset of input patches by a learned mask
token and trains the encoder with a 1x1-convolution decoder to predict the
pixels of the masked patches. The patch size must divide every spatial side
of the input, and the run writes masks.png with inputs, masks and predictions.
"""

import logging
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from pretrain import config as config_lib
from pretrain.autoencoder import (
    check_reconstruction_config,
    choose_loss,
    corrupt,
    reconstruction_error,
    sparsity_penalty,
)
from pretrain.conv import DTYPES, ConvEncoder, ConvStage, conv_spec
from pretrain.encoders import activation_fn
from pretrain.mask_pictures import save_masks
from pretrain.methods import Method, PretrainContext, TrainedEncoder, register
from pretrain.train import PhaseTrainer, fit, predict, weighted_mean

logger = logging.getLogger(__name__)


def crop(maps: jax.Array, positions: tuple[int, ...]) -> jax.Array:
    """Keep the first `positions` of each spatial axis of [batch, *positions, C]."""
    return maps[(slice(None), *(slice(0, n) for n in positions), slice(None))]


def unpool(maps: jax.Array, size: int) -> jax.Array:
    """Nearest-neighbour upsampling by `size` along every spatial axis."""
    for axis in range(1, maps.ndim - 1):
        maps = jnp.repeat(maps, size, axis=axis)
    return maps


def stage_decoder(stage: ConvStage, in_features: int, *, rngs: nnx.Rngs):
    """Build a transposed convolution that undoes the stride of `stage`'s
    convolution."""
    if stage.padding != "SAME":
        # TODO: VALID stages need explicit output padding to restore the shape.
        raise ValueError("convolutional autoencoders support SAME padding only")
    dims = stage.spatial_dims
    return nnx.ConvTranspose(
        stage.features,
        in_features,
        (stage.kernel_size,) * dims,
        strides=(stage.stride,) * dims,
        padding="SAME",
        rngs=rngs,
    )


def undo_stage(
    code: jax.Array,
    stage: ConvStage,
    decoder: nnx.ConvTranspose,
    positions: tuple[int, ...],
) -> jax.Array:
    """Map a stage's output back to its input's `positions`, before any activation.

    SAME padding rounds sizes up at each stride and pool, so the upsampled maps
    are at least as large as the input and the surplus is cropped.
    """
    h = code
    if stage.pool != "none":
        h = unpool(h, stage.pool_size)
    return crop(decoder(h), positions)


class ConvAutoencoderStage(nnx.Module):
    """One stage of a stacked convolutional autoencoder."""

    def __init__(
        self,
        in_features: int,
        stage: dict[str, Any],
        positions: tuple[int, ...],
        *,
        rngs: nnx.Rngs,
        dtype: str = "float32",
    ):
        self.positions = tuple(positions)
        self.encoder = ConvStage(
            in_features,
            stage,
            spatial_dims=len(self.positions),
            rngs=rngs,
            dtype=dtype,
        )
        self.decoder = stage_decoder(self.encoder, in_features, rngs=rngs)

    def encode(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        return self.encoder(x, train=train)

    def decode(self, code: jax.Array) -> jax.Array:
        """Reconstruction logits [batch, *positions, in_features]."""
        return undo_stage(code, self.encoder, self.decoder, self.positions)


class ConvDeepAutoencoder(nnx.Module):
    """A conv encoder and its mirrored decoder, trained end to end."""

    def __init__(self, encoder: ConvEncoder, *, rngs: nnx.Rngs):
        self.encoder = encoder
        positions = [tuple(encoder.input_shape[:-1])]
        channels = [encoder.input_shape[-1]]
        for layer in encoder.layers:
            positions.append(layer.output_positions(positions[-1]))
            channels.append(layer.features)
        self.positions = tuple(positions[:-1])  # the input positions of each stage
        self.decoders = nnx.List(
            [
                stage_decoder(layer, channels[k], rngs=rngs)
                for k, layer in enumerate(encoder.layers)
            ]
        )

    def encode(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        return self.encoder.feature_maps(x, train=train)

    def decode(self, code: jax.Array) -> jax.Array:
        """Reconstruction logits of the input; hidden maps use the activation
        of the stage below and the output none."""
        h = code
        for k in reversed(range(len(self.encoder.layers))):
            layer = self.encoder.layers[k]
            h = undo_stage(h, layer, self.decoders[k], self.positions[k])
            if k > 0:
                h = activation_fn(self.encoder.layers[k - 1].activation)(h)
        return h


def map_error(logits: jax.Array, target: jax.Array, loss: str) -> jax.Array:
    """Per-example error [batch], summed over positions and channels."""
    batch = target.shape[0]
    return reconstruction_error(
        logits.reshape(batch, -1), target.reshape(batch, -1), loss
    )


def activity_penalty(
    code: jax.Array, weight: jax.Array, activation: str, target: float
) -> tuple[str, jax.Array]:
    """Compute the sparsity penalty of `code` [batch, *positions, channels].

    Sigmoid codes get KL(target || mean activation of each channel over the
    batch and all positions), summed over channels. Other codes (relu) get
    the L1 norm per example, averaged over the batch. Returns the metric name
    and the penalty.
    """
    if activation == "sigmoid":
        per_example = jnp.mean(code, axis=tuple(range(1, code.ndim - 1)))
        return "sparsity_kl", sparsity_penalty(per_example, weight, target)
    l1 = jnp.sum(jnp.abs(code.reshape(code.shape[0], -1)), axis=-1)
    return "activity_l1", weighted_mean(l1, weight)


def reconstruction_loss_fn(config: ml_collections.ConfigDict, loss: str):
    """Build the loss of a `ConvAutoencoderStage` or `ConvDeepAutoencoder`."""

    def loss_fn(model, batch, rng):
        x, weight = batch["x"], batch["weight"]
        code = model.encode(
            corrupt(x, rng, config.noise, config.noise_level), train=True
        )
        error = weighted_mean(map_error(model.decode(code), x, loss), weight)
        total, metrics = error, {"reconstruction": error}
        if config.sparsity_weight > 0:
            name, penalty = activity_penalty(
                code, weight, config.activation, config.sparsity_target
            )
            total += config.sparsity_weight * penalty
            metrics[name] = penalty
        return total, metrics

    return loss_fn


def encoder_spec(input_shape: tuple[int, ...], config) -> dict[str, Any]:
    return conv_spec(
        input_shape,
        list(config.stages),
        kernel_size=config.kernel_size,
        stride=config.stride,
        activation=config.activation,
        batch_norm=config.batch_norm,
        pool=config.pool,
        pool_size=config.pool_size,
        dtype=config.dtype,
    )


def first_kernel_and_shape(encoder: ConvEncoder) -> tuple[np.ndarray, tuple]:
    """Return the first stage's kernel as [kernel positions * in channels,
    channels] and the shape (*kernel positions, in channels) of one filter."""
    kernel = np.asarray(encoder.layers[0].conv.kernel[...])
    return kernel.reshape(-1, kernel.shape[-1]), tuple(kernel.shape[:-1])


def _trainer(model, loss_fn, config, rng, name: str) -> PhaseTrainer:
    return PhaseTrainer(
        model,
        loss_fn,
        optax.adam(config.learning_rate),
        rng=rng,
        batch_size=config.batch_size,
        scan=config.scan,
        drop_remainder=config.drop_remainder,
        name=name,
    )


def _encode_stage(stage: ConvStage, x: jax.Array) -> jax.Array:
    return stage(x, train=False)


def _reconstruct(model, x: jax.Array) -> jax.Array:
    return model.decode(model.encode(x, train=False))


def reconstruction_picture(model, inputs: np.ndarray, loss: str) -> tuple:
    outputs = predict(model, _reconstruct, inputs)
    if loss == "cross_entropy":
        outputs = jax.nn.sigmoid(outputs)
    return inputs, np.asarray(outputs)


def pretrain_layerwise(context: PretrainContext) -> TrainedEncoder:
    """Train each stage on the codes of the one below, then stack the encoders."""
    config = context.config
    spec = encoder_spec(context.input_shape, config)
    encoder = ConvEncoder(
        context.input_shape,
        spec["stages"],
        rngs=nnx.Rngs(context.rng_for("init")),
        dtype=spec["dtype"],
    )
    inputs, unit_range = context.x, context.unit_range
    pictures = {}

    for k, stage in enumerate(spec["stages"]):
        loss = choose_loss(config, unit_range)
        logger.info(
            "stage %d: %s -> %d channels, %s loss",
            k,
            inputs.shape[1:],
            stage["features"],
            loss,
        )
        model = ConvAutoencoderStage(
            inputs.shape[-1],
            stage,
            inputs.shape[1:-1],
            rngs=nnx.Rngs(context.rng_for(f"stage{k}/init")),
            dtype=spec["dtype"],
        )
        trainer = _trainer(
            model,
            reconstruction_loss_fn(config, loss),
            config,
            context.train_rng(f"stage{k}/train"),
            f"stage{k}",
        )
        fit(trainer, {"x": inputs}, epochs=config.epochs, writer=context.writer)
        model = trainer.model()

        if k == 0:
            pictures["reconstructions"] = reconstruction_picture(
                model, inputs[:10], loss
            )
        nnx.update(encoder.layers[k], nnx.state(model.encoder))
        inputs = predict(model.encoder, _encode_stage, inputs)
        unit_range = stage["activation"] == "sigmoid"

    first_kernel, pictures["filter_shape"] = first_kernel_and_shape(encoder)
    return TrainedEncoder(encoder, spec, first_kernel, pictures)


def pretrain_end_to_end(context: PretrainContext) -> TrainedEncoder:
    """Train the whole convolutional autoencoder at once from a random start."""
    config = context.config
    spec = encoder_spec(context.input_shape, config)
    rngs = nnx.Rngs(context.rng_for("init"))
    model = ConvDeepAutoencoder(
        ConvEncoder(
            context.input_shape, spec["stages"], rngs=rngs, dtype=spec["dtype"]
        ),
        rngs=rngs,
    )
    loss = choose_loss(config, context.unit_range)
    trainer = _trainer(
        model,
        reconstruction_loss_fn(config, loss),
        config,
        context.train_rng("train"),
        "deep",
    )
    fit(trainer, {"x": context.x}, epochs=config.epochs, writer=context.writer)
    model = trainer.model()

    pictures = {"reconstructions": reconstruction_picture(model, context.x[:10], loss)}
    first_kernel, pictures["filter_shape"] = first_kernel_and_shape(model.encoder)
    return TrainedEncoder(model.encoder, spec, first_kernel, pictures)


def pretrain_conv_autoencoder(context: PretrainContext) -> TrainedEncoder:
    if context.config.end_to_end:
        return pretrain_end_to_end(context)
    return pretrain_layerwise(context)


def total_downsampling(spec: dict[str, Any]) -> int:
    """Count the input positions per axis that one position of the last stage
    covers."""
    factor = 1
    for stage in spec["stages"]:
        pool = stage["pool_size"] if stage["pool"] != "none" else 1
        factor *= stage["stride"] * pool
    return factor


def depth_to_space(maps: jax.Array, factor: int, channels: int) -> jax.Array:
    """[batch, *positions, factor**d * channels] -> [batch, *positions * factor,
    channels], each position's vector filling a factor-wide block."""
    batch, *positions, _ = maps.shape
    dims = len(positions)
    blocks = maps.reshape(batch, *positions, *([factor] * dims), channels)
    # Interleave each position axis with its block axis: (p0, b0, p1, b1, ...).
    order = [0]
    for axis in range(dims):
        order += [1 + axis, 1 + dims + axis]
    order.append(1 + 2 * dims)
    sides = [n * factor for n in positions]
    return blocks.transpose(order).reshape(batch, *sides, channels)


class MaskedConvModel(nnx.Module):
    """The conv encoder with a learned mask token and a light pixel decoder.

    The decoder is a 1x1 convolution from the last stage's channels to the
    pixels of the block that each output position covers, rearranged back to
    the input resolution. The SimMIM paper found a linear decoder sufficient.
    """

    def __init__(self, encoder: ConvEncoder, spec: dict[str, Any], *, rngs):
        for stage in spec["stages"]:
            if stage["padding"] != "SAME":
                raise ValueError("masked prediction supports SAME padding only")
        self.encoder = encoder
        self.positions = tuple(encoder.input_shape[:-1])
        self.channels = encoder.input_shape[-1]
        self.factor = total_downsampling(spec)
        dims = len(self.positions)
        # One learned value per input channel replaces the masked pixels.
        self.mask_token = nnx.Param(jnp.zeros((self.channels,)))
        self.decoder = nnx.Conv(
            encoder.features,
            self.factor**dims * self.channels,
            (1,) * dims,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array, mask: jax.Array, *, train: bool = False):
        """Predicted pixels [batch, *positions, channels] from `x` with the
        positions where `mask` [batch, *positions] is True replaced."""
        masked = jnp.where(mask[..., None], self.mask_token[...], x)
        maps = self.encoder.feature_maps(masked, train=train)
        pixels = depth_to_space(self.decoder(maps), self.factor, self.channels)
        return crop(pixels, self.positions)


def patch_grid(positions: tuple[int, ...], patch_size: int) -> tuple[int, ...]:
    """Patches per axis; a partial patch at the end of an axis counts."""
    return tuple(-(-n // patch_size) for n in positions)


def masked_patch_count(patches: int, mask_ratio: float) -> int:
    return math.ceil(mask_ratio * patches)


def draw_mask(
    rng: jax.Array,
    batch: int,
    positions: tuple[int, ...],
    patch_size: int,
    mask_ratio: float,
) -> jax.Array:
    """Draw a bool mask [batch, *positions] that is True on exactly
    ceil(mask_ratio * patches) whole patches of each example, chosen
    uniformly at random."""
    grid = patch_grid(positions, patch_size)
    patches = math.prod(grid)
    count = masked_patch_count(patches, mask_ratio)
    scores = jax.random.uniform(rng, (batch, patches))
    ranks = jnp.argsort(jnp.argsort(scores, axis=-1), axis=-1)
    mask = (ranks < count).reshape(batch, *grid)
    return crop(unpool(mask[..., None], patch_size), positions)[..., 0]


def masked_error(
    prediction: jax.Array, target: jax.Array, mask: jax.Array, kind: str
) -> jax.Array:
    """Per-example mean L1 or L2 error [batch] over the masked pixels only."""
    difference = prediction - target
    errors = jnp.abs(difference) if kind == "l1" else jnp.square(difference)
    errors = jnp.where(mask[..., None], errors, 0.0)
    axes = tuple(range(1, target.ndim))
    masked_values = jnp.sum(mask, axis=axes[:-1]) * target.shape[-1]
    return jnp.sum(errors, axis=axes) / jnp.maximum(masked_values, 1)


def simmim_loss_fn(config: ml_collections.ConfigDict, patch_size: int):
    """Build the SimMIM loss. It draws masks from the step rng, so every step
    masks new patches."""

    def loss_fn(model: MaskedConvModel, batch, rng):
        x, weight = batch["x"], batch["weight"]
        mask = draw_mask(rng, x.shape[0], x.shape[1:-1], patch_size, config.mask_ratio)
        prediction = model(x, mask, train=True)
        error = masked_error(prediction, x, mask, config.mask_loss)
        loss = weighted_mean(error, weight)
        return loss, {"masked_error": loss}

    return loss_fn


def choose_patch_size(config, positions: tuple[int, ...]) -> int:
    """`config.patch_size`, or for 0: 2 on images up to 16 positions wide,
    4 on larger images and on signals."""
    if config.patch_size:
        return config.patch_size
    if len(positions) == 2 and max(positions) <= 16:
        return 2
    return 4


def masked_prediction(
    model: MaskedConvModel, x: np.ndarray, patch_size: int, mask_ratio: float
) -> tuple[np.ndarray, np.ndarray]:
    """Return the masks (bool, shaped like `x`) and predicted pixels of `x`,
    in inference mode and with a fixed mask key, so repeated calls agree."""
    mask = draw_mask(
        jax.random.key(0), len(x), tuple(x.shape[1:-1]), patch_size, mask_ratio
    )
    prediction = model(jnp.asarray(x), mask, train=False)
    return np.broadcast_to(np.asarray(mask)[..., None], x.shape), np.asarray(prediction)


def masked_reconstruction(
    model: MaskedConvModel, x: np.ndarray, patch_size: int, mask_ratio: float
) -> np.ndarray:
    """Return `x` with its masked patches filled by `masked_prediction`."""
    mask, prediction = masked_prediction(model, x, patch_size, mask_ratio)
    return np.where(mask, prediction, x)


def check_patch_size(config, positions: tuple[int, ...]) -> int:
    """Return the patch size for inputs of `positions`, raising ConfigError
    unless it divides every spatial side and leaves some patch unmasked."""
    patch_size = choose_patch_size(config, positions)
    chosen = "" if config.patch_size else f" (patch_size 0 chose {patch_size})"
    divisors = [
        d for d in range(1, max(positions)) if all(n % d == 0 for n in positions)
    ]
    config_lib.check(
        all(n % patch_size == 0 for n in positions),
        "patch_size",
        patch_size,
        f"must divide every side of the inputs' spatial size {list(positions)}"
        f"{chosen}; use one of {divisors[:6]}",
    )
    patches = math.prod(patch_grid(positions, patch_size))
    config_lib.check(
        masked_patch_count(patches, config.mask_ratio) < patches,
        "patch_size",
        patch_size,
        f"inputs with {list(positions)} positions hold {patches} patches, and "
        f"mask_ratio {config.mask_ratio} masks them all; use smaller patches",
    )
    return patch_size


def pretrain_simmim(context: PretrainContext) -> TrainedEncoder:
    """Train the conv encoder to predict masked patches of its input."""
    config = context.config
    positions = context.input_shape[:-1]
    # This check needs the input shape, which `check_config` does not see;
    # `pretrain.run` removes the outputs of a fresh run that it rejects.
    patch_size = check_patch_size(config, positions)
    patches = math.prod(patch_grid(positions, patch_size))
    spec = encoder_spec(context.input_shape, config)
    rngs = nnx.Rngs(context.rng_for("init"))
    encoder = ConvEncoder(
        context.input_shape, spec["stages"], rngs=rngs, dtype=spec["dtype"]
    )
    model = MaskedConvModel(encoder, spec, rngs=rngs)
    logger.info(
        "masking %d of %d patches of size %d",
        masked_patch_count(patches, config.mask_ratio),
        patches,
        patch_size,
    )

    trainer = _trainer(
        model,
        simmim_loss_fn(config, patch_size),
        config,
        context.train_rng("train"),
        "simmim",
    )
    fit(trainer, {"x": context.x}, epochs=config.epochs, writer=context.writer)
    model = trainer.model()

    inputs = context.x[:10]
    masks, prediction = masked_prediction(model, inputs, patch_size, config.mask_ratio)
    save_masks(inputs, masks, prediction, os.path.join(context.workdir, "masks.png"))
    pictures = {"reconstructions": (inputs, np.where(masks, prediction, inputs))}
    first_kernel, pictures["filter_shape"] = first_kernel_and_shape(model.encoder)
    return TrainedEncoder(model.encoder, spec, first_kernel, pictures)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_config(config: ml_collections.ConfigDict) -> None:
    _check_architecture(config)
    _check_autoencoder(config)
    _check_masking(config)


def _check_architecture(config: ml_collections.ConfigDict) -> None:
    check = config_lib.check
    check(len(config.stages) > 0, "stages", config.stages, "give at least one stage")
    check(
        all(_positive_int(c) for c in config.stages),
        "stages",
        config.stages,
        "channel counts must be positive ints",
    )
    for key in ("kernel_size", "stride", "pool_size"):
        check(_positive_int(config[key]), key, config[key], "must be a positive int")
    config_lib.check_choice(config, "pool", ("max", "avg", "none"))
    config_lib.check_choice(config, "activation", ("sigmoid", "relu", "tanh"))
    check(config.dtype in DTYPES, "dtype", config.dtype, f"use one of {DTYPES}")


def _check_autoencoder(config: ml_collections.ConfigDict) -> None:
    check_reconstruction_config(
        config,
        sparse_activations=("sigmoid", "relu"),
        sparsity_requirement="the sparsity penalty is a KL term for sigmoid "
        "codes or an L1 term for relu codes",
    )


def _check_masking(config: ml_collections.ConfigDict) -> None:
    check = config_lib.check
    check(
        0.0 < config.mask_ratio < 1.0,
        "mask_ratio",
        config.mask_ratio,
        "the fraction of masked patches must be in (0, 1)",
    )
    check(
        config.patch_size == 0 or _positive_int(config.patch_size),
        "patch_size",
        config.patch_size,
        "use a positive int, or 0 to choose by input size",
    )
    config_lib.check_choice(config, "mask_loss", ("l1", "l2"))


def check_simmim_config(config: ml_collections.ConfigDict) -> None:
    """Run the shared checks and reject autoencoder options that masked
    prediction would silently ignore."""
    check_config(config)
    check = config_lib.check
    check(
        config.noise == "none",
        "noise",
        config.noise,
        "conv_simmim masks patches itself; use noise=none",
    )
    check(
        config.sparsity_weight == 0,
        "sparsity_weight",
        config.sparsity_weight,
        "conv_simmim has no sparsity penalty; use 0",
    )
    check(
        not config.end_to_end,
        "end_to_end",
        config.end_to_end,
        "conv_simmim always trains end to end; leave end_to_end false",
    )


def conv_config(**changes: Any) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.stages = (16, 32)  # channels of each stage, bottom to top
    config.kernel_size = 3  # convolution window side, in positions
    config.stride = 1  # convolution stride of every stage
    config.pool = "max"  # pooling after each activation: max, avg or none
    config.pool_size = 2  # pooling window side and stride
    config.batch_norm = False  # batch norm after each convolution
    config.activation = "relu"
    # Compute dtype of the encoder stages; params and decoders stay float32.
    config.dtype = "float32"  # or bfloat16
    config.loss = "auto"  # cross_entropy for inputs in [0, 1], else squared_error
    config.noise = "none"  # denoising corruption: none, mask or gaussian
    config.noise_level = 0.0  # masking probability, or Gaussian std
    config.sparsity_target = 0.05  # target mean activation of sigmoid channels
    config.sparsity_weight = 0.0  # KL weight (sigmoid) or L1 weight (relu)
    config.end_to_end = False  # train the whole autoencoder at once
    config.mask_ratio = 0.5  # conv_simmim: fraction of patches masked per example
    # conv_simmim: patch side in positions; 0 picks 2 on images up to 16
    # positions wide and 4 on larger images and on signals.
    config.patch_size = 0
    config.mask_loss = "l1"  # conv_simmim: l1 or l2 error on masked pixels
    config.epochs = 10  # per stage when training layer-wise
    config.batch_size = 64
    config.learning_rate = 1e-3  # Adam
    # This replaces the shared default. On 2 CPU cores, XLA:CPU in jaxlib
    # 0.10.2 ran 63 gradient steps of a 3x3 convolution on [64, 14, 14, 16]
    # batches in 15 s inside lax.scan and in 0.9 s as a step compiled alone.
    # Conv methods therefore call one compiled step per batch; set true on
    # GPU or TPU.
    config.scan = False
    config.update(changes)
    return config


for name, description, changes in [
    ("conv_ae", "stacked convolutional autoencoder, trained stage by stage", {}),
    (
        "conv_dae",
        "stacked denoising convolutional autoencoder (masking noise, 25%)",
        {"noise": "mask", "noise_level": 0.25},
    ),
]:
    register(
        Method(
            name=name,
            description=description,
            defaults=lambda changes=changes: conv_config(**changes),
            check_config=check_config,
            pretrain=pretrain_conv_autoencoder,
        )
    )

register(
    Method(
        name="conv_simmim",
        description="conv encoder trained to predict masked patches (SimMIM)",
        defaults=conv_config,
        check_config=check_simmim_config,
        pretrain=pretrain_simmim,
    )
)
