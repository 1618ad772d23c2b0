"""MAE: masked autoencoders on image patches and on 1-D signal patches.

He et al. 2021, "Masked Autoencoders Are Scalable Vision Learners": each step
hides a random `mask_ratio` of the patches of every example, the Transformer
encoder gets only the visible patches, and a narrower Transformer decoder
with a learned mask token fills the sequence back in and regresses the values
of the hidden patches. The loss is the squared error averaged over the hidden
patches only. Images [H, W, C] and signals [L, C] (masked-span regression)
share the code. Masks come from the step's rng, so they change every step.
"""

import functools
import logging
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from pretrain import config as config_lib
from pretrain.mask_pictures import save_masks
from pretrain.masking import num_masked, patchify, random_patch_masks, unpatchify
from pretrain.methods import PretrainContext, TrainedEncoder
from pretrain.optimizer import optimizer_from_config
from pretrain.train import PhaseTrainer, fit, weighted_mean
from pretrain.transformer import (
    Block,
    TransformerEncoder,
    position_table,
    run_blocks,
    transformer_spec,
)

logger = logging.getLogger(__name__)

# Added to the variance in `norm_pix_loss` targets, as in the MAE code.
NORM_PIX_EPS = 1e-6
# Patch size chosen when the config sets 0: the smallest divisor of the input
# that gives at most this many patches.
AUTO_MAX_PATCHES = 16
PICTURE_EXAMPLES = 8


class MaskedAutoencoder(nnx.Module):
    """A transformer encoder over visible patches and a light decoder."""

    def __init__(
        self,
        encoder: TransformerEncoder,
        *,
        patch_features: int,
        width: int,
        depth: int,
        heads: int,
        mlp_ratio: float,
        rngs: nnx.Rngs,
    ):
        init = nnx.initializers.normal(0.02)
        self.encoder = encoder
        self.decoder_width = width
        self.decoder_embed = nnx.Linear(encoder.width, width, rngs=rngs)
        self.mask_token = nnx.Param(init(rngs.params(), (width,)))
        self.decoder_layers = nnx.List(
            [Block(width, heads, mlp_ratio, 0.0, rngs=rngs) for _ in range(depth)]
        )
        self.decoder_norm = nnx.LayerNorm(width, rngs=rngs)
        self.decoder_pred = nnx.Linear(width, patch_features, rngs=rngs)

    def predict(
        self,
        x: jax.Array,
        keep: jax.Array,
        masked: jax.Array,
        *,
        rng: jax.Array | None = None,
    ) -> jax.Array:
        """Predicted values of every patch [batch, patches, patch values].

        `keep` and `masked` [batch, k] index the visible and the hidden patches;
        `rng` turns on the encoder's dropout.
        """
        encoder = self.encoder
        h = self.decoder_embed(
            encoder.encode(encoder.embed_inputs(x), keep=keep, rng=rng)
        )
        has_cls = encoder.cls_token is not None
        if has_cls:
            cls, h = h[:, :1], h[:, 1:]

        # Visible tokens then mask tokens, put back in patch order: position i
        # of `tokens` belongs to patch order[i].
        batch, hidden = masked.shape
        fill = jnp.broadcast_to(self.mask_token[...], (batch, hidden, h.shape[-1]))
        tokens = jnp.concatenate([h, fill], axis=1)
        restore = jnp.argsort(jnp.concatenate([keep, masked], axis=1), axis=1)
        h = jnp.take_along_axis(tokens, restore[:, :, None], axis=1)
        h = h + position_table(encoder.grid, self.decoder_width)
        if has_cls:
            h = jnp.concatenate([cls, h], axis=1)

        h = run_blocks(self.decoder_layers, h, None, None)
        out = self.decoder_pred(self.decoder_norm(h))
        return out[:, 1:] if has_cls else out


def patch_targets(patches: jax.Array, norm_pix_loss: bool) -> jax.Array:
    """Regression targets [batch, n, d]; with `norm_pix_loss`, each patch is
    normalised by its own mean and biased variance (ddof=0) + NORM_PIX_EPS."""
    if not norm_pix_loss:
        return patches
    mean = jnp.mean(patches, axis=-1, keepdims=True)
    variance = jnp.var(patches, axis=-1, keepdims=True)
    return (patches - mean) / jnp.sqrt(variance + NORM_PIX_EPS)


def masked_mean_error(
    prediction: jax.Array, target: jax.Array, mask: jax.Array
) -> jax.Array:
    """Per-example mean squared error [batch] over the masked items only.

    `prediction` and `target` are [batch, n, d] (patches) or [batch, n]
    (features); `mask` [batch, n] is True at the masked items.
    """
    error = jnp.square(prediction - target)
    if error.ndim == 3:
        error = jnp.mean(error, axis=-1)
    mask = mask.astype(error.dtype)
    return jnp.sum(error * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0)


def mae_loss_fn(config: ml_collections.ConfigDict):
    def loss_fn(model: MaskedAutoencoder, batch, rng):
        mask_rng, dropout_rng = jax.random.split(rng)
        x = batch["x"]
        patches = patchify(x, model.encoder.patch_size)
        keep, masked, mask = random_patch_masks(
            mask_rng, x.shape[0], patches.shape[1], config.mask_ratio
        )
        prediction = model.predict(x, keep, masked, rng=dropout_rng)
        target = patch_targets(patches, config.norm_pix_loss)
        loss = weighted_mean(
            masked_mean_error(prediction, target, mask), batch["weight"]
        )
        return loss, {"masked_mse": loss}

    return loss_fn


def choose_patch_size(input_shape: tuple[int, ...], requested: int) -> int:
    """`requested`, or for 0 the smallest size that divides the input into at
    most AUTO_MAX_PATCHES patches; raises ConfigError if it does not divide."""
    sides = input_shape[:2] if len(input_shape) == 3 else input_shape[:1]
    if requested:
        config_lib.check(
            all(side % requested == 0 for side in sides),
            "patch_size",
            requested,
            f"must divide the input size {list(sides)} (inputs of shape "
            f"{tuple(input_shape)})",
        )
        return requested
    for size in range(1, max(sides) + 1):
        if all(side % size == 0 for side in sides):
            if math.prod(side // size for side in sides) <= AUTO_MAX_PATCHES:
                return size
    return max(sides)


def mae_spec(config: ml_collections.ConfigDict, input_shape: tuple[int, ...]) -> dict:
    config_lib.check(
        len(input_shape) in (2, 3),
        "dataset",
        config.dataset,
        f"mae needs images [H, W, C] or signals [L, C], got shape {input_shape}",
    )
    patch = choose_patch_size(input_shape, config.patch_size)
    return transformer_spec(
        "image" if len(input_shape) == 3 else "signal",
        input_shape,
        patch_size=patch,
        width=config.width,
        depth=config.depth,
        heads=config.heads,
        mlp_ratio=config.mlp_ratio,
        dropout=config.dropout,
        pooling=config.pooling,
        dtype=config.dtype,
    )


def pretrain_mae(context: PretrainContext) -> TrainedEncoder:
    config = context.config
    # These checks need the input shape, which `check_config` does not see;
    # run() removes the outputs of a fresh run that they reject.
    spec = mae_spec(config, context.input_shape)
    num_patches = spec["sequence_length"]
    hidden = num_masked(num_patches, config.mask_ratio)
    config_lib.check(
        0 < hidden < num_patches,
        "mask_ratio",
        config.mask_ratio,
        f"masks {hidden} of {num_patches} patches; leave at least one patch "
        "visible and mask at least one",
    )
    logger.info(
        "mae: %d patches of size %d, %d masked per example",
        num_patches,
        spec["patch_size"],
        hidden,
    )

    rngs = nnx.Rngs(context.rng_for("init"))
    encoder = TransformerEncoder(spec, rngs=rngs)
    model = MaskedAutoencoder(
        encoder,
        patch_features=encoder.embed.in_features,
        width=config.decoder_width,
        depth=config.decoder_depth,
        heads=config.decoder_heads,
        mlp_ratio=config.mlp_ratio,
        rngs=rngs,
    )
    trainer = PhaseTrainer(
        model,
        mae_loss_fn(config),
        optimizer_from_config(config, len(context.x)),
        rng=context.train_rng("train"),
        batch_size=config.batch_size,
        scan=config.scan,
        drop_remainder=config.drop_remainder,
        name="mae",
    )
    fit(trainer, {"x": context.x}, epochs=config.epochs, writer=context.writer)

    model = trainer.model()
    pictures = mae_pictures(model, context)
    return TrainedEncoder(model.encoder, spec, None, pictures)


def reconstruct_masked(
    model: MaskedAutoencoder,
    x: np.ndarray,
    rng: jax.Array,
    *,
    mask_ratio: float,
    norm_pix_loss: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Masks (1.0 where hidden) and reconstructions in input units, shaped like x.

    With `norm_pix_loss` the decoder predicts normalised patches, so each is
    mapped back with the mean and variance of the true patch, as the MAE
    authors do for their figures.
    """
    masks, outputs = _reconstruct(
        model, jnp.asarray(x), rng, mask_ratio=mask_ratio, norm_pix_loss=norm_pix_loss
    )
    return np.asarray(masks), np.asarray(outputs)


@functools.partial(nnx.jit, static_argnames=("mask_ratio", "norm_pix_loss"))
def _reconstruct(model, x, rng, *, mask_ratio, norm_pix_loss):
    encoder = model.encoder
    patches = patchify(x, encoder.patch_size)
    keep, masked, mask = random_patch_masks(rng, len(x), patches.shape[1], mask_ratio)
    prediction = model.predict(x, keep, masked)
    if norm_pix_loss:
        mean = jnp.mean(patches, axis=-1, keepdims=True)
        std = jnp.sqrt(jnp.var(patches, axis=-1, keepdims=True) + NORM_PIX_EPS)
        prediction = prediction * std + mean
    mask_values = jnp.broadcast_to(mask[:, :, None], patches.shape)
    shape, patch = encoder.input_shape, encoder.patch_size
    return (
        unpatchify(mask_values.astype(jnp.float32), shape, patch),
        unpatchify(prediction, shape, patch),
    )


def mae_pictures(model: MaskedAutoencoder, context: PretrainContext) -> dict:
    """Write masks.png; return the reconstructions picture of image inputs."""
    config = context.config
    x = context.x[:PICTURE_EXAMPLES]
    masks, outputs = reconstruct_masked(
        model,
        x,
        context.rng_for("pictures"),
        mask_ratio=config.mask_ratio,
        norm_pix_loss=config.norm_pix_loss,
    )
    save_masks(x, masks, outputs, os.path.join(context.workdir, "masks.png"))
    if x.ndim != 4:
        return {}  # a [L, C] signal drawn as a 40 x 1 image shows little
    return {"reconstructions": (x, np.where(masks > 0, outputs, x))}
