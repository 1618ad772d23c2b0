"""Input scaling fitted on the training pool and saved with a run.

Two kinds exist. "minmax" applies one global (x - min) / (max - min), so the pool
lands in [0, 1]. "standard" applies a per-feature (x - mean) / std. A feature
whose std over the pool is below 1e-6 (a pixel that is always 0, say) gets a
std of 1, as scikit-learn's StandardScaler does. Unseen values of such a
pixel in test images then stay on the scale of their raw units.
"""

import dataclasses
from collections.abc import Iterable

import numpy as np

from pretrain.data.loading import DatasetError

SCALER_KINDS = ("minmax", "standard")

_PARAM_KEYS = {"minmax": ("min", "max"), "standard": ("mean", "std")}

_DICT_KEYS = ("kind", "params", "feature_shape")

_CONSTANT_STD = 1e-6


@dataclasses.dataclass(frozen=True, eq=False)
class Scaler:
    """Fitted scaling parameters and the feature shape (H, W, C) they apply to.

    `params` contains float64 arrays: scalar "min" and "max" for "minmax", and
    "mean" and "std" of shape `feature_shape` for "standard".
    """

    kind: str
    params: dict[str, np.ndarray]
    feature_shape: tuple[int, ...]

    def __post_init__(self):
        _check_kind(self.kind)
        # Direct construction may pass lists, so store the canonical types that
        # `apply` compares against and `to_dict` converts.
        object.__setattr__(self, "feature_shape", tuple(self.feature_shape))
        params = {key: np.asarray(v, np.float64) for key, v in self.params.items()}
        object.__setattr__(self, "params", params)
        _check_keys("params", set(self.params), set(_PARAM_KEYS[self.kind]))
        expected = () if self.kind == "minmax" else tuple(self.feature_shape)
        for key, value in self.params.items():
            if np.shape(value) != expected:
                raise DatasetError(
                    f"{self.kind} scaler parameter {key!r} has shape "
                    f"{np.shape(value)}, expected {expected}"
                )
            if not np.all(np.isfinite(value)):
                raise DatasetError(
                    f"{self.kind} scaler parameter {key!r} contains NaN or inf"
                )
        if self.kind == "minmax" and not self.params["max"] > self.params["min"]:
            raise DatasetError(
                f"minmax scaler needs max > min, got min {self.params['min']} "
                f"and max {self.params['max']}"
            )
        if self.kind == "standard" and not np.all(self.params["std"] > 0):
            raise DatasetError("standard scaler needs every std to be positive")

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Scale x of shape [..., *feature_shape] and return float32."""
        x = np.asarray(x, dtype=np.float32)
        trailing = x.shape[x.ndim - len(self.feature_shape) :]
        if x.ndim < len(self.feature_shape) or trailing != self.feature_shape:
            raise DatasetError(
                f"cannot apply a scaler fitted on features of shape "
                f"{self.feature_shape} to inputs of shape {x.shape}. The trailing "
                "axes must match."
            )
        if self.kind == "minmax":
            low = np.float32(self.params["min"])
            scale = np.float32(self.params["max"] - self.params["min"])
            return (x - low) / scale
        mean = self.params["mean"].astype(np.float32)
        std = self.params["std"].astype(np.float32)
        return (x - mean) / std

    def to_dict(self) -> dict:
        """Return the scaler as JSON-ready floats and lists of floats."""
        return {
            "kind": self.kind,
            "params": {key: value.tolist() for key, value in self.params.items()},
            "feature_shape": list(self.feature_shape),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Scaler":
        """Rebuild a scaler from `to_dict` output. Unknown or missing keys raise."""
        if not isinstance(d, dict):
            raise DatasetError(f"a Scaler dict is expected, got {type(d).__name__}")
        _check_keys("Scaler dict", set(d), set(_DICT_KEYS))
        _check_kind(d["kind"])
        if not isinstance(d["params"], dict):
            raise DatasetError(
                f"Scaler dict 'params' must be a dict, got {type(d['params']).__name__}"
            )
        params = {
            key: np.asarray(value, dtype=np.float64)
            for key, value in d["params"].items()
        }
        return cls(
            kind=d["kind"],
            params=params,
            feature_shape=_feature_shape(d["feature_shape"]),
        )


def fit_scaler(x: np.ndarray, kind: str = "minmax") -> Scaler:
    """Fit a scaler on the training pool x of shape [n, *feature_shape]."""
    _check_kind(kind)
    x = np.asarray(x)
    _check_chunk(x)
    feature_shape = tuple(int(size) for size in x.shape[1:])
    if kind == "minmax":
        return _minmax(np.float64(x.min()), np.float64(x.max()), feature_shape)
    mean = x.mean(axis=0, dtype=np.float64)
    std = x.std(axis=0, dtype=np.float64)
    return _standard(mean, std, feature_shape)


def fit_scaler_chunks(chunks: Iterable[np.ndarray], kind: str = "minmax") -> Scaler:
    """Fit the scaler that `fit_scaler` fits on the chunks' concatenation,
    holding one chunk in memory at a time (for streamed datasets). The
    standard scaler's float64 means and deviations may differ from
    `fit_scaler`'s in the last digits, since the sums run in another order.

    Per-feature means and variances are merged chunk by chunk with Chan et
    al.'s pairwise update, in float64.
    """
    _check_kind(kind)
    count, low, high, mean, m2 = 0, np.inf, -np.inf, 0.0, 0.0
    feature_shape = None
    for chunk in chunks:
        chunk = np.asarray(chunk)
        _check_chunk(chunk)
        feature_shape = tuple(int(size) for size in chunk.shape[1:])
        low, high = (
            min(low, np.float64(chunk.min())),
            max(high, np.float64(chunk.max())),
        )
        n = len(chunk)
        chunk_mean = chunk.mean(axis=0, dtype=np.float64)
        chunk_m2 = np.square(chunk - chunk_mean).sum(axis=0, dtype=np.float64)
        delta = chunk_mean - mean
        total = count + n
        mean = mean + delta * (n / total)
        m2 = m2 + chunk_m2 + np.square(delta) * (count * n / total)
        count = total
    if feature_shape is None:
        raise DatasetError("fit_scaler_chunks got no chunks; the pool is empty")
    if kind == "minmax":
        return _minmax(low, high, feature_shape)
    return _standard(mean, np.sqrt(m2 / count), feature_shape)


def _check_chunk(x: np.ndarray) -> None:
    if x.ndim < 2 or len(x) == 0:
        raise DatasetError(
            f"fit_scaler needs a non-empty array of shape [n, *feature_shape], "
            f"got shape {x.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise DatasetError(
            "fit_scaler input contains NaN or inf values. Fix or remove those examples."
        )


def _minmax(low: np.float64, high: np.float64, feature_shape) -> Scaler:
    if not high > low:
        raise DatasetError(
            f"cannot fit a minmax scaler on constant data (every value is "
            f"{low}). Use kind='standard' or check the input."
        )
    params = {"min": np.asarray(low), "max": np.asarray(high)}
    return Scaler(kind="minmax", params=params, feature_shape=feature_shape)


def _standard(mean: np.ndarray, std: np.ndarray, feature_shape) -> Scaler:
    std = np.where(std < _CONSTANT_STD, 1.0, std)
    params = {"mean": mean, "std": std}
    return Scaler(kind="standard", params=params, feature_shape=feature_shape)


def _check_kind(kind: str) -> None:
    if kind not in SCALER_KINDS:
        raise DatasetError(
            f"unknown scaler kind {kind!r}: pass one of {', '.join(SCALER_KINDS)}"
        )


def _check_keys(container: str, found: set, expected: set) -> None:
    missing = sorted(expected - found)
    extra = sorted(found - expected, key=str)
    if missing or extra:
        raise DatasetError(
            f"invalid {container}: missing keys {missing}, unknown keys {extra}. "
            f"Expected exactly {sorted(expected)}."
        )


def _feature_shape(values) -> tuple[int, ...]:
    if not isinstance(values, list | tuple) or not all(
        isinstance(size, int) and not isinstance(size, bool) and size > 0
        for size in values
    ):
        raise DatasetError(
            f"invalid Scaler feature_shape {values!r}: expected a list of "
            "positive integers such as [28, 28, 1]"
        )
    return tuple(values)
