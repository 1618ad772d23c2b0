"""The method registry: what a pretraining method contributes to a run.

A method gives its default config and a `pretrain(context)` function that
builds its models and losses, trains them with the shared loop in
`pretrain.train`, and returns the trained encoder with its spec.
"""

import dataclasses
import difflib
import importlib
import zlib
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from pretrain.rng import train_key


@dataclasses.dataclass
class PretrainContext:
    config: ml_collections.ConfigDict
    x: np.ndarray  # float32 [n, *input_shape], the scaled unlabelled pool
    unit_range: bool  # True when the scaled inputs lie in [0, 1]
    rng: jax.Array
    writer: Any  # pretrain.metrics.MetricWriter or None
    workdir: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def rng_for(self, purpose: str) -> jax.Array:
        """Return the seed's key for one purpose ("init", "layer0/train", ...)."""
        return jax.random.fold_in(self.rng, _stable_hash(purpose))

    def train_rng(self, purpose: str) -> jax.Array:
        """Return the key of one training phase, of PRNG `config.rng_impl`."""
        return train_key(self.rng_for(purpose), self.config.rng_impl)


def _stable_hash(text: str) -> int:
    # Python's hash() of a str changes between processes; crc32 does not.
    return zlib.crc32(text.encode()) % 2**31


@dataclasses.dataclass
class TrainedEncoder:
    module: nnx.Module
    spec: dict[str, Any]
    first_kernel: np.ndarray | None  # [inputs, units], drawn as filters
    pictures: dict[str, Any]  # "reconstructions": (inputs, reconstructions)


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    description: str
    defaults: Callable[[], ml_collections.ConfigDict]
    # Raises ConfigError for invalid values; runs before any output is written.
    check_config: Callable[[ml_collections.ConfigDict], None]
    pretrain: Callable[[PretrainContext], TrainedEncoder]
    # A whole run for methods whose data is not an image or signal dataset
    # (text): run(config, workdir, overwrite=...) -> export directory.
    run: Callable[..., str] | None = None
    # Trains from a `pretrain.data.streaming.StreamedArray` pool when
    # --config.stream is set (it only indexes rows and maps batches).
    streams: bool = False


METHODS: dict[str, Method] = {}


class MethodError(ValueError):
    """An unknown pretraining method name."""


def register(method: Method) -> Method:
    if method.name in METHODS:
        raise ValueError(f"a method named {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


# Modules whose import registers their methods (and any encoder family).
METHOD_MODULES = (
    "pretrain.autoencoder",
    "pretrain.conv_autoencoder",
    "pretrain.masked",
    "pretrain.dbn",
)


def all_methods() -> dict[str, Method]:
    """Every registered method, after importing `METHOD_MODULES`."""
    for module in METHOD_MODULES:
        importlib.import_module(module)
    return METHODS


def get_method(name: str) -> Method:
    all_methods()
    if name not in METHODS:
        close = difflib.get_close_matches(name, METHODS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise MethodError(
            f"unknown pretraining method {name!r}.{hint} Known methods: "
            f"{sorted(METHODS)}"
        )
    return METHODS[name]
