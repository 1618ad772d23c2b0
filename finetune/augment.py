"""Image augmentation applied inside the jitted training step."""

import jax
import jax.numpy as jnp
from jax.scipy import ndimage


def _augment_one(
    image: jax.Array, rng: jax.Array, shift: int, rotation: float, noise: float
) -> jax.Array:
    height, width = image.shape[0], image.shape[1]
    shift_rng, angle_rng, noise_rng = jax.random.split(rng, 3)
    dy, dx = jax.random.randint(shift_rng, (2,), -shift, shift + 1)
    angle = jnp.deg2rad(
        jax.random.uniform(angle_rng, (), minval=-rotation, maxval=rotation)
    )

    # Sample the output grid from the input rotated about the centre and
    # shifted; points outside the image read 0 (the background after scaling).
    rows, cols = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij")
    cy, cx = (height - 1) / 2, (width - 1) / 2
    y, x = rows - cy - dy, cols - cx - dx
    source_y = jnp.cos(angle) * y - jnp.sin(angle) * x + cy
    source_x = jnp.sin(angle) * y + jnp.cos(angle) * x + cx

    def warp(channel):
        return ndimage.map_coordinates(channel, [source_y, source_x], order=1, cval=0.0)

    out = jax.vmap(warp, in_axes=-1, out_axes=-1)(image)
    return out + noise * jax.random.normal(noise_rng, out.shape)


def augment(
    images: jax.Array,
    rng: jax.Array,
    *,
    shift: int = 1,
    rotation: float = 10.0,
    noise: float = 0.0,
) -> jax.Array:
    """Randomly shift by up to `shift` pixels, rotate by up to `rotation`
    degrees and add Gaussian noise of std `noise`, per image of [batch, H, W, C]."""
    rngs = jax.random.split(rng, images.shape[0])
    return jax.vmap(_augment_one, in_axes=(0, 0, None, None, None))(
        images, rngs, shift, rotation, noise
    )
