"""masks.png: inputs, their masks and the reconstructions, side by side.

Images get three rows (input, input with the masked part grey, reconstruction
of the masked part pasted into the visible part). Signals get one panel per
example with the input, the masked spans shaded and the reconstruction there.
"""

import os

import matplotlib.pyplot as plt  # noqa: E402, I001
import numpy as np

from pretrain import pictures  # noqa: F401  (selects the Agg backend first)
from pretrain.multihost import is_primary

_MASK_GREY = 0.5  # grey of masked pixels, as a fraction of the display range


def save_masks(
    inputs: np.ndarray,
    masks: np.ndarray,
    reconstructions: np.ndarray,
    path: str,
) -> None:
    """Draw examples of `inputs` [n, H, W, C] or [n, L, C] with `masks` (True
    where hidden, same shape) and `reconstructions` (same shape). Only
    process 0 draws and writes."""
    if not is_primary():
        return
    if inputs.ndim == 4:
        figure = _image_figure(inputs, masks, reconstructions)
    else:
        figure = _signal_figure(inputs, masks, reconstructions)
    tmp = path + ".tmp.png"
    figure.savefig(tmp, dpi=80, bbox_inches="tight")
    plt.close(figure)
    os.replace(tmp, path)


def _display_range(inputs: np.ndarray) -> tuple[float, float]:
    # The inputs' range, so reconstructions that overshoot it are clipped
    # instead of washing out the contrast of every picture.
    return float(inputs.min()), float(inputs.max())


def _image_figure(inputs, masks, reconstructions):
    inputs, masks, outputs = (a.mean(-1) for a in (inputs, masks, reconstructions))
    low, high = _display_range(inputs)
    masked = np.where(masks > 0, low + _MASK_GREY * (high - low), inputs)
    pasted = np.where(masks > 0, outputs, inputs)
    rows = (("input", inputs), ("masked", masked), ("reconstruction", pasted))

    count = len(inputs)
    figure, axes = plt.subplots(3, count, figsize=(count, 3.3), squeeze=False)
    for r, (title, images) in enumerate(rows):
        for i in range(count):
            axes[r, i].imshow(images[i], cmap="gray", vmin=low, vmax=high)
            axes[r, i].axis("off")
        axes[r, 0].set_title(title, fontsize=8, loc="left")
    figure.suptitle("inputs, masks (grey) and reconstructions of the masked part")
    return figure


def _signal_figure(inputs, masks, reconstructions):
    count = len(inputs)
    figure, axes = plt.subplots(1, count, figsize=(2.2 * count, 2.0), squeeze=False)
    steps = np.arange(inputs.shape[1])
    for i, ax in enumerate(axes[0]):
        hidden = masks[i].any(-1)
        ax.plot(steps, inputs[i], color="black", linewidth=1.0)
        ax.plot(
            steps,
            np.where(hidden[:, None], reconstructions[i], np.nan),
            color="tab:red",
            linewidth=1.0,
        )
        ax.fill_between(
            steps,
            0,
            1,
            where=hidden,
            transform=ax.get_xaxis_transform(),
            color="grey",
            alpha=0.3,
            step="mid",
        )
        ax.set_xticks([])
        ax.set_yticks([])
    figure.suptitle(
        "signals (black), masked spans (grey) and their reconstruction (red)"
    )
    return figure
