"""Encoder families as Flax NNX modules, rebuilt from a JSON-ready spec.

An encoder spec is a plain dict such as::

    {"family": "dense", "input_shape": [8, 8, 1],
     "layers": [{"features": 128, "activation": "sigmoid", "batch_norm": False}]}

Every method that trains an encoder writes this spec into its export, and
`build_encoder` turns it back into a module without the code that trained it.
"""

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "linear": lambda x: x,
}


class SpecError(ValueError):
    """An encoder spec that cannot be built."""


def activation_fn(name: str) -> Callable[[jax.Array], jax.Array]:
    if name not in ACTIVATIONS:
        raise SpecError(
            f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}"
        )
    return ACTIVATIONS[name]


class DenseLayer(nnx.Module):
    """Linear map, optional batch norm, then the activation."""

    def __init__(
        self,
        in_features: int,
        features: int,
        *,
        activation: str,
        batch_norm: bool,
        rngs: nnx.Rngs,
    ):
        activation_fn(activation)
        self.activation = activation
        self.linear = nnx.Linear(
            in_features,
            features,
            kernel_init=nnx.initializers.glorot_uniform(),
            rngs=rngs,
        )
        self.batch_norm = nnx.BatchNorm(features, rngs=rngs) if batch_norm else None

    def pre_activation(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        y = self.linear(x)
        if self.batch_norm is not None:
            y = self.batch_norm(y, use_running_average=not train)
        return y

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        return activation_fn(self.activation)(self.pre_activation(x, train=train))


class DenseEncoder(nnx.Module):
    """A stack of dense layers over inputs flattened from `input_shape`.

    `train=True` makes batch norm use and update batch statistics; with
    `train=False` it uses the stored running averages.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        layers: list[Mapping[str, Any]],
        *,
        rngs: nnx.Rngs,
    ):
        self.input_shape = tuple(input_shape)
        in_features = int(np.prod(self.input_shape))
        built = []
        for layer in layers:
            built.append(
                DenseLayer(
                    in_features,
                    layer["features"],
                    activation=layer["activation"],
                    batch_norm=layer.get("batch_norm", False),
                    rngs=rngs,
                )
            )
            in_features = layer["features"]
        self.layers = nnx.List(built)

    @property
    def features(self) -> int:
        return self.layers[-1].linear.out_features

    def __call__(
        self, x: jax.Array, *, train: bool = False, depth: int | None = None
    ) -> jax.Array:
        """Encode `x` [batch, *input_shape] with the first `depth` layers (all
        layers when `depth` is None)."""
        x = x.reshape(x.shape[0], -1)
        for layer in self.layers[:depth]:
            x = layer(x, train=train)
        return x


def check_dense_spec(spec: Mapping[str, Any]) -> None:
    expected = {"family", "input_shape", "layers"}
    if set(spec) != expected:
        raise SpecError(
            f"encoder spec keys {sorted(spec)} differ from the expected "
            f"{sorted(expected)}"
        )
    check_input_shape(spec["input_shape"])
    if not spec["layers"]:
        raise SpecError("an encoder spec needs at least one layer")
    layer_keys = {"features", "activation", "batch_norm"}
    for i, layer in enumerate(spec["layers"]):
        if set(layer) != layer_keys:
            raise SpecError(
                f"layer {i} keys {sorted(layer)} differ from the expected "
                f"{sorted(layer_keys)}"
            )
        if not isinstance(layer["features"], int) or layer["features"] <= 0:
            raise SpecError(
                f"layer {i} features {layer['features']!r} must be a positive int"
            )
        activation_fn(layer["activation"])
        if not isinstance(layer["batch_norm"], bool):
            raise SpecError(f"layer {i} batch_norm must be true or false")


def check_input_shape(shape: Any) -> None:
    if (
        not isinstance(shape, list | tuple)
        or not shape
        or not all(isinstance(d, int) and d > 0 for d in shape)
    ):
        raise SpecError(f"input_shape {shape!r} must be a list of positive ints")


@dataclasses.dataclass(frozen=True)
class Family:
    """An encoder family: its module, built as `build(spec, rngs)`, and the
    strict check of its spec.

    Every family's module takes `__call__(x, *, train=False)`, where `train`
    makes batch norm use batch statistics, and has `layers` (an `nnx.List`,
    the unit that fine-tuning unfreezes from the top down) and `features`
    (the width of its output).
    """

    build: Callable[[Mapping[str, Any], nnx.Rngs], nnx.Module]
    check: Callable[[Mapping[str, Any]], None]


FAMILIES: dict[str, Family] = {
    "dense": Family(
        build=lambda spec, rngs: DenseEncoder(
            tuple(spec["input_shape"]), list(spec["layers"]), rngs=rngs
        ),
        check=check_dense_spec,
    )
}


# Modules whose import registers more families; imported on first lookup so
# that loading an export needs no import of the code that trained it.
FAMILY_MODULES: tuple[str, ...] = ("pretrain.conv", "pretrain.transformer")


def _load_families() -> None:
    for module in FAMILY_MODULES:
        importlib.import_module(module)


def register_family(name: str, family: Family) -> None:
    if name in FAMILIES:
        raise ValueError(f"an encoder family named {name!r} is already registered")
    FAMILIES[name] = family


def check_spec(spec: Mapping[str, Any]) -> None:
    """Raise SpecError naming the first invalid field of an encoder spec."""
    if not isinstance(spec, Mapping) or "family" not in spec:
        raise SpecError("an encoder spec must be a JSON object with a 'family' key")
    _load_families()
    if spec["family"] not in FAMILIES:
        raise SpecError(
            f"unknown encoder family {spec['family']!r}; known: {sorted(FAMILIES)}"
        )
    FAMILIES[spec["family"]].check(spec)


def build_encoder(spec: Mapping[str, Any], *, rngs: nnx.Rngs) -> nnx.Module:
    """Build a freshly initialised encoder from its spec."""
    check_spec(spec)
    return FAMILIES[spec["family"]].build(spec, rngs)


def dense_spec(
    input_shape: tuple[int, ...],
    hidden: list[int],
    *,
    activation: str = "sigmoid",
    batch_norm: bool = False,
) -> dict[str, Any]:
    """Spec of a dense encoder with the given hidden widths."""
    layers = [
        {"features": int(h), "activation": activation, "batch_norm": batch_norm}
        for h in hidden
    ]
    return {"family": "dense", "input_shape": list(input_shape), "layers": layers}
