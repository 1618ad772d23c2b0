"""The fine-tuned model: an exported encoder with a task head on top."""

import dataclasses
import inspect
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pretrain.data import Scaler
from pretrain.encoders import SpecError, build_encoder
from pretrain.export import (
    ExportError,
    abstract_flat_state,
    load_flat_state,
    read_json_metadata,
    read_weights,
)

MODEL_FILE = "model.json"
MODEL_FORMAT_VERSION = 1
MODEL_KEYS = {"format_version", "encoder", "drop_top", "head", "scaling", "seed"}


class CodeStatistic(nnx.Variable):
    """A per-feature mean or standard deviation of the encoder's codes.

    Not an `nnx.Param`, so optax never updates it and the shared loop carries
    it in `TrainState.rest`, checkpoints included.
    """


class Head(nnx.Module):
    """A linear head, or an MLP head with ReLU hidden layers.

    With `standardize`, the head first maps each code feature to
    (code - mean) / std, with statistics set by `fit_code_statistics` and
    fixed from then on. Until they are set it is the identity.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        num_classes: int,
        *,
        standardize: bool = False,
        rngs,
    ):
        widths = [in_features, *hidden, num_classes]
        self.layers = nnx.List(
            [
                nnx.Linear(widths[i], widths[i + 1], rngs=rngs)
                for i in range(len(widths) - 1)
            ]
        )
        self.standardize = standardize
        if standardize:
            self.code_mean = CodeStatistic(jnp.zeros((in_features,)))
            self.code_std = CodeStatistic(jnp.ones((in_features,)))

    def fit_code_statistics(self, codes: np.ndarray) -> None:
        """Set the standardisation from `codes` [examples, in_features].

        A feature with (near) zero spread gets std 1, as scikit-learn's
        StandardScaler does, so a dead unit stays finite.
        """
        codes = np.asarray(codes, np.float64).reshape(len(codes), -1)
        std = codes.std(axis=0)
        std = np.where(std > 1e-6, std, 1.0)
        self.code_mean[...] = jnp.asarray(codes.mean(axis=0), jnp.float32)
        self.code_std[...] = jnp.asarray(std, jnp.float32)

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.standardize:
            x = (x - self.code_mean[...]) / self.code_std[...]
        for layer in self.layers[:-1]:
            x = jax.nn.relu(layer(x))
        return self.layers[-1](x)


class Classifier(nnx.Module):
    """Encoder then head, returning class logits.

    `encoder_batch_stats_train` is False for a pretrained encoder: its batch
    norm then runs in inference mode in training steps too, so its running
    statistics never change.

    Encoders whose `__call__` takes an `rng` (the transformer) apply their
    dropout when called with `train=True` and a key, so a training step with
    a key gets dropout at the spec's rate. Evaluation passes neither and is
    deterministic.
    """

    def __init__(
        self,
        encoder: nnx.Module,
        head: Head,
        *,
        encoder_batch_stats_train: bool,
    ):
        self.encoder = encoder
        self.head = head
        self.encoder_batch_stats_train = encoder_batch_stats_train

    def __call__(
        self, x: jax.Array, *, train: bool = False, rng: jax.Array | None = None
    ) -> jax.Array:
        """Return class logits [batch, classes]. `rng` is the dropout key of
        a training step and is ignored unless `train` is True."""
        if rng is not None and train and takes_rng(self.encoder):
            # NOTE: `train` then also switches any batch norm of the encoder
            # to batch statistics. Of the registered families only the
            # transformer takes an rng, and it has layer norm only.
            code = self.encoder(x, train=True, rng=rng)
        else:
            code = self.encoder(x, train=train and self.encoder_batch_stats_train)
        return self.head(code)


class HeadOnCodes(nnx.Module):
    """A classifier's head applied to codes computed beforehand.

    Stages that train the head alone on a frozen encoder whose codes are
    fixed train this in place of the `Classifier`, so the encoder runs once
    per stage instead of once per step. It shares the `head` attribute name,
    so the freezing rules and the optimizer see the same paths.
    """

    def __init__(self, head: Head):
        self.head = head

    def __call__(
        self, x: jax.Array, *, train: bool = False, rng: jax.Array | None = None
    ) -> jax.Array:
        """Return class logits [batch, classes] for codes `x`."""
        return self.head(x)


def codes_fixed_in_training(model: Classifier, augment: bool) -> bool:
    """Return whether a training step of `model` computes the same codes as
    evaluation while its encoder is frozen.

    Input augmentation, batch norm on batch statistics and dropout in the
    encoder each change the codes from step to step.
    """
    if augment:
        return False
    if model.encoder_batch_stats_train and has_batch_norm(model.encoder):
        return False
    if takes_rng(model.encoder):
        # Transformer blocks keep their dropout rate as `rate`.
        rates = [getattr(layer, "rate", None) for layer in model.encoder.layers]
        return all(rate == 0.0 for rate in rates)
    return True


def has_batch_norm(module: nnx.Module) -> bool:
    """Return whether `module` contains a batch norm layer."""
    return any(isinstance(m, nnx.BatchNorm) for _, m in nnx.iter_modules(module))


def takes_rng(encoder: nnx.Module) -> bool:
    """Return whether the encoder's `__call__` takes an `rng` dropout key."""
    return "rng" in inspect.signature(encoder.__call__).parameters


def head_spec(
    hidden: Sequence[int], num_classes: int, standardize: bool = False
) -> dict:
    return {
        "hidden": [int(h) for h in hidden],
        "num_classes": int(num_classes),
        "standardize": bool(standardize),
    }


@dataclasses.dataclass
class LoadedClassifier:
    model: Classifier  # the fine-tuned encoder and head
    scaler: Scaler  # apply to raw inputs before calling the model
    metadata: dict[str, Any]  # the contents of model.json


def drop_top_layers(encoder: nnx.Module, count: int) -> None:
    """Remove the top `count` layers of `encoder` in place."""
    if count:
        layers = list(encoder.layers)
        encoder.layers = nnx.List(layers[: len(layers) - count])


def read_model_metadata(directory: str) -> dict[str, Any]:
    """Read and check `model.json` of a fine-tuned model directory."""
    return read_json_metadata(
        directory,
        MODEL_FILE,
        keys=MODEL_KEYS,
        max_version=MODEL_FORMAT_VERSION,
        kind="fine-tuned model",
        producer="finetune",
        where="the `model` directory inside a `finetune` workdir",
        missing=_missing_model_message,
    )


def _missing_model_message(directory: str, path: str) -> str:
    if os.path.isfile(os.path.join(directory, "encoder.json")):
        return (
            f"{directory!r} is an encoder export, not a fine-tuned model; load "
            "it with `pretrain.export.load_encoder`"
        )
    inner = os.path.join(directory, "model")
    if os.path.isfile(os.path.join(inner, MODEL_FILE)):
        return f"{directory!r} is a `finetune` workdir; pass {inner!r}"
    return (
        f"{path!r} is missing, so {directory!r} is not a complete model; rerun "
        "`finetune` to write it again"
    )


def load_classifier(directory: str) -> LoadedClassifier:
    """Rebuild a model that `finetune` wrote to WORKDIR/model, with its weights
    and input scaling. Its batch norm runs on the stored running statistics."""
    directory = os.path.abspath(directory)
    metadata = read_model_metadata(directory)

    def build() -> Classifier:
        encoder = build_encoder(metadata["encoder"], rngs=nnx.Rngs(0))
        drop_top = metadata["drop_top"]
        layers = len(encoder.layers)
        if not isinstance(drop_top, int) or not 0 <= drop_top < layers:
            raise ValueError(
                f"drop_top = {drop_top!r} is invalid for an encoder of {layers} "
                "layers; rerun `finetune`"
            )
        drop_top_layers(encoder, drop_top)
        head_info = metadata["head"]
        head = Head(
            encoder.features,
            head_info["hidden"],
            head_info["num_classes"],
            standardize=head_info["standardize"],
            rngs=nnx.Rngs(0),
        )
        return Classifier(encoder, head, encoder_batch_stats_train=False)

    try:
        expected = abstract_flat_state(build)
        scaler = Scaler.from_dict(metadata["scaling"])
    except (SpecError, KeyError, TypeError, ValueError) as error:
        raise ExportError(
            f"invalid model description in {directory!r}: {error}"
        ) from None

    weights = read_weights(directory, expected, "finetune", metadata=metadata)
    model = build()
    load_flat_state(model, weights)
    return LoadedClassifier(model, scaler, metadata)
