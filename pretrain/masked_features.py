"""Masked-feature pretraining of the dense MLP encoder on flat inputs.

Each step hides round(mask_ratio * features) random features of every example
(the 64 pixels of a digit, say) behind a learned mask value per feature,
encodes the result with a `DenseEncoder`, and a linear decoder reconstructs
the features. The loss is the squared error averaged over the hidden
features only.
"""

import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from pretrain import config as config_lib
from pretrain.encoders import DenseEncoder, dense_spec
from pretrain.mae import masked_mean_error
from pretrain.mask_pictures import save_masks
from pretrain.masking import num_masked, random_patch_masks
from pretrain.methods import PretrainContext, TrainedEncoder
from pretrain.optimizer import optimizer_from_config
from pretrain.train import PhaseTrainer, fit, weighted_mean

PICTURE_EXAMPLES = 8


class MaskedFeatureModel(nnx.Module):
    """A dense encoder, a learned mask value per feature and a linear decoder."""

    def __init__(self, encoder: DenseEncoder, *, rngs: nnx.Rngs):
        features = math.prod(encoder.input_shape)
        self.encoder = encoder
        self.mask_value = nnx.Param(jnp.zeros((features,)))
        self.decoder = nnx.Linear(encoder.features, features, rngs=rngs)

    def reconstruct(
        self, x: jax.Array, mask: jax.Array, *, train: bool = False
    ) -> jax.Array:
        """Reconstruction [batch, features] of x whose features are hidden
        where `mask` [batch, features] is True."""
        flat = x.reshape(x.shape[0], -1)
        inputs = jnp.where(mask, self.mask_value[...], flat)
        return self.decoder(self.encoder(inputs, train=train))


def masked_feature_loss_fn(config: ml_collections.ConfigDict):
    def loss_fn(model: MaskedFeatureModel, batch, rng):
        x = batch["x"]
        flat = x.reshape(x.shape[0], -1)
        _, _, mask = random_patch_masks(
            rng, flat.shape[0], flat.shape[1], config.mask_ratio
        )
        reconstruction = model.reconstruct(x, mask, train=True)
        error = masked_mean_error(reconstruction, flat, mask)
        loss = weighted_mean(error, batch["weight"])
        return loss, {"masked_mse": loss}

    return loss_fn


def pretrain_masked_features(context: PretrainContext) -> TrainedEncoder:
    config = context.config
    spec = dense_spec(
        context.input_shape,
        list(config.hidden),
        activation=config.activation,
        batch_norm=config.batch_norm,
    )
    features = math.prod(context.input_shape)
    hidden = num_masked(features, config.mask_ratio)
    config_lib.check(
        0 < hidden < features,
        "mask_ratio",
        config.mask_ratio,
        f"hides {hidden} of {features} features; hide at least one and keep one",
    )
    rngs = nnx.Rngs(context.rng_for("init"))
    encoder = DenseEncoder(context.input_shape, spec["layers"], rngs=rngs)
    model = MaskedFeatureModel(encoder, rngs=rngs)
    trainer = PhaseTrainer(
        model,
        masked_feature_loss_fn(config),
        optimizer_from_config(config, len(context.x)),
        rng=context.train_rng("train"),
        batch_size=config.batch_size,
        scan=config.scan,
        drop_remainder=config.drop_remainder,
        name="masked_features",
    )
    fit(trainer, {"x": context.x}, epochs=config.epochs, writer=context.writer)
    model = trainer.model()

    x = context.x[:PICTURE_EXAMPLES]
    _, _, mask = random_patch_masks(
        context.rng_for("pictures"),
        len(x),
        model.mask_value.shape[0],
        config.mask_ratio,
    )
    outputs = np.asarray(_reconstruct(model, jnp.asarray(x), mask)).reshape(x.shape)
    masks = np.asarray(mask, np.float32).reshape(x.shape)
    if x.ndim in (3, 4):
        save_masks(x, masks, outputs, os.path.join(context.workdir, "masks.png"))
    first_kernel = np.asarray(model.encoder.layers[0].linear.kernel[...])
    pictures = {"reconstructions": (x, np.where(masks > 0, outputs, x))}
    return TrainedEncoder(model.encoder, spec, first_kernel, pictures)


@nnx.jit
def _reconstruct(model: MaskedFeatureModel, x: jax.Array, mask: jax.Array):
    return model.reconstruct(x, mask)
