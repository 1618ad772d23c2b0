"""The `auto` preset: pick linear_probe or gradual for the target data.

Two facts decide. The label count is the number of labelled training
examples (the budget, without the validation set). The code shift is
`pretrain.code_stats.standardized_shift` between the encoder's codes on the
target training pool and the statistics that `pretrain` stored in the
export's `code_stats.json`. A shift of at most `auto_similarity_threshold`
counts as similar. An export without that file leaves only the label count.

The default threshold 0.2 lies between shifts measured with dense
autoencoders (hidden (64, 32), 5 epochs, sigmoid and relu activations).
Data from the pretraining distribution gave 0.02 to 0.03: a dataset's own
training pool, and mnist5k_target for an encoder pretrained on
mnist5k_source. Other data gave more: 0.36 to 0.71 between mnist5k_8x8 and
digits, 0.46 to 0.56 from mnist5k_source to mnist5k_rotated and 1.4 to 2.9
from mnist5k_source to mnist5k_noise. Other encoders may need another value.

`auto` never changes `drop_top`: the configured value applies to the chosen
preset.
"""

import dataclasses
import logging
from typing import Any

import ml_collections
import numpy as np

from pretrain.code_stats import (
    CODE_STATS_FILE,
    code_statistics,
    encode,
    read_code_stats,
    standardized_shift,
)
from pretrain.export import ExportError

logger = logging.getLogger(__name__)

AUTO_PRESET = "auto"

# A shift this many times the threshold gets a warning. In `experiments
# transfer` an encoder pretrained on mnist5k_source scored chance on
# mnist5k_noise (shift 0.93) with the export's scaling and every preset,
# while scratch reached 0.51 at 100 labels.
FAR_SHIFT_FACTOR = 4


@dataclasses.dataclass(frozen=True)
class AutoChoice:
    """The preset that `auto` chose, with the facts behind it."""

    preset: str
    labels: int
    few_labels: int
    code_shift: float | None  # None when the export stores no code statistics
    threshold: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def choose_preset(
    labels: int, code_shift: float | None, *, few_labels: int, threshold: float
) -> tuple[str, str]:
    """Return the preset for `labels` labelled examples, and the reason.

    | labels          | shift <= threshold | shift > threshold |
    |-----------------|--------------------|-------------------|
    | < few_labels    | linear_probe       | gradual           |
    | >= few_labels   | gradual            | gradual           |

    Similar data: the pretrained codes already suit the target, so few
    labels train only the head, and many labels also adapt the layers from
    the top down. Different data needs the layers to change. With few labels
    `gradual` is chosen over linear_probe with drop_top=1 because its first
    stage is the linear probe itself, and the best validation accuracy over
    all stages wins. So it falls back to the probe when unfreezing overfits.
    Many labels get `gradual` whatever the shift, never `full`. In
    `experiments unfreeze` and `experiments transfer` (docs/results.md)
    `full` never beat `gradual`. It tied on digits and on rotated mnist5k,
    and lost by 0.12 with all labels on the Transformer encoder of mnist1d.

    A `code_shift` of None (no stored statistics) is treated as similar,
    since an encoder is most often fine-tuned on the data it was pretrained
    on.
    """
    few = labels < few_labels
    count = f"{labels} labels {'<' if few else '>='} auto_few_labels {few_labels}"
    if code_shift is None:
        similar = True
        shift = "no code shift measured, so the data is assumed similar"
    else:
        similar = code_shift <= threshold
        relation = "<=" if similar else ">"
        shift = (
            f"code shift {code_shift:.3f} {relation} auto_similarity_threshold "
            f"{threshold:g}"
        )
    presets = {
        (True, True): ("linear_probe", "only the head needs to learn"),
        (True, False): ("gradual", "layers may need to adapt, probe stage first"),
        (False, True): ("gradual", "enough labels to adapt layers top-down"),
        (False, False): (
            "gradual",
            "enough labels to adapt every layer, top-down, which matched or "
            "beat full fine-tuning in the unfreeze and transfer experiments",
        ),
    }
    preset, explanation = presets[(few, similar)]
    return preset, f"{count} and {shift}: {explanation}"


def choose_for_run(
    config: ml_collections.ConfigDict, loaded, pool_x: np.ndarray | None, labels: int
) -> AutoChoice:
    """Measure the code shift of the target pool and choose a preset.

    `loaded` is the export from `load_encoder`, before any layer is dropped,
    `pool_x` is the target training pool, scaled as fine-tuning scales it,
    and `labels` is the number of labelled training examples. With `pool_x`
    None the codes are not compared.
    """
    stored = read_code_stats(config.encoder)
    code_shift = None
    if stored is None:
        logger.warning(
            "auto: the export %s has no %s, so the preset is chosen from the "
            "label count alone",
            config.encoder,
            CODE_STATS_FILE,
        )
    elif pool_x is None:
        logger.warning(
            "auto: dataset %r has no scaled input pool to encode, so the preset "
            "is chosen from the label count alone",
            config.dataset,
        )
    else:
        target = code_statistics(encode(loaded.module, pool_x))
        try:
            code_shift = standardized_shift(stored, target)
        except ValueError as error:
            raise ExportError(
                f"the {CODE_STATS_FILE} of {config.encoder!r} does not match its "
                f"encoder ({error}); delete the file or rerun `pretrain`"
            ) from None
    preset, reason = choose_preset(
        labels,
        code_shift,
        few_labels=config.auto_few_labels,
        threshold=config.auto_similarity_threshold,
    )
    logger.info("auto chose the %s preset: %s", preset, reason)
    if code_shift is not None and code_shift > FAR_SHIFT_FACTOR * (
        config.auto_similarity_threshold
    ):
        logger.warning(
            "auto: code shift %.3f is far above the threshold %g, so an encoder "
            "pretrained on such different data may be no better than scratch. "
            "Compare with --preset scratch and with --config.scaling=refit",
            code_shift,
            config.auto_similarity_threshold,
        )
    return AutoChoice(
        preset=preset,
        labels=labels,
        few_labels=config.auto_few_labels,
        code_shift=code_shift,
        threshold=config.auto_similarity_threshold,
        reason=reason,
    )


def resolved_config(
    config: ml_collections.ConfigDict, choice: AutoChoice
) -> ml_collections.ConfigDict:
    """Return a copy of `config` with the chosen preset in place of auto."""
    resolved = config.copy_and_resolve_references()
    resolved.preset = choice.preset
    return resolved
