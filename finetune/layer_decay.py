"""Layer-wise learning-rate decay for fine-tuning, as in BEiT and MAE fine-tuning.

With `layer_decay` d and an encoder of n layers, the head trains at the
stage's learning rate and encoder layer i (counted from 0 at the bottom) at
rate * d^(n - i). So each layer gets d times the rate of the one above, and
the top layer d times the head's. Encoder params outside `layers` take the
rate of the layer that `finetune.stages.encoder_units` assigns them to. A
transformer's embedding gets layer 0's rate, the lowest, and its final norm
the top layer's. Unassigned params take the lowest rate.

Every rate is one `optax.multi_transform` group with its own AdamW; frozen
params keep the "freeze" label and `set_to_zero`.
"""

import re
from collections.abc import Mapping

import jax
import optax
from flax import nnx

from finetune.freezing import dotted_path
from finetune.stages import unit_pattern

_LAYER = re.compile(r"^encoder\.layers\.(\d+)\.")


def layer_of(name: str, units: Mapping[str, int]) -> int | None:
    """Encoder layer whose rate the param `name` takes; None for the head."""
    if not name.startswith("encoder."):
        return None
    match = _LAYER.match(name)
    if match:
        return int(match.group(1))
    for prefix, layer in units.items():
        if re.match(unit_pattern(prefix), name):
            return layer
    return 0


def rate_scale(layer: int | None, num_layers: int, decay: float) -> float:
    """Multiplier of the stage's learning rate: 1 for the head."""
    if layer is None:
        return 1.0
    return decay ** (num_layers - layer)


def group_labels(labels: nnx.State, units: Mapping[str, int]) -> nnx.State:
    """Freezing labels with each "train" leaf renamed to its rate group:
    "head", or "layer_{i}" for the encoder layer whose rate it takes."""

    def relabel(path, label):
        if label == "freeze":
            return label
        layer = layer_of(dotted_path(path), units)
        return "head" if layer is None else f"layer_{layer}"

    return jax.tree_util.tree_map_with_path(relabel, labels)


def decayed_optimizer(
    labels: nnx.State,
    learning_rate: float,
    weight_decay: float,
    *,
    units: Mapping[str, int],
    num_layers: int,
    decay: float,
) -> optax.GradientTransformation:
    """`freezing.masked_optimizer` with one AdamW per rate group.

    As there, the rates and weight decay live in the optimizer state
    (`optax.inject_hyperparams`), so one compiled step serves every value.
    """
    adamw = optax.inject_hyperparams(optax.adamw)
    transforms = {
        "freeze": optax.set_to_zero(),
        "head": adamw(learning_rate=learning_rate, weight_decay=weight_decay),
    }
    for layer in range(num_layers):
        scale = rate_scale(layer, num_layers, decay)
        transforms[f"layer_{layer}"] = adamw(
            learning_rate=learning_rate * scale, weight_decay=weight_decay
        )
    return optax.multi_transform(transforms, group_labels(labels, units))
