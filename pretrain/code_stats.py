"""Per-feature statistics of an encoder's codes, stored with its export.

`pretrain` writes `code_stats.json` into the export directory: the mean and
standard deviation of each code feature over held-out inputs of the
pretraining dataset (its test split, images only, no labels). Fine-tuning
compares them with the codes of the target data (`standardized_shift`) to judge
how far the target is from the pretraining data. The file is optional.
`load_encoder` never reads it, and exports written before it existed load
unchanged.
"""

import json
import os
from typing import Any

import jax
import numpy as np
from flax import nnx

from pretrain.export import ExportError
from pretrain.train import predict
from pretrain.workdir import write_json

CODE_STATS_FILE = "code_stats.json"
CODE_STATS_VERSION = 1
_KEYS = {"format_version", "dataset", "split", "count", "mean", "std"}

# Features whose pooled std is below this count as constant, and a shift
# is measured against this floor instead of dividing by zero.
_MIN_STD = 1e-6

# Codes whose every feature has a std below this on held-out inputs carry
# almost nothing about the input. Collapsed contractive encoders on MNIST-1D
# ended at 5e-7 to 5e-5, a working one-epoch DBN on digits at 6e-4.
COLLAPSED_STD = 1e-4


def _encode(model: nnx.Module, x: jax.Array) -> jax.Array:
    codes = model(x, train=False)
    return codes.reshape(codes.shape[0], -1)


def encode(module: nnx.Module, x: np.ndarray) -> np.ndarray:
    """Return the codes of the scaled inputs `x`, flattened to [n, features]."""
    return predict(module, _encode, np.asarray(x, np.float32))


def code_statistics(codes: np.ndarray) -> dict[str, Any]:
    """Return the count and the per-feature float64 mean and std of `codes`."""
    codes = np.asarray(codes, np.float64)
    return {
        "count": len(codes),
        "mean": codes.mean(axis=0),
        "std": codes.std(axis=0),
    }


def collapse_message(
    stats: dict[str, Any], penalties: tuple[str, ...] = ()
) -> str | None:
    """Return a warning if every code feature in `stats` is nearly constant,
    else None. `penalties` names the run's nonzero penalty weights, which the
    warning suggests lowering along with the learning rate."""
    largest = float(np.max(stats["std"]))
    if largest >= COLLAPSED_STD:
        return None
    knobs = [f"--config.{name}" for name in (*penalties, "learning_rate")]
    return (
        f"the encoder's codes are nearly constant on held-out data (largest "
        f"feature std {largest:.2g}, below {COLLAPSED_STD:g}), so fine-tuning "
        "starts from codes that carry almost nothing about the input; lower "
        + " or ".join(knobs)
    )


def save_code_stats(
    export_dir: str, stats: dict[str, Any], *, dataset: str, split: str
) -> None:
    """Write `stats` from `code_statistics` as `code_stats.json` of an export.

    `dataset` and `split` name the inputs the codes come from.
    """
    write_json(
        os.path.join(export_dir, CODE_STATS_FILE),
        {
            "format_version": CODE_STATS_VERSION,
            "dataset": dataset,
            "split": split,
            "count": int(stats["count"]),
            "mean": np.asarray(stats["mean"]).tolist(),
            "std": np.asarray(stats["std"]).tolist(),
        },
    )


def read_code_stats(export_dir: str) -> dict[str, Any] | None:
    """Read `code_stats.json` of an export; return None if the export has none.

    Raises ExportError when the file exists but is not valid.
    """
    path = os.path.join(os.path.abspath(export_dir), CODE_STATS_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            stored = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ExportError(
            f"{path!r} is not valid JSON ({error}); delete it or rerun `pretrain`"
        ) from None
    if not isinstance(stored, dict) or set(stored) != _KEYS:
        found = (
            f"keys {sorted(stored)}"
            if isinstance(stored, dict)
            else f"a {type(stored).__name__}"
        )
        raise ExportError(
            f"{path!r} must hold a JSON object with keys {sorted(_KEYS)}, got "
            f"{found}; delete it or rerun `pretrain`"
        )
    if stored["format_version"] != CODE_STATS_VERSION:
        raise ExportError(
            f"{path!r} has format_version {stored['format_version']!r}, but this "
            f"code reads version {CODE_STATS_VERSION}"
        )
    return {**stored, **_check_moments(path, stored["mean"], stored["std"])}


def _check_moments(path: str, mean, std) -> dict[str, np.ndarray]:
    try:
        mean = np.asarray(mean, np.float64)
        std = np.asarray(std, np.float64)
    except (TypeError, ValueError):
        mean = std = np.empty(0)
    valid = (
        mean.ndim == 1
        and mean.size > 0
        and mean.shape == std.shape
        and np.all(np.isfinite(mean))
        and np.all(np.isfinite(std))
        and np.all(std >= 0)
    )
    if not valid:
        raise ExportError(
            f"{path!r} needs 'mean' and 'std' as equal-length non-empty lists of "
            "finite numbers, with every std >= 0; delete it or rerun `pretrain`"
        )
    return {"mean": mean, "std": std}


def standardized_shift(reference: dict[str, Any], target: dict[str, Any]) -> float:
    """Mean absolute standardised mean difference between two code statistics.

    Per feature j this is |mean_t - mean_r| / sqrt((std_r**2 + std_t**2) / 2),
    Cohen's d with the pooled std, averaged over features. 0 means equal
    means. A shift of 1 is one pooled std per feature on average. A feature
    that is constant in both (a dead ReLU unit, say) adds 0 when its two
    means agree.

    NOTE: it compares means only, so a target whose codes spread differently
    around the same means scores as similar.
    """
    ref_mean = np.asarray(reference["mean"], np.float64)
    target_mean = np.asarray(target["mean"], np.float64)
    if ref_mean.shape != target_mean.shape:
        raise ValueError(
            f"code statistics of {ref_mean.shape[0]} and {target_mean.shape[0]} "
            "features cannot be compared; they come from different encoders"
        )
    ref_var = np.square(np.asarray(reference["std"], np.float64))
    target_var = np.square(np.asarray(target["std"], np.float64))
    pooled = np.maximum(np.sqrt((ref_var + target_var) / 2), _MIN_STD)
    return float(np.mean(np.abs(target_mean - ref_mean) / pooled))
