"""Pictures for a run directory: filter mosaics and reconstructions.

Only process 0 writes them. The other processes of a multi-process run
draw each figure and discard it.
"""

import os

import matplotlib

matplotlib.use("Agg")  # no display needed; must run before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pretrain.multihost import is_primary  # noqa: E402


def _as_images(rows: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    height, width = input_shape[0], input_shape[1] if len(input_shape) > 1 else 1
    channels = int(np.prod(input_shape)) // (height * width)
    return rows.reshape(len(rows), height, width, channels).mean(-1)


def save_filters(
    kernel: np.ndarray, input_shape: tuple[int, ...], path: str, max_filters: int = 64
) -> None:
    """Draw the first `max_filters` columns of a first-layer kernel [inputs, units]."""
    filters = _as_images(kernel.T[:max_filters], input_shape)
    columns = int(np.ceil(np.sqrt(len(filters))))
    rows = int(np.ceil(len(filters) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns, rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image in zip(axes.flat, filters, strict=False):
        ax.imshow(image, cmap="gray")
    fig.suptitle("first-layer filters")
    _save(fig, path)


def save_reconstructions(
    inputs: np.ndarray, outputs: np.ndarray, input_shape: tuple[int, ...], path: str
) -> None:
    """Draw inputs (top row) above their reconstructions (bottom row)."""
    top, bottom = _as_images(inputs, input_shape), _as_images(outputs, input_shape)
    fig, axes = plt.subplots(2, len(top), figsize=(len(top), 2.2), squeeze=False)
    for i in range(len(top)):
        axes[0, i].imshow(top[i], cmap="gray")
        axes[1, i].imshow(bottom[i], cmap="gray")
        axes[0, i].axis("off")
        axes[1, i].axis("off")
    fig.suptitle("inputs (top) and reconstructions (bottom)")
    _save(fig, path)


def save_samples(samples: np.ndarray, input_shape: tuple[int, ...], path: str) -> None:
    """Draw Gibbs chains [chains, snapshots, inputs] as one mosaic: a chain
    per row, its snapshots left to right, each image scaled to its own range."""
    chains, snapshots = samples.shape[:2]
    images = _as_images(samples.reshape(chains * snapshots, -1), input_shape)
    low = images.min(axis=(1, 2), keepdims=True)
    span = np.maximum(images.max(axis=(1, 2), keepdims=True) - low, 1e-12)
    images = (images - low) / span
    height, width = images.shape[1:]
    # A one-pixel white border separates the tiles.
    mosaic = np.ones((chains * (height + 1) + 1, snapshots * (width + 1) + 1))
    for index, image in enumerate(images):
        row, column = divmod(index, snapshots)
        top, left = 1 + row * (height + 1), 1 + column * (width + 1)
        mosaic[top : top + height, left : left + width] = image
    fig, ax = plt.subplots(figsize=(snapshots, chains))
    ax.imshow(mosaic, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.axis("off")
    ax.set_title("Gibbs chains (rows), snapshots left to right")
    _save(fig, path)


def _save(fig, path: str) -> None:
    if not is_primary():
        plt.close(fig)
        return
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=80, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
