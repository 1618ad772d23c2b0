"""The `conv` encoder family: convolutional stages over 2D images or 1D signals.

A spec records every stage, so `build_encoder` rebuilds the encoder from
`encoder.json` alone::

    {"family": "conv", "input_shape": [8, 8, 1],
     "stages": [{"features": 16, "kernel_size": 3, "stride": 1,
                 "padding": "SAME", "activation": "relu", "batch_norm": true,
                 "pool": "max", "pool_size": 2}]}

`input_shape` is [H, W, C] for images and [L, C] for signals. A stage is a
convolution, optional batch norm, the activation and optional pooling. The
encoder ends in global average pooling, so its `features` are the channels
of its last stage.

The optional spec key `dtype` ("float32", the default when missing, or
"bfloat16") sets the compute dtype of every convolution and batch norm.
Params and batch statistics stay float32. The pooled output of the encoder
is cast to float32; `feature_maps` and the stages return the compute dtype.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from pretrain.encoders import (
    ACTIVATIONS,
    Family,
    SpecError,
    activation_fn,
    check_input_shape,
    register_family,
)

PADDINGS = ("SAME", "VALID")
POOLS = ("max", "avg", "none")
SPEC_KEYS = {"family", "input_shape", "stages"}
# Keys that a spec may omit, with the value a missing key means. Specs
# exported before mixed precision have no `dtype`.
OPTIONAL_SPEC_KEYS = {"dtype": "float32"}
DTYPES = ("float32", "bfloat16")
STAGE_KEYS = {
    "features",
    "kernel_size",
    "stride",
    "padding",
    "activation",
    "batch_norm",
    "pool",
    "pool_size",
}


class ConvStage(nnx.Module):
    """Convolution, optional batch norm, activation, then optional pooling.

    Pooling windows are `pool_size` wide with stride `pool_size` and SAME
    padding, so an odd side keeps its last row (7 -> 4 for size 2).
    """

    def __init__(
        self,
        in_features: int,
        stage: Mapping[str, Any],
        *,
        spatial_dims: int,
        rngs: nnx.Rngs,
        dtype: str = "float32",
    ):
        activation_fn(stage["activation"])
        self.activation = stage["activation"]
        self.kernel_size = stage["kernel_size"]
        self.stride = stage["stride"]
        self.padding = stage["padding"]
        self.pool = stage["pool"]
        self.pool_size = stage["pool_size"]
        self.spatial_dims = spatial_dims
        # Batch norm's shift makes a convolution bias redundant.
        self.conv = nnx.Conv(
            in_features,
            stage["features"],
            (stage["kernel_size"],) * spatial_dims,
            strides=(stage["stride"],) * spatial_dims,
            padding=stage["padding"],
            use_bias=not stage["batch_norm"],
            dtype=jnp.dtype(dtype),
            param_dtype=jnp.float32,
            rngs=rngs,
        )
        self.batch_norm = (
            nnx.BatchNorm(
                stage["features"],
                dtype=jnp.dtype(dtype),
                param_dtype=jnp.float32,
                rngs=rngs,
            )
            if stage["batch_norm"]
            else None
        )

    @property
    def features(self) -> int:
        return self.conv.out_features

    def output_positions(self, positions: Sequence[int]) -> tuple[int, ...]:
        """Positions per spatial axis of this stage's output for an input of
        `positions`."""
        stage = {
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "padding": self.padding,
            "pool": self.pool,
            "pool_size": self.pool_size,
        }
        return stage_output_shape(positions, stage)

    def pre_activation(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        y = self.conv(x)
        if self.batch_norm is not None:
            y = self.batch_norm(y, use_running_average=not train)
        return y

    def pool_maps(self, h: jax.Array) -> jax.Array:
        window = (self.pool_size,) * self.spatial_dims
        if self.pool == "max":
            return max_pool(h, self.pool_size)
        if self.pool == "avg":
            return nnx.avg_pool(h, window, window, "SAME", count_include_pad=False)
        return h

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        h = activation_fn(self.activation)(self.pre_activation(x, train=train))
        return self.pool_maps(h)


def max_pool(h: jax.Array, size: int) -> jax.Array:
    """Take the max over windows `size` wide with stride `size` and SAME
    padding, along every axis of `h` between the batch and the channels.

    The values equal `nnx.max_pool(h, window, window, "SAME")`. A reshape and
    a max replace XLA's `reduce_window` because the gradient of the latter, a
    select-and-scatter, is slow on XLA:CPU, while the max's gradient is an
    elementwise mask. Tied maxima in a window share its gradient, where
    select-and-scatter gives all of it to the first.
    """
    pads, shape = [(0, 0)], [h.shape[0]]
    for n in h.shape[1:-1]:
        positions = -(-n // size)
        # SAME padding puts the smaller half of the padding before the data.
        total = positions * size - n
        pads.append((total // 2, total - total // 2))
        shape += [positions, size]
    pads.append((0, 0))
    shape.append(h.shape[-1])

    windows = jnp.pad(h, pads, constant_values=-jnp.inf).reshape(shape)
    return windows.max(axis=tuple(range(2, len(shape) - 1, 2)))


class ConvEncoder(nnx.Module):
    """Convolutional stages, then global average pooling over positions.

    `train=True` makes batch norm use and update batch statistics; with
    `train=False` it uses the stored running averages.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        stages: Sequence[Mapping[str, Any]],
        *,
        rngs: nnx.Rngs,
        dtype: str = "float32",
    ):
        self.input_shape = tuple(input_shape)
        self.dtype = dtype
        spatial_dims = len(self.input_shape) - 1
        in_features = self.input_shape[-1]
        built = []
        for stage in stages:
            built.append(
                ConvStage(
                    in_features,
                    stage,
                    spatial_dims=spatial_dims,
                    rngs=rngs,
                    dtype=dtype,
                )
            )
            in_features = stage["features"]
        self.layers = nnx.List(built)

    @property
    def features(self) -> int:
        return self.layers[-1].features

    def feature_maps(
        self, x: jax.Array, *, train: bool = False, depth: int | None = None
    ) -> jax.Array:
        """Maps [batch, *positions, channels] after the first `depth` stages
        (all stages when `depth` is None)."""
        for layer in self.layers[:depth]:
            x = layer(x, train=train)
        return x

    def __call__(
        self, x: jax.Array, *, train: bool = False, depth: int | None = None
    ) -> jax.Array:
        maps = self.feature_maps(x, train=train, depth=depth)
        pooled = jnp.mean(maps, axis=tuple(range(1, maps.ndim - 1)))
        return pooled.astype(jnp.float32)


def stage_output_shape(
    spatial: Sequence[int], stage: Mapping[str, Any]
) -> tuple[int, ...]:
    """Positions per spatial axis after `stage`; a side below 1 means the stage
    does not fit its input."""
    kernel, stride = stage["kernel_size"], stage["stride"]
    if stage["padding"] == "SAME":
        sides = [-(-n // stride) for n in spatial]
    else:
        sides = [(n - kernel) // stride + 1 if n >= kernel else 0 for n in spatial]
    if stage["pool"] != "none":
        sides = [-(-n // stage["pool_size"]) for n in sides]
    return tuple(sides)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_stage(i: int, stage: Any) -> None:
    if not isinstance(stage, Mapping):
        raise SpecError(f"conv spec stage {i} must be a JSON object, got {stage!r}")
    if set(stage) != STAGE_KEYS:
        missing = sorted(STAGE_KEYS - set(stage))
        extra = sorted(set(stage) - STAGE_KEYS)
        raise SpecError(
            f"conv spec stage {i} has missing keys {missing} and unknown keys "
            f"{extra}; a stage needs exactly {sorted(STAGE_KEYS)}"
        )
    for key in ("features", "kernel_size", "stride", "pool_size"):
        if not _positive_int(stage[key]):
            raise SpecError(
                f"conv spec stage {i} {key} = {stage[key]!r} is invalid: use a "
                "positive int"
            )
    if stage["padding"] not in PADDINGS:
        raise SpecError(
            f"conv spec stage {i} padding = {stage['padding']!r} is invalid: use "
            f"one of {list(PADDINGS)}"
        )
    if stage["activation"] not in ACTIVATIONS:
        raise SpecError(
            f"conv spec stage {i} activation = {stage['activation']!r} is "
            f"invalid: use one of {sorted(ACTIVATIONS)}"
        )
    if not isinstance(stage["batch_norm"], bool):
        raise SpecError(
            f"conv spec stage {i} batch_norm = {stage['batch_norm']!r} is "
            "invalid: use true or false"
        )
    if stage["pool"] not in POOLS:
        raise SpecError(
            f"conv spec stage {i} pool = {stage['pool']!r} is invalid: use one "
            f"of {list(POOLS)}"
        )
    if stage["pool"] == "none" and stage["pool_size"] != 1:
        raise SpecError(
            f"conv spec stage {i} pool_size = {stage['pool_size']!r} is invalid: "
            "a stage without pooling records pool_size 1"
        )


def check_conv_spec(spec: Mapping[str, Any]) -> None:
    """Raise SpecError naming the first missing, unknown or invalid field."""
    keys = set(spec) - set(OPTIONAL_SPEC_KEYS)
    if keys != SPEC_KEYS:
        missing = sorted(SPEC_KEYS - keys)
        extra = sorted(keys - SPEC_KEYS)
        raise SpecError(
            f"conv spec has missing keys {missing} and unknown keys {extra}; it "
            f"needs exactly {sorted(SPEC_KEYS)}, and may have "
            f"{sorted(OPTIONAL_SPEC_KEYS)}"
        )
    dtype = spec.get("dtype", OPTIONAL_SPEC_KEYS["dtype"])
    if dtype not in DTYPES:
        raise SpecError(
            f"conv spec dtype = {dtype!r} is invalid: use one of {list(DTYPES)}"
        )
    check_input_shape(spec["input_shape"])
    if len(spec["input_shape"]) not in (2, 3):
        raise SpecError(
            f"conv spec input_shape = {list(spec['input_shape'])!r} is invalid: "
            "use [length, channels] for signals or [height, width, channels] "
            "for images"
        )
    stages = spec["stages"]
    if not isinstance(stages, list | tuple) or not stages:
        raise SpecError(
            f"conv spec stages = {stages!r} is invalid: give a list of at least "
            "one stage"
        )

    spatial = tuple(spec["input_shape"][:-1])
    for i, stage in enumerate(stages):
        _check_stage(i, stage)
        out = stage_output_shape(spatial, stage)
        if min(out) < 1:
            raise SpecError(
                f"conv spec stage {i} kernel_size = {stage['kernel_size']} does "
                f"not fit its input of {list(spatial)} positions with VALID "
                "padding; use SAME padding or a smaller kernel"
            )
        spatial = out


def conv_stage(
    features: int,
    *,
    kernel_size: int = 3,
    stride: int = 1,
    activation: str = "relu",
    batch_norm: bool = False,
    pool: str = "max",
    pool_size: int = 2,
) -> dict[str, Any]:
    """Spec of one SAME-padded stage; `pool_size` is recorded as 1 without pooling."""
    return {
        "features": int(features),
        "kernel_size": int(kernel_size),
        "stride": int(stride),
        "padding": "SAME",
        "activation": activation,
        "batch_norm": bool(batch_norm),
        "pool": pool,
        "pool_size": int(pool_size) if pool != "none" else 1,
    }


def conv_spec(
    input_shape: Sequence[int],
    channels: Sequence[int],
    *,
    dtype: str = "float32",
    **stage_options: Any,
) -> dict[str, Any]:
    """Spec of a conv encoder with one stage per entry of `channels`, each
    built by `conv_stage(features, **stage_options)`; `dtype` is the compute
    dtype."""
    return {
        "family": "conv",
        "input_shape": [int(d) for d in input_shape],
        "stages": [conv_stage(c, **stage_options) for c in channels],
        "dtype": dtype,
    }


register_family(
    "conv",
    Family(
        build=lambda spec, rngs: ConvEncoder(
            spec["input_shape"],
            list(spec["stages"]),
            rngs=rngs,
            dtype=spec.get("dtype", OPTIONAL_SPEC_KEYS["dtype"]),
        ),
        check=check_conv_spec,
    ),
)
