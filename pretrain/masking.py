"""Patches and masks for masked prediction: MAE patch masks and BERT token picks.

Patches are taken in row-major order: patch k of an image with a grid of
(rows, columns) patches covers grid cell (k // columns, k % columns), and the
values inside one patch are flattened as (row, column, channel). A 1-D signal
[length, channels] splits along its length into `length // patch` patches of
`patch * channels` values.

Counts of masked items are rounded half to even (Python's `round` and
`jnp.round`), so 0.75 of 10 patches masks 8 and 0.15 of 10 tokens selects 2.
"""

import jax
import jax.numpy as jnp

# BERT's corruption of the selected tokens: this share becomes the mask token,
# the same share again a random token, and the rest stays unchanged.
MASK_TOKEN_SHARE = 0.8
RANDOM_TOKEN_SHARE = 0.1


def patchify_2d(images: jax.Array, patch: int) -> jax.Array:
    """Split images [batch, H, W, C] into patches [batch, (H/p)(W/p), p*p*C]."""
    batch, height, width, channels = images.shape
    rows, columns = height // patch, width // patch
    x = images.reshape(batch, rows, patch, columns, patch, channels)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, rows * columns, patch * patch * channels)


def unpatchify_2d(
    patches: jax.Array, image_shape: tuple[int, int, int], patch: int
) -> jax.Array:
    """Invert `patchify_2d`: patches [batch, n, p*p*C] to images [batch, H, W, C]."""
    height, width, channels = image_shape
    rows, columns = height // patch, width // patch
    x = patches.reshape(-1, rows, columns, patch, patch, channels)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, height, width, channels)


def patchify_1d(signals: jax.Array, patch: int) -> jax.Array:
    """Split signals [batch, L, C] into patches [batch, L/p, p*C]."""
    batch, length, channels = signals.shape
    return signals.reshape(batch, length // patch, patch * channels)


def unpatchify_1d(
    patches: jax.Array, signal_shape: tuple[int, int], patch: int
) -> jax.Array:
    """Invert `patchify_1d`: patches [batch, n, p*C] to signals [batch, L, C]."""
    del patch  # the reshape needs only the signal shape
    return patches.reshape(-1, *signal_shape)


def patchify(x: jax.Array, patch: int) -> jax.Array:
    """Patches of images [batch, H, W, C] or signals [batch, L, C]."""
    if x.ndim == 4:
        return patchify_2d(x, patch)
    if x.ndim == 3:
        return patchify_1d(x, patch)
    raise ValueError(
        f"patchify expects images [batch, H, W, C] or signals [batch, L, C], "
        f"got shape {x.shape}"
    )


def unpatchify(
    patches: jax.Array, input_shape: tuple[int, ...], patch: int
) -> jax.Array:
    """Invert `patchify` for inputs of `input_shape` (H, W, C) or (L, C)."""
    if len(input_shape) == 3:
        return unpatchify_2d(patches, input_shape, patch)
    return unpatchify_1d(patches, input_shape, patch)


def num_masked(num_items: int, ratio: float) -> int:
    """Items masked per example: round(ratio * num_items), half to even."""
    return int(round(ratio * num_items))


def random_patch_masks(
    rng: jax.Array, batch: int, num_patches: int, ratio: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Draw which patches each example hides, with a fixed count per example.

    Every example masks exactly `num_masked(num_patches, ratio)` patches, chosen
    uniformly by sorting uniform noise as MAE does, so the shapes are static.

    Returns:
      keep: int32 [batch, visible] indices of the visible patches, ascending.
      masked: int32 [batch, hidden] indices of the masked patches, ascending.
      mask: bool [batch, num_patches], True at masked patches.
    """
    hidden = num_masked(num_patches, ratio)
    noise = jax.random.uniform(rng, (batch, num_patches))
    order = jnp.argsort(noise, axis=1)
    keep = jnp.sort(order[:, : num_patches - hidden], axis=1).astype(jnp.int32)
    masked = jnp.sort(order[:, num_patches - hidden :], axis=1).astype(jnp.int32)
    rows = jnp.arange(batch)[:, None]
    mask = jnp.zeros((batch, num_patches), bool).at[rows, masked].set(True)
    return keep, masked, mask


def gather_patches(x: jax.Array, indices: jax.Array) -> jax.Array:
    """Rows `indices` [batch, k] of x [batch, n, d], as [batch, k, d]."""
    return jnp.take_along_axis(x, indices[:, :, None], axis=1)


def select_tokens(
    rng: jax.Array, eligible: jax.Array, ratio: float = 0.15
) -> jax.Array:
    """Pick the positions BERT predicts in each sequence.

    Each row selects round(ratio * eligible count) of its eligible positions
    uniformly, and at least one where it has any. Positions that are not
    eligible (special tokens, padding) are never selected.

    Args:
      rng: key for the choice.
      eligible: bool [batch, length], True at ordinary tokens.
      ratio: share of eligible positions to select.

    Returns:
      bool [batch, length], True at the selected positions.
    """
    count = jnp.sum(eligible, axis=1)
    target = jnp.maximum(jnp.round(ratio * count), 1.0)
    target = jnp.where(count > 0, target, 0.0)

    # The rank of each eligible position in a random order; ineligible
    # positions sort last because their score is infinite.
    scores = jnp.where(eligible, jax.random.uniform(rng, eligible.shape), jnp.inf)
    rank = jnp.argsort(jnp.argsort(scores, axis=1), axis=1)
    return eligible & (rank < target[:, None])


def corrupt_tokens(
    rng: jax.Array,
    tokens: jax.Array,
    selected: jax.Array,
    *,
    mask_id: int,
    random_low: int,
    random_high: int,
) -> jax.Array:
    """Replace selected tokens as BERT does: 80% by `mask_id`, 10% by a random
    token drawn uniformly from [random_low, random_high), 10% unchanged.

    The split is drawn independently per selected position, so the shares hold
    in expectation.
    """
    share_rng, token_rng = jax.random.split(rng)
    u = jax.random.uniform(share_rng, tokens.shape)
    random_tokens = jax.random.randint(
        token_rng, tokens.shape, random_low, random_high, dtype=tokens.dtype
    )
    to_mask = selected & (u < MASK_TOKEN_SHARE)
    to_random = (
        selected & (u >= MASK_TOKEN_SHARE) & (u < MASK_TOKEN_SHARE + RANDOM_TOKEN_SHARE)
    )
    corrupted = jnp.where(to_mask, jnp.asarray(mask_id, tokens.dtype), tokens)
    return jnp.where(to_random, random_tokens, corrupted)
