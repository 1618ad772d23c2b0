"""The `transformer` encoder family: a pre-norm Transformer over patches or tokens.

One module covers three input kinds, named in its spec:

- "image": [H, W, C] inputs cut into p x p patches (a ViT, Dosovitskiy et al.
  2021), with 2-D sine-cosine position embeddings;
- "signal": [L, C] inputs cut into patches of p steps, with 1-D ones;
- "tokens": [L] integer token ids (BERT style, Devlin et al. 2019), with 1-D
  ones. Position 0 contains the tokenizer's CLS token, and padding is masked
  out of attention and of mean pooling.

Position embeddings are fixed sine-cosine tables computed from the spec, so
they are neither params nor stored in the export. The output is the final
layer-normed CLS token, or the mean over the output tokens, as `pooling` selects.

Dropout acts only with `train=True` and an explicit `rng` key, so the module
contains no random state and runs deterministically otherwise.

The optional spec key `dtype` ("float32", the default when missing, or
"bfloat16") sets the compute dtype of every embedding, projection and layer
norm. Params stay float32 either way. The pooled output of `__call__` is
cast to float32, so heads and losses compute in float32, while `encode`
returns the blocks' output in the compute dtype.
"""

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pretrain.encoders import Family, SpecError, register_family
from pretrain.masking import gather_patches, patchify

INPUT_KINDS = ("image", "signal", "tokens")
POOLINGS = ("cls", "mean")
SPEC_KEYS = {
    "family",
    "input_kind",
    "input_shape",
    "patch_size",
    "sequence_length",
    "width",
    "depth",
    "heads",
    "mlp_ratio",
    "dropout",
    "pooling",
    "tokenizer",
}
# Keys that a spec may omit, with the value a missing key means. Specs
# exported before mixed precision have no `dtype`.
OPTIONAL_SPEC_KEYS = {"dtype": "float32"}
DTYPES = ("float32", "bfloat16")
TOKENIZER_KEYS = {
    "kind",
    "vocab_size",
    "pad_id",
    "cls_id",
    "sep_id",
    "mask_id",
    "byte_offset",
}
# Input rank of each kind: [H, W, C], [L, C] and [L].
INPUT_RANKS = {"image": 3, "signal": 2, "tokens": 1}

_INIT_STD = 0.02  # std of token embeddings and the CLS token, as in BERT and ViT


def sincos_1d(length: int, dim: int) -> np.ndarray:
    """Fixed position embeddings [length, dim]: sines in the first half of the
    features, cosines in the second, at frequencies 1 / 10000^(2i / dim)."""
    frequencies = 1.0 / 10000.0 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2))
    angles = np.arange(length, dtype=np.float64)[:, None] * frequencies[None, :]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1).astype(np.float32)


def sincos_2d(rows: int, columns: int, dim: int) -> np.ndarray:
    """Fixed position embeddings [rows * columns, dim] of a row-major patch grid:
    the first half of the features encodes the row, the second the column."""
    row = np.repeat(sincos_1d(rows, dim // 2), columns, axis=0)
    column = np.tile(sincos_1d(columns, dim // 2), (rows, 1))
    return np.concatenate([row, column], axis=1)


def apply_dropout(x: jax.Array, rate: float, rng: jax.Array | None) -> jax.Array:
    """Inverted dropout; the identity without a key or at rate 0."""
    if rng is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def _split(rng: jax.Array | None, count: int) -> list[jax.Array | None]:
    if rng is None:
        return [None] * count
    return list(jax.random.split(rng, count))


def _linear(
    in_features: int, out_features: int, rngs: nnx.Rngs, dtype: str = "float32"
) -> nnx.Linear:
    return nnx.Linear(
        in_features,
        out_features,
        kernel_init=nnx.initializers.xavier_uniform(),
        dtype=jnp.dtype(dtype),
        param_dtype=jnp.float32,
        rngs=rngs,
    )


def _layer_norm(width: int, rngs: nnx.Rngs, dtype: str) -> nnx.LayerNorm:
    return nnx.LayerNorm(
        width, dtype=jnp.dtype(dtype), param_dtype=jnp.float32, rngs=rngs
    )


class Attention(nnx.Module):
    """Multi-head self-attention with one fused query/key/value projection."""

    def __init__(self, width: int, heads: int, *, rngs: nnx.Rngs, dtype="float32"):
        self.heads = heads
        self.qkv = _linear(width, 3 * width, rngs, dtype)
        self.out = _linear(width, width, rngs, dtype)

    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """Attend over x [batch, T, width]; `mask` [batch, 1, 1, T] is True at
        the keys that may be attended to."""
        batch, length, width = x.shape
        qkv = self.qkv(x).reshape(batch, length, 3, self.heads, width // self.heads)
        query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        y = jax.nn.dot_product_attention(query, key, value, mask=mask)
        return self.out(y.reshape(batch, length, width))


class MLP(nnx.Module):
    def __init__(self, width: int, hidden: int, *, rngs: nnx.Rngs, dtype="float32"):
        self.hidden = _linear(width, hidden, rngs, dtype)
        self.out = _linear(hidden, width, rngs, dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(jax.nn.gelu(self.hidden(x)))


class Block(nnx.Module):
    """Pre-norm Transformer block: x + attention(norm(x)), then x + mlp(norm(x)).

    Dropout, when given a key, acts on each residual branch before the sum.
    """

    def __init__(
        self,
        width: int,
        heads: int,
        mlp_ratio: float,
        rate: float,
        *,
        rngs,
        dtype: str = "float32",
    ):
        self.rate = rate
        self.norm1 = _layer_norm(width, rngs, dtype)
        self.attention = Attention(width, heads, rngs=rngs, dtype=dtype)
        self.norm2 = _layer_norm(width, rngs, dtype)
        self.mlp = MLP(width, mlp_hidden(width, mlp_ratio), rngs=rngs, dtype=dtype)

    def __call__(
        self,
        x: jax.Array,
        *,
        mask: jax.Array | None = None,
        rng: jax.Array | None = None,
    ) -> jax.Array:
        attention_rng, mlp_rng = _split(rng, 2)
        x = x + apply_dropout(
            self.attention(self.norm1(x), mask), self.rate, attention_rng
        )
        return x + apply_dropout(self.mlp(self.norm2(x)), self.rate, mlp_rng)


def mlp_hidden(width: int, mlp_ratio: float) -> int:
    return max(1, int(round(width * mlp_ratio)))


def run_blocks(
    blocks, x: jax.Array, mask: jax.Array | None, rng: jax.Array | None
) -> jax.Array:
    """Apply `blocks` in order, each with its own dropout key."""
    for block, block_rng in zip(blocks, _split(rng, len(blocks)), strict=True):
        x = block(x, mask=mask, rng=block_rng)
    return x


class TransformerEncoder(nnx.Module):
    """Patch or token embedding, `depth` pre-norm blocks, a final layer norm.

    Param paths: `embed` (the patch projection, or the token table), an
    optional `cls_token`, `layers.{i}` (the blocks) and `norm`.
    """

    # Params outside `layers`, each with the block whose fine-tuning unit it
    # joins (negative indices count from the top): the embedding unfreezes
    # with the lowest block and the final norm with the top one.
    unit_params = {"embed": 0, "cls_token": 0, "norm": -1}

    def __init__(self, spec: Mapping[str, Any], *, rngs: nnx.Rngs):
        self.input_kind = spec["input_kind"]
        self.input_shape = tuple(spec["input_shape"])
        self.patch_size = spec["patch_size"]
        self.pooling = spec["pooling"]
        self.width = spec["width"]
        self.pad_id = spec["tokenizer"]["pad_id"] if spec["tokenizer"] else None
        self.dtype = spec.get("dtype", OPTIONAL_SPEC_KEYS["dtype"])

        if self.input_kind == "tokens":
            self.embed = nnx.Embed(
                spec["tokenizer"]["vocab_size"],
                self.width,
                embedding_init=nnx.initializers.normal(_INIT_STD),
                dtype=jnp.dtype(self.dtype),
                param_dtype=jnp.float32,
                rngs=rngs,
            )
        else:
            self.embed = _linear(patch_features(spec), self.width, rngs, self.dtype)
        # Token inputs carry the tokenizer's CLS token at position 0 already.
        with_cls = self.pooling == "cls" and self.input_kind != "tokens"
        init = nnx.initializers.normal(_INIT_STD)
        self.cls_token = (
            nnx.Param(init(rngs.params(), (self.width,))) if with_cls else None
        )
        self.layers = nnx.List(
            [
                Block(
                    self.width,
                    spec["heads"],
                    spec["mlp_ratio"],
                    spec["dropout"],
                    rngs=rngs,
                    dtype=self.dtype,
                )
                for _ in range(spec["depth"])
            ]
        )
        self.norm = _layer_norm(self.width, rngs, self.dtype)

    @property
    def features(self) -> int:
        return self.width

    @property
    def grid(self) -> tuple[int, ...]:
        """Patch grid (rows, columns) of an image, else (sequence length,)."""
        return patch_grid(self.input_kind, self.input_shape, self.patch_size)

    def positions(self) -> np.ndarray:
        """Fixed position embeddings [sequence length, width]."""
        return position_table(self.grid, self.width)

    def embed_inputs(self, x: jax.Array) -> jax.Array:
        """Patch or token embeddings plus positions [batch, n, width]."""
        if self.input_kind == "tokens":
            h = self.embed(x.astype(jnp.int32))
        else:
            h = self.embed(patchify(x, self.patch_size))
        return h + self.positions().astype(h.dtype)

    def encode(
        self,
        h: jax.Array,
        *,
        keep: jax.Array | None = None,
        mask: jax.Array | None = None,
        rng: jax.Array | None = None,
    ) -> jax.Array:
        """Run the blocks and the final norm over embeddings h [batch, n, width].

        `keep` [batch, k] keeps only those positions (MAE's visible patches);
        `mask` [batch, 1, 1, T] limits attention; `rng` enables dropout. The
        CLS token, when the module has one, comes first in the output.
        """
        if keep is not None:
            h = gather_patches(h, keep)
        if self.cls_token is not None:
            cls = jnp.broadcast_to(
                self.cls_token[...].astype(h.dtype), (h.shape[0], 1, self.width)
            )
            h = jnp.concatenate([cls, h], axis=1)
        return self.norm(run_blocks(self.layers, h, mask, rng))

    def __call__(
        self, x: jax.Array, *, train: bool = False, rng: jax.Array | None = None
    ) -> jax.Array:
        """Pooled features [batch, width] of x [batch, *input_shape].

        Dropout applies only when `train` is true and an `rng` is given, as
        fine-tuning's training steps do, so evaluation is deterministic.
        """
        valid = None
        mask = None
        if self.input_kind == "tokens":
            valid = x.astype(jnp.int32) != self.pad_id
            mask = valid[:, None, None, :]
        h = self.encode(self.embed_inputs(x), mask=mask, rng=rng if train else None)
        return self.pool(h, valid).astype(jnp.float32)

    def pool(self, h: jax.Array, valid: jax.Array | None = None) -> jax.Array:
        """CLS output, or the mean over output tokens (real tokens only when
        `valid` [batch, T] is given)."""
        if self.pooling == "cls":
            return h[:, 0]
        if self.cls_token is not None:
            h = h[:, 1:]
        if valid is None:
            return jnp.mean(h, axis=1)
        weight = valid.astype(h.dtype)[:, :, None]
        return jnp.sum(h * weight, axis=1) / jnp.maximum(jnp.sum(weight, axis=1), 1.0)


def patch_grid(
    input_kind: str, input_shape: tuple[int, ...], patch_size: int
) -> tuple[int, ...]:
    if input_kind == "image":
        return (input_shape[0] // patch_size, input_shape[1] // patch_size)
    return (input_shape[0] // patch_size,)


def position_table(grid: tuple[int, ...], width: int) -> np.ndarray:
    """2-D sine-cosine table for a (rows, columns) grid, 1-D for (length,)."""
    if len(grid) == 2:
        return sincos_2d(grid[0], grid[1], width)
    return sincos_1d(grid[0], width)


def patch_features(spec: Mapping[str, Any]) -> int:
    """Values per patch: p * p * C for images, p * C for signals."""
    shape, patch = spec["input_shape"], spec["patch_size"]
    if spec["input_kind"] == "image":
        return patch * patch * shape[2]
    return patch * shape[1]


def transformer_spec(
    input_kind: str,
    input_shape: tuple[int, ...],
    *,
    patch_size: int,
    width: int,
    depth: int,
    heads: int,
    mlp_ratio: float = 4.0,
    dropout: float = 0.0,
    pooling: str = "mean",
    tokenizer: Mapping[str, Any] | None = None,
    dtype: str = "float32",
) -> dict[str, Any]:
    """Build and check the spec of a transformer encoder (tokens take
    `patch_size` 1); `dtype` is the compute dtype."""
    grid = patch_grid(input_kind, tuple(input_shape), patch_size)
    spec = {
        "family": "transformer",
        "input_kind": input_kind,
        "input_shape": [int(d) for d in input_shape],
        "patch_size": int(patch_size),
        "sequence_length": int(math.prod(grid)),
        "width": int(width),
        "depth": int(depth),
        "heads": int(heads),
        "mlp_ratio": float(mlp_ratio),
        "dropout": float(dropout),
        "pooling": pooling,
        "tokenizer": None if tokenizer is None else dict(tokenizer),
        "dtype": dtype,
    }
    check_transformer_spec(spec)
    return spec


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise SpecError(message)


def check_transformer_spec(spec: Mapping[str, Any]) -> None:
    """Raise SpecError for the first invalid field of a transformer spec."""
    _require(
        set(spec) - set(OPTIONAL_SPEC_KEYS) == SPEC_KEYS,
        f"transformer spec keys {sorted(spec)} differ from the expected "
        f"{sorted(SPEC_KEYS)} (and the optional {sorted(OPTIONAL_SPEC_KEYS)})",
    )
    dtype = spec.get("dtype", OPTIONAL_SPEC_KEYS["dtype"])
    _require(dtype in DTYPES, f"dtype {dtype!r} must be one of {DTYPES}")
    kind = spec["input_kind"]
    _require(kind in INPUT_KINDS, f"input_kind {kind!r} must be one of {INPUT_KINDS}")
    _check_input(spec)
    _check_sizes(spec)
    _require(
        spec["pooling"] in POOLINGS,
        f"pooling {spec['pooling']!r} must be one of {POOLINGS}",
    )
    _check_tokenizer(spec)


def _check_input(spec: Mapping[str, Any]) -> None:
    kind, shape, patch = spec["input_kind"], spec["input_shape"], spec["patch_size"]
    _require(
        isinstance(shape, list | tuple)
        and len(shape) == INPUT_RANKS[kind]
        and all(_is_int(d) and d > 0 for d in shape),
        f"input_shape {shape!r} of a {kind} input must be "
        f"{INPUT_RANKS[kind]} positive ints",
    )
    _require(
        _is_int(patch) and patch > 0, f"patch_size {patch!r} must be a positive int"
    )
    if kind == "tokens":
        _require(patch == 1, f"token inputs need patch_size 1, got {patch}")
    patched = shape[:2] if kind == "image" else shape[:1]
    _require(
        all(d % patch == 0 for d in patched),
        f"patch_size {patch} must divide the {kind} size {list(patched)}",
    )
    length = math.prod(patch_grid(kind, tuple(shape), patch))
    _require(
        spec["sequence_length"] == length,
        f"sequence_length {spec['sequence_length']!r} must be {length}, the "
        f"number of patches or tokens of input_shape {list(shape)}",
    )


def _check_sizes(spec: Mapping[str, Any]) -> None:
    width, heads = spec["width"], spec["heads"]
    _require(
        _is_int(spec["depth"]) and spec["depth"] > 0, "depth must be a positive int"
    )
    _require(_is_int(heads) and heads > 0, f"heads {heads!r} must be a positive int")
    # 2-D sine-cosine tables split the width into four equal parts.
    _require(
        _is_int(width) and width > 0 and width % 4 == 0 and width % heads == 0,
        f"width {width!r} must be a positive multiple of 4 and of heads ({heads})",
    )
    ratio = spec["mlp_ratio"]
    _require(
        isinstance(ratio, int | float) and not isinstance(ratio, bool) and ratio > 0,
        f"mlp_ratio {ratio!r} must be a positive number",
    )
    rate = spec["dropout"]
    _require(
        isinstance(rate, int | float) and not isinstance(rate, bool) and 0 <= rate < 1,
        f"dropout {rate!r} must be in [0, 1)",
    )


def _check_tokenizer(spec: Mapping[str, Any]) -> None:
    tokenizer = spec["tokenizer"]
    if spec["input_kind"] != "tokens":
        _require(tokenizer is None, "only token inputs have a tokenizer")
        return
    _require(
        isinstance(tokenizer, Mapping) and set(tokenizer) == TOKENIZER_KEYS,
        f"a token input needs a tokenizer with the keys {sorted(TOKENIZER_KEYS)}",
    )
    _require(tokenizer["kind"] == "byte", "tokenizer kind must be 'byte'")
    vocab = tokenizer["vocab_size"]
    _require(_is_int(vocab) and vocab > 0, "tokenizer vocab_size must be positive")
    for key in ("pad_id", "cls_id", "sep_id", "mask_id", "byte_offset"):
        value = tokenizer[key]
        _require(
            _is_int(value) and 0 <= value < vocab,
            f"tokenizer {key} {value!r} must be an int in [0, {vocab})",
        )
    _require(
        tokenizer["byte_offset"] + 256 == vocab,
        "a byte tokenizer's vocab_size must be byte_offset + 256",
    )


register_family(
    "transformer",
    Family(
        build=lambda spec, rngs: TransformerEncoder(spec, rngs=rngs),
        check=check_transformer_spec,
    ),
)
