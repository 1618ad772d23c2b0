"""Stage schedules of the presets, and the freezing rules of each stage."""

import dataclasses
import re
from collections.abc import Mapping

import ml_collections

PRESETS = ("linear_probe", "gradual", "full", "scratch")


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    trainable_layers: tuple[int, ...]  # encoder layer indices that train
    learning_rate: float
    epochs: int
    train_batch_norm: bool  # whether encoder batch-norm scale and shift train


def schedule(
    preset: str, num_layers: int, config: ml_collections.ConfigDict
) -> list[Stage]:
    """Return the stages of `preset` for an encoder with `num_layers` layers.

    Stage 1 of every pretrained preset trains the head alone at `lr_head`.
    `gradual` then unfreezes one more layer per stage from the top down, and
    `full` unfreezes every layer at once. `scratch` is one stage with every
    layer trainable, given as many epochs as `gradual` has in all.
    """
    top_down = list(reversed(range(num_layers)))
    release = config.release_batch_norm and preset == "full"
    if preset == "scratch":
        epochs = config.epochs_head + num_layers * config.epochs_finetune
        return [Stage("scratch", tuple(top_down), config.lr_scratch, epochs, True)]

    stages = [Stage("head", (), config.lr_head, config.epochs_head, False)]
    if preset == "gradual":
        for count in range(1, num_layers + 1):
            layers = tuple(top_down[:count])
            stages.append(
                Stage(
                    f"unfreeze_{count}",
                    layers,
                    config.lr_finetune,
                    config.epochs_finetune,
                    False,
                )
            )
    elif preset == "full":
        stages.append(
            Stage(
                "full",
                tuple(top_down),
                config.lr_finetune,
                config.epochs_finetune,
                release,
            )
        )
    return stages


def stage_rules(
    stage: Stage, units: Mapping[str, int] | None = None
) -> list[tuple[str, str]]:
    """Freezing rules for `stage`; the first matching rule decides.

    `units` (from `encoder_units`) maps encoder params outside `layers`, such
    as an embedding, to the layer they train with.
    """
    rules = [(r"^head\.", "train")]
    if not stage.train_batch_norm:
        rules.append((r"^encoder\..*\.batch_norm\.", "freeze"))
    for layer in stage.trainable_layers:
        rules.append((rf"^encoder\.layers\.{layer}\.", "train"))
    for prefix, layer in (units or {}).items():
        if layer in stage.trainable_layers:
            rules.append((unit_pattern(prefix), "train"))
    rules.append((r"^encoder\.", "freeze"))
    return rules


def unit_pattern(prefix: str) -> str:
    """Regex of the encoder params under the attribute `prefix`."""
    return rf"^encoder\.{re.escape(prefix)}(\.|$)"


def encoder_units(encoder) -> dict[str, int]:
    """Return the encoder family's `unit_params` with indices into
    `encoder.layers`.

    A family may give its module a `unit_params` dict of {attribute: layer},
    where a negative layer counts from the top, so that the top unit stays
    the top one after `drop_top`. Families without it return {}.
    """
    count = len(encoder.layers)
    declared = getattr(encoder, "unit_params", {})
    return {
        prefix: layer if layer >= 0 else count + layer
        for prefix, layer in declared.items()
    }
